"""Compare: model A vs B on the same images (flips, regressions), or set A vs B (drift)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from analysis.present import formatting as fmt
from analysis.present.query import ImageQuery, save_selection
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import data, links, nav


@st.cache_data(show_spinner="Comparing…", max_entries=8)
def _compare(path_a: str, path_b: str):
    from analysis.stats.compare import align_samples, compare_runs
    from analysis.stats.drift import drift_runs

    a, b = data.get_run(path_a), data.get_run(path_b)
    try:
        al = align_samples(a.samples, b.samples)
        same = al.n_matched >= 0.5 * min(len(a.samples), len(b.samples))
    except ValueError:
        same = False
    return ("models", compare_runs(a, b)) if same else ("drift", drift_runs(a, b))


def render(run: Run) -> None:
    st.title("Compare")
    wanted = links.raw("b")
    listed = data.available_runs(str(data.runs_dir()))
    if wanted and wanted not in {r["run_id"] for r in listed}:  # a run made since the last listing
        data.available_runs.clear()
        listed = data.available_runs(str(data.runs_dir()))
    runs = [r for r in listed if r["run_id"] != run.run_id]
    ids = [r["run_id"] for r in runs]
    if wanted and wanted not in ids:
        links.note([f"b={wanted[:60]!r} was ignored: no other run has this id"])
    if not runs:
        st.info(
            "Only one run here. Analyse a second model on the same images (model A vs B) or"
            " the same model on new images (drift), then come back."
        )
        return
    b_id = st.selectbox(
        "Compare this run (A) with run B",
        ids,
        index=ids.index(wanted) if wanted in ids else 0,
        key="cmp_b",
    )
    if st.query_params.get("b") != b_id:
        st.query_params["b"] = b_id
    b_path = runs[ids.index(b_id)]["path"]
    other = data.get_run(b_path).class_names
    if other != run.class_names:  # both comparisons need one class list (they raise otherwise)
        st.info(
            f"Run B has other classes than this run ({len(other):,} vs"
            f" {len(run.class_names):,}, or in another order): models and image sets are"
            " compared on the same class list. Pick another run B."
        )
        return
    kind, res = _compare(str(run.path), b_path)
    if kind == "models":
        _models(run, res)
    else:
        _drift(res, b_id)
    nav.copy_link("compare", b=b_id)


def _models(run: Run, res) -> None:
    from analysis.stats.compare import BOTH_WRONG, FIX, REGRESSION

    st.markdown(
        f"Model A vs model B on **{fmt.plural(res.n_matched, 'shared image')}** (matched by"
        f" {res.aligned_on})."
    )
    c = st.columns(3)
    c[0].metric("Accuracy A", fmt.pct(res.accuracy_a.value))
    c[0].caption(f"95% CI {fmt.interval(res.accuracy_a.low, res.accuracy_a.high)}")
    _ids_link(run, "A's errors →", res.changed_images(cells=(FIX, BOTH_WRONG)), where=c[0])
    c[1].metric("Accuracy B", fmt.pct(res.accuracy_b.value))
    c[1].caption(f"95% CI {fmt.interval(res.accuracy_b.low, res.accuracy_b.high)}")
    _ids_link(run, "B's errors →", res.changed_images(cells=(REGRESSION, BOTH_WRONG)), where=c[1])
    c[2].metric("B − A", f"{100 * res.delta.value:+.1f} pts")
    c[2].caption(
        f"95% CI {100 * res.delta.low:+.1f} to {100 * res.delta.high:+.1f} pts ·"
        f" McNemar p {fmt.p_value(res.p_value)}"
    )
    _ids_link(
        run, "The images that changed →", res.changed_images(cells=(REGRESSION, FIX)), where=c[2]
    )
    st.subheader("Flips")
    ft = res.flip_table()
    pairs = res.pairs
    for _, r in ft.iterrows():
        ids = pairs.loc[pairs["cell"] == r["cell"], "sample_id"]
        label = (
            f"{'right' if r['a_correct'] else 'wrong'} in A, "
            f"{'right' if r['b_correct'] else 'wrong'} in B: {fmt.plural(r['count'], 'image')}"
            f" ({fmt.pct(r['share'])})"
        )
        if len(ids):
            nav.link("gallery", label, ImageQuery(sel=save_selection(run.path, ids)))
        else:
            st.markdown(label)
    st.subheader("Per class")
    st.caption(
        "Largest drop from A to B first. Click a class to open its images that changed between"
        " A and B."
    )
    per_class = res.per_class.sort_values(["delta", "class"], kind="stable")
    row = ui.clickable_table(per_class, key="cmp_class", column_config=_COLUMNS)
    if row is not None:
        cls = int(per_class.iloc[row]["class"])
        ids = res.changed_images(cls=cls, cells=(REGRESSION, FIX))
        if ids:
            nav.go("gallery", ImageQuery(sel=save_selection(run.path, ids)))
        else:
            st.info("No image of this class changed between A and B.")
    st.subheader("Slices where B is worse, most significant first")
    reg = res.slices
    if reg.empty:
        st.caption("No slices.")
        return
    st.caption("Click a slice to open its images that A got right and B gets wrong.")
    row = ui.clickable_table(
        reg.drop(columns=["spec"], errors="ignore"), key="cmp_slices", column_config=_COLUMNS
    )
    if row is not None and "spec" in reg.columns:
        from analysis import schema
        from analysis.stats.slices import apply_slice, spec_from_json

        s = run.samples
        inside = s.loc[apply_slice(s, spec_from_json(reg.iloc[row]["spec"])), schema.SAMPLE_ID]
        ids = res.changed_images(among=inside)
        if ids:
            nav.go("gallery", ImageQuery(sel=save_selection(run.path, ids)))
        else:
            nav.go("gallery", ImageQuery(slice=reg.iloc[row]["spec"]))


# fractions as percentages, p-values short: the compare tables are read in a meeting
_PCT = {
    c: st.column_config.NumberColumn(c.replace("_", " "), format="percent")
    for c in (
        "recall_a",
        "recall_b",
        "accuracy_a",
        "accuracy_b",
        "delta",
        "delta_low",
        "delta_high",
    )
}
_COLUMNS = {
    **_PCT,
    "p_value": st.column_config.NumberColumn("p", format="%.2g"),
    "p_adj": st.column_config.NumberColumn("p (BH)", format="%.2g"),
}


def _ids_link(run: Run, label: str, ids: list[str], *, where) -> None:
    with where:
        if ids:
            nav.link(
                "gallery", f"{label} ({len(ids):,})", ImageQuery(sel=save_selection(run.path, ids))
            )


def _drift(rep, b_id: str) -> None:
    """Set A vs set B. Links open run B's images (what moved is in B)."""
    st.markdown(
        f"Set A ({fmt.plural(rep.n_a, 'image')}) vs set B ({fmt.plural(rep.n_b, 'image')}),"
        " same model: what moved."
        " Click a feature to see B's images sorted by it, a slice to see its images in B."
    )
    flagged = rep.flagged_features
    if flagged:
        st.warning("Drift in: " + ", ".join(ui.safe(f) for f in flagged))
    else:
        st.success("No feature drifted beyond the thresholds.")
    feats = rep.features
    row = ui.clickable_table(feats, key="drift_feats")
    if row is not None:
        from analysis.present.query import SORT_KEYS

        feature = str(feats.iloc[row]["feature"])
        if feature in SORT_KEYS:
            nav.go("gallery", ImageQuery(sort=feature), run=b_id)
        else:
            nav.go("gallery", ImageQuery(), run=b_id)
    if not rep.embedding.empty:
        st.subheader("Embedding space")
        st.caption(
            "A classifier trained to tell A's embeddings from B's: ROC-AUC ≈ 0.5 means the"
            " sets look alike to the model; near 1 means they are easy to tell apart."
        )
        st.dataframe(rep.embedding, hide_index=True)
    st.subheader("Slices whose share or error rate moved most")
    moved = pd.DataFrame(rep.slices).head(30).reset_index(drop=True)
    row = ui.clickable_table(moved.drop(columns=["spec"], errors="ignore"), key="drift_slices")
    if row is not None and "spec" in moved.columns:
        nav.go("gallery", ImageQuery(slice=str(moved.iloc[row]["spec"])), run=b_id)
    for w in rep.warnings:
        st.caption(ui.safe(w))
