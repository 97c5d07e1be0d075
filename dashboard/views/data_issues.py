"""Data issues: suspected label errors, near-duplicates and leakage, property outliers."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis import schema
from analysis.present import figures
from analysis.present import formatting as fmt
from analysis.present.query import ImageQuery
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import data, nav


def render(run: Run) -> None:
    st.title("Data issues")
    st.caption(
        "Many 'model errors' are data errors. Each list is ranked for review; every row"
        " opens the image, every tab opens its images in the gallery."
    )
    t1, t2, t3 = st.tabs(["Suspected label errors", "Duplicates and leakage", "Outliers"])
    with t1:
        _label_errors(run)
    with t2:
        _duplicates(run)
    with t3:
        _outliers(run)


def _label_errors(run: Run) -> None:
    issues = data.table(str(run.path), schema.LABEL_ISSUES)
    if issues is None:
        st.info(f"Not computed: {run.sections.get('label_issues', {}).get('error', 'no model')}")
        return
    names = run.class_names
    flagged = issues[issues["is_label_issue"].astype(bool)]
    ref = run.manifest["inputs"].get("reference")
    st.markdown(
        f"**{len(flagged)} images** ({fmt.pct(len(flagged) / max(1, len(issues)))}) look"
        " mislabelled by confident learning (Northcutt et al., 2021): of the images of their"
        " labelled class, they are among the estimated number of label errors both by the lowest"
        " probability for the given label and by the largest margin towards another class."
        " Ranked by label quality, the model's probability for the given label (low = suspicious)."
    )
    st.caption(
        "Confident learning needs held-out predictions. These are the model's predictions on the"
        f" evaluation set{' (the reference set ' + ref['name'] + ' is assumed to be the training set)' if ref else ''};"
        " on the model's own training data it would miss most errors, because a model fits its"
        " training labels."
    )
    nav.link(
        "gallery",
        "Open all suspected label errors in the gallery →",
        ImageQuery(issue="label", sort="label_quality", desc=False),
    )
    s = run.samples
    show = flagged.head(300)
    table = pd.DataFrame(
        {
            "file": s[schema.RELPATH].to_numpy()[show["index"].to_numpy()],
            "given": [names[i] for i in show["given_label"]],
            "suggested": [names[i] for i in show["suggested_label"]],
            "label quality": show["label_quality"].round(3),
            "why": show["reason"],
        }
    )
    row = ui.clickable_table(table, key="li_tbl")
    if row is not None:
        sid = s[schema.SAMPLE_ID].iloc[int(show.iloc[row]["index"])]
        nav.go(
            "detail",
            ImageQuery(issue="label", sort="label_quality", desc=False),
            sample=sid,
            origin="data_issues",
        )
    noise = run.array(schema.NOISE_MATRIX)
    if noise is not None:
        with st.expander(
            "Estimated noise matrix: how often each true class was labelled as another"
        ):
            st.plotly_chart(figures.noise_matrix_figure(noise, names), key="noise")


def _duplicates(run: Run) -> None:
    pairs = data.table(str(run.path), schema.DUPLICATES)
    s = run.samples
    if pairs is None:
        st.info("Not computed for this run.")
        return
    leaked = s[schema.LEAK_OF].notna().to_numpy() if schema.LEAK_OF in s.columns else None
    if leaked is not None and leaked.any():
        from analysis.data_issues.duplicates import leakage_impact

        imp = leakage_impact(s[schema.CORRECT].to_numpy(), leaked)
        st.markdown(
            f"**{imp.n_leaked} evaluation images** are near-copies of reference (training) images."
            f" Accuracy with them {fmt.estimate(imp.accuracy)}; without them"
            f" {fmt.estimate(imp.accuracy_clean)}: leakage inflates the headline by"
            f" {100 * imp.inflation:+.1f} points."
        )
        nav.link("gallery", "Open the leaked images →", ImageQuery(issue="leak"))
    elif run.reference is None:
        st.caption("No reference set was given, so train/test leakage was not checked.")
    within = int((pairs["scope"] == "within").sum()) if len(pairs) else 0
    st.markdown(f"{within} near-duplicate pairs inside the evaluation set.")
    if within:
        nav.link("gallery", "Open the near-duplicates →", ImageQuery(issue="duplicate"))
    if len(pairs):
        st.subheader("Most similar pairs")
        ref = run.reference
        for _, p in pairs.head(12).iterrows():
            c = st.columns([1, 1, 3])
            i, j = int(p["i"]), int(p["j"])
            c[0].image(
                ui.thumbnail(run, s[schema.SAMPLE_ID].iloc[i]) or s[schema.PATH].iloc[i],
                caption=f"eval: {s[schema.RELPATH].iloc[i]}",
                width=140,
            )
            if p["scope"] == "leak" and ref is not None:
                rid = ref[schema.SAMPLE_ID].iloc[j]
                c[1].image(
                    ui.thumbnail(run, f"ref-{rid}") or ref[schema.PATH].iloc[j],
                    caption=f"reference: {ref[schema.RELPATH].iloc[j]}",
                    width=140,
                )
            else:
                c[1].image(
                    ui.thumbnail(run, s[schema.SAMPLE_ID].iloc[j]) or s[schema.PATH].iloc[j],
                    caption=f"eval: {s[schema.RELPATH].iloc[j]}",
                    width=140,
                )
            c[2].markdown(_pair_text(p))
            with c[2]:
                nav.link(
                    "detail",
                    "Open the evaluation image",
                    ImageQuery(issue="leak"),
                    sample=s[schema.SAMPLE_ID].iloc[i],
                    origin="data_issues",
                )


def _outliers(run: Run) -> None:

    summ = data.table(str(run.path), schema.OUTLIER_SUMMARY)
    if summ is None:
        st.info("Not computed for this run.")
        return
    st.caption(
        "Thresholds adapt to this data set (robust z-score > 3.5 on median/MAD) and must"
        " also be bad in absolute terms, so a uniformly dark set does not flag itself."
    )
    st.dataframe(summ, hide_index=True)
    for t in summ.loc[summ["n"] > 0, "type"]:
        nav.link("gallery", f"Open {t} images →", ImageQuery(issue=f"outlier:{t}"))


def _pair_text(p) -> str:
    what = "leak" if p["scope"] == "leak" else "duplicate"
    if p["kind"] == "exact":
        return f"**exact {what}**: identical file content"
    parts = [f"**near {what}**: appearance similarity {p['similarity']:.3f}"]
    if not pd.isna(p.get("distinctiveness", float("nan"))):
        parts.append(f"{p['distinctiveness']:.0f}× closer than its other neighbours")
    if not pd.isna(p.get("hash_distance", float("nan"))):
        parts.append(f"perceptual-hash distance {int(p['hash_distance'])}/64")
    if not pd.isna(p.get("model_similarity", float("nan"))):
        parts.append(f"model-embedding cosine {p['model_similarity']:.3f}")
    return ", ".join(parts)
