"""The CAM part of the image detail page (filled in by the CAM integration)."""

from __future__ import annotations

import streamlit as st


def render(run, row_no: int) -> None:
    st.caption("CAMs: not available yet.")
