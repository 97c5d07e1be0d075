"""Nearest neighbours of one image in the model's embedding space (evaluation and reference)."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.present.query import ImageQuery
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import nav


@st.cache_resource(show_spinner=False, max_entries=4)
def _indexes(run_path: str, stamp: str):
    """Neighbour indexes of a run, built once per process (never mutated)."""
    from analysis.explain.embeddings import NeighbourIndex
    from dashboard.data import get_run

    run = get_run(run_path)
    ev = NeighbourIndex(run.embeddings) if run.embeddings is not None else None
    ref = run.reference_embeddings
    return ev, (NeighbourIndex(ref) if ref is not None else None)


def _stored(run: Run, row_no: int, k: int):
    """The neighbours the run's neighbours section stored, with their cosine similarities."""
    from analysis.explain.embeddings import Neighbours, cosine_to

    own, ref = run.neighbours
    e = own[row_no, :k]
    r = ref[row_no, :k] if ref is not None and run.reference_embeddings is not None else None
    return Neighbours(
        row_no,
        e,
        cosine_to(run.embeddings, row_no, e),
        r if r is not None else e[:0],
        cosine_to(run.embeddings, row_no, r, run.reference_embeddings) if r is not None else [],
    )


def render(run: Run, row_no: int, k: int = 6) -> None:
    if run.embeddings is None:
        return
    if run.neighbours is not None:  # found at analysis time: no search here
        nb = _stored(run, row_no, k)
    else:  # a run made before the neighbours section: search on demand
        from analysis.explain.embeddings import neighbours_for

        ev, ref = _indexes(str(run.path), run.manifest["created"])
        nb = neighbours_for(ev, row_no, k=k, reference_embeddings=ref)
    s = run.samples
    names = run.class_names
    st.subheader("Nearest neighbours in the model's embedding space")
    st.caption("Evaluation images")
    cols = st.columns(k)
    for col, i, sim in zip(cols, nb.eval_indices, nb.eval_similarities, strict=True):
        if i < 0:
            continue
        r = s.iloc[int(i)]
        with col:
            st.image(ui.thumbnail(run, r[schema.SAMPLE_ID]) or r[schema.PATH], width="stretch")
            nav.link(
                "detail",
                f"{ui.safe(names[r[schema.LABEL]])} → {ui.safe(names[r[schema.PRED]])}",
                ImageQuery(),
                sample=r[schema.SAMPLE_ID],
            )
            st.caption(f"cosine {sim:.3f}")
    if len(nb.reference_indices) and run.reference is not None:
        st.caption("Reference (training) images — a near-identical one here means leakage")
        cols = st.columns(k)
        rs = run.reference
        for col, j, sim in zip(cols, nb.reference_indices, nb.reference_similarities, strict=True):
            if j < 0:
                continue
            r = rs.iloc[int(j)]
            col.image(
                ui.thumbnail(run, f"ref-{r[schema.SAMPLE_ID]}") or r[schema.PATH],
                caption=f"{ui.safe(names[r[schema.LABEL]])} · cosine {sim:.3f}",
                width="stretch",
            )
