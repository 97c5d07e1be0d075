"""Embeddings: the UMAP map of the model's features; lasso or box a region -> its images."""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis import schema
from analysis.present import formatting as fmt
from analysis.present.map_points import rows_in_region
from analysis.present.query import ImageQuery, save_selection
from analysis.store.runstore import Run
from dashboard import charts, data, links, nav
from dashboard import components as ui

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
    pts = data.map_points(str(run.path))
    drawn = pts.rows
    how = (run.json(schema.EMBEDDING_MAP) or {}).get("how", "")
    links.choice_param("colour", list(options), default=next(iter(options)))  # a note if bad
    # bound to the URL: a copied link reopens the same colouring
    colour_by = c1.selectbox("Colour by", list(options), key="colour", bind="query-params")
    with c2.container(horizontal=True, vertical_alignment="center"):
        st.caption(
            "Lasso or box-select a region (toolbar, top right of the chart) to see its images."
            " UMAP keeps neighbourhoods, not distances: read clusters, not gaps."
            + (f"  \n{how}." if how else "")
            + (f"  \n{pts.caption()}" if not pts.complete else "")
        )
        nav.copy_link("embeddings", colour=colour_by if colour_by != next(iter(options)) else None)
    # built once per process for every session (20,000 points take ~0.7 s to validate)
    fig = charts.embedding(str(run.path), run.manifest["created"], options[colour_by], colour_by)
    mx, my = s[schema.UMAP_X].to_numpy(), s[schema.UMAP_Y].to_numpy()
    ev = st.plotly_chart(
        fig, key=f"emb_{colour_by}", on_select="rerun", selection_mode=("lasso", "box")
    )
    regions = ui.selected_regions(ev)
    if regions:  # every image in the region, drawn or not
        rows = rows_in_region(mx, my, regions)
    else:  # single clicked points: customdata is the position among the drawn points
        rows = np.unique(drawn[np.asarray(ui.clicked_points(ev), dtype=np.int64)])
    if len(rows):
        wrong = int((~s[schema.CORRECT].to_numpy()[rows]).sum())
        st.markdown(
            f"**Selection: {fmt.plural(len(rows), 'image')}**, error rate"
            f" {fmt.pct(wrong / len(rows))} (overall"
            f" {fmt.pct(1 - s[schema.CORRECT].mean())})"
        )
        strip = rows[np.argsort(-s[schema.LOSS].to_numpy()[rows])][:12]
        ui.image_grid(run, strip, ImageQuery(), cols=12, key="emb_strip", origin="embeddings")
        what = "this image" if len(rows) == 1 else f"these {len(rows):,} images"
        if st.button(f"Open {what} in the gallery", type="primary", key="emb_open"):
            sel = save_selection(run.path, s[schema.SAMPLE_ID].to_numpy()[rows])
            nav.go("gallery", ImageQuery(sel=sel))
    clusters = data.table(str(run.path), schema.CLUSTERS)
    if clusters is not None and not clusters.empty:
        st.subheader("Error clusters, worst first")
        st.caption(
            "Sorted by the lower end of the error rate's 95% interval, so a tiny cluster"
            " with 2 of 2 wrong does not top the list. A cluster is an error cluster when its"
            " adjusted p (one-sided Fisher test against the other images, Benjamini-Hochberg"
            " over the clusters) is below 0.05. Click a row for its images."
        )
        show = ui.cluster_table(clusters)
        row = ui.clickable_table(show, key="clusters", column_config=ui.SLICE_COLUMNS)
        if row is not None:
            nav.go("gallery", ImageQuery(cluster=int(clusters.iloc[row]["cluster"])))
