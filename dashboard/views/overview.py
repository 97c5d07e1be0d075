"""Overview: headline metrics with intervals, the failures worth a look, class balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from analysis.present import figures
from analysis.present.classes import MANY_CLASSES
from analysis.present.findings import findings, load_metrics, top_confusion_pairs
from analysis.present.formatting import short_name
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
            # at many classes top-5 is the number people compare (ImageNet's convention)
            kk = 5 if len(run.class_names) >= MANY_CLASSES and 5 in m.top_k else 2
            est = m.top_k.get(kk)
            ui.metric(
                f"Top-{kk} accuracy",
                est.to_dict() if est else None,
                help=f"Share of images whose label is among the model's {kk} most probable classes",
            )

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
        st.caption(
            "A pair is marked when the true class's images are predicted as that class more"
            " often than other classes' images are (one-sided Fisher test, Benjamini-Hochberg"
            " over every pair of classes)."
        )
        if pairs.empty:
            st.caption("No errors.")
        for _, r in pairs.iterrows():
            t, p = int(r["true"]), int(r["pred"])
            given, pred = (short_name(run.class_names[c], 28) for c in (t, p))
            nav.link(
                "gallery",
                f"{int(r['count'])} {given} predicted as {pred}"
                f" ({r['share_of_true_class']:.0%} of {given}, 95% CI"
                f" {r['rate_low']:.0%}-{r['rate_high']:.0%}"
                f"{'; more than other classes, adjusted p ' + format(r['p_adj'], '.2g') if r['significant'] else ''})",
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
            if len(pc) > 1:
                sup = pc["support"].to_numpy()
                st.caption(
                    f"Images per class: {sup.min():,} to {sup.max():,} (median"
                    f" {int(np.median(sup)):,})."
                )
            if len(pc) > figures.MAX_CLASS_BARS:
                nav.link("confusion", "Every class, sorted and searchable →")
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
