"""CAMs for one image of a run: the predicted and the given class side by side, cached.

Glue between a run (which image, which preprocessing) and :mod:`analysis.explain.cams` (how a map is
computed). Maps and their faithfulness numbers are cached in the run's ``cams/`` folder, so a
second view of the same image, method and layer does not run the model.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .. import schema
from ..loading.models import Preprocessing


@dataclass(frozen=True)
class ClassCam:
    """One class's map for one image.

    ``cam`` float32 [S, S] in [0, 1] at the model's input size; ``overlay`` uint8 [S, S, 3];
    ``drop_top`` / ``drop_random``: probability drop when the map's top 20% pixels (or a region of
    the same shape elsewhere) are removed (NaN for a flat map: nothing to remove); ``problem``:
    why the map cannot be read, in plain words (see :func:`map_problem`), or None;
    ``sanity_rho``: the model-randomisation check's rank correlation
    (:func:`analysis.explain.cams.randomisation_check`; NaN when it cannot run)."""

    target_class: int
    cam: np.ndarray
    overlay: np.ndarray
    prob: float
    drop_top: float
    drop_random: float
    problem: str | None = None
    sanity_rho: float = float("nan")
    sanity_layers: int = 0


@dataclass(frozen=True)
class CamView:
    """Everything the image detail page shows about where the model looked."""

    method: str
    layer: str
    layer_spatial: tuple[int, int]
    image: np.ndarray  # uint8 [S, S, 3], what the model saw (resized/cropped)
    cams: tuple[ClassCam, ...]

    @property
    def coarse(self) -> bool:
        """Whether the layer's map is too coarse to say where (under MIN_SIDE cells a side)."""
        from .layers import MIN_SIDE

        return min(self.layer_spatial) < MIN_SIDE


def layer_label(info, *, default: str) -> str:
    """'layer4 (2×2 map) — too coarse to say where' for the layer picker: every layer with its
    map size at this input size, the coarse ones and the default marked."""
    from .layers import MIN_SIDE

    h, w = info.spatial
    text = f"{info.name} ({h}×{w} map)"
    if min(h, w) < MIN_SIDE:
        text += " — too coarse to say where"
    if info.name == default:
        text += " — default"
    return text


def map_problem(cam: np.ndarray, layer: str, spatial: tuple[int, int]) -> str | None:
    """Why a map cannot be read, in plain words, or None when it can.

    A map that is the same everywhere (all zero: no location supports the class; or constant,
    typically a 1×1 or 2×2 layer map blown up to the image) has no top region, so its
    faithfulness check has nothing to remove (NaN). A coarse layer gets the reason."""
    from .layers import MIN_SIDE

    cam = np.asarray(cam, dtype=np.float64)
    if cam.size and float(np.ptp(cam)) > 1e-6:
        return None
    h, w = spatial
    what = (
        "no location of this layer's map supports this class"
        if not cam.size or float(cam.max()) <= 0
        else "the map is the same everywhere"
    )
    text = f"No map to show: {what}, so there is nothing to point at or to test."
    if min(h, w) < MIN_SIDE:
        text += (
            f" Layer {layer} is only {h}×{w} cells at this input size: too coarse to say"
            f" where. Pick a layer of at least {MIN_SIDE}×{MIN_SIDE} (the default is one)."
        )
    else:
        text += " Another method or layer may show one."
    return text


def layer_choices(model, prep: Preprocessing, *, gradients: bool = True) -> tuple[list, str | None]:
    """(candidate layers shallow->deep, name of the default layer) at the run's input size;
    ``([], None)`` for a model without hooks or gradients (ONNX, TorchScript)."""
    from .layers import candidate_layers, default_layer

    if not gradients:
        return [], None
    size = prep.input_size
    return candidate_layers(model, size), default_layer(model, size).name


def method_choices(model, prep: Preprocessing, *, gradients: bool = True) -> tuple[list[str], str]:
    """(the CAM methods the model can use, the default one for its architecture family)."""
    from .cams import default_method, methods_for
    from .layers import architecture_family

    family = architecture_family(model, prep.input_size) if gradients else "none"
    return methods_for(gradients), default_method(family, gradients=gradients)


def model_input(path: str, prep: Preprocessing, *, limits: dict | None = None):
    """(uint8 [S, S, 3] image as the model saw it, normalised float tensor [3, S, S]).

    Decoded as the pass decoded it: EXIF orientation applied only when the run did
    (``prep.exif_transpose``), with the run's file limits (``limits``: ``max_pixels``,
    ``max_file_bytes``, see :func:`analysis.loading.images.run_decode_limits`)."""
    import torch

    from ..loading.images import decode_image
    from ..loading.inference import to_model_tensor

    img = decode_image(path, exif_transpose=prep.exif_transpose, **(limits or {}))
    x8 = to_model_tensor(img.rgb, prep)
    x = x8.float().div(255.0)
    mean = torch.tensor(prep.mean).view(3, 1, 1)
    std = torch.tensor(prep.std).view(3, 1, 1)
    return x8.permute(1, 2, 0).numpy().copy(), (x - mean) / std


# ----------------------------------------------------------------------------- stored views
#
# Besides the maps (analysis.explain.cams.CamCache), the run's cams/ folder keeps what a page
# needs to show cached maps without the model: the candidate layers at the run's input size
# (layers.json), each map's faithfulness numbers (<map>.json) and the image as the model saw it
# (<sample>__input.png). A page whose maps are all cached then never loads torch or the model.

LAYERS_FILE = "layers.json"


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers (other sessions, the prefetch thread) never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def save_layers(run_dir, model, prep: Preprocessing) -> tuple[list, str]:
    """Discover the candidate layers (one dry pass) and store them in ``cams/layers.json``."""
    from .layers import _check_input_size, architecture_family

    cands, default = layer_choices(model, prep)
    payload = {
        "input_size": list(_check_input_size(prep.input_size)),
        "default": default,
        "layers": [asdict(c) for c in cands],
        # the architecture family decides the default CAM method (pages read it without the model)
        "family": architecture_family(model, prep.input_size),
    }
    _write_atomic(Path(run_dir) / schema.CAMS_DIR / LAYERS_FILE, json.dumps(payload).encode())
    return cands, default


def stored_family(run_dir, prep: Preprocessing) -> str | None:
    """The architecture family stored with the layer list (see :func:`save_layers`), or None
    when absent or made for another input size."""
    from .layers import _check_input_size

    d = _read_json(Path(run_dir) / schema.CAMS_DIR / LAYERS_FILE)
    try:
        if tuple(d["input_size"]) != _check_input_size(prep.input_size):
            return None
        return str(d["family"])
    except (TypeError, KeyError, ValueError):
        return None


def stored_layers(run_dir, prep: Preprocessing) -> tuple[list, str] | None:
    """(candidate layers, default name) from ``cams/layers.json``, or None when absent or made
    for another input size."""
    from .layers import LayerInfo, _check_input_size

    d = _read_json(Path(run_dir) / schema.CAMS_DIR / LAYERS_FILE)
    try:
        if tuple(d["input_size"]) != _check_input_size(prep.input_size):
            return None
        layers = [
            LayerInfo(c["name"], tuple(c["spatial"]), int(c["channels"]), c.get("layout", "nchw"))
            for c in d["layers"]
        ]
        return layers, str(d["default"])
    except (TypeError, KeyError, ValueError):
        return None


def _input_path(run_dir, sample_id: str) -> Path:
    from .cams import _KEY_PART

    if not _KEY_PART.match(sample_id):
        raise ValueError(f"sample_id {sample_id!r} cannot be part of a file name")
    return Path(run_dir) / schema.CAMS_DIR / f"{sample_id}__input.png"


def _store_input(run_dir, sample_id: str, image: np.ndarray) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")  # lossless: the overlay is the model's view
    _write_atomic(_input_path(run_dir, sample_id), buf.getvalue())


def _stored_input(run_dir, sample_id: str, size: tuple[int, int]) -> np.ndarray | None:
    from PIL import Image

    p = _input_path(run_dir, sample_id)
    if not p.is_file():
        return None
    try:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"))
    except OSError:
        return None
    return arr if arr.shape[:2] == size else None


def _faith_path(cache, sample_id: str, method: str, layer: str, target_class: int) -> Path:
    return cache.path(
        sample_id=sample_id, method=method, layer=layer, target_class=target_class
    ).with_suffix(".json")


def is_cached(run_dir, sample_id: str, *, method: str, layer: str, classes) -> bool:
    """Whether :func:`cam_view` of this image, method and layer (a resolved name) would run no
    model: the model's view of the image, each class's map and its checks are stored (their
    files exist; their content is checked when read)."""
    from .cams import CamCache

    cache = CamCache(run_dir)
    if not _input_path(run_dir, sample_id).is_file():
        return False
    for c in dict.fromkeys(int(c) for c in classes):
        path = cache.path(sample_id=sample_id, method=method, layer=layer, target_class=c)
        if not path.is_file() or not _checks_done(_read_json(path.with_suffix(".json"))):
            return False
    return True


def _pick_layer(found: tuple[list, str], layer: str | None):
    layers, default = found
    name = default if layer is None else layer
    for info in layers:
        if info.name == name:
            return info
    return None  # an alias or an unknown name: the model resolves it (and names the valid ones)


def cam_view(
    run,
    model,
    prep: Preprocessing,
    row: int,
    *,
    classes: list[int],
    method: str = "gradcam",
    layer: str | None = None,
    load_model: Callable[[], object] | None = None,
) -> CamView:
    """Maps of ``classes`` (e.g. [predicted, given]) for samples row ``row``, cached on disk,
    each with its faithfulness and model-randomisation sanity check.

    ``model`` may be None with ``load_model`` given: the model is then loaded only when
    something is not cached yet (a page of precomputed or prefetched maps needs neither torch
    nor the model)."""
    from ..loading.images import run_decode_limits
    from .cams import CAM_METHODS, CamCache, overlay
    from .layers import _check_input_size

    if model is None and load_model is None:
        raise ValueError("give a model or a load_model function")
    loaded: list = [model]

    def get_model():
        if loaded[0] is None:
            loaded[0] = load_model()
        return loaded[0]

    s = run.samples.iloc[int(row)]
    limits = run_decode_limits(run.manifest)
    sid = s[schema.SAMPLE_ID]
    size = _check_input_size(prep.input_size)
    info = None
    if method in CAM_METHODS and CAM_METHODS[method].needs_layer:
        found = stored_layers(run.path, prep)
        if found is None or not found[0]:
            found = save_layers(run.path, get_model(), prep)
        info = _pick_layer(found, layer)
    if info is None:  # occlusion (the input image), an alias, or a name the model must resolve
        from .cams import layer_for

        info = layer_for(get_model(), prep.input_size, method, layer)
    cache = CamCache(run.path)
    image = _stored_input(run.path, sid, size)
    todo = []
    for c in dict.fromkeys(int(c) for c in classes):
        key = {"sample_id": sid, "method": method, "layer": info.name, "target_class": c}
        cam = cache.get(**key)
        if cam is not None and cam.shape != size:
            cam = None
        todo.append(
            _Pending(sid, c, cam, _read_json(_faith_path(cache, sid, method, info.name, c)))
        )
    if not all(t.done for t in todo):
        m = get_model()
        image, x = model_input(s[schema.PATH], prep, limits=limits)
        _store_input(run.path, sid, image)
        x = _on_model_device(x, m)
        for t in todo:
            t.x = x
        _complete(m, todo, method=method, layer=layer, info=info, cache=cache)
    out = [(t.target_class, t.cam, t.checks) for t in todo]
    if image is None:  # every map was cached but the image was not (an older run)
        image, _ = model_input(s[schema.PATH], prep, limits=limits)
        _store_input(run.path, sid, image)
    cams = tuple(
        ClassCam(
            c,
            cam,
            overlay(image, cam),
            float(f["prob"]),
            float(f["drop_top"]),
            float(f["drop_random"]),
            problem=map_problem(cam, info.name, tuple(info.spatial)),
            sanity_rho=float(f["sanity_rho"]),
            sanity_layers=int(f["sanity_layers"]),
        )
        for c, cam, f in out
    )
    return CamView(method, info.name, tuple(info.spatial), image, cams)


def _checks_done(f: dict | None) -> bool:
    """Whether a stored map's checks are complete (files written before the sanity check
    existed have only the faithfulness numbers)."""
    return f is not None and "drop_top" in f and "sanity_rho" in f


def _on_model_device(x, model):
    from .cams import _device_dtype

    return x.to(_device_dtype(model)[0])


@dataclass
class _Pending:
    """One (image, class) map on its way into the cache: what is stored so far."""

    sample_id: str
    target_class: int
    cam: np.ndarray | None
    checks: dict | None
    x: object = None  # the normalised image tensor on the model's device, once decoded

    @property
    def done(self) -> bool:
        return self.cam is not None and _checks_done(self.checks)


#: (image, class) maps computed per batched pass. On the 2-core CPU a resnet18 forward of a
#: batch of 8 costs a third of 8 single forwards per image (and a batch of 2, 60%).
MAP_BATCH = 8


def _complete(model, todo: list[_Pending], *, method: str, layer, info, cache) -> None:
    """Compute what ``todo`` lacks (maps, faithfulness, sanity check) in batched passes: every
    missing map at once, every faithfulness check in shared forward batches, every sanity check
    on the randomised copy at once; store each map and its checks (written atomically)."""
    import torch

    from .cams import CamExplainer, faithfulness_batch, randomisation_checks

    missing = [t for t in todo if t.cam is None]
    if missing:
        with CamExplainer(
            model, input_size=tuple(missing[0].x.shape[-2:]), method=method, layer=info.name
        ) as explain:
            for i in range(0, len(missing), MAP_BATCH):
                chunk = missing[i : i + MAP_BATCH]
                maps = explain.batch(
                    torch.stack([t.x for t in chunk]), [t.target_class for t in chunk]
                )
                for t, cam in zip(chunk, maps, strict=True):
                    t.cam = cache.put(
                        cam,
                        sample_id=t.sample_id,
                        method=method,
                        layer=info.name,
                        target_class=t.target_class,
                    )
                    t.checks = None  # checks of a map computed again are stale
    need = [t for t in todo if not _checks_done(t.checks)]
    if not need:
        return
    for t in need:
        t.checks = dict(t.checks or {})
    faith = [t for t in need if "drop_top" not in t.checks]
    for t, f in zip(
        faith,
        faithfulness_batch(model, [(t.x, t.cam, t.target_class) for t in faith], method=method),
        strict=True,
    ):
        t.checks.update(asdict(f))
    sane = [t for t in need if "sanity_rho" not in t.checks]
    checks = randomisation_checks(
        model, [(t.x, t.cam, t.target_class) for t in sane], method=method, layer=layer
    )
    for t, check in zip(sane, checks, strict=True):
        t.checks["sanity_rho"] = check.rank_correlation
        t.checks["sanity_layers"] = len(check.randomised)
    for t in need:
        path = _faith_path(cache, t.sample_id, method, info.name, t.target_class)
        _write_atomic(path, json.dumps(t.checks).encode())


def review_rows(samples) -> np.ndarray:
    """Rows of ``samples`` a review is likely to open, in the order it opens them: suspected
    label errors (lowest label quality first), then the other errors (highest loss first), as
    the Data issues list and the gallery's default sort order them."""
    n = len(samples)
    wrong = ~samples[schema.CORRECT].to_numpy(bool)
    flagged = np.zeros(n, bool)
    if schema.IS_LABEL_ISSUE in samples.columns:
        flagged = samples[schema.IS_LABEL_ISSUE].fillna(False).to_numpy(bool)
    first = np.flatnonzero(flagged)
    if schema.LABEL_ISSUE_SCORE in samples.columns:
        q = samples[schema.LABEL_ISSUE_SCORE].to_numpy(float)[first]
        first = first[np.argsort(q, kind="stable")]
    rest = np.flatnonzero(wrong & ~flagged)
    rest = rest[np.argsort(-samples[schema.LOSS].to_numpy(float)[rest], kind="stable")]
    return np.concatenate([first, rest]).astype(np.int64)


def precompute_order(samples) -> np.ndarray:
    """Rows whose maps are worth computing before anyone asks: the two lists a review starts
    from taken in turns, so that the first images of both are ready: :func:`review_rows`
    (suspected label errors first: the review queue and the Data issues list) and the errors
    by loss (the gallery's default order of the misclassified images, which *Next* on the
    detail page walks). Each row once."""
    first = review_rows(samples)
    wrong = np.flatnonzero(~samples[schema.CORRECT].to_numpy(bool))
    by_loss = wrong[np.argsort(-samples[schema.LOSS].to_numpy(float)[wrong], kind="stable")]
    turns = np.empty(len(first) + len(by_loss), np.int64)
    k = min(len(first), len(by_loss))
    turns[: 2 * k : 2], turns[1 : 2 * k : 2] = first[:k], by_loss[:k]
    turns[2 * k :] = first[k:] if len(first) > k else by_loss[k:]
    return np.asarray(list(dict.fromkeys(turns.tolist())), np.int64)


#: Images decoded and explained together by :func:`precompute_cams` (their maps in one batched
#: pass of up to ``MAP_BATCH`` maps, their checks in shared batches).
IMAGES_PER_STEP = 4


def precompute_cams(
    run_dir,
    samples,
    model,
    prep: Preprocessing,
    rows,
    *,
    method: str | None = None,
    layer: str | None = None,
    budget_s: float | None = None,
    min_images: int = 0,
    progress: Callable[[int, int], None] | None = None,
    limits: dict | None = None,
) -> int:
    """Compute and store what :func:`cam_view` shows (predicted and given class maps, their
    faithfulness and sanity checks, the model's view of the image, the layer list) for
    ``rows``, in order, until ``budget_s`` seconds have passed (but for at least
    ``min_images`` images). Returns how many images were done.

    Generic over the CAM registry (:class:`analysis.explain.cams.CamExplainer`: any method,
    any layer); ``method`` None: the default of the model's architecture family, the one the
    detail page opens with (:func:`method_choices`). Maps already cached are skipped. Images
    go ``IMAGES_PER_STEP`` at a time through batched passes (:func:`_complete`). The budget is
    checked between steps and counts from after the one-time set-up (the layer list, the CAM
    library's import, the randomised copy of the model for the sanity check), which a
    dashboard would pay anyway.
    """
    import time

    from .cams import CamCache, _method_classes, layer_for, prepare_randomisation
    from .layers import _check_input_size

    size = _check_input_size(prep.input_size)
    if stored_layers(run_dir, prep) is None:
        save_layers(run_dir, model, prep)
    if method is None:
        method = method_choices(model, prep)[1]
    info = layer_for(model, prep.input_size, method, layer)
    _method_classes()
    prepare_randomisation(model, prep.input_size, method=method, layer=layer)
    t0 = time.perf_counter()
    cache = CamCache(run_dir)
    done = 0
    rows = [int(r) for r in rows]
    for i in range(0, len(rows), IMAGES_PER_STEP):
        over = budget_s is not None and time.perf_counter() - t0 > budget_s
        if over and done >= min_images:
            break
        todo = []
        for row in rows[i : i + IMAGES_PER_STEP]:
            s = samples.iloc[row]
            sid = s[schema.SAMPLE_ID]
            image, x = model_input(s[schema.PATH], prep, limits=limits)
            _store_input(run_dir, sid, image)
            x = _on_model_device(x, model)
            for c in dict.fromkeys((int(s[schema.PRED]), int(s[schema.LABEL]))):
                key = {"sample_id": sid, "method": method, "layer": info.name, "target_class": c}
                cam = cache.get(**key)
                f = _read_json(_faith_path(cache, sid, method, info.name, c))
                if cam is not None and cam.shape != size:
                    cam = None
                todo.append(_Pending(sid, c, cam, f, x))
        _complete(model, todo, method=method, layer=layer, info=info, cache=cache)
        done += len(rows[i : i + IMAGES_PER_STEP])
        if progress:
            progress(done, len(rows))
    return done


def perturbed_pair(
    path: str, prep: Preprocessing, perturbation: str, severity: int, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(original, perturbed) uint8 [S, S, 3] of one image, exactly as the robustness pass saw
    them (perturbation seeds depend on the image's pixels, not on its batch)."""
    from ..stats.robustness import apply_perturbation

    image, _ = model_input(path, prep)
    import torch

    x = torch.from_numpy(image).permute(2, 0, 1)[None].float().div(255.0)
    y = apply_perturbation(x, perturbation, severity, seed=seed).clamp(0, 1)
    out = (y[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)
    return image, out
