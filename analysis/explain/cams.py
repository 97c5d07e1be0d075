"""Class activation maps: where in an image a classifier's evidence for one class lies.

compute -> result -> figure, kept apart:

- :data:`CAM_METHODS` is the registry of methods (pytorch-grad-cam classes, looked up lazily);
- :class:`CamExplainer` is a context manager that hooks one layer of a model, computes maps for
  any number of images and removes every hook on exit, also when something raises;
  :func:`compute_cam` is the one-image shortcut. Maps are float32 ``[H, W]`` in ``[0, 1]`` at the
  input tensor's resolution;
- :class:`CamCache` keeps maps as float16 ``.npy`` files under ``<run_dir>/cams/``;
- :func:`faithfulness` says whether a map means anything: how much the class probability drops
  when the most-attended pixels are removed, against removing a region of the same shape
  elsewhere;
- :func:`randomisation_check` is the model-randomisation sanity check of Adebayo et al.
  ("Sanity Checks for Saliency Maps", NeurIPS 2018): the same method's map on a copy of the model
  whose layers above the map's layer are re-initialised; a map that barely changes (high rank
  correlation) does not explain what those layers learned;
- ``"occlusion"`` needs no gradients and no layer (Zeiler & Fergus 2014): the drop of the class
  probability when each region is covered, so it works for ONNX and TorchScript models too;
- :func:`overlay` draws a map on an RGB image; :func:`mask_mass_outside` measures how much of a
  map falls outside a region (is the model looking at the background?).

Layers are chosen by :mod:`analysis.explain.layers` (``default_layer``: the deepest map still at least
7 x 7 at the run's input size).

The model and the input tensor are never changed: train/eval flags, ``requires_grad`` and the
``.grad`` of every parameter are restored, and the input is copied. While an explainer is open,
the model is in eval mode with parameters not requiring gradients, and the forward pass restarts
the autograd graph at the CAM layer, so the backward pass computes only the gradients the map
needs (from the logits down to that layer; no weight or input gradients). A per-model lock keeps
other hook-installing passes (another dashboard session) out while the hooks are on.

Importing this module does not import torch or pytorch-grad-cam.
"""

from __future__ import annotations

import functools
import numbers
import os
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from analysis.explain.layers import (
    LayerInfo,
    _check_input_size,
    model_lock,
    reshape_transform,
    resolve_layer,
)
from analysis.schema import CAMS_DIR

__all__ = [
    "CAM_METHODS",
    "COLORMAPS",
    "FILLS",
    "INPUT_LAYER",
    "SANITY_MAX_RHO",
    "CamCache",
    "CamExplainer",
    "CamMethod",
    "Faithfulness",
    "SanityCheck",
    "compute_cam",
    "faithfulness",
    "mask_mass_outside",
    "methods_for",
    "occlusion_map",
    "overlay",
    "randomisation_check",
    "randomisation_checks",
    "faithfulness_batch",
]

#: The pseudo-layer of methods that read no layer (occlusion): the input image itself.
INPUT_LAYER = "input"


# ----------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class CamMethod:
    """One CAM method of the registry.

    Attributes
    ----------
    name : str
        Registry key (also used in cache file names).
    class_name : str
        The ``pytorch_grad_cam`` class that computes it.
    uses_gradients : bool
        Whether it needs a backward pass.
    class_specific : bool
        False when the map does not depend on the target class (EigenCAM).
    description : str
        One line for the user.
    needs_layer : bool
        False for methods that only perturb the input (occlusion): they need no hooks, so
        they also run on ONNX and TorchScript models.
    """

    name: str
    class_name: str
    uses_gradients: bool
    class_specific: bool
    description: str
    needs_layer: bool = True


CAM_METHODS: dict[str, CamMethod] = {
    m.name: m
    for m in (
        CamMethod(
            "gradcam",
            "GradCAM",
            True,
            True,
            "Channels weighted by their mean gradient (Selvaraju et al. 2017).",
        ),
        CamMethod(
            "gradcam++",
            "GradCAMPlusPlus",
            True,
            True,
            "Grad-CAM with higher-order gradient weights; better with several instances.",
        ),
        CamMethod(
            "xgradcam",
            "XGradCAM",
            True,
            True,
            "Channels weighted by activation-normalised gradients (Fu et al. 2020).",
        ),
        CamMethod(
            "hirescam",
            "HiResCAM",
            True,
            True,
            "Element-wise gradient x activation, summed over channels; faithful to the score.",
        ),
        CamMethod(
            "layercam",
            "LayerCAM",
            True,
            True,
            "Positive gradients x activations per location; finer detail at shallow layers.",
        ),
        CamMethod(
            "eigencam",
            "EigenCAM",
            False,
            False,
            "First principal component of the activations; the same map for every class.",
        ),
        CamMethod(
            "scorecam",
            "ScoreCAM",
            False,
            True,
            "Channels weighted by the class score of the input masked by each channel; "
            "gradient-free, one forward per channel (slow).",
        ),
        CamMethod(
            "occlusion",
            "",
            False,
            True,
            "Forward-only: how much the class probability drops when each region is covered "
            "by the image's mean colour (Zeiler & Fergus 2014); any model, ONNX included.",
            needs_layer=False,
        ),
    )
}


#: The method shown first, per architecture family (as :mod:`analysis.explain.layers` names it:
#: torchvision's families, "vit-tokens" for timm / Hugging Face ViTs, "generic" for the rest),
#: as bench/bench_cams.py chose them (bench/results/cams.json, ``per_family.defaults``): on a
#: fresh synthetic world no test uses, the layer method that passes the randomisation check on
#: every benchmarked model of the family and costs at most 3x Grad-CAM's time, with the largest
#: faithfulness gap. A family the benchmark did not measure gets Grad-CAM.
DEFAULT_METHODS: dict[str, str] = {
    "mobilenet_v3": "gradcam++",  # the sample's mobilenet_v3_small: gap 0.31 (Grad-CAM 0.21)
    "vit-tokens": "hirescam",  # the sample's XCiT: gap 0.26 (Grad-CAM 0.10)
}


def default_method(family: str, *, gradients: bool = True) -> str:
    """The method shown first for a model of this family (occlusion without gradients)."""
    if not gradients:
        return "occlusion"
    return DEFAULT_METHODS.get(family, "gradcam")


def methods_for(gradients: bool) -> list[str]:
    """The methods a model can use: all of them, or only the layer-free ones when the model
    takes no hooks and gives no gradients (ONNX, TorchScript)."""
    return [n for n, m in CAM_METHODS.items() if gradients or not m.needs_layer]


def _check_name(name: Any, registry: dict, what: str) -> None:
    if not isinstance(name, str) or name not in registry:
        raise ValueError(f"unknown {what} {name!r}; valid: {list(registry)}")


@functools.cache
def _method_classes() -> dict[str, type]:
    """name -> pytorch_grad_cam class; EigenCAM with sign correction, ScoreCAM quiet and lean."""
    import pytorch_grad_cam as pgc
    import torch

    class _EigenCAM(pgc.EigenCAM):
        # The library projects on the first principal component with a full SVD, whose U is
        # (h*w) x (h*w) (1.2 GB at a 112 x 112 map), and keeps the arbitrary sign of the
        # component before clipping negatives, which can show the complement of the salient
        # region. Here: a thin SVD, and the sign flipped so that the larger-magnitude end is
        # positive (as Seg-Eigen-CAM, Eq. 13).
        def get_cam_image(self, input_tensor, target_layer, targets, activations, grads, eigen):
            return _first_component(activations)

    class _ScoreCAM(pgc.ScoreCAM):
        # The library's version draws a progress bar and builds all C masked copies of the input
        # at once (C x 3 x H x W); this one builds them batch by batch.
        batch_size = 32

        def get_cam_weights(self, input_tensor, target_layer, targets, activations, grads):
            with torch.no_grad():
                act = torch.from_numpy(activations).to(self.device, dtype=input_tensor.dtype)
                up = torch.nn.functional.interpolate(
                    act, size=input_tensor.shape[-2:], mode="bilinear", align_corners=True
                )
                flat = up.flatten(2)
                lo = flat.min(dim=-1).values[..., None, None]
                hi = flat.max(dim=-1).values[..., None, None]
                up = (up - lo) / (hi - lo + 1e-8)
                weights = []
                for b, target in enumerate(targets):
                    scores = []
                    for i in range(0, up.shape[1], self.batch_size):
                        masked = input_tensor[b : b + 1] * up[b, i : i + self.batch_size, None]
                        out = self.model(masked)
                        scores.append(torch.stack([target(o) for o in out]).float().cpu())
                        # the layer hook saves every masked pass's activations; none is needed
                        self.activations_and_grads.activations.clear()
                    weights.append(torch.softmax(torch.cat(scores), dim=0))
                return torch.stack(weights).numpy()

    classes = {name: getattr(pgc, m.class_name) for name, m in CAM_METHODS.items() if m.needs_layer}
    classes["eigencam"] = _EigenCAM
    classes["scorecam"] = _ScoreCAM
    return classes


def _first_component(activations: np.ndarray) -> np.ndarray:
    """[B, C, h, w] -> float32 [B, h, w]: projection on the first principal component of the
    C-dimensional activation vectors, signed so that its larger-magnitude end is positive."""
    out = []
    for a in np.nan_to_num(np.asarray(activations, dtype=np.float64)):
        flat = a.reshape(a.shape[0], -1).T  # [h*w, C]
        flat = flat - flat.mean(axis=0)
        _, _, vt = np.linalg.svd(flat, full_matrices=False)
        proj = (flat @ vt[0]).reshape(a.shape[1:])
        out.append(-proj if abs(proj.min()) > abs(proj.max()) else proj)
    return np.asarray(out, dtype=np.float32)


class _ClassTarget:
    """The target class's logit; checks the class index against the model's outputs."""

    def __init__(self, category: int) -> None:
        self.category = category

    def __call__(self, model_output):
        n = model_output.shape[-1]
        if not 0 <= self.category < n:
            raise ValueError(
                f"target_class={self.category} is out of range for a model with {n} outputs; "
                f"expected 0..{n - 1}"
            )
        return model_output[..., self.category]


# ----------------------------------------------------------------------------- validation


def _check_model(model: Any) -> None:
    from torch import nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_image(image_tensor: Any) -> None:
    import torch

    if not isinstance(image_tensor, torch.Tensor):
        raise TypeError(
            f"image_tensor must be a torch.Tensor [3, H, W], got {type(image_tensor).__name__}"
        )
    if image_tensor.ndim != 3 or not image_tensor.is_floating_point():
        raise ValueError(
            "image_tensor must be a normalised float tensor [3, H, W], got "
            f"shape {tuple(image_tensor.shape)} dtype {image_tensor.dtype}"
        )


def _check_class(target_class: Any) -> int:
    if not isinstance(target_class, numbers.Integral) or isinstance(target_class, bool):
        raise TypeError(f"target_class must be an int, got {type(target_class).__name__}")
    if target_class < 0:
        raise ValueError(f"target_class must be >= 0, got {target_class}")
    return int(target_class)


def _check_batch_size(batch_size: Any) -> int:
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool):
        raise TypeError(f"batch_size must be an int, got {type(batch_size).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return int(batch_size)


# ----------------------------------------------------------------------------- model state


class _ModelState:
    """Snapshot of what a CAM pass touches on a model, restored by :meth:`restore`."""

    def __init__(self, model) -> None:
        self.training = [(m, m.training) for m in model.modules()]
        self.params = [(p, p.requires_grad, p.grad) for p in model.parameters()]

    def restore(self) -> None:
        for module, flag in self.training:
            module.training = flag
        for p, flag, grad in self.params:
            p.requires_grad_(flag)
            p.grad = grad


def _gradient_root(module, args, output):
    """Forward hook on the CAM layer: continue the forward pass from a copy of its output that
    starts a new graph. The backward pass then stops at this layer: nothing below it, the input
    or any parameter gets a gradient, and the model's parameters can stay frozen. A copy, not a
    detached leaf, so that in-place operations after the layer (DenseNet's final ReLU) work."""
    return output.detach().requires_grad_(True).clone()


def _device_dtype(model):
    import torch

    for p in model.parameters():
        return p.device, p.dtype
    return torch.device("cpu"), torch.float32


def layer_for(model, input_size, method: str, layer: str | None) -> LayerInfo:
    """The layer ``method`` reads: a candidate (:func:`resolve_layer`), or the input image for
    layer-free methods (occlusion), whatever ``layer`` says."""
    _check_name(method, CAM_METHODS, "CAM method")
    size = _check_input_size(input_size)
    if not CAM_METHODS[method].needs_layer:
        return LayerInfo(INPUT_LAYER, size, 3, "nchw")
    return resolve_layer(model, size, layer)


# ----------------------------------------------------------------------------- occlusion


class _Occlusion:
    """Forward-only map: cover a square window (the image's per-channel mean, as the
    faithfulness check fills) at every position of a grid and record how much the target
    class's probability drops; a pixel's value is the mean drop of the windows covering it,
    negatives (covering it *helps* the class) clipped, scaled so the largest drop is 1.

    The window is a sixth of the shorter side and moves by half a window: about 11 x 11
    positions, one batched forward pass per ``batch_size`` of them, whatever the input size."""

    def __init__(self, model, batch_size: int = 32) -> None:
        self.model = model
        self.batch_size = batch_size

    def __call__(self, x, target_class: int) -> np.ndarray:
        import torch

        h, w = x.shape[-2:]
        win = max(1, -(-min(h, w) // 6))
        step = max(1, win // 2)
        ys = _positions(h, win, step)
        xs = _positions(w, win, step)
        boxes = [(y, x0) for y in ys for x0 in xs]
        filler = _fill_mean(x)
        with torch.no_grad():
            p0 = float(_probs(self.model, x[None], target_class)[0])
            drops = []
            for i in range(0, len(boxes), self.batch_size):
                chunk = boxes[i : i + self.batch_size]
                batch = x[None].repeat(len(chunk), 1, 1, 1)
                for j, (y, x0) in enumerate(chunk):
                    batch[j, :, y : y + win, x0 : x0 + win] = filler[:, y : y + win, x0 : x0 + win]
                drops.append(p0 - _probs(self.model, batch, target_class))
        drop = np.concatenate(drops)
        heat = np.zeros((h, w), np.float64)
        count = np.zeros((h, w), np.float64)
        for d, (y, x0) in zip(drop, boxes, strict=True):
            heat[y : y + win, x0 : x0 + win] += d
            count[y : y + win, x0 : x0 + win] += 1
        heat = np.clip(heat / np.maximum(count, 1), 0.0, None)
        top = heat.max()
        return (heat / top if top > 0 else heat).astype(np.float32)


def _positions(side: int, win: int, step: int) -> list[int]:
    """Window offsets covering 0..side-1: every ``step``, the last one flush with the edge."""
    pos = list(range(0, max(side - win, 0) + 1, step))
    if pos[-1] != max(side - win, 0):
        pos.append(side - win)
    return pos


def occlusion_map(
    model: Any, image_tensor: Any, *, target_class: int, batch_size: int = 32
) -> np.ndarray:
    """The occlusion map of one image for one class (see the ``"occlusion"`` method).

    Parameters
    ----------
    model : torch.nn.Module
        Any classifier returning logits, an ONNX-backed module included. Not modified.
    image_tensor : torch.Tensor
        Normalised image ``[3, H, W]``. Not modified.
    target_class : int
        Class index ``0..C-1``.

    Returns
    -------
    np.ndarray
        float32 ``[H, W]`` in ``[0, 1]``; zeros when covering no region lowers the probability.
    """
    return compute_cam(
        model, image_tensor, target_class=target_class, method="occlusion", batch_size=batch_size
    )


# ----------------------------------------------------------------------------- sanity check

#: A method passes the model-randomisation check when the Spearman rank correlation between its
#: map and the randomised model's map is below this (chosen in bench/bench_cams.py, which
#: reports the correlations per family and method).
SANITY_MAX_RHO = 0.5


@dataclass(frozen=True)
class SanityCheck:
    """Adebayo et al.'s model-randomisation check for one map.

    Attributes
    ----------
    method, layer : str
        The map's method and layer.
    rank_correlation : float
        Spearman correlation in [-1, 1] between the map and the same method's map of the same
        image and class on a copy of the model whose ``randomised`` layers are re-initialised
        (0 when the randomised map is flat); NaN when the map itself is flat or the model
        cannot be randomised (ONNX).
    randomised : tuple of str
        The re-initialised modules: every module with weights that runs after the map's layer
        (for occlusion, after the model's default CAM layer).
    """

    method: str
    layer: str
    rank_correlation: float
    randomised: tuple[str, ...]

    @property
    def passes(self) -> bool | None:
        """True when the map changed enough; None when the check could not run."""
        if np.isnan(self.rank_correlation):
            return None
        return bool(self.rank_correlation < SANITY_MAX_RHO)


_RANDOMISED: Any = None  # WeakKeyDictionary model -> {(layer, seed): (copy, names)}


def _layers_after(model, size, layer_name: str) -> list[str]:
    """Names of modules holding their own parameters that start after ``layer_name`` finishes,
    in a dry forward pass of a zero image."""
    import torch

    started: dict[str, int] = {}
    finished: dict[str, int] = {}
    clock = [0]
    handles = []

    def pre(name):
        def hook(_m, _a):
            clock[0] += 1
            started.setdefault(name, clock[0])

        return hook

    def post(name):
        def hook(_m, _a, _o):
            clock[0] += 1
            finished.setdefault(name, clock[0])

        return hook

    device, dtype = _device_dtype(model)
    try:
        for name, m in model.named_modules():
            if name:
                handles.append(m.register_forward_pre_hook(pre(name)))
                handles.append(m.register_forward_hook(post(name)))
        with torch.no_grad():
            model(torch.zeros((1, 3, *size), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    end = finished.get(layer_name, 0)
    return [
        name
        for name, m in model.named_modules()
        if name in started
        and started[name] > end
        and any(True for _ in m.parameters(recurse=False))
    ]


def _randomised_copy(model, size, layer_name: str, seed: int):
    """(copy of ``model`` with the layers after ``layer_name`` re-initialised, their names);
    cached per model object, layer and seed."""
    import copy
    import weakref

    import torch

    global _RANDOMISED
    if _RANDOMISED is None:
        _RANDOMISED = weakref.WeakKeyDictionary()
    per_model = _RANDOMISED.setdefault(model, {})
    key = (layer_name, tuple(size), seed)
    if key not in per_model:
        names = _layers_after(model, size, layer_name)
        twin = copy.deepcopy(model)
        gen = torch.Generator().manual_seed(seed)
        modules = dict(twin.named_modules())
        with torch.no_grad():
            for name in names:
                for p in modules[name].parameters(recurse=False):
                    # each layer's weights redrawn at their own scale (a Gaussian of the trained
                    # weights' standard deviation): what the layer learned is gone, the
                    # activations keep a sensible magnitude
                    scale = float(p.detach().float().std()) if p.numel() > 1 else 0.02
                    noise = torch.randn(p.shape, generator=gen) * max(scale, 1e-3)
                    p.copy_(noise.to(device=p.device, dtype=p.dtype))
        per_model.clear()  # one randomised copy per model at a time (memory)
        per_model[key] = (twin.eval(), tuple(names))
    return per_model[key]


def randomisation_check(
    model: Any,
    image_tensor: Any,
    cam: Any,
    *,
    target_class: int,
    method: str,
    layer: str | None = None,
    seed: int = 0,
) -> SanityCheck:
    """Adebayo et al.'s model-randomisation sanity check for one map.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier the map was computed on; not modified (a copy is randomised).
    image_tensor : torch.Tensor
        Normalised image ``[3, H, W]`` the map belongs to.
    cam : array-like
        The map, float ``[H, W]`` (as :func:`compute_cam` returns it).
    target_class : int
    method : str
        The map's method (a key of :data:`CAM_METHODS`).
    layer : str or None
        The map's layer (None: the default layer).
    seed : int
        Seed of the re-initialisation.

    Returns
    -------
    SanityCheck
        ``rank_correlation`` is NaN when the model has no weights to randomise (ONNX) or a
        map is flat.
    """
    _check_model(model)
    _check_image(image_tensor)
    return randomisation_checks(
        model, [(image_tensor, cam, target_class)], method=method, layer=layer, seed=seed
    )[0]


def prepare_randomisation(
    model: Any, input_size: Any, *, method: str, layer: str | None = None, seed: int = 0
) -> None:
    """Build (and keep) the randomised copy :func:`randomisation_check` uses for this method
    and layer, so that a timed loop of checks does not pay for it (a deep copy and a dry
    pass); nothing for a model without weights to randomise."""
    import torch

    _check_model(model)
    size = _check_input_size(input_size)
    if isinstance(model, torch.jit.ScriptModule) or not any(True for _ in model.parameters()):
        return
    top = layer_for(model, size, method, layer).name
    if top == INPUT_LAYER:
        try:
            top = resolve_layer(model, size, None).name
        except ValueError:
            return
    with model_lock(model):
        _randomised_copy(model, size, top, seed)


def randomisation_checks(
    model: Any,
    items: Any,
    *,
    method: str,
    layer: str | None = None,
    seed: int = 0,
    max_batch: int = 8,
) -> list[SanityCheck]:
    """:func:`randomisation_check` of several maps of one method and layer at once.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier; not modified.
    items : sequence of (image_tensor, cam, target_class)
        Normalised image ``[3, H, W]`` (one size for all), its map and the map's class.
    method, layer, seed
        As :func:`randomisation_check`.
    max_batch : int
        Maps computed per batched pass on the randomised copy.

    Returns
    -------
    list of SanityCheck
        One per item, each as the one-map call gives it (within float rounding): the
        randomised copy's maps come from batched passes (:meth:`CamExplainer.batch`).
    """
    from scipy.stats import spearmanr

    _check_model(model)
    items = list(items)
    if not items:
        return []
    for x, _, c in items:
        _check_image(x)
        _check_class(c)
    size = tuple(items[0][0].shape[-2:])
    if any(tuple(x.shape[-2:]) != size for x, _, _ in items):
        raise ValueError("every image of one randomisation_checks call must have the same size")
    info = layer_for(model, size, method, layer)
    import torch

    def unavailable(names=()):
        return [SanityCheck(method, info.name, float("nan"), tuple(names)) for _ in items]

    if isinstance(model, torch.jit.ScriptModule) or not any(True for _ in model.parameters()):
        # ONNX (no weights here) and TorchScript (no hooks, no deep copy): nothing to randomise
        return unavailable()
    top = info.name
    if top == INPUT_LAYER:  # occlusion: randomise what Grad-CAM's default layer feeds
        try:
            top = resolve_layer(model, size, None).name
        except ValueError:
            return unavailable()
    with model_lock(model):
        twin, names = _randomised_copy(model, size, top, seed)
    if not names:
        return unavailable()
    others = []
    with CamExplainer(twin, input_size=size, method=method, layer=layer) as explain:
        for i in range(0, len(items), _check_batch_size(max_batch)):
            chunk = items[i : i + max_batch]
            xs = torch.stack([x.detach() for x, _, _ in chunk])
            others.extend(explain.batch(xs, [int(c) for _, _, c in chunk]))
    out = []
    for (_, cam, _), other in zip(items, others, strict=True):
        a = np.asarray(cam, dtype=np.float64).ravel()
        b = np.asarray(other, dtype=np.float64).ravel()
        if a.shape != b.shape or a.std() == 0:
            out.append(SanityCheck(method, info.name, float("nan"), names))
            continue
        # a map that goes flat on the randomised model kept none of the original's ranking
        rho = float(spearmanr(a, b).statistic) if b.std() > 0 else 0.0
        out.append(SanityCheck(method, info.name, rho, names))
    return out


# ----------------------------------------------------------------------------- explainer


class CamExplainer:
    """Context manager computing CAMs of one model at one layer.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier, on any device; images are moved to it.
    input_size : int or (int, int)
        Size in pixels of the tensors that will be explained (picks and checks the layer).
    method : str
        A key of :data:`CAM_METHODS`.
    layer : str or None
        A candidate layer name (see :func:`analysis.explain.layers.candidate_layers`; aliases such as
        ``layer4.1`` are accepted); None for :func:`analysis.explain.layers.default_layer`.
    batch_size : int
        Masked images per forward pass (ScoreCAM only).

    Examples
    --------
    >>> with CamExplainer(model, input_size=224, method="gradcam") as explain:  # doctest: +SKIP
    ...     cams = [explain(x, target_class=c) for x, c in pairs]
    """

    def __init__(
        self,
        model: Any,
        *,
        input_size: int | tuple[int, int],
        method: str = "gradcam",
        layer: str | None = None,
        batch_size: int = 32,
    ) -> None:
        _check_model(model)
        _check_name(method, CAM_METHODS, "CAM method")
        self.batch_size = _check_batch_size(batch_size)
        self.model = model
        self.method = method
        self.input_size = _check_input_size(input_size)
        self.layer: LayerInfo = layer_for(model, self.input_size, method, layer)
        self._cam = None
        self._root = None
        self._state: _ModelState | None = None
        self._lock = model_lock(model)

    def __enter__(self) -> CamExplainer:
        self._lock.acquire()
        try:
            self._state = _ModelState(self.model)
            self.model.eval()
            for p in self.model.parameters():
                p.requires_grad_(False)
            if not CAM_METHODS[self.method].needs_layer:
                self._cam = _Occlusion(self.model, self.batch_size)
                return self
            cls = _method_classes()[self.method]
            module = self.model.get_submodule(self.layer.name)
            # registered before the library's hooks, so they see (and hook) the copy
            self._root = module.register_forward_hook(_gradient_root)
            self._cam = cls(self.model, [module], reshape_transform(self.layer))
            self._cam.batch_size = self.batch_size
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._close()  # never swallows the exception (the library's __exit__ does, for some)

    def _close(self) -> None:
        try:
            if self._cam is not None:
                if hasattr(self._cam, "activations_and_grads"):
                    self._cam.activations_and_grads.release()
                self._cam = None
            if self._root is not None:
                self._root.remove()
                self._root = None
        finally:
            try:
                if self._state is not None:
                    self._state.restore()
                    self._state = None
            finally:
                self._lock.release()

    def __call__(self, image_tensor: Any, *, target_class: int) -> np.ndarray:
        """CAM of one image for one class.

        Parameters
        ----------
        image_tensor : torch.Tensor
            Normalised image ``[3, H, W]`` with ``(H, W) == input_size``; not modified.
        target_class : int
            Class index ``0..C-1`` whose evidence is mapped (ignored by class-agnostic methods
            such as EigenCAM, but still checked).

        Returns
        -------
        np.ndarray
            float32 ``[H, W]`` in ``[0, 1]``; all zeros when no location supports the class.
        """
        if self._cam is None:
            raise RuntimeError("use CamExplainer inside a `with` block")
        _check_image(image_tensor)
        if tuple(image_tensor.shape[-2:]) != self.input_size:
            raise ValueError(
                f"image_tensor is {tuple(image_tensor.shape[-2:])} but this explainer was set "
                f"up for input size {self.input_size}"
            )
        return self._explain(image_tensor, _check_class(target_class))

    def batch(self, images: Any, target_classes: Any) -> np.ndarray:
        """CAMs of several images, or of one image for several classes, in one pass.

        Parameters
        ----------
        images : torch.Tensor
            Normalised images ``[B, 3, H, W]`` with ``(H, W) == input_size``; not modified.
        target_classes : sequence of int
            ``B`` class indices, one per image.

        Returns
        -------
        np.ndarray
            float32 ``[B, H, W]`` in ``[0, 1]``: each map as :meth:`__call__` gives it for its
            image and class (within float rounding), from one batched forward and backward
            pass instead of ``B`` (on a CPU a batch of 8 costs about a third of 8 single
            passes per image). Occlusion, which already batches its covered copies, runs
            image by image.
        """
        import torch

        if self._cam is None:
            raise RuntimeError("use CamExplainer inside a `with` block")
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise ValueError(
                "images must be a float tensor [B, 3, H, W], got "
                f"{getattr(images, 'shape', type(images).__name__)}"
            )
        classes = [_check_class(c) for c in target_classes]
        if len(classes) != images.shape[0]:
            raise ValueError(
                f"{len(classes)} target classes for {images.shape[0]} images; give one per image"
            )
        for x in images:
            _check_image(x)
        if tuple(images.shape[-2:]) != self.input_size:
            raise ValueError(
                f"images are {tuple(images.shape[-2:])} but this explainer was set up for input"
                f" size {self.input_size}"
            )
        if not classes:
            return np.zeros((0, *self.input_size), np.float32)
        if isinstance(self._cam, _Occlusion):
            return np.stack([self._explain(x, c) for x, c in zip(images, classes, strict=True)])
        device, dtype = _device_dtype(self.model)
        with torch.inference_mode(False), torch.enable_grad():
            x = images.detach().to(device=device, dtype=dtype).clone()
            cam = self._cam(input_tensor=x, targets=[_ClassTarget(c) for c in classes])
        out = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0)
        return np.clip(out, 0.0, 1.0)

    def _explain(self, image_tensor, target_class: int) -> np.ndarray:
        import torch

        device, dtype = _device_dtype(self.model)
        if isinstance(self._cam, _Occlusion):
            x = image_tensor.detach().to(device=device, dtype=dtype).clone()
            return self._cam(x, target_class)
        with torch.inference_mode(False), torch.enable_grad():
            x = image_tensor.detach().to(device=device, dtype=dtype).clone().unsqueeze(0)
            cam = self._cam(input_tensor=x, targets=[_ClassTarget(target_class)])
        out = np.nan_to_num(np.asarray(cam[0], dtype=np.float32), nan=0.0)
        return np.clip(out, 0.0, 1.0)


def compute_cam(
    model: Any,
    image_tensor: Any,
    *,
    target_class: int,
    method: str = "gradcam",
    layer: str | None = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Class activation map of one image for one class.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier (CPU or CUDA). Not modified.
    image_tensor : torch.Tensor
        Normalised image ``[3, H, W]`` (as the model is fed). Not modified. May come from an
        ``inference_mode`` / ``no_grad`` block: gradients are switched on inside.
    target_class : int
        Class index ``0..C-1``.
    method : str
        A key of :data:`CAM_METHODS` (default ``"gradcam"``).
    layer : str or None
        Candidate layer name; None for the default layer at this input size.
    batch_size : int
        Masked images per forward pass (ScoreCAM only).

    Returns
    -------
    np.ndarray
        float32 ``[H, W]`` in ``[0, 1]``.

    Raises
    ------
    TypeError
        For a model that is not an ``nn.Module``, an image that is not a tensor, a non-int class.
    ValueError
        For an unknown method or layer (the message lists the valid ones), a bad image shape, a
        class index outside the model's outputs.
    """
    _check_model(model)
    _check_image(image_tensor)
    _check_class(target_class)
    with CamExplainer(
        model,
        input_size=tuple(image_tensor.shape[-2:]),
        method=method,
        layer=layer,
        batch_size=batch_size,
    ) as explain:
        return explain(image_tensor, target_class=target_class)


# ----------------------------------------------------------------------------- cache

_KEY_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class CamCache:
    """CAMs of one run, stored as float16 ``.npy`` under ``<run_dir>/cams/``.

    File name: ``<sample_id>__<method>__<layer>__<class>.npy``. The layer is always the resolved
    name (a default-layer request is stored under the name of the default layer). Files are
    written atomically, so concurrent readers never see half a map.

    Parameters
    ----------
    run_dir : str or os.PathLike
        An existing run directory.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        if not isinstance(run_dir, (str, os.PathLike)):
            raise TypeError(f"run_dir must be a path, got {type(run_dir).__name__}")
        run_dir = Path(run_dir)
        if not run_dir.is_dir():
            raise ValueError(f"run_dir {str(run_dir)!r} is not an existing directory")
        self.run_dir = run_dir
        self.directory = run_dir / CAMS_DIR

    def path(self, *, sample_id: str, method: str, layer: str, target_class: int) -> Path:
        """Where the map for this key lives (whether or not it exists)."""
        _check_name(method, CAM_METHODS, "CAM method")
        for what, part in (("sample_id", sample_id), ("layer", layer)):
            if not isinstance(part, str) or not _KEY_PART.match(part):
                raise ValueError(
                    f"{what} {part!r} cannot be part of a file name; expected letters, digits "
                    "and . _ + - (not starting with a symbol)"
                )
        target_class = _check_class(target_class)
        return self.directory / f"{sample_id}__{method}__{layer}__{target_class}.npy"

    def get(self, *, sample_id: str, method: str, layer: str, target_class: int):
        """The stored map as float32 ``[H, W]``, or None if absent or unreadable."""
        path = self.path(sample_id=sample_id, method=method, layer=layer, target_class=target_class)
        if not path.is_file():
            return None
        try:
            return np.load(path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as e:
            warnings.warn(f"ignoring unreadable CAM cache file {path}: {e}", stacklevel=2)
            return None

    def put(
        self, cam: Any, *, sample_id: str, method: str, layer: str, target_class: int
    ) -> np.ndarray:
        """Store ``cam`` (2-D, values in [0, 1]) and return it as stored (float16 -> float32)."""
        path = self.path(sample_id=sample_id, method=method, layer=layer, target_class=target_class)
        cam = np.asarray(cam)
        if cam.ndim != 2 or not np.issubdtype(cam.dtype, np.floating):
            raise ValueError(f"cam must be a float [H, W] array, got {cam.dtype} {cam.shape}")
        stored = np.clip(cam, 0.0, 1.0).astype(np.float16)
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, stored, allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return stored.astype(np.float32)

    def get_or_compute(
        self,
        model: Any,
        image_tensor: Any,
        *,
        sample_id: str,
        target_class: int,
        method: str = "gradcam",
        layer: str | None = None,
        batch_size: int = 32,
    ) -> np.ndarray:
        """The stored map if there is one, else :func:`compute_cam` stored and returned.

        Both paths return the float16-rounded map as float32 ``[H, W]``, so the first and the
        second call agree exactly. The model is not run on a hit (the default layer of a model
        and input size is remembered after its first lookup).
        """
        _check_model(model)
        _check_image(image_tensor)
        target_class = _check_class(target_class)
        _check_name(method, CAM_METHODS, "CAM method")
        info = layer_for(model, tuple(image_tensor.shape[-2:]), method, layer)
        key = {"sample_id": sample_id, "method": method, "layer": info.name}
        hit = self.get(**key, target_class=target_class)
        if hit is not None and hit.shape == tuple(image_tensor.shape[-2:]):
            return hit
        cam = compute_cam(
            model,
            image_tensor,
            target_class=target_class,
            method=method,
            layer=info.name,
            batch_size=batch_size,
        )
        return self.put(cam, **key, target_class=target_class)


# ----------------------------------------------------------------------------- faithfulness


@dataclass(frozen=True)
class Faithfulness:
    """Does removing what the map points at hurt the prediction more than removing anything else?

    Attributes
    ----------
    method : str
        The CAM method the map came from.
    drop_top : float
        ``p(class | image) - p(class | top region removed)``, probability units in [-1, 1];
        NaN when the map is flat (no top region exists).
    drop_random : float
        The same drop, averaged over ``n_random`` placements of the same region shape
        elsewhere in the image; NaN when the map is flat.
    prob : float
        ``p(class | image)``.
    top_fraction : float
        Share of pixels asked to be removed.
    fill : str
        What removed pixels were replaced with (a key of :data:`FILLS`).
    removed_fraction : float
        Share of pixels actually removed: ``top_fraction``, or less when fewer pixels than that
        are above the map's minimum (a Grad-CAM that is zero on most of the image).
    """

    method: str
    drop_top: float
    drop_random: float
    prob: float
    top_fraction: float
    fill: str
    removed_fraction: float

    @property
    def gap(self) -> float:
        """``drop_top - drop_random``: > 0 when the map points at evidence the model uses."""
        return self.drop_top - self.drop_random


def _fill_mean(x):
    """Per-channel mean of the image, everywhere."""
    return x.mean(dim=(-2, -1), keepdim=True).expand_as(x)


def _fill_blur(x):
    """The image under a Gaussian blur of sigma = min(H, W) / 20 pixels."""
    from torchvision.transforms.v2 import functional as F

    sigma = max(min(x.shape[-2:]) / 20.0, 0.5)
    k = 2 * int(np.ceil(3 * sigma)) + 1
    k = min(k, 2 * ((min(x.shape[-2:]) - 1) // 2) + 1)  # reflect padding needs k <= side
    return F.gaussian_blur(x, kernel_size=[k, k], sigma=[sigma, sigma])


FILLS = {"mean": _fill_mean, "blur": _fill_blur}


def faithfulness(
    model: Any,
    image_tensor: Any,
    cam: Any,
    *,
    target_class: int,
    method: str,
    top_fraction: float = 0.2,
    fill: str = "mean",
    n_random: int = 8,
    seed: int = 0,
) -> Faithfulness:
    """How much the target class's probability drops when the map's top pixels are removed.

    The ``top_fraction`` of pixels with the highest CAM are replaced (``fill="mean"``: the
    image's per-channel mean; ``"blur"``: a blurred copy of the image, which removes detail but
    keeps colour and layout, so it drops less). Pixels at the map's minimum are never picked: if
    fewer than ``top_fraction`` are above it, only those are removed (``removed_fraction``).
    As a baseline, the same region shape is moved to ``n_random`` random places (circular
    shifts) and removed there. A map that means something gives ``drop_top`` well above
    ``drop_random``. One batched forward pass of ``2 + n_random`` images, in eval mode, without
    gradients.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier; not modified.
    image_tensor : torch.Tensor
        Normalised image ``[3, H, W]``; not modified.
    cam : array-like
        The map, 2-D with non-negative values; resized bilinearly to ``(H, W)`` if it differs.
    target_class : int
        Class index ``0..C-1``.
    method : str
        The CAM method that produced ``cam`` (a key of :data:`CAM_METHODS`), kept as a label.
    top_fraction : float
        Share of pixels removed, in (0, 1).
    fill : str
        A key of :data:`FILLS`.
    n_random : int
        Random placements averaged for ``drop_random`` (>= 1).
    seed : int
        Seed of the placements.

    Returns
    -------
    Faithfulness
    """
    _check_model(model)
    _check_image(image_tensor)
    return faithfulness_batch(
        model,
        [(image_tensor, cam, target_class)],
        method=method,
        top_fraction=top_fraction,
        fill=fill,
        n_random=n_random,
        seed=seed,
    )[0]


def faithfulness_batch(
    model: Any,
    items: Any,
    *,
    method: str,
    top_fraction: float = 0.2,
    fill: str = "mean",
    n_random: int = 8,
    seed: int = 0,
    max_batch: int = 32,
) -> list[Faithfulness]:
    """:func:`faithfulness` of several (image, map, class) items in shared forward passes.

    Every item's ``1 + 1 + n_random`` images (the image, its top region removed, the same
    region removed elsewhere) go through the model in batches of ``max_batch``; items that
    share an image tensor (the same object: two classes of one image) share its unmasked
    forward. Each result equals the one-item call's within float rounding.

    Parameters
    ----------
    items : sequence of (image_tensor, cam, target_class)
        As :func:`faithfulness`'s arguments.
    method, top_fraction, fill, n_random, seed
        As :func:`faithfulness`, the same for every item.
    max_batch : int
        Images per forward pass.

    Returns
    -------
    list of Faithfulness
        One per item, in order.
    """
    import torch

    _check_model(model)
    _check_name(method, CAM_METHODS, "CAM method")
    _check_name(fill, FILLS, "fill")
    if not isinstance(top_fraction, numbers.Real) or not 0 < top_fraction < 1:
        raise ValueError(f"top_fraction must be in (0, 1), got {top_fraction!r}")
    if not isinstance(n_random, numbers.Integral) or isinstance(n_random, bool) or n_random < 1:
        raise ValueError(f"n_random must be an int >= 1, got {n_random!r}")
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    max_batch = _check_batch_size(max_batch)
    checked = []
    for image_tensor, cam, target_class in items:
        _check_image(image_tensor)
        target_class = _check_class(target_class)
        cam = np.asarray(cam, dtype=np.float64)
        if cam.ndim != 2 or cam.size == 0:
            raise ValueError(f"cam must be a non-empty 2-D array, got shape {cam.shape}")
        if not np.isfinite(cam).all() or cam.min() < 0:
            raise ValueError("cam must be finite and non-negative")
        size = tuple(image_tensor.shape[-2:])
        if cam.shape != size:
            cam = _resize(cam, size)
        checked.append((image_tensor, cam, target_class))
    with torch.inference_mode(False):
        return _faithfulness_core(
            model,
            checked,
            method=method,
            top_fraction=float(top_fraction),
            fill=fill,
            n_random=int(n_random),
            seed=int(seed),
            max_batch=max_batch,
        )


def _faithfulness_masks(cam, top_fraction: float, n_random: int, seed: int):
    """(top-region mask, the masks of its ``n_random`` shifted copies), bool ``[H, W]`` each;
    None for a map with nothing to remove (flat, or a zero-size region)."""
    h, w = cam.shape
    k = int(round(top_fraction * h * w))
    flat = cam.ravel()
    if k == 0 or flat.max() == flat.min():
        return None
    top = np.zeros(h * w, dtype=bool)
    top[np.argpartition(-flat, k - 1)[:k]] = True
    top &= flat > flat.min()  # never pick among the map's floor (ties, arbitrary)
    top = top.reshape(h, w)
    rng = np.random.default_rng(seed)
    shifts = zip(rng.integers(0, h, n_random), rng.integers(0, w, n_random), strict=True)
    return top, [np.roll(top, (int(dy), int(dx)), axis=(0, 1)) for dy, dx in shifts]


def _faithfulness_core(
    model, items, *, method, top_fraction, fill, n_random, seed, max_batch
) -> list[Faithfulness]:
    import torch

    nan = float("nan")
    device, dtype = _device_dtype(model)
    rows: list = []  # (image index, mask or None): built batch by batch
    images: list = []  # the distinct images on the model's device, with their filler
    seen: dict[int, tuple[int, int]] = {}  # id(image tensor) -> (its index, its row)
    plans = []  # per item: (row of the image, rows of its masked copies or None, top mask)
    for image_tensor, cam, target_class in items:
        key = id(image_tensor)
        if key not in seen:
            x = image_tensor.detach().to(device=device, dtype=dtype).clone()
            seen[key] = (len(images), len(rows))
            rows.append((len(images), None))
            images.append((x, FILLS[fill](x)))
        index, base = seen[key]
        masks = _faithfulness_masks(cam, top_fraction, n_random, seed)
        if masks is None:
            plans.append((base, None, None, target_class))
            continue
        top, shifted = masks
        first = len(rows)
        rows.extend((index, m) for m in [top, *shifted])
        plans.append((base, list(range(first, len(rows))), top, target_class))

    def row_tensor(i, mask):
        x, filler = images[i]
        if mask is None:
            return x
        m = torch.from_numpy(mask).to(device=device, dtype=dtype)[None]
        return x * (1 - m) + filler * m

    with model_lock(model):
        state = _ModelState(model)
        try:
            model.eval()
            with torch.no_grad():
                logits = []
                for i in range(0, len(rows), max_batch):
                    batch = torch.stack([row_tensor(j, m) for j, m in rows[i : i + max_batch]])
                    logits.append(model(batch).float())
                logits = torch.cat(logits)
        finally:
            state.restore()
    n = logits.shape[-1]
    probs = torch.softmax(logits, dim=-1).cpu().numpy()
    out = []
    for base, masked, top, target_class in plans:
        if target_class >= n:
            raise ValueError(
                f"target_class={target_class} is out of range for a model with {n} outputs; "
                f"expected 0..{n - 1}"
            )
        prob = float(probs[base, target_class])
        if masked is None:
            out.append(Faithfulness(method, nan, nan, prob, top_fraction, fill, 0.0))
            continue
        drops = prob - probs[masked, target_class]
        out.append(
            Faithfulness(
                method=method,
                drop_top=float(drops[0]),
                drop_random=float(drops[1:].mean()),
                prob=prob,
                top_fraction=top_fraction,
                fill=fill,
                removed_fraction=float(top.mean()),
            )
        )
    return out


def _probs(model, batch, target_class: int) -> np.ndarray:
    import torch

    logits = model(batch)
    n = logits.shape[-1]
    if target_class >= n:
        raise ValueError(
            f"target_class={target_class} is out of range for a model with {n} outputs; "
            f"expected 0..{n - 1}"
        )
    return torch.softmax(logits.float(), dim=-1)[:, target_class].cpu().numpy()


# ----------------------------------------------------------------------------- display

COLORMAPS = ("inferno", "magma", "viridis", "plasma", "cividis", "turbo")


@functools.cache
def _lut(colormap: str) -> np.ndarray:
    """uint8 [256, 3] lookup table interpolated from Plotly's sequential scale."""
    import plotly.colors as pc

    scale = getattr(pc.sequential, colormap.capitalize())
    rgb = np.array([pc.hex_to_rgb(c) if c.startswith("#") else _parse_rgb(c) for c in scale], float)
    at = np.linspace(0.0, 1.0, len(rgb))
    grid = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(grid, at, rgb[:, i]) for i in range(3)], axis=1)
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


def _parse_rgb(c: str) -> tuple[float, float, float]:
    r, g, b = (float(v) for v in c[c.index("(") + 1 : c.index(")")].split(",")[:3])
    return r, g, b


def _resize(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a 2-D float map to (height, width)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(cam, dtype=np.float32))
    return np.asarray(img.resize((size[1], size[0]), Image.Resampling.BILINEAR), dtype=np.float64)


def overlay(
    image_rgb: Any, cam: Any, *, alpha: float = 0.5, colormap: str = "inferno"
) -> np.ndarray:
    """Draw a CAM over an image.

    Parameters
    ----------
    image_rgb : np.ndarray
        uint8 ``[H, W, 3]``.
    cam : array-like
        2-D map with values in [0, 1] (clipped; NaN drawn as 0), any size: resized bilinearly to
        ``(H, W)``. Not renormalised, so a weak map stays dark.
    alpha : float
        Weight of the colour map, in [0, 1] (0: the image, 1: the map only).
    colormap : str
        One of :data:`COLORMAPS` (perceptually uniform, except ``turbo``).

    Returns
    -------
    np.ndarray
        uint8 ``[H, W, 3]``.
    """
    image = np.asarray(image_rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image_rgb must be uint8 [H, W, 3], got {image.dtype} {image.shape}")
    cam = np.asarray(cam)
    if cam.ndim != 2 or cam.size == 0 or not np.issubdtype(cam.dtype, np.number):
        raise ValueError(f"cam must be a non-empty numeric 2-D array, got shape {cam.shape}")
    if not isinstance(alpha, numbers.Real) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    if colormap not in COLORMAPS:
        raise ValueError(f"unknown colormap {colormap!r}; valid: {list(COLORMAPS)}")
    cam = np.clip(np.nan_to_num(cam.astype(np.float64), nan=0.0), 0.0, 1.0)
    if cam.shape != image.shape[:2]:
        cam = np.clip(_resize(cam, image.shape[:2]), 0.0, 1.0)
    colours = _lut(colormap)[np.rint(cam * 255).astype(np.intp)]
    out = (1 - alpha) * image.astype(np.float64) + alpha * colours.astype(np.float64)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def mask_mass_outside(cam: Any, mask: Any) -> float:
    """Share of a CAM's mass outside a region.

    Parameters
    ----------
    cam : array-like
        Non-negative 2-D map ``[H, W]``.
    mask : array-like of bool
        ``[H, W]``, True inside the region (e.g. the object).

    Returns
    -------
    float
        ``sum(cam[~mask]) / sum(cam)`` in [0, 1]; NaN when the map is all zero or empty.
    """
    cam = np.asarray(cam)
    mask = np.asarray(mask)
    if cam.ndim != 2 or not np.issubdtype(cam.dtype, np.number):
        raise ValueError(f"cam must be a numeric 2-D array, got {cam.dtype} {cam.shape}")
    if mask.dtype != bool:
        raise TypeError(f"mask must be a boolean array, got {mask.dtype}")
    if mask.shape != cam.shape:
        raise ValueError(f"mask shape {mask.shape} does not match cam shape {cam.shape}")
    cam = cam.astype(np.float64)
    if not np.isfinite(cam).all() or (cam.size and cam.min() < 0):
        raise ValueError("cam must be finite and non-negative")
    total = cam.sum()
    if total == 0:
        return float("nan")
    return float(cam[~mask].sum() / total)
