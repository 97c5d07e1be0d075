"""The CAM part of the image detail page: predicted vs given class, method and layer choice."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import links

METHODS = ["gradcam", "gradcam++", "eigencam", "layercam", "scorecam", "xgradcam", "hirescam"]


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
def _layers(run_path: str, stamp: str) -> tuple[list[tuple[str, str]], str]:
    """(layer name, label) pairs and the default, from the run's stored layer list (written at
    analysis time) or, for older runs, found with the model once."""
    from analysis.explain.cam_views import layer_label, save_layers, stored_layers
    from dashboard.data import get_run

    run = get_run(run_path)
    found = stored_layers(run.path, _prep(run))
    if found is None:
        loaded, prep = _model(run_path, stamp)
        found = save_layers(run.path, loaded.model, prep)
    cands, default = found
    return [(c.name, layer_label(c, default=default)) for c in cands], default


def _view(run: Run, row: int, method: str, layer: str):
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


def _key(run: Run, row: int, method: str, layer: str) -> tuple:
    return (str(run.path), str(run.samples[schema.SAMPLE_ID].iloc[int(row)]), method, layer)


@st.cache_resource(show_spinner=False, max_entries=8)
def warm_up(run_path: str, stamp: str) -> bool:
    """Once per process and run: load torch, pytorch-grad-cam and the run's model in the
    background, so that the first image whose maps are not cached yet does not pay for it."""
    from dashboard import prefetch

    def load():
        from analysis.explain.cams import _method_classes

        try:
            _model(run_path, stamp)
        except Exception:  # a moved checkpoint: the CAM panel says so when it is opened
            return
        _method_classes()

    if prefetch.enabled():
        prefetch.prefetcher().submit(("warm", run_path, stamp), load)
    return True


def prefetch_next(run: Run, rows) -> None:
    """Compute the maps of ``rows`` (the next images of the selection) in the background while
    this one is looked at, with the method and layer on screen. Pages call it last, once
    everything is drawn, so the work never delays the page itself."""
    from dashboard import prefetch

    method, layer = st.session_state.get("cam_method"), st.session_state.get("cam_layer")
    if not prefetch.enabled() or not method or not layer or not run.manifest.get("has_model"):
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
    return {
        "cam": cam if cam in METHODS and cam != "gradcam" else None,
        "layer": layer if layer and layer != ss.get("cam_layer_default") else None,
    }


def render(run: Run, row_no: int) -> None:
    """The CAMs of ``row_no`` for its predicted and given class, method and layer picker."""
    st.subheader("Where the model looked")
    if not run.manifest.get("has_model"):
        st.info("This run was built from a predictions file: CAMs need the model.")
        return
    stamp = run.manifest["created"]
    try:
        layers, default = _layers(str(run.path), stamp)
    except Exception as e:  # a moved or changed checkpoint must not break the page
        st.warning(f"CAMs are unavailable: {ui.safe(e)}")
        return
    names = dict(layers)
    c1, c2 = st.columns(2)
    wanted_method = links.choice_param("cam", METHODS, default="gradcam")
    method = c1.selectbox("Method", METHODS, key="cam_method", index=METHODS.index(wanted_method))
    order = [n for n, _ in layers][::-1]
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
    # the URL (and so a copied link) reopens this exact view: method and layer, when not default
    st.session_state["cam_layer_default"] = default
    for param, value, dflt in (("cam", method, "gradcam"), ("layer", layer, default)):
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
    h, w = view.layer_spatial
    st.caption(
        f"Layer `{view.layer}` ({h}×{w} map), method {method}."
        + (
            f" :orange[A {h}×{w} map is too coarse to say where: pick a larger layer.]"
            if view.coarse
            else ""
        )
    )
