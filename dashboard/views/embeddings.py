"""Embeddings: the UMAP map of the model's features; lasso or box a region -> its images."""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis import schema
from analysis.present import figures
from analysis.present import formatting as fmt
from analysis.present.query import ImageQuery, save_selection
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import data, nav

BASE = {
    "correct / wrong": schema.CORRECT,
    "given label": schema.LABEL_NAME,
    "predicted": schema.PRED_NAME,
    "cluster": schema.CLUSTER,
}


def render(run: Run) -> None:
    st.title("Embeddings")
    s = run.samples
    if schema.UMAP_X not in s.columns:
        st.info("This run has no embedding map (no embeddings, or analysed with --no-umap).")
        return
    if run.manifest.get("embedding_source"):
        st.caption(f"Embeddings: {ui.safe(run.manifest['embedding_source'])}.")
    options = {
        **BASE,
        **{c: c for c in [*run.property_columns, *run.metadata_columns] if c in s.columns},
    }
    c1, c2 = st.columns([2, 3])
    colour_by = c1.selectbox("Colour by", list(options), key="emb_colour")
    col = options[colour_by]
    values = s[col].to_numpy()
    categorical = col in (
        schema.CORRECT,
        schema.LABEL_NAME,
        schema.PRED_NAME,
        schema.CLUSTER,
    ) or not np.issubdtype(values.dtype, np.number)
    if col == schema.CORRECT:
        values = np.where(values, "correct", "wrong")
    hover = None
    if len(s) <= 20_000:
        names = run.class_names
        hover = [
            f"{names[a]} → {names[b]}" for a, b in zip(s[schema.LABEL], s[schema.PRED], strict=True)
        ]
    c2.caption(
        "Lasso or box-select a region (toolbar, top right of the chart) to see its images."
        " UMAP keeps neighbourhoods, not distances: read clusters, not gaps."
    )
    fig = figures.embedding_figure(
        s[schema.UMAP_X].to_numpy(),
        s[schema.UMAP_Y].to_numpy(),
        values,
        colour_name=colour_by,
        categorical=categorical,
        hover=hover,
    )
    ev = st.plotly_chart(
        fig, key=f"emb_{colour_by}", on_select="rerun", selection_mode=("lasso", "box")
    )
    rows = np.unique(np.asarray(ui.clicked_points(ev), dtype=np.int64))
    if len(rows):
        wrong = int((~s[schema.CORRECT].to_numpy()[rows]).sum())
        st.markdown(
            f"**Selection: {len(rows):,} images**, error rate"
            f" {fmt.pct(wrong / len(rows))} (overall"
            f" {fmt.pct(1 - s[schema.CORRECT].mean())})"
        )
        strip = rows[np.argsort(-s[schema.LOSS].to_numpy()[rows])][:12]
        ui.image_grid(run, strip, ImageQuery(), cols=12, key="emb_strip", origin="embeddings")
        if st.button(
            f"Open these {len(rows):,} images in the gallery", type="primary", key="emb_open"
        ):
            sel = save_selection(run.path, s[schema.SAMPLE_ID].to_numpy()[rows])
            nav.go("gallery", ImageQuery(sel=sel))
    clusters = data.table(str(run.path), schema.CLUSTERS)
    if clusters is not None and not clusters.empty:
        st.subheader("Error clusters, worst first")
        st.caption(
            "Sorted by the lower end of the error rate's 95% interval, so a tiny cluster"
            " with 2 of 2 wrong does not top the list. Click a row for its images."
        )
        show = ui.cluster_table(clusters)
        row = ui.clickable_table(show, key="clusters", column_config=ui.SLICE_COLUMNS)
        if row is not None:
            nav.go("gallery", ImageQuery(cluster=int(clusters.iloc[row]["cluster"])))
