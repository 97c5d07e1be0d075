"""A full-size image on a page (detail, review queue), shown exactly as the model saw it.

Never the raw file: a browser turns a photo upright by its EXIF tag (and Streamlit only when it
does not resize it), while the model got the stored pixels. The note says when the two differ.
"""

from __future__ import annotations

import streamlit as st

from analysis.present.image_view import ImageView, model_view
from analysis.store.runstore import Run
from dashboard import components as ui


@st.cache_data(show_spinner=False, max_entries=16)
def _view(run_path: str, stamp: str, row: int) -> ImageView:
    from dashboard.data import get_run

    return model_view(get_run(run_path), row)


def render(run: Run, row_no: int, *, caption: str | None = None) -> None:
    view = _view(str(run.path), run.manifest["created"], int(row_no))
    if view.rgb is None:
        thumb = ui.thumbnail(run, run.samples.iloc[int(row_no)]["sample_id"])
        st.warning(f"The image file cannot be read now ({view.error}); showing its thumbnail.")
        if thumb:
            st.image(thumb, caption=caption, width="stretch")
    else:
        if view.error:
            st.warning(ui.safe(view.error))
        st.image(view.rgb, caption=caption, width="stretch")
    if view.note:
        st.caption(f":orange[:material/screen_rotation:] {ui.safe(view.note)}")
