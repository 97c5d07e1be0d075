"""Overview: headline metrics with intervals, the failures worth a look, class balance."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.present import figures
from analysis.present.findings import findings, load_metrics, top_confusion_pairs
from analysis.present.query import ImageQuery
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import nav

ICONS = {
    "high": ":red[:material/error:]",
    "medium": ":orange[:material/warning:]",
    "info": ":blue[:material/info:]",
}


@st.cache_data(show_spinner=False, max_entries=8)
def _cached(path: str, stamp: str):
    from dashboard.data import get_run

    run = get_run(path)
    return load_metrics(run), findings(run), top_confusion_pairs(run)


def render(run: Run) -> None:
    st.title("Overview")
    st.caption(
        f"Run `{run.run_id}` · {run.manifest['n_samples']:,} images ·"
        f" {len(run.class_names)} classes"
    )
    m, found, pairs = _cached(str(run.path), run.manifest["created"])
    if m is None:
        st.error("The metrics section of this run failed; see the warnings below.")
    else:
        cols = st.columns(5)
        with cols[0]:
            ui.metric(
                "Accuracy", m.accuracy.to_dict(), help="Share of images predicted as labelled"
            )
        with cols[1]:
            ui.metric(
                "Balanced accuracy",
                m.balanced_accuracy.to_dict(),
                help="Mean recall over classes: robust to class imbalance",
            )
        with cols[2]:
            ui.metric("Macro F1", m.macro_f1.to_dict(), help="Unweighted mean F1 over classes")
        with cols[3]:
            ui.metric(
                "ECE",
                m.ece.to_dict(),
                help="Expected calibration error: mean |confidence − accuracy| over bins",
            )
        with cols[4]:
            k2 = m.top_k.get(2)
            ui.metric("Top-2 accuracy", k2.to_dict() if k2 else None)

    left, right = st.columns([3, 2], gap="large")
    with left:
        st.subheader("What to look at")
        if not found:
            st.success("No warnings: no weak class, slice, label or leakage problem was detected.")
        for f in found:
            with st.container(border=True):
                st.markdown(f"{ICONS.get(f.severity, '')} {ui.safe(f.message)}")
                if f.query is not None:
                    nav.link(f.page, "Open these images →", f.query)
                elif f.page != "overview":
                    nav.link(f.page, "Open →")
        st.subheader("Most frequent confusions")
        if pairs.empty:
            st.caption("No errors.")
        for _, r in pairs.iterrows():
            t, p = int(r["true"]), int(r["pred"])
            nav.link(
                "gallery",
                f"{int(r['count'])} {run.class_names[t]} predicted as {run.class_names[p]}"
                f" ({r['share_of_true_class']:.0%} of {run.class_names[t]})",
                ImageQuery(true=(t,), pred=(p,)),
            )
    with right:
        st.subheader("Classes")
        if m is not None:
            pc = m.per_class
            st.plotly_chart(
                figures.class_distribution_figure(
                    pc["support"], pc["support"] - pc["tp"], run.class_names
                ),
                key="class_dist",
            )
        skipped = run.manifest.get("skipped", [])
        if skipped:
            with st.expander(f"{len(skipped)} skipped file(s)", expanded=len(skipped) <= 5):
                st.dataframe(pd.DataFrame(skipped), hide_index=True)
        notes = run.manifest.get("warnings", [])
        if notes:
            with st.expander("Notes from loading"):
                for n in notes:
                    st.caption(n)
    nav.link("gallery", "Browse all misclassified images →", ImageQuery(correct="wrong"))
