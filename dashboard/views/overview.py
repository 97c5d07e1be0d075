"""Overview: headline metrics with intervals, the failures worth a look, class balance."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from analysis import schema
from analysis.present import figures
from analysis.present import formatting as fmt
from analysis.present.classes import MANY_CLASSES
from analysis.present.findings import findings, top_confusion_pairs
from analysis.present.formatting import short_name
from analysis.present.query import ImageQuery
from analysis.store.runstore import Run
from dashboard import charts, nav
from dashboard import components as ui
from dashboard.views import run_banner, triage_lead

ICONS = {
    "high": ":red[:material/error:]",
    "medium": ":orange[:material/warning:]",
    "info": ":blue[:material/info:]",
}


@st.cache_resource(show_spinner=False, max_entries=8)
def _cached(path: str, stamp: str):
    """Findings and top confusions, computed once per process (shared; never mutate)."""
    from dashboard.data import get_run

    run = get_run(path)
    return charts.metrics(path, stamp), findings(run), top_confusion_pairs(run)


def confusion_line(
    n: int,
    support: int,
    given: str,
    predicted: str,
    *,
    low: float | None = None,
    high: float | None = None,
    p_adj: float | None = None,
) -> str:
    """'5 of 62 images labelled 8 are predicted as 9 (8%, 95% CI 3–18%; more than other
    classes, adjusted p 0.01)': every number says what it counts."""
    share = f"{n / support:.0%}"
    if low is not None and high is not None and not (pd.isna(low) or pd.isna(high)):
        share += f", 95% CI {fmt.interval(low, high, digits=0)}"
    if p_adj is not None:
        share += f"; more than other classes, adjusted p {p_adj:.2g}"
    return (
        f"{n:,} of {fmt.plural(support, 'image')} labelled {ui.safe(given)}"
        f" {'is' if n == 1 else 'are'} predicted as {ui.safe(predicted)} ({share})"
    )


def render(run: Run) -> None:
    st.title("Overview")
    with st.container(horizontal=True, vertical_alignment="center"):
        st.caption(
            f"Run {ui.safe(run.run_id)} · {fmt.plural(run.manifest['n_samples'], 'image')} ·"
            f" {fmt.plural(len(run.class_names), 'class', 'classes')}",
            width="content",
        )
        nav.copy_link("overview")
    run_banner.render(run)
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
        triage_lead.render(run)
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
        support = np.bincount(run.samples[schema.LABEL], minlength=len(run.class_names))
        for _, r in pairs.iterrows():
            t, p, n = int(r["true"]), int(r["pred"]), int(r["count"])
            nav.link(
                "gallery",
                confusion_line(
                    n,
                    int(support[t]),
                    *(short_name(run.class_names[i], 28) for i in (t, p)),
                    low=r.get("rate_low"),
                    high=r.get("rate_high"),
                    p_adj=r.get("p_adj") if bool(r.get("significant", False)) else None,
                ),
                ImageQuery(true=(t,), pred=(p,)),
            )
    with right:
        st.subheader("Classes")
        if m is not None:
            st.plotly_chart(
                charts.class_distribution(str(run.path), run.manifest["created"]),
                key="class_dist",
            )
            pc = m.per_class
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
            with st.expander(fmt.plural(len(skipped), "skipped file"), expanded=len(skipped) <= 5):
                st.dataframe(pd.DataFrame(skipped), hide_index=True)
        notes = run.manifest.get("warnings", [])
        if notes:
            with st.expander("Notes from loading"):
                for n in notes:
                    st.caption(ui.safe(n))
    nav.link("gallery", "Browse all misclassified images →", ImageQuery(correct="wrong"))
