"""Image detail: the image, top-5 probabilities, CAMs for predicted and given class, metadata."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from analysis import schema
from analysis.present import figures
from analysis.present.query import ImageQuery, neighbours_in_order
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import data, nav


def render(run: Run) -> None:
    s = run.samples
    names = run.class_names
    sid = st.query_params.get("sample")
    q = ImageQuery.from_params(st.query_params.to_dict())
    hits = np.flatnonzero(s[schema.SAMPLE_ID].to_numpy() == sid) if sid else []
    if not len(hits):
        st.title("Image detail")
        st.info(
            "No image chosen: open one from the gallery."
            if not sid
            else f"Image {sid!r} is not in this run."
        )
        nav.link("gallery", "← Gallery", q)
        return
    row_no = int(hits[0])
    row = s.iloc[row_no]
    origin = st.query_params.get("origin", "gallery")
    order = data.query_rows(run, q)
    prev, nxt, pos = neighbours_in_order(order, row_no)

    top = st.columns([4, 1, 1, 1, 1])
    ok = bool(row[schema.CORRECT])
    top[0].title(
        f"{':green[:material/check_circle:]' if ok else ':red[:material/cancel:]'} {names[row[schema.LABEL]]} → {names[row[schema.PRED]]}"
    )
    with top[1]:
        nav.link(origin if origin in nav.PAGES else "gallery", "← Back", q)
    with top[2]:
        if prev is not None:
            nav.link(
                "detail", "◀ Previous", q, sample=s.iloc[prev][schema.SAMPLE_ID], origin=origin
            )
    with top[3]:
        if nxt is not None:
            nav.link("detail", "Next ▶", q, sample=s.iloc[nxt][schema.SAMPLE_ID], origin=origin)
    with top[4]:
        # widget state is current at the top of a rerun, the URL only after the CAM panel ran
        cam = st.session_state.get("cam_method") or st.query_params.get("cam")
        layer = st.session_state.get("cam_layer") or st.query_params.get("layer")
        nav.copy_link(
            "detail",
            q,
            sample=sid,
            cam=cam
            if cam and cam != st.session_state.get("cam_method_default", "gradcam")
            else None,
            layer=layer if layer and layer != st.session_state.get("cam_layer_default") else None,
        )
    if pos:
        st.caption(f"Image {pos} of {len(order):,} in: {ui.safe(q.describe(names))}")
    st.caption(f"`{row[schema.RELPATH]}` · id `{sid}`")
    from analysis.present.findings import image_flags

    for kind, why in image_flags(run, row_no):
        st.warning(f"**{kind}** — {ui.safe(why)}", icon=":material/flag:")

    left, mid = st.columns([1, 1], gap="large")
    with left:
        st.image(row[schema.PATH], width="stretch")
    with mid:
        st.markdown("**Top classes**")
        st.plotly_chart(
            figures.top_k_figure(
                np.asarray(run.probs[row_no]), names, label=int(row[schema.LABEL])
            ),
            key="topk",
            config={"displayModeBar": False},
        )
        st.markdown(
            f"confidence **{row[schema.CONFIDENCE]:.3f}** · margin {row[schema.MARGIN]:.3f} ·"
            f" loss {row[schema.LOSS]:.3f} · entropy {row[schema.ENTROPY]:.3f}"
        )
    from dashboard.views import cam_panel

    cam_panel.render(run, row_no)
    from dashboard.views import neighbours_panel, review_panel

    neighbours_panel.render(run, row_no)

    st.subheader("Review")
    review_panel.render(run, row_no, key="detail")
    st.subheader("Metadata and image properties")
    fields = run.metadata_columns + run.property_columns
    st.dataframe(
        pd.DataFrame(
            {"field": fields, "value": [str(row[f]) if f in row else "—" for f in fields]}
        ),
        hide_index=True,
    )
