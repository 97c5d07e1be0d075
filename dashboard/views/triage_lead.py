"""The Overview's first item: the action plan's top causes, each one click from the Triage page."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.store.runstore import Run
from analysis.triage import plan
from dashboard import components as ui
from dashboard import data, nav

TOP = 3  # plan items shown on the Overview


def render(run: Run) -> None:
    """What triage found first: the costliest groups with a claimed cause and their action."""
    t = data.table(str(run.path), schema.TRIAGE)
    if t is None:
        why = run.sections.get("triage", {})
        if why:
            st.caption(f"Triage did not run: {ui.safe(why.get('error') or why.get('reason'))}")
        return
    items = plan.action_plan(t)
    items = items[items["status"].isin(["significant", "found"])]
    with st.container(border=True):
        st.markdown(":red[:material/healing:] **Triage: why the model fails and what to do**")
        if items.empty:
            st.caption("No cause is significant for any failure group: genuine model errors.")
        for _, it in items.drop_duplicates("rank").head(TOP).iterrows():
            share = "" if it["share"] != it["share"] else f" accounts for {it['share']:.0%}"
            head = f"{it['cause']}" + (f" ({it['detail']})" if it["detail"] else "")
            nav.link("triage", f"{int(it['rank'])}. {it['group']}: {head}{share}",
                     group=int(it["rank"]))  # fmt: skip
            st.caption(f"→ {ui.safe(it['recommendation'])}")
        n = t["group_key"].nunique()
        nav.link("triage", f"Open the triage of {n} failure groups →")
