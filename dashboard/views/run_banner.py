"""The warning above everything else when a run's model is no better than chance."""

from __future__ import annotations

import streamlit as st

from analysis.present.findings import chance_banner
from analysis.store.runstore import Run
from dashboard import components as ui


def render(run: Run) -> None:
    b = chance_banner(run)
    if b is None:
        return
    causes = "\n".join(f"- {ui.safe(c)}" for c in b.causes)
    st.error(
        f"**{ui.safe(b.title)}**\n\n"
        + "\n\n".join(ui.safe(f) for f in b.facts)
        + f"\n\n**Likely causes**\n\n{causes}\n\n**Settings used:** {ui.safe(b.settings)}",
        icon=":material/gpp_bad:",
    )
