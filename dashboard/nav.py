"""Page registry and links. Every link carries the run id, so a pasted URL reopens the same view."""

from __future__ import annotations

from urllib.parse import urlencode

import streamlit as st

from analysis.present.query import P_RUN, ImageQuery

# url_path -> st.Page, filled by app.py on every rerun (identical for every session)
PAGES: dict = {}


def register(pages: dict) -> None:
    PAGES.clear()
    PAGES.update(pages)


def params_for(query: ImageQuery | None = None, **extra) -> dict[str, str]:
    p = {} if query is None else query.to_params()
    run_id = st.session_state.get("_run_id")
    if run_id:
        p[P_RUN] = run_id
    p.update({k: str(v) for k, v in extra.items() if v is not None})
    return p


def link(
    target: str, label: str, query: ImageQuery | None = None, *, icon: str | None = None, **extra
) -> None:
    """A page link (same tab, same session) to page ``target`` with ``query`` and the run id."""
    st.page_link(PAGES[target], label=label, icon=icon, query_params=params_for(query, **extra))


def go(target: str, query: ImageQuery | None = None, **extra) -> None:
    """Switch to page ``target`` now (after a click on a chart or a table row)."""
    st.switch_page(PAGES[target], query_params=params_for(query, **extra))


def url(target: str, query: ImageQuery | None = None, **extra) -> str:
    """Absolute URL of a view, for 'copy link' boxes and reports."""
    base = ""
    try:
        base = (st.context.url or "").split("?")[0]
        # st.context.url is the current page's URL; keep the server root
        from urllib.parse import urlsplit

        parts = urlsplit(base)
        base = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
    except Exception:
        base = ""
    path = PAGES[target].url_path if target in PAGES else target
    return f"{base}/{path}?{urlencode(params_for(query, **extra))}"


def copy_link(target: str, query: ImageQuery | None = None, **extra) -> None:
    """A small 'copy link' box (st.code has a copy button) for pasting into meeting notes."""
    with st.popover(
        "Copy link", icon=":material/link:", help="A link that reopens exactly this view"
    ):
        st.code(url(target, query, **extra), language=None, wrap_lines=True)
