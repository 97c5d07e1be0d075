"""Robustness: accuracy under perturbations at 5 severities; click a cell -> the images that flipped."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.present import figures
from analysis.present import formatting as fmt
from analysis.present.query import ImageQuery, save_selection
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import data, links, nav


def render(run: Run) -> None:
    from analysis.stats import robustness as rb

    st.title("Robustness")
    if not run.manifest.get("has_model"):
        st.info("Robustness needs the model; this run was built from a predictions file.")
        return
    result = rb.load_robustness(run)
    with st.expander(
        "Run a stress test" if result is not None else "Run a stress test now",
        expanded=result is None,
    ):
        names = st.multiselect(
            "Perturbations", list(rb.PERTURBATIONS), default=list(rb.PERTURBATIONS), key="rb_names"
        )
        n = run.manifest["n_samples"]
        if n > 50:
            subset = st.slider("Images (stratified by class)", 50, n, min(n, 1000), key="rb_subset")
        else:  # a slider needs a range: small runs use every image
            subset = n
        cost = rb.estimate_cost(run, perturbations=names, subset=subset)
        st.caption(
            f"{len(names)} × 5 passes over {subset} images: about {cost / 60:.1f} min"
            " here. Same as `errorscope robustness RUN`."
        )
        st.dataframe(rb.perturbation_table(), hide_index=True)
        if st.button("Run", type="primary", disabled=not names, key="rb_go"):
            bar = st.progress(0.0, text="starting")
            rb.run_robustness(
                run,
                perturbations=names,
                subset=subset,
                progress=lambda m, f: bar.progress(min(max(f, 0.0), 1.0), text=m),
            )
            st.rerun()
    if result is None:
        return
    summ = result.summary
    clean = float(summ["clean_accuracy"].iloc[0])
    st.markdown(
        f"On **{fmt.plural(len(result.rows), 'image')}**: clean accuracy {clean:.1%}. Click a"
        " cell to see the images whose prediction flipped, original and perturbed."
    )
    bar = st.container()  # the copy-link, filled once every choice of the page is known
    # the clicked cell and the choices below are in the URL: a copied link reopens them
    cells = [f"{p}:{s}" for p, s in zip(summ["perturbation"], summ["severity"], strict=True)]
    cell = links.choice_param("cell", cells, default="")
    ver = st.session_state.setdefault("rb_ver", 0)
    ev = st.plotly_chart(
        figures.robustness_grid_figure(summ),
        key=f"rb_grid_{ver}",
        on_select="rerun",
        selection_mode="points",
        config={"displayModeBar": False},
    )
    pts = ui.clicked_points(ev)
    if pts:
        st.session_state["rb_ver"] = ver + 1
        st.query_params["cell"] = cells[pts[0]]
        st.rerun()
    c1, c2 = st.columns(2)
    c1.plotly_chart(figures.robustness_curves_figure(summ, clean_accuracy=clean), key="rb_curves")
    with c2:
        pc = result.per_class
        links.choice_param("under", list(result.perturbations), default=result.perturbations[0])
        name = st.selectbox(
            "Per class under", list(result.perturbations), key="under", bind="query-params"
        )
        view = rb.per_class_ranking(pc, name)
        st.caption(
            "Accuracy per class and severity. The classes this perturbation may hurt most come"
            " first: sorted by the upper end of the 95% interval at the highest severity"
            " (low, high), so a class of a few images does not top the list by chance."
        )
        shown = view.set_index(rb.CLASS_NAME).rename(
            columns=lambda c: c if isinstance(c, str) else f"severity {c}"
        )
        st.dataframe(shown.style.format("{:.0%}"), key="rb_pc_tbl")
        _fragile(run, result, name)
    picked = _by_slice(run, result)
    if cell:
        perturbation, severity = cell.rsplit(":", 1)
        _flipped(run, result, perturbation, int(severity))
    with bar:
        nav.copy_link(
            "robustness",
            cell=cell or None,
            under=name if name != result.perturbations[0] else None,
            by_slice=picked,
        )


def _fragile(run: Run, result, perturbation: str) -> None:
    """The images that break first: right when clean, wrong from the lowest severity."""
    from analysis.stats import robustness as rb

    frag = rb.fragile_images(result, perturbation)
    st.markdown(f"**Breaks first under {perturbation}** (right when clean, then wrong)")
    if frag.empty:
        st.caption("No image the model got right becomes wrong.")
        return
    for sev, group in frag.groupby(rb.SEVERITY, sort=True):
        sel = save_selection(run.path, group[schema.SAMPLE_ID])
        nav.link(
            "gallery",
            f"severity {sev}: {fmt.plural(len(group), 'image')} first"
            f" {'becomes' if len(group) == 1 else 'become'} wrong",
            ImageQuery(sel=sel),
        )


def _by_slice(run: Run, result) -> str | None:
    """The extra drop inside a chosen slice; returns the chosen slice when not the first."""
    from analysis.stats import robustness as rb
    from analysis.stats.slices import spec_from_json

    st.subheader("By slice")
    choices = {}
    for name in (schema.DISCOVERED, schema.SLICES):
        t = data.table(str(run.path), name)
        if t is not None and not t.empty:
            for desc, spec in zip(t["description"], t["spec"], strict=True):
                choices.setdefault(str(desc), str(spec))
    if not choices:
        st.caption("This run has no slices.")
        return None
    first = next(iter(choices))
    links.choice_param("by_slice", list(choices), default=first)
    pick = st.selectbox("Slice", list(choices), key="by_slice", bind="query-params")
    t = rb.slice_vs_rest(result, run, spec_from_json(choices[pick]))
    n_in, n_out = int(t["n_in"].max()), int(t["n_out"].max())
    st.caption(
        f"Extra accuracy drop inside *{ui.safe(pick)}* ({fmt.plural(n_in, 'image')}) compared"
        f" with the other {fmt.plural(n_out, 'image')}, each against its own clean accuracy:"
        " positive = the slice suffers more. Small slices have wide intervals; hover the heat"
        " map cells above for the overall numbers."
    )
    view = t.pivot_table(
        index=rb.PERTURBATION, columns=rb.SEVERITY, values="extra_drop", sort=False
    )
    st.dataframe(
        view.style.format("{:+.0%}").background_gradient(cmap="RdBu_r", vmin=-0.5, vmax=0.5),
        key="rb_slice_tbl",
    )
    if "significant" in t.columns:
        sig = t[t["significant"].astype(bool)]
        if sig.empty:
            st.caption(
                "No cell is significantly worse inside the slice (one-sided Fisher test on the"
                " share of correctly classified images each perturbation breaks, BH over the cells)."
            )
        else:
            cells = ", ".join(
                f"{r[rb.PERTURBATION]} {int(r[rb.SEVERITY])} ({r['break_in']:.0%} vs"
                f" {r['break_out']:.0%} broken, adjusted p {r['p_adj']:.2g})"
                for _, r in sig.head(6).iterrows()
            )
            st.markdown(f"Significantly worse inside the slice: {cells}.")
    what = "the image" if n_in == 1 else f"the {n_in:,} images"
    nav.link("gallery", f"Open {what} of this slice →", ImageQuery(slice=choices[pick]))
    return pick if pick != first else None


def _flipped(run: Run, result, perturbation: str, severity: int) -> None:
    from analysis.explain.cam_views import perturbed_pair
    from analysis.loading.models import Preprocessing
    from analysis.stats import robustness as rb

    f = rb.flips(result, perturbation, severity)
    f = f[f["pred"] != f["clean_pred"]]
    names = run.class_names
    st.subheader(f"{fmt.plural(len(f), 'image')} flipped under {perturbation}, severity {severity}")
    if f.empty:
        return
    s = run.samples
    sel = save_selection(run.path, f["sample_id"])
    nav.link(
        "gallery", f"Open {'it' if len(f) == 1 else 'them'} in the gallery →", ImageQuery(sel=sel)
    )
    prep = Preprocessing.from_dict(run.manifest["preprocessing"])
    for _, r in f.head(8).iterrows():
        row = s.iloc[int(r["row"])]
        orig, pert = perturbed_pair(
            row[schema.PATH], prep, perturbation, severity, seed=int(result.settings.get("seed", 0))
        )
        c = st.columns([1, 1, 3])
        c[0].image(orig, caption=f"original: {ui.safe(names[int(r['clean_pred'])])}", width=150)
        c[1].image(pert, caption=f"perturbed: {ui.safe(names[int(r['pred'])])}", width=150)
        with c[2]:
            st.markdown(
                f"given **{ui.safe(names[int(r['label'])])}** ·"
                f" {'became wrong' if r['became_wrong'] else 'changed'}"
            )
            nav.link(
                "detail",
                "Open image",
                ImageQuery(sel=sel),
                sample=r["sample_id"],
                origin="robustness",
            )
