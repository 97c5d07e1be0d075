"""Small widgets shared by the pages: metric with interval, thumbnail grid, run footer."""

from __future__ import annotations

import re

import numpy as np
import streamlit as st

from analysis import schema
from analysis.present import formatting as fmt
from analysis.present.query import ImageQuery
from analysis.store.runstore import Run
from dashboard import nav


def sidebar_footer(run: Run) -> None:
    m = run.manifest
    model = m["inputs"].get("model") or m["inputs"].get("predictions") or {}
    with st.sidebar:
        st.caption(
            f"{fmt.plural(m['n_samples'], 'image')} ·"
            f" {fmt.plural(len(run.class_names), 'class', 'classes')}  \n"
            f"model {safe(model.get('name', '?'))}"
            + (f" ({safe(model['arch'])})" if model.get("arch") else "")
            + f"  \ndata {safe(m['inputs']['data']['name'])}  \ncreated {m['created'][:16]}"
        )
        if m.get("n_skipped"):
            st.caption(
                f":orange[:material/warning:] {fmt.plural(m['n_skipped'], 'file')} skipped —"
                " see Overview"
            )
        from analysis.pipeline.versions import staleness

        stale = staleness(m)
        if stale.pass_stale:
            st.caption(
                ":orange[:material/update:] Made by other analysis code than this errorscope's:"
                " some numbers may be out of date. Run the same `errorscope analyze` command"
                " again to refresh it (tags and notes are kept)."
            )
        elif stale.sections:
            st.caption(
                f":orange[:material/update:] {', '.join(stale.sections)}: computed by other"
                " analysis code, may be out of date. The same `errorscope analyze` command"
                " recomputes only these, without running the model (tags and notes are kept)."
            )


def metric(label: str, est: dict | None, *, as_pct: bool = True, help: str | None = None) -> None:
    """A headline number with its 95% interval underneath (never a bare point estimate)."""
    if not est:
        st.metric(label, "—", help=help)
        return
    v = est.get("value")
    shown = fmt.pct(v) if as_pct else fmt.num(v)
    st.metric(label, shown, help=help)
    st.caption(
        f"95% CI {fmt.interval(est.get('low'), est.get('high'), as_pct=as_pct)}"
        f" · {est.get('method', '')}"
    )


def thumbnail(run: Run, key: str) -> bytes | None:
    """The gallery JPEG of ``key`` (a sample id, ``ref-<sample id>`` for a reference image)."""
    return run.thumbnail(key)


def image_grid(
    run: Run,
    rows: np.ndarray,
    query: ImageQuery,
    *,
    cols: int = 6,
    key: str = "grid",
    origin: str = "gallery",
) -> None:
    """Thumbnails with label / prediction / confidence; each caption opens the image detail."""
    s = run.samples
    names = run.class_names
    if len(rows) == 0:
        st.info("No images match.")
        return
    grid = st.columns(cols)
    for k, r in enumerate(rows):
        row = s.iloc[int(r)]
        with grid[k % cols]:
            path = thumbnail(run, row[schema.SAMPLE_ID]) or row[schema.PATH]
            ok = bool(row[schema.CORRECT])
            st.image(path, width="stretch")
            mark = ":green[:material/check_circle:]" if ok else ":red[:material/cancel:]"
            # long class names ("n01440764 tench, Tinca tinca") shortened: the detail page
            # they open has them whole
            given, pred = (
                safe(fmt.short_name(names[row[c]], 22)) for c in (schema.LABEL, schema.PRED)
            )
            label = f"{mark} {given} → {pred}"
            nav.link("detail", label, query, sample=row[schema.SAMPLE_ID], origin=origin)
            st.caption(f"conf {row[schema.CONFIDENCE]:.2f} · loss {row[schema.LOSS]:.2f}")


def url_param(name: str, default: str = "") -> str:
    """A view setting from the URL (what a pasted link reopens), or ``default``."""
    return str(st.query_params.get(name, default))


def url_choice(name: str, options, default):
    """:func:`url_param` if it is one of ``options``; a mangled link falls back to ``default``
    with a visible note (:func:`dashboard.links.choice_param`)."""
    from dashboard.links import choice_param

    choices = [str(o) for o in options]
    if str(default) not in choices:  # "no choice" defaults (an empty group) are allowed too
        choices.append(str(default))
    return choice_param(name, choices, default=str(default))


def sync_param(name: str, value, default) -> None:
    """Mirror a view setting into the URL, left out when it is the default (short links)."""
    value, default = str(value), str(default)
    if value == default:
        if name in st.query_params:
            del st.query_params[name]
    elif st.query_params.get(name) != value:
        st.query_params[name] = value


# every ASCII punctuation character: CommonMark lets each be backslash-escaped, and each can
# start some markup (links, emphasis, code, HTML, lists, headings, Streamlit's :colour[...] and
# $math$)
_MD_SPECIAL = re.compile(r"([!-/:-@\[-`{-~])")


# Streamlit's Markdown also turns bare addresses into links after escapes are resolved
# (GitHub's "autolink literals": http://..., www...., a@b.c): an invisible word joiner between
# a scheme and its ":", after "www" and before the "@" of an address breaks them without
# changing what anyone sees (and leaves every other ":" alone, so a search for "wrong: x" works).
_AUTOLINK = re.compile(
    r"(?i)(?<![a-z])(https?|ftps?|mailto|xmpp|file|www)(?=\\[:.])|(?<=\w)(?=\\@\w)"
)
JOINER = "\u2060"


def safe(text) -> str:
    """User or data text (notes, tags, reviewer, queue, class and file names, metadata values)
    for anything Streamlit renders as Markdown: shown exactly as typed, never as a link,
    emphasis or HTML. Line breaks stay line breaks; nothing else is interpreted.

    Every ASCII punctuation character is backslash-escaped, and a word joiner (U+2060,
    invisible) goes after a URL scheme or "www" and before the "@" of an address, so that no
    address becomes a link.
    """
    escaped = _MD_SPECIAL.sub(r"\\\1", str(text))
    escaped = _AUTOLINK.sub(lambda m: (m.group(1) or "") + JOINER, escaped)
    return "  \n".join(line.strip() for line in escaped.splitlines()) if escaped else ""


def clicked_cell(event, k: int) -> tuple[int, int] | None:
    """(true, pred) of the confusion-grid point a user clicked, from a plotly selection event."""
    try:
        points = event.selection.points
    except AttributeError:
        return None
    if not points:
        return None
    pt = points[0]
    cd = _as_list(pt.get("customdata"))
    if cd is not None and len(cd) >= 2:
        return int(cd[0]), int(cd[1])
    idx = pt.get("point_index", pt.get("pointIndex"))
    return None if idx is None else divmod(int(idx), k)


PER_CLASS_COLUMNS = {
    "precision": st.column_config.ProgressColumn(
        "precision", format="percent", min_value=0, max_value=1
    ),
    "recall": st.column_config.ProgressColumn("recall", format="percent", min_value=0, max_value=1),
    "f1": st.column_config.NumberColumn("F1", format="%.3f"),
}


def per_class_table(per_class, class_names):
    """Display table of per-class metrics with their intervals as text."""
    import pandas as pd

    pc = per_class
    return pd.DataFrame(
        {
            "class id": pc["class"].astype(int),
            "class": [class_names[int(c)] for c in pc["class"]],
            "support": pc["support"].astype(int),
            "precision": pc["precision"],
            "precision 95% CI": [
                fmt.interval(a, b)
                for a, b in zip(pc["precision_low"], pc["precision_high"], strict=True)
            ],
            "recall": pc["recall"],
            "recall 95% CI": [
                fmt.interval(a, b) for a, b in zip(pc["recall_low"], pc["recall_high"], strict=True)
            ],
            "f1": pc["f1"],
            "F1 95% CI": [
                fmt.interval(a, b, as_pct=False)
                for a, b in zip(pc["f1_low"], pc["f1_high"], strict=True)
            ],
        }
    )


def clickable_table(df, *, key: str, column_config: dict | None = None, height="auto"):
    """A dataframe whose row click returns the row position once (then resets), or None."""
    ver = st.session_state.setdefault(f"{key}_ver", 0)
    ev = st.dataframe(
        df,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=f"{key}_{ver}",
        column_config=column_config,
        height=height,
    )
    rows = ev.selection.rows if ev is not None else []
    if rows:
        st.session_state[f"{key}_ver"] = ver + 1
        return int(rows[0])
    return None


def clicked_points(event) -> list[int]:
    """``customdata`` (sample rows or table positions) of the points a user clicked or lassoed."""
    try:
        points = event.selection.points
    except AttributeError:
        return []
    out = []
    for pt in points:
        cd = _as_list(pt.get("customdata"))
        if isinstance(cd, list | tuple):
            cd = cd[0] if cd else None
        if cd is not None:
            out.append(int(cd))
    return out


def selected_regions(event) -> list[dict]:
    """The boxes and lassos of a chart selection, in data coordinates, as
    :func:`analysis.present.map_points.rows_in_region` takes them."""
    try:
        sel = event.selection
    except AttributeError:
        return []
    out = []
    for kind in ("box", "lasso"):
        try:
            shapes = sel.get(kind) if hasattr(sel, "get") else getattr(sel, kind, None)
        except Exception:  # noqa: BLE001 - an event without this kind of selection
            shapes = None
        for shape in shapes or []:
            xs, ys = _as_list(shape.get("x")), _as_list(shape.get("y"))
            if xs and ys:
                out.append({"kind": kind, "x": list(xs), "y": list(ys)})
    return out


SLICE_COLUMNS = {
    "slice": st.column_config.TextColumn("slice", width="large"),
    "error rate": st.column_config.ProgressColumn(
        "error rate", format="percent", min_value=0, max_value=1
    ),
}


def slice_table(slices):
    """Display form of a slices table: plain words, numbers with intervals."""
    import pandas as pd

    return pd.DataFrame(
        {
            "slice": slices["description"].astype(str),
            "images": slices["n"].astype(int),
            "error rate": slices["error_rate"].astype(float),
            "95% CI": [
                fmt.interval(a, b)
                for a, b in zip(slices["error_rate_low"], slices["error_rate_high"], strict=True)
            ],
            "elsewhere": [fmt.pct(x) for x in slices["rest_error_rate"]],
            "gap": [f"{100 * g:+.1f} pts" for g in slices["gap"]],
            "adjusted p": [fmt.p_value(p) for p in slices["p_adj"]],
            "significant": slices["significant"].astype(bool),
            "top confusion": slices["top_confusion"].fillna("").astype(str),
        }
    )


def cluster_table(clusters):
    """Display form of the error-cluster table."""
    import pandas as pd

    c = clusters
    return pd.DataFrame(
        {
            "cluster": c["cluster"].astype(int),
            "slice": c["description"].astype(str),
            "images": c["size"].astype(int),
            "error rate": c["error_rate"].astype(float),
            "95% CI": [
                fmt.interval(a, b)
                for a, b in zip(c["error_rate_low"], c["error_rate_high"], strict=True)
            ],
            **(
                {"adjusted p": [fmt.p_value(p) for p in c["p_adj"]]} if "p_adj" in c.columns else {}
            ),
        }
    )


def _as_list(cd):
    """Plotly selection customdata arrives as a scalar, a list, or a dict keyed "0", "1", ..."""
    if isinstance(cd, dict):
        return [cd[k] for k in sorted(cd, key=lambda x: int(x))]
    return cd
