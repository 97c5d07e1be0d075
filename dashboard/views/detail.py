"""Image detail: the image, top-5 probabilities, CAMs for predicted and given class, metadata."""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis import schema
from analysis.present import figures
from analysis.present.query import neighbours_in_order
from analysis.store.runstore import Run
from dashboard import charts, data, links, nav
from dashboard import components as ui
from dashboard.views import cam_panel, image_panel


def render(run: Run) -> None:
    s = run.samples
    names = run.class_names
    sid = links.raw("sample")
    hits = np.flatnonzero(s[schema.SAMPLE_ID].to_numpy() == sid) if sid else []
    if not len(hits):
        st.title("Image detail")
        q = links.image_query(run)
        if sid:
            st.warning(f"Image {ui.safe(repr(sid))} from the link is not in this run.")
        else:
            st.info("No image chosen: open one from the gallery.")
        nav.link("gallery", "← Gallery", q)
        return
    row_no = int(hits[0])
    row = s.iloc[row_no]
    q = links.image_query(run)
    origin = links.choice_param("origin", list(nav.PAGES), default="gallery")
    order = data.query_rows(run, q)
    prev, nxt, pos = neighbours_in_order(order, row_no)

    ok = bool(row[schema.CORRECT])
    mark = ":green[:material/check_circle:]" if ok else ":red[:material/cancel:]"
    given, pred = (ui.safe(names[row[c]]) for c in (schema.LABEL, schema.PRED))
    st.title(f"{mark} {given} → {pred}")
    # one row of buttons sized to their labels (narrow columns cut them: "Cop…")
    with st.container(horizontal=True, vertical_alignment="center"):
        nav.link(origin, "← Back", q)
        if prev is not None:
            nav.link(
                "detail", "◀ Previous", q, sample=s.iloc[prev][schema.SAMPLE_ID], origin=origin
            )
        if nxt is not None:
            nav.link("detail", "Next ▶", q, sample=s.iloc[nxt][schema.SAMPLE_ID], origin=origin)
        nav.copy_link("detail", q, sample=sid, **cam_panel.link_params())
        if pos:
            st.caption(f"Image {pos:,} of {len(order):,} in: {ui.safe(q.describe(names))}")
    st.caption(f"{ui.safe(row[schema.RELPATH])} · id {ui.safe(sid)}")
    from analysis.present.findings import image_flags

    for kind, why in image_flags(run, row_no):
        st.warning(f"**{ui.safe(kind)}** — {ui.safe(why)}", icon=":material/flag:")

    left, mid = st.columns([1, 1], gap="large")
    with left:
        image_panel.render(run, row_no)
    with mid:
        st.markdown("**Top classes**")
        st.html(charts.top_k(str(run.path), run.manifest["created"], row_no))
        st.markdown(
            f"confidence **{row[schema.CONFIDENCE]:.3f}** · margin {row[schema.MARGIN]:.3f} ·"
            f" loss {row[schema.LOSS]:.3f} · entropy {row[schema.ENTROPY]:.3f}"
        )
    cam_panel.render(run, row_no)
    from dashboard.views import neighbours_panel, review_panel

    neighbours_panel.render(run, row_no)

    st.subheader("Review")
    review_panel.render(run, row_no, key="detail")
    st.subheader("Metadata and image properties")
    fields = run.metadata_columns + run.property_columns
    # plain escaped HTML: the interactive grid's 1.2 MB of JavaScript is not worth 20 short rows
    # on the page a review opens cold, and st.table reads Markdown in its cells
    st.html(figures.fields_html(fields, [str(row[f]) if f in row else "—" for f in fields]))
    # last, once the page is drawn: the next two images' CAMs in the background (Next is instant)
    cam_panel.prefetch_next(run, order[pos : pos + 2] if pos else ())
