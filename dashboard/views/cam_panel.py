"""The CAM part of the image detail page: predicted vs given class, method and layer choice."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import links

# display order of the gradient methods; the model's family decides which apply and which is first
ORDER = ["gradcam", "gradcam++", "eigencam", "layercam", "scorecam", "xgradcam", "hirescam"]


@st.cache_resource(show_spinner=False, max_entries=4)
def _model(run_path: str, stamp: str):
    """The run's model and preprocessing, loaded once per process (never mutated)."""
    from analysis.loading.inference import pick_device
    from analysis.loading.models import load_run_model
    from dashboard.data import get_run

    return load_run_model(get_run(run_path).manifest, device=pick_device(None))


def _prep(run: Run):
    from analysis.loading.models import Preprocessing

    return Preprocessing.from_dict(run.manifest["preprocessing"])


@st.cache_data(show_spinner=False, max_entries=8)
def _layers(run_path: str, stamp: str) -> tuple[list[tuple[str, str]], str | None]:
    """(layer name, label) pairs and the default, from the run's stored layer list (written at
    analysis time) or, for older runs, found with the model once; none for a model without
    gradients (ONNX, TorchScript: occlusion reads no layer)."""
    from analysis.explain.cam_views import layer_label, save_layers, stored_layers
    from dashboard.data import get_run

    run = get_run(run_path)
    if not _gradients(run):
        return [], None
    found = stored_layers(run.path, _prep(run))
    if found is None:
        loaded, prep = _model(run_path, stamp)
        found = save_layers(run.path, loaded.model, prep)
    cands, default = found
    return [(c.name, layer_label(c, default=default)) for c in cands], default


def _gradients(run: Run) -> bool:
    """Whether the run's model gives gradients (hooks): not ONNX or TorchScript."""
    return bool(((run.manifest.get("inputs") or {}).get("model") or {}).get("gradients", True))


@st.cache_data(show_spinner=False, max_entries=8)
def _methods(run_path: str, stamp: str) -> tuple[list[str], str]:
    """(the CAM methods the run's model can use in display order, the default for its
    architecture family), from the manifest and the stored layer list when they say."""
    from analysis.explain.cam_views import method_choices, stored_family
    from dashboard.data import get_run

    run = get_run(run_path)
    gradients = _gradients(run)
    family = stored_family(run.path, _prep(run)) if gradients else "none"
    if family is None:  # an older run: the model says
        loaded, prep = _model(run_path, stamp)
        usable, default = method_choices(loaded.model, prep, gradients=loaded.gradients)
    else:
        from analysis.explain.cams import default_method, methods_for

        usable, default = methods_for(gradients), default_method(family, gradients=gradients)
    return sorted(usable, key=lambda m: (m not in ORDER, ORDER.index(m) if m in ORDER else 0)), (
        default
    )


def _view(run: Run, row: int, method: str, layer: str | None):
    """The CAM view of ``row`` (maps cached on disk; the model is loaded only on a miss)."""
    from analysis.explain.cam_views import cam_view

    s = run.samples.iloc[int(row)]
    stamp = run.manifest["created"]
    return cam_view(
        run,
        None,
        _prep(run),
        row,
        classes=[int(s[schema.PRED]), int(s[schema.LABEL])],
        method=method,
        layer=layer,
        load_model=lambda: _model(str(run.path), stamp)[0].model,
    )


def _key(run: Run, row: int, method: str, layer: str | None) -> tuple:
    return (str(run.path), str(run.samples[schema.SAMPLE_ID].iloc[int(row)]), method, layer)


#: Images a dashboard process fills in the background per run (about 300 kB of maps each).
FILL_MAX = 64


@st.cache_resource(show_spinner=False, max_entries=8)
def warm_up(run_path: str, stamp: str) -> bool:
    """Once per process and run: load torch, pytorch-grad-cam and the run's model in the
    background, so that the first image whose maps are not cached yet does not pay for it; then
    fill in the maps of the images a review opens first (:func:`precompute_order`, after what
    the analysis precomputed) with the default method and layer, whenever nothing else is
    asked."""
    from dashboard import prefetch

    def load():
        from analysis.explain.cams import _method_classes

        try:
            _model(run_path, stamp)
        except Exception:  # a moved checkpoint: the CAM panel says so when it is opened
            return
        _method_classes()

    if not prefetch.enabled():
        return True
    worker = prefetch.prefetcher()
    worker.submit(("warm", run_path, stamp), load)
    if prefetch.fill_enabled():
        from dashboard.data import get_run

        run = get_run(run_path)
        view = _default_view(run)
        if view is not None:
            worker.fill(("fill", run_path, stamp), _fill_jobs(run, *view))
    return True


def _default_view(run: Run) -> tuple[str, str] | None:
    """(method, layer) a page shows first, from what the analysis stored (no model needed);
    None when it did not store them (an older run, a model without gradients)."""
    from analysis.explain.cam_views import stored_family, stored_layers
    from analysis.explain.cams import default_method

    if not run.manifest.get("has_model") or not _gradients(run):
        return None
    prep = _prep(run)
    found, family = stored_layers(run.path, prep), stored_family(run.path, prep)
    if found is None or family is None or found[1] is None:
        return None
    return default_method(family), found[1]


def _fill_jobs(run: Run, method: str, layer: str):
    """(key, job) for each image of the run a review opens first whose maps are not cached."""
    from analysis.explain.cam_views import is_cached, precompute_order

    s = run.samples
    for row in precompute_order(s)[:FILL_MAX]:
        classes = [int(s[schema.PRED].iloc[row]), int(s[schema.LABEL].iloc[row])]
        sid = str(s[schema.SAMPLE_ID].iloc[row])
        if not is_cached(run.path, sid, method=method, layer=layer, classes=classes):
            yield _key(run, row, method, layer), lambda r=row: _view(run, r, method, layer)


def prefetch_next(run: Run, rows) -> None:
    """Compute the maps of ``rows`` (the next images of the selection) in the background while
    this one is looked at, with the method and layer on screen. Pages call it last, once
    everything is drawn, so the work never delays the page itself."""
    from dashboard import prefetch

    prefetch.prefetcher().touch()  # background work waits until this page is on screen
    method = st.session_state.get("cam_method")
    layer = None if method == "occlusion" else st.session_state.get("cam_layer")
    if not prefetch.enabled() or not method or not run.manifest.get("has_model"):
        return
    if layer is None and method != "occlusion":
        return
    worker = prefetch.prefetcher()
    for row in reversed(list(rows)):  # the worker takes the newest first: the next image first
        worker.submit(_key(run, row, method, layer), lambda r=row: _view(run, r, method, layer))


def link_params() -> dict[str, str | None]:
    """The CAM method and layer for a copied link, when not the defaults. Read from the widgets
    (current at the top of a rerun; the URL is updated only after the panel ran) or, on a first
    draw, from the URL when valid."""
    ss = st.session_state
    cam = ss.get("cam_method") or st.query_params.get("cam")
    layer = ss.get("cam_layer") or st.query_params.get("layer")
    from analysis.explain.cams import CAM_METHODS

    return {
        "cam": cam if cam in CAM_METHODS and cam != ss.get("cam_method_default") else None,
        "layer": layer if layer and layer != ss.get("cam_layer_default") else None,
    }


def render(run: Run, row_no: int) -> None:
    """The CAMs of ``row_no`` for its predicted and given class, method and layer picker."""
    st.subheader("Where the model looked")
    if not run.manifest.get("has_model"):
        st.info(
            "No map for this run: it was built from a predictions file, and every map (Grad-CAM,"
            " occlusion) needs the model itself, to run it on this image or altered copies of it."
        )
        return
    stamp = run.manifest["created"]
    try:
        layers, default = _layers(str(run.path), stamp)
        methods, default_method = _methods(str(run.path), stamp)
    except Exception as e:  # a moved or changed checkpoint must not break the page
        st.warning(f"CAMs are unavailable: {ui.safe(e)}")
        return
    if not _gradients(run):
        family = run.manifest["inputs"]["model"].get("family", "")
        st.caption(
            f"This {family} model gives no gradients to errorscope, so no Grad-CAM: the map"
            " below is **occlusion** (forward passes only: how much the class probability drops"
            " when each region is covered)."
        )
    names = dict(layers)
    c1, c2 = st.columns(2)
    wanted_method = links.choice_param("cam", methods, default=default_method)
    method = c1.selectbox(
        "Method",
        methods,
        key="cam_method",
        index=methods.index(wanted_method),
        format_func=lambda m: m + (" — default" if m == default_method else ""),
    )
    order = [n for n, _ in layers][::-1]
    layer = None
    if order and method != "occlusion":
        wanted = links.choice_param("layer", order, default=default)
        layer = c2.selectbox(
            "Layer",
            order,
            index=order.index(wanted),
            format_func=lambda n: names.get(n, n),
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
    from dashboard import prefetch

    prefetch.prefetcher().wait(_key(run, row_no, method, layer))  # in flight: take its result
    try:
        with st.spinner("Computing CAMs (cached after the first time)…"):
            view = _view(run, row_no, method, layer)
    except Exception as e:  # a moved or changed checkpoint must not break the page
        st.warning(f"CAMs are unavailable: {ui.safe(e)}")
        return
    cols = st.columns(len(view.cams) + 1)
    cols[0].image(view.image, caption=f"model input ({view.image.shape[1]} px)", width="stretch")
    for col, c in zip(cols[1:], view.cams, strict=True):
        role = ("predicted" if c.target_class == pred else "") + (
            " = given"
            if c.target_class == label and c.target_class == pred
            else ("given" if c.target_class == label else "")
        )
        title = (
            f"{method} for {ui.safe(run.class_names[c.target_class])} ({role.strip()}),"
            f" p={c.prob:.2f}"
        )
        if c.problem:  # a flat map: an explanation instead of a blank overlay and "+nan"
            col.markdown(f"**{title}**")
            col.info(c.problem, icon=":material/blur_off:")
            continue
        col.image(c.overlay, width="stretch", caption=title)
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
    h, w = view.layer_spatial
    where = (
        "the input image (occlusion)"
        if view.layer == "input"
        else f"layer `{view.layer}` ({h}×{w} map)"
    )
    st.caption(
        f"Method {method} at {where}."
        + (
            f" :orange[A {h}×{w} map is too coarse to say where: pick a larger layer.]"
            if view.coarse and view.layer != "input"
            else ""
        )
    )


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
