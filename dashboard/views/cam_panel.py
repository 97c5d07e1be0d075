"""The CAM part of the image detail page: predicted vs given class, method and layer choice."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.store.runstore import Run

# display order of the gradient methods; the model's family decides which apply and which is first
ORDER = ["gradcam", "gradcam++", "eigencam", "layercam", "scorecam", "xgradcam", "hirescam"]


@st.cache_resource(show_spinner=False, max_entries=4)
def _model(run_path: str, stamp: str):
    """The run's model and preprocessing, loaded once per process (never mutated)."""
    from analysis.loading.inference import pick_device
    from analysis.loading.models import load_run_model
    from dashboard.data import get_run

    return load_run_model(get_run(run_path).manifest, device=pick_device(None))


@st.cache_data(show_spinner=False, max_entries=8)
def _layers(run_path: str, stamp: str) -> tuple[list[tuple[str, str]], str | None]:
    from analysis.explain.cam_views import layer_choices

    (loaded, prep) = _model(run_path, stamp)
    cands, default = layer_choices(loaded.model, prep, gradients=loaded.gradients)
    return [(c.name, f"{c.name} ({c.spatial[0]}×{c.spatial[1]})") for c in cands], default


@st.cache_data(show_spinner=False, max_entries=8)
def _methods(run_path: str, stamp: str) -> tuple[list[str], str]:
    from analysis.explain.cam_views import method_choices

    (loaded, prep) = _model(run_path, stamp)
    usable, default = method_choices(loaded.model, prep, gradients=loaded.gradients)
    return sorted(
        usable, key=lambda m: (m not in ORDER, ORDER.index(m) if m in ORDER else 0)
    ), default


def render(run: Run, row_no: int) -> None:
    st.subheader("Where the model looked")
    if not run.manifest.get("has_model"):
        st.info(
            "No map for this run: it was built from a predictions file, and every map (Grad-CAM,"
            " occlusion) needs the model itself, to run it on this image or altered copies of it."
        )
        return
    stamp = run.manifest["created"]
    try:
        loaded, prep = _model(str(run.path), stamp)
        layers, default = _layers(str(run.path), stamp)
        methods, default_method = _methods(str(run.path), stamp)
    except Exception as e:  # a moved or changed checkpoint must not break the page
        st.warning(f"CAMs are unavailable: {e}")
        return
    if not loaded.gradients:
        st.caption(
            f"This {loaded.family} model gives no gradients to errorscope, so no Grad-CAM: the map"
            " below is **occlusion** (forward passes only: how much the class probability drops"
            " when each region is covered)."
        )
    names = dict(layers)
    c1, c2 = st.columns(2)
    wanted_method = st.query_params.get("cam", default_method)
    method = c1.selectbox(
        "Method",
        methods,
        key="cam_method",
        index=methods.index(wanted_method) if wanted_method in methods else 0,
        format_func=lambda m: m + (" — default" if m == default_method else ""),
    )
    order = [n for n, _ in layers][::-1]
    wanted = st.query_params.get("layer", default)
    layer = None
    if order and method != "occlusion":
        layer = c2.selectbox(
            "Layer",
            order,
            index=order.index(wanted) if wanted in order else 0,
            format_func=lambda n: names[n] + (" — default" if n == default else ""),
            key="cam_layer",
            help="Default: the deepest layer whose map is still at least 7×7 at this"
            " input size (coarser maps cannot say where).",
        )
    else:
        c2.caption("Occlusion reads no layer: it covers regions of the input image.")
    # the URL (and so a copied link) reopens this exact view: method and layer, when not default
    st.session_state["cam_layer_default"] = default
    st.session_state["cam_method_default"] = default_method
    for param, value, dflt in (("cam", method, default_method), ("layer", layer, default)):
        if value != dflt and st.query_params.get(param) != value:
            st.query_params[param] = value
        elif value == dflt and param in st.query_params:
            del st.query_params[param]
    s = run.samples.iloc[row_no]
    pred, label = int(s[schema.PRED]), int(s[schema.LABEL])
    from analysis.explain.cam_views import cam_view

    with st.spinner("Computing CAMs (cached after the first time)…"):
        view = cam_view(
            run, loaded.model, prep, row_no, classes=[pred, label], method=method, layer=layer
        )
    cols = st.columns(len(view.cams) + 1)
    cols[0].image(view.image, caption=f"model input ({view.image.shape[1]} px)", width="stretch")
    for col, c in zip(cols[1:], view.cams, strict=True):
        role = ("predicted" if c.target_class == pred else "") + (
            " = given"
            if c.target_class == label and c.target_class == pred
            else ("given" if c.target_class == label else "")
        )
        col.image(
            c.overlay,
            width="stretch",
            caption=f"{method} for {run.class_names[c.target_class]} ({role.strip()}),"
            f" p={c.prob:.2f}",
        )
        col.caption(
            f"Removing the top 20% of this map drops p by **{c.drop_top:+.2f}**; removing a"
            f" same-size region elsewhere drops it by {c.drop_random:+.2f}."
            + (
                " The map points at evidence the model uses."
                if c.drop_top - c.drop_random > 0.05
                else " :orange[The map is not much better than a random region: do not over-read it.]"
            )
        )
        col.caption(_sanity_text(c))
    where = (
        "the input image (occlusion)"
        if view.layer == "input"
        else f"layer `{view.layer}` ({view.layer_spatial[0]}×{view.layer_spatial[1]} map)"
    )
    st.caption(f"Method {method} at {where}.")


def _sanity_text(c) -> str:
    """The model-randomisation sanity check (Adebayo et al. 2018) of one map, in words."""
    import math

    from analysis.explain.cams import SANITY_MAX_RHO

    if math.isnan(c.sanity_rho):
        return (
            "Sanity check (model randomisation): not available for this map (no weights to"
            " randomise, or a flat map)."
        )
    verdict = (
        ":green[passes]: the map depends on what those layers learned."
        if c.sanity_rho < SANITY_MAX_RHO
        else ":orange[fails]: the map barely changes, so it does not explain this prediction."
    )
    return (
        f"Sanity check: with the {c.sanity_layers} layers above it re-initialised, the map's rank"
        f" correlation with this one is **{c.sanity_rho:.2f}** — {verdict}"
    )
