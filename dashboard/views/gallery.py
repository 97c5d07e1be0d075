"""Gallery: every image set of the app lands here; filters, sort, paging, thumbnails only."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.present import formatting as fmt
from analysis.present.query import BETWEEN, CONTAINS, SORT_KEYS, ImageQuery, paginate, parse_between
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import data, links, nav

PER_PAGE = 48
KEYS = ("g_true", "g_pred", "g_correct", "g_conf", "g_sort", "g_order")
ORDERS = ("highest first", "lowest first")


def _push_to_widgets(q: ImageQuery, names: list[str], filters: dict) -> list[str]:
    """A link brought a new query: set the widgets to it before they are drawn; returns what
    of its metadata filters no widget can show (they are left out)."""
    ss = st.session_state
    ss["g_true"] = [names[i] for i in q.true if 0 <= i < len(names)]
    ss["g_pred"] = [names[i] for i in q.pred if 0 <= i < len(names)]
    ss["g_correct"] = q.correct
    ss["g_conf"] = tuple(q.conf)
    ss["g_sort"] = q.sort
    ss["g_order"] = ORDERS[0] if q.desc else ORDERS[1]
    given = dict(q.where)
    problems = [
        f"filter on {c!r} was ignored: it is no metadata column" for c in given if c not in filters
    ]
    for c, opt in filters.items():
        v = given.get(c)
        if opt.kind == "range":
            lo, hi = opt.low, opt.high
            a, b = parse_between(v or "") or (lo, hi)
            ss[f"g_where_{c}"] = (min(max(a, lo), hi), max(min(b, hi), lo))
        elif opt.kind == "text":
            ss[f"g_where_{c}"] = v[len(CONTAINS) :] if v and v.startswith(CONTAINS) else ""
        else:
            ok = v is None or v in opt.values
            ss[f"g_where_{c}"] = v if v is not None and ok else "(any)"
            if not ok:
                problems.append(f"{c}={v[:60]!r} was ignored: no image has this value")
    return problems


def _metadata_filter(col: str, opt) -> list[tuple[str, str]]:
    """One metadata filter widget; returns the ``where`` entries it sets (none = no filter)."""
    key = f"g_where_{col}"
    if opt.kind == "range":
        lo, hi = opt.low, opt.high
        if not lo < hi:
            return []
        v = st.slider(ui.safe(col), lo, hi, key=key)
        return [(col, f"{BETWEEN}{v[0]:g},{v[1]:g}")] if tuple(v) != (lo, hi) else []
    if opt.kind == "text":
        v = st.text_input(f"{ui.safe(col)} contains", key=key)
        return [(col, f"{CONTAINS}{v}")] if v else []
    values = ["(any)", *opt.values]
    current = st.session_state.get(key)
    if current not in values:  # a link with a value this run does not have
        st.session_state[key] = "(any)"
    v = st.selectbox(ui.safe(col), values, key=key)
    return [(col, v)] if v != "(any)" else []


def render(run: Run) -> None:
    names = run.class_names
    s = run.samples
    st.title("Gallery")
    incoming = links.image_query(run)
    filters = data.filter_options(str(run.path))
    widget_keys = [*KEYS, *(f"g_where_{c}" for c in filters)]
    if st.session_state.get("g_last") != incoming.to_params() or any(
        k not in st.session_state for k in widget_keys
    ):
        links.note(_push_to_widgets(incoming, names, filters))

    with st.container(border=True):
        c = st.columns([2, 2, 2, 2])
        true = c[0].multiselect("Given label", names, key="g_true")
        pred = c[1].multiselect("Predicted", names, key="g_pred")
        correct = c[2].segmented_control("Show", ["all", "wrong", "correct"], key="g_correct")
        conf = c[3].slider("Confidence", 0.0, 1.0, step=0.01, key="g_conf")
        c2 = st.columns([2, 2, 1, 3])
        sort = c2[0].selectbox(
            "Sort by", list(SORT_KEYS), key="g_sort", format_func=lambda k: k.replace("_", " ")
        )
        # a segmented control, not st.toggle: in the browser the toggle sometimes showed "off"
        # while its value set from a link was on, and the next click sent "off" back (a review
        # queue then started with the easiest images)
        order = c2[1].segmented_control("Order", ORDERS, key="g_order")
        desc = order != ORDERS[1]
        where = []
        if filters:
            n_on = sum(1 for c in filters if c in dict(incoming.where))
            label = "Metadata filters" + (f" ({n_on})" if n_on else "")
            with c2[3].popover(label):
                for col, opt in filters.items():
                    where += _metadata_filter(col, opt)
    q = incoming.with_(
        true=tuple(names.index(n) for n in true),
        pred=tuple(names.index(n) for n in pred),
        correct=correct or "all",
        conf=(float(conf[0]), float(conf[1])),
        sort=sort,
        desc=bool(desc),
        where=tuple(where),
    )
    extra = [
        (label, field)
        for label, field in (
            ("slice", "slice"),
            ("selection", "sel"),
            ("cluster", "cluster"),
            ("issue", "issue"),
        )
        if getattr(q, field) not in ("", None)
    ]
    if extra:
        chips = st.columns(len(extra) + 1)
        for (label, field), col in zip(extra, chips, strict=False):
            if col.button(f"{label} ✕", key=f"clear_{field}", help="remove this filter"):
                q = q.with_(**{field: None if field == "cluster" else ""})
    rows = data.query_rows(run, q)
    n_pages = max(1, -(-len(rows) // PER_PAGE))
    page_no = links.int_param("page", default=1, lo=1, hi=n_pages, what="page")
    if q.to_params() != incoming.to_params():
        page_no = 1
    pg = paginate(rows, page_no, PER_PAGE)
    params = nav.params_for(q)
    if pg.page > 1:
        params["page"] = str(pg.page)
    if params != st.query_params.to_dict():
        st.query_params.from_dict(params)
    st.session_state["g_last"] = q.to_params()

    n_wrong = int((~s[schema.CORRECT].to_numpy()[rows]).sum()) if len(rows) else 0
    head = st.columns([3, 2], vertical_alignment="center")
    head[0].markdown(
        f"**{fmt.plural(pg.total, 'image')}** {'matches' if pg.total == 1 else 'match'} —"
        f" {ui.safe(q.describe(names))}"
        + (f" · error rate {fmt.pct(n_wrong / pg.total)}" if pg.total else "")
    )
    # buttons sized to their labels, right-aligned (narrow columns cut them: "Review th…")
    with head[1].container(horizontal=True, horizontal_alignment="right"):
        nav.copy_link("gallery", q, page=pg.page if pg.page > 1 else None)
        if pg.total and "review" in nav.PAGES:
            if st.button(
                "Review these",
                icon=":material/play_arrow:",
                help="Start a review queue with these images",
            ):
                from analysis.present.query import save_selection

                sel = save_selection(run.path, s[schema.SAMPLE_ID].to_numpy()[rows])
                nav.go(
                    "review",
                    ImageQuery(sel=sel, sort=q.sort, desc=q.desc),
                    queue_name=q.describe(names),
                )
    ui.image_grid(run, pg.rows, q, cols=6)
    if pg.n_pages > 1:
        new_page = st.pagination(pg.n_pages, default=pg.page, key=f"g_page_{pg.total}_{pg.page}")
        if new_page != pg.page:
            st.query_params["page"] = str(new_page)
            st.rerun()
