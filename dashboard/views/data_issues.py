"""Data issues: suspected label errors, near-duplicates and leakage, property outliers."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis import schema
from analysis.present import formatting as fmt
from analysis.present.classes import MATRIX_MAX, largest_noise_entries
from analysis.present.query import ImageQuery
from analysis.store.runstore import Run
from dashboard import charts, data, links, nav
from dashboard import components as ui


def render(run: Run) -> None:
    st.title("Data issues")
    st.caption(
        "Many 'model errors' are data errors. Each list is ranked for review; every row"
        " opens the image, every tab opens its images in the gallery."
    )
    # the open tab is in the URL (section=...): a copied link reopens it
    tabs = ["Suspected label errors", "Duplicates and leakage", "Outliers"]
    links.choice_param("section", tabs, default=tabs[0])  # a note if the link's tab is unknown
    bar = st.container()  # above the tabs, filled once the tab widget knows the open tab
    t1, t2, t3 = st.tabs(tabs, key="section", bind="query-params")
    with bar:
        tab = st.session_state.get("section")
        nav.copy_link("data_issues", section=tab if tab != tabs[0] else None)
    # only the open tab is built (see the Slices page)
    with t1:
        if t1.open:
            _label_errors(run)
    with t2:
        if t2.open:
            _duplicates(run)
    with t3:
        if t3.open:
            _outliers(run)


def _label_errors(run: Run) -> None:
    issues = data.table(str(run.path), schema.LABEL_ISSUES)
    if issues is None:
        why = run.sections.get("label_issues", {}).get("error", "no model")
        st.info(f"Not computed: {ui.safe(why)}")
        return
    names = run.class_names
    flagged = issues[issues["is_label_issue"].astype(bool)]
    ref = run.manifest["inputs"].get("reference")
    words = data.label_words(str(run.path))
    if words is not None:
        st.markdown(f"**{words.headline}**")
        st.markdown(words.expectation)
        st.caption(
            f"{words.ranking} Found by confident learning (Northcutt et al., 2021): per class,"
            " the estimated number of label errors with the largest margin towards another"
            " class."
        )
    st.caption(
        "Confident learning needs held-out predictions. These are the model's predictions on the"
        f" evaluation set{' (the reference set ' + ui.safe(ref['name']) + ' is assumed to be the training set)' if ref else ''};"
        " on the model's own training data it would miss most errors, because a model fits its"
        " training labels."
    )
    _trust(run)
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
            **(
                {"neighbours with its label": show["neighbour_agreement"].round(2)}
                if "neighbour_agreement" in show and show["neighbour_agreement"].notna().any()
                else {}
            ),
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
    noise = run.array(schema.NOISE_MATRIX) if len(names) <= MATRIX_MAX else None
    entries = None if noise is not None else data.table(str(run.path), schema.NOISE_ENTRIES)
    if noise is None and entries is None and (dense := run.array(schema.NOISE_MATRIX)) is not None:
        entries = dense  # a run written before noise_entries.parquet existed
    if noise is not None or entries is not None:
        box = st.expander(
            "Estimated noise matrix: how often each true class was labelled as another",
            key="noise_open",
            on_change="rerun",
        )
        with box:
            if not box.open:  # drawn once opened: a hidden chart still costs every browser
                pass
            elif noise is not None:
                st.plotly_chart(
                    charts.noise_matrix(str(run.path), run.manifest["created"]), key="noise"
                )
            else:
                _noise_entries(entries, names)


def _trust(run: Run) -> None:
    """How far to trust the flags: the noise-rate bound and thin per-class thresholds."""
    from analysis.present.label_trust import label_trust

    trust = label_trust(run)
    if trust is None or not trust.sentences:
        return
    with st.container(border=True):
        for sentence in trust.sentences:
            st.markdown(f":orange[:material/help:] {ui.safe(sentence)}")


def _noise_entries(noise, names: list[str]) -> None:
    """The noise matrix's largest off-diagonal entries (a 1,000 x 1,000 picture says nothing)."""
    top = largest_noise_entries(noise, k=50)
    st.caption(
        f"The {len(top)} largest non-zero off-diagonal entries"
        f" ({len(names) ** 2 - len(names):,} in all)."
        " Click a row for the suspected label errors given that label and predicted as the"
        " estimated true class."
    )
    table = pd.DataFrame(
        {
            "true class (estimated)": [names[i] for i in top["true"]],
            "labelled as": [names[i] for i in top["given"]],
            "P(labelled as | true)": top["rate"],
        }
    )
    row = ui.clickable_table(
        table,
        key="noise_tbl",
        column_config={
            "P(labelled as | true)": st.column_config.NumberColumn(format="percent"),
        },
    )
    if row is not None:
        r = top.iloc[row]
        q = ImageQuery(true=(int(r["given"]),), pred=(int(r["true"]),), issue="label")
        nav.go("gallery", q)


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
        one = imp.n_leaked == 1
        st.markdown(
            f"**{fmt.plural(imp.n_leaked, 'evaluation image')}**"
            f" {'is a near-copy' if one else 'are near-copies'} of reference (training) images."
            f" Accuracy with {'it' if one else 'them'} {fmt.estimate(imp.accuracy)}; without"
            f" {'it' if one else 'them'}"
            f" {fmt.estimate(imp.accuracy_clean)}: leakage inflates the headline by"
            f" {100 * imp.inflation:+.1f} points."
        )
        nav.link("gallery", "Open the leaked images →", ImageQuery(issue="leak"))
    elif run.reference is None:
        st.caption("No reference set was given, so train/test leakage was not checked.")
    within = int((pairs["scope"] == "within").sum()) if len(pairs) else 0
    st.markdown(f"{fmt.plural(within, 'near-duplicate pair')} inside the evaluation set.")
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
                caption=f"eval: {ui.safe(s[schema.RELPATH].iloc[i])}",
                width=140,
            )
            if p["scope"] == "leak" and ref is not None:
                rid = ref[schema.SAMPLE_ID].iloc[j]
                c[1].image(
                    ui.thumbnail(run, f"ref-{rid}") or ref[schema.PATH].iloc[j],
                    caption=f"reference: {ui.safe(ref[schema.RELPATH].iloc[j])}",
                    width=140,
                )
            else:
                c[1].image(
                    ui.thumbnail(run, s[schema.SAMPLE_ID].iloc[j]) or s[schema.PATH].iloc[j],
                    caption=f"eval: {ui.safe(s[schema.RELPATH].iloc[j])}",
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
    if "significant" in summ.columns:  # the claim "misclassified more often" is a tested one
        sig = summ[summ["significant"].fillna(False).astype(bool)]
        st.markdown(
            " ".join(
                f"**{ui.safe(r['type'])}** images are misclassified more often: error rate"
                f" {fmt.pct(r['error_rate'], 0)} (95% CI"
                f" {fmt.interval(r['error_low'], r['error_high'], digits=0)}) against"
                f" {fmt.pct(r['rest_error_rate'], 0)} for the others (adjusted p"
                f" {fmt.p_value(r['p_adj'])})."
                for _, r in sig.iterrows()
            )
            or "No outlier type is misclassified significantly more often than the other images."
        )
        st.caption(
            "One-sided Fisher test of each type against the other images, Benjamini–Hochberg"
            " over the types (as the slices)."
        )
    st.dataframe(summ, hide_index=True)
    for t in summ.loc[summ["n"] > 0, "type"]:
        nav.link("gallery", f"Open {ui.safe(t)} images →", ImageQuery(issue=f"outlier:{t}"))


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
