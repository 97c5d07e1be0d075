"""Slices: where the model is significantly worse, discovered and per column; click -> images."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.present import figures
from analysis.present.query import ImageQuery
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import data, nav


@st.cache_data(show_spinner=False, max_entries=32)
def _by_value(path: str, column: str):
    from analysis.stats.slices import error_rate_by_value

    run = data.get_run(path)
    return error_rate_by_value(run.samples, column, class_names=run.class_names)


def render(run: Run) -> None:
    st.title("Slices")
    st.caption(
        "Error rate per group of images, with 95% Wilson intervals. A slice is *significant*"
        " when a one-sided Fisher test says it is worse than the rest after"
        " Benjamini–Hochberg correction over every slice tested (5% false discovery rate)."
    )
    path = str(run.path)
    overall = 1.0 - float(run.samples[schema.CORRECT].mean())
    found = data.table(path, schema.DISCOVERED)
    single = data.table(path, schema.SLICES)
    tab_d, tab_all, tab_col = st.tabs(["Discovered", "All slices", "By column"])
    with tab_d:
        if found is None:
            st.info(f"Slice discovery did not run: {run.sections.get('discovered_slices', {})}")
        elif found.empty:
            st.success("No combination of up to 3 conditions is significantly worse than the rest.")
        else:
            st.markdown(
                f"**{len(found)} slices** survive the correction"
                f" ({found.attrs.get('n_tested', 'all')} candidates tested). Click one."
            )
            _slice_list(found, overall, key="disc")
    with tab_all:
        if single is None or single.empty:
            st.info("No slices were computed for this run.")
        else:
            sources = sorted(single["source"].unique())
            chosen = st.multiselect("Sources", sources, default=sources, key="sl_sources")
            only_sig = st.toggle("Significant only", value=False, key="sl_sig")
            view = single[single["source"].isin(chosen)]
            if only_sig:
                view = view[view["significant"].astype(bool)]
            st.caption(f"{len(view)} of {len(single)} slices")
            own = view["model_output"].astype(bool) if "model_output" in view else None
            if own is None or not own.any():
                _slice_list(view.reset_index(drop=True), overall, key="all")
            else:
                if (~own).any():
                    _slice_list(view[~own].reset_index(drop=True), overall, key="all")
                else:
                    st.info("No slice on the inputs here; see those on the model's output below.")
                st.subheader("Defined by the model's own output")
                st.caption(
                    "Predicted class and embedding cluster: worse partly by construction (a"
                    " predicted-class slice restates that class's precision), so never raised"
                    " as a weak slice."
                )
                _slice_list(view[own].reset_index(drop=True), overall, key="own")
    with tab_col:
        cols = [
            c
            for c in [
                *run.metadata_columns,
                *(c for c in run.superclass_columns if not c.startswith("pred_")),
                *run.property_columns,
                schema.CLUSTER,
            ]
            if c in run.samples.columns
        ]
        col = st.selectbox("Column", cols, key="sl_col")
        if col:
            vals = _by_value(path, col)
            ev = st.plotly_chart(
                figures.value_error_figure(vals, column=col, overall_error=overall),
                key=f"val_{col}",
                on_select="rerun",
                selection_mode="points",
            )
            pts = ui.clicked_points(ev)
            if pts:
                spec = vals.iloc[int(pts[0])]["spec"] if pts[0] < len(vals) else None
                if isinstance(spec, str) and spec:
                    nav.go("gallery", ImageQuery(slice=spec))
            st.dataframe(vals.drop(columns=["spec"]), hide_index=True)
    nav.copy_link("slices")


def _slice_list(df, overall: float, *, key: str) -> None:
    fig = figures.slice_interval_figure(df, overall_error=overall)
    ver = st.session_state.setdefault(f"{key}_figver", 0)
    ev = st.plotly_chart(
        fig,
        key=f"{key}_fig_{ver}",
        on_select="rerun",
        selection_mode="points",
        config={"displayModeBar": False},
    )
    pts = ui.clicked_points(ev)
    if pts:
        st.session_state[f"{key}_figver"] = ver + 1
        nav.go("gallery", ImageQuery(slice=df.iloc[pts[0]]["spec"]))
    row = ui.clickable_table(ui.slice_table(df), key=f"{key}_tbl", column_config=ui.SLICE_COLUMNS)
    if row is not None:
        nav.go("gallery", ImageQuery(slice=df.iloc[row]["spec"]))
