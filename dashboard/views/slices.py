"""Slices: where the model is significantly worse, discovered and per column; click -> images."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.present import formatting as fmt
from analysis.present.query import ImageQuery
from analysis.store.runstore import Run
from dashboard import charts, data, links, nav
from dashboard import components as ui


def render(run: Run) -> None:
    st.title("Slices")
    st.caption(
        "Error rate per group of images, with 95% Wilson intervals. A slice is *significant*"
        " when a one-sided Fisher test says it is worse than the rest after"
        " Benjamini–Hochberg correction over every slice tested (5% false discovery rate)."
    )
    path, stamp = str(run.path), run.manifest["created"]  # figures shared by every session
    found = data.table(path, schema.DISCOVERED)
    single = data.table(path, schema.SLICES)
    # the open tab and column are in the URL (tab=..., column=...): a copied link reopens them
    tabs = ["Discovered", "All slices", "By column"]
    links.choice_param("tab", tabs, default=tabs[0])
    bar = st.container()  # above the tabs, filled once the widgets know their values
    tab_d, tab_all, tab_col = st.tabs(tabs, key="tab", bind="query-params")
    # only the open tab is built: the others' charts and tables cost every browser showing the
    # page (a meeting's six sessions render on the same few cores) for content nobody sees
    with tab_d:
        if not tab_d.open:
            pass
        elif found is None:
            why = run.sections.get("discovered_slices", {}).get("error", "no result")
            st.info(f"Slice discovery did not run: {ui.safe(why)}")
        elif found.empty:
            st.success("No combination of up to 3 conditions is significantly worse than the rest.")
        else:
            tested = found.attrs.get("n_tested")
            st.markdown(
                f"**{fmt.plural(len(found), 'slice')}**"
                f" {'survives' if len(found) == 1 else 'survive'} the correction"
                f" ({'all candidates' if tested is None else fmt.plural(tested, 'candidate')}"
                " tested). Click one."
            )
            _slice_list(
                found,
                charts.slice_intervals(path, stamp, schema.DISCOVERED, None, False)[0],
                key="disc",
            )
    with tab_all:
        if not tab_all.open:
            pass
        elif single is None or single.empty:
            st.info("No slices were computed for this run.")
        else:
            sources = sorted(single["source"].unique())
            chosen = st.multiselect("Sources", sources, default=sources, key="sl_sources")
            only_sig = st.toggle("Significant only", value=False, key="sl_sig")
            shown = None if chosen == sources else tuple(chosen)
            fig, view = charts.slice_intervals(path, stamp, schema.SLICES, shown, only_sig)
            st.caption(f"{len(view):,} of {fmt.plural(len(single), 'slice')}")
            own = view["model_output"].astype(bool) if "model_output" in view else None
            if own is None or not own.any():
                _slice_list(view, fig, key="all")
            else:
                if (~own).any():
                    part = charts.slice_intervals(
                        path, stamp, schema.SLICES, shown, only_sig, False
                    )
                    _slice_list(part[1], part[0], key="all")
                else:
                    st.info("No slice on the inputs here; see those on the model's output below.")
                st.subheader("Defined by the model's own output")
                st.caption(
                    "Predicted class and embedding cluster: worse partly by construction (a"
                    " predicted-class slice restates that class's precision), so never raised"
                    " as a weak slice."
                )
                part = charts.slice_intervals(path, stamp, schema.SLICES, shown, only_sig, True)
                _slice_list(part[1], part[0], key="own")
    cols: list[str] = []
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
        links.choice_param("column", cols, default=cols[0] if cols else "")
        col = st.selectbox("Column", cols, key="column", bind="query-params")
        if col and tab_col.open:
            fig, vals = charts.value_errors(path, stamp, col)
            ev = st.plotly_chart(
                fig,
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
    with bar:
        tab, column = st.session_state.get("tab"), st.session_state.get("column")
        nav.copy_link(
            "slices",
            tab=tab if tab != tabs[0] else None,
            column=column if tab == tabs[2] and column != (cols[0] if cols else None) else None,
        )


def _slice_list(df, fig, *, key: str) -> None:
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
