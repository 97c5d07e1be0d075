"""Confusion: a clickable matrix at any number of classes, the top confusion pairs, per-class
metrics with intervals, superclasses when the run has a hierarchy, the reliability diagram.

Up to ``MATRIX_MAX`` classes the whole matrix is drawn; beyond, the most confused classes (N
chosen here) or one searched class with its partners, so every cell stays readable and
clickable. Every view's state is in the URL.
"""

from __future__ import annotations

import streamlit as st

from analysis.present import classes as cv
from analysis.present import figures
from analysis.store.runstore import Run
from dashboard import charts, data, links, nav
from dashboard import components as ui
from dashboard.views import class_tables

NORMS = {"counts": None, "row %": "true", "column %": "pred"}
VIEWS = {"top": "Most confused", "class": "One class"}
CLASSES = "classes"


def _int(name: str, default: int, low: int, high: int) -> int:
    """A whole-number view setting from the URL; a bad one falls back with a note."""
    return links.int_param(name, default=default, lo=low, hi=high, what=name)


def render(run: Run) -> None:
    st.title("Confusion")
    m = data.metrics(run)
    if m is None:
        st.error("The metrics section of this run failed.")
        return
    names = run.class_names
    k = len(names)
    hier = data.hierarchy(run)
    levels = cv.hierarchy_levels(hier) if hier is not None else []
    top = st.columns([2, 3])
    with top[0]:
        norm = (
            st.segmented_control(
                "Show",
                list(NORMS),
                default=ui.url_choice("norm", NORMS, "counts"),
                key="cm_norm",
                help="row % = share of each given class (recall view); column % = share of each"
                " predicted class (precision view)",
            )
            or "counts"
        )
        ui.sync_param("norm", norm, "counts")
    level = CLASSES
    if levels:
        options = [CLASSES, *(str(lv) for lv in levels)]
        with top[1]:
            level = (
                st.segmented_control(
                    "Level",
                    options,
                    default=ui.url_choice("level", options, CLASSES),
                    format_func=lambda o: (
                        f"classes ({k:,})"
                        if o == CLASSES
                        else f"level {o} ({len(hier.group_names(int(o))):,} superclasses)"
                    ),
                    key="cm_level",
                )
                or CLASSES
            )
        ui.sync_param("level", level, CLASSES)
    view = _matrix_view(run, names, hier, level)
    if view.note:
        st.caption(view.note)
    st.caption("Click a cell to open its images.")
    ver = st.session_state.setdefault("cm_ver", 0)
    event = st.plotly_chart(
        figures.confusion_figure(
            view.cm, view.names, normalize=NORMS[norm], class_ids=view.ids, focus=view.focus
        ),
        key=f"cm_{ver}",
        on_select="rerun",
        selection_mode="points",
        config={"displayModeBar": False},
    )
    cell = ui.clicked_cell(event, len(view.ids))
    if cell is not None:
        st.session_state["cm_ver"] = ver + 1
        nav.go("gallery", view.cell_query(*cell))
    if level == CLASSES:
        focus = int(view.ids[view.focus]) if view.focus is not None else None
        class_tables.pairs(run, names, focus=focus)
        class_tables.per_class(m.per_class, names, top_k=m.top_k)
    else:
        class_tables.superclasses(run, int(level))
    box = st.expander(
        f"Reliability — ECE {m.ece.value:.3f} (95% CI {m.ece.low:.3f}–{m.ece.high:.3f})",
        key="rel_open",
        on_change="rerun",
    )
    with box:
        if box.open:  # drawn once opened: a hidden chart still costs every browser showing the page
            st.plotly_chart(
                charts.reliability(str(run.path), run.manifest["created"]), key="rel_fig"
            )
    nav.copy_link("confusion", **{p: st.query_params.get(p) for p in class_tables.URL_KEYS})


def _matrix_view(run: Run, names: list[str], hier, level: str) -> cv.MatrixView:
    """Read the view controls for ``level`` and return the part of the matrix to draw."""
    k = len(names)
    if level != CLASSES:
        lv = int(level)
        groups = list(hier.group_names(lv))
        pick = st.selectbox(
            "Drill into a superclass",
            ["", *groups],
            index=["", *groups].index(ui.url_choice("group", groups, "")),
            format_func=lambda g: "— all superclasses —" if g == "" else g,
            key=f"cm_group_{lv}",
        )
        ui.sync_param("group", pick, "")
        if pick:
            return data.matrix_view(run, level=lv, group=groups.index(pick), n=cv.SUBMATRIX_DEFAULT)
        return data.matrix_view(run, level=lv, n=cv.SUBMATRIX_DEFAULT)
    if k <= cv.MATRIX_MAX:
        return data.matrix_view(run, n=cv.SUBMATRIX_DEFAULT)
    c1, c2 = st.columns([2, 3])
    with c1:
        mode = (
            st.segmented_control(
                "Matrix of",
                list(VIEWS),
                default=ui.url_choice("view", VIEWS, "top"),
                format_func=VIEWS.get,
                key="cm_view",
            )
            or "top"
        )
        ui.sync_param("view", mode, "top")
    n_default = cv.SUBMATRIX_DEFAULT
    with c2:
        n = st.slider(
            "Classes in the matrix",
            5,
            cv.SUBMATRIX_MAX,
            _int("n", n_default, 5, cv.SUBMATRIX_MAX),
            key="cm_n",
            help=f"{k:,} classes are too many to read in one matrix",
        )
        ui.sync_param("n", n, n_default)
    if mode == "class":
        cls = _int("cls", -1, -1, k - 1)
        chosen = st.selectbox(
            "Class (type to search)",
            range(k),
            index=cls if cls >= 0 else None,
            format_func=lambda i: names[i],
            placeholder=f"type part of a name ({k:,} classes)",
            key="cm_cls",
        )
        ui.sync_param("cls", -1 if chosen is None else chosen, -1)
        if chosen is not None:
            return data.matrix_view(run, n=n, focus=int(chosen))
        st.caption("Pick a class to see its row and column; until then, the most confused.")
    return data.matrix_view(run, n=n)
