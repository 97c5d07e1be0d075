"""Confusion: a clickable matrix, per-class metrics with intervals, the reliability diagram."""

from __future__ import annotations

import streamlit as st

from analysis.present.query import ImageQuery
from analysis.store.runstore import Run
from dashboard import charts, links, nav
from dashboard import components as ui

NORMS = {"counts": None, "row %": "true", "column %": "pred"}


def render(run: Run) -> None:
    st.title("Confusion")
    path, stamp = str(run.path), run.manifest["created"]  # figures shared by every session
    m = charts.metrics(path, stamp)
    if m is None:
        st.error("The metrics section of this run failed.")
        return
    names = run.class_names
    wanted = links.choice_param("norm", list(NORMS), default="counts")
    norm_label = st.segmented_control(
        "Show",
        list(NORMS),
        default=wanted,
        key="cm_norm",
        help="row % = share of each given class (recall view); column % = share of each"
        " predicted class (precision view)",
    )
    norm_label = norm_label or "counts"
    if st.query_params.get("norm", "counts") != norm_label:
        st.query_params["norm"] = norm_label
    st.caption("Click a cell to open its images.")
    ver = st.session_state.setdefault("cm_ver", 0)
    event = st.plotly_chart(
        charts.confusion(path, stamp, NORMS[norm_label]),
        key=f"cm_{ver}",
        on_select="rerun",
        selection_mode="points",
        config={"displayModeBar": False},
    )
    cell = ui.clicked_cell(event, len(names))
    if cell is not None:
        st.session_state["cm_ver"] = ver + 1
        nav.go("gallery", ImageQuery(true=(cell[0],), pred=(cell[1],)))

    st.subheader("Per class")
    st.caption(
        "Intervals: Wilson for precision and recall, bootstrap for F1. Click a row to open"
        " that class's errors."
    )
    table = ui.per_class_table(m.per_class, names)
    tver = st.session_state.setdefault("pc_ver", 0)
    ev = st.dataframe(
        table,
        hide_index=True,
        on_select="rerun",
        selection_mode="single-row",
        key=f"pc_{tver}",
        column_config=ui.PER_CLASS_COLUMNS,
    )
    rows = ev.selection.rows if ev is not None else []
    if rows:
        st.session_state["pc_ver"] = tver + 1
        nav.go("gallery", ImageQuery(true=(int(table.iloc[rows[0]]["class id"]),), correct="wrong"))
    c1, c2 = st.columns(2, gap="large")
    with c1:
        st.plotly_chart(charts.per_class(path, stamp), key="pc_fig")
    with c2:
        st.markdown(
            f"**Reliability** — ECE {m.ece.value:.3f} (95% CI {m.ece.low:.3f}–{m.ece.high:.3f})"
        )
        st.plotly_chart(charts.reliability(path, stamp), key="rel_fig")
    nav.copy_link("confusion", norm=norm_label)
