"""Which layers of a classifier a class activation map can be taken from.

One dry forward pass of a dummy input at the run's input size, with a forward hook on every
module, records what each module produces. Candidates are the *block-level* modules whose output
is a spatial feature map, in forward order:

- the model (or the torchvision backbone found inside a wrapper) is walked from the top; plain
  ``nn.Sequential`` / ``nn.ModuleList`` / ``nn.ModuleDict`` containers, and ``nn.Sequential``
  subclasses that hold a stack of two or more blocks of one type (RegNet's ``AnyStage``), are
  opened; every other module is a block and is not opened (a ResNet ``BasicBlock``, a MobileNet
  ``InvertedResidual``, a ``Conv2dNormActivation``);
- a block counts once a convolution has run (a normaliser in front of the network is not a
  feature map), and only before the first block-level adaptive pooling (the global pool and the
  classifier say nothing about *where*); modules called more than once are left out;
- blocks that return the very same tensor (a stage and its last block, a convolution and the
  in-place ReLU after it) are one candidate named after the outermost module (``layer4``, not
  ``layer4.1``); the other names stay accepted as aliases.

Transformers are read differently. torchvision's ``VisionTransformer`` gives one candidate per
encoder block: its first LayerNorm ``ln_1`` (tokens ``[B, 1 + h*w, C]``, class token first). The
block *output* is not used: the head reads only the class token through a per-token LayerNorm, so
the patch tokens of the last block output get zero gradient. ``SwinTransformer`` gives its stages
and blocks, channels-last ``[B, H, W, C]``. :func:`reshape_transform` turns both into
``[B, C, H, W]`` maps.

Models from other libraries (timm, Hugging Face transformers) are read by what their modules
produce, not by their class:

- **ViT-like** (timm ``VisionTransformer``/DeiT/BEiT/EVA, transformers ViT/DeiT/BEiT/DINOv2): a
  module whose output is a token sequence ``[1, P + h*w, C]`` with ``P >= 1`` prefix tokens (class,
  distillation, register tokens) on the patch grid ``h x w`` (the output of the patch-embedding
  convolution, stride = kernel) is a transformer block; its candidate is its first LayerNorm child
  (the pre-norm: ``norm1``, ``layernorm_before``), for the reason above, and the reshape drops the
  ``P`` prefix tokens;
- **everything else** is walked from the top: containers (as above) and wrappers whose output is
  not a tensor (transformers' ``ConvNextModel``, ``SwinEncoder``, output objects and tuples) are
  opened; a block whose output is a 4-D map is a candidate, ``[B, C, H, W]`` or channels-last
  ``[B, H, W, C]`` (timm Swin and other channels-last blocks), told apart by which reading fits the
  input's aspect and a whole stride (ties go to the layout the model's other blocks use); a block
  whose output is a prefix-free token sequence on the patch grid or a coarser one (transformers'
  Swin: ``[B, h*w, C]``) is a candidate with the grid it fits; a block returning a tuple
  (transformers' Swin layers) is represented by its pre-norm. Maps of 1 x 1 (after a global pool)
  are left out.

:func:`default_layer` is the deepest candidate whose map is still at least 7 x 7 at that input
size (at 64 px a ResNet's ``layer4`` is 2 x 2, which cannot say where anything is); for ViT and
Swin it is the last block.

Importing this module does not import torch.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

MIN_SIDE = 7  # smallest map side (cells) that still localises anything
LAYOUTS = ("nchw", "nhwc", "tokens")

__all__ = [
    "LAYOUTS",
    "architecture_family",
    "MIN_SIDE",
    "LayerInfo",
    "candidate_layers",
    "default_layer",
    "model_lock",
    "reshape_transform",
    "resolve_layer",
]


@dataclass(frozen=True)
class LayerInfo:
    """One layer a CAM can be computed at.

    Attributes
    ----------
    name : str
        Module name as in ``model.named_modules()`` (``model.get_submodule(name)``).
    spatial : tuple of int
        ``(h, w)`` of its feature map, in cells, for the input size it was found with.
    channels : int
        Number of channels (token width for transformers).
    layout : str
        How the module's output is laid out: ``"nchw"`` (a conv map), ``"nhwc"`` (Swin) or
        ``"tokens"`` (ViT, ``[B, P + h*w, C]`` with ``P`` prefix tokens first).
    prefix_tokens : int
        For ``"tokens"``: how many leading tokens are not patches (class, distillation and
        register tokens; 0 for transformers' Swin). Ignored for the other layouts.
    """

    name: str
    spatial: tuple[int, int]
    channels: int
    layout: str = "nchw"
    prefix_tokens: int = 1


@dataclass(frozen=True)
class _Discovery:
    family: str
    candidates: tuple[LayerInfo, ...]
    aliases: dict[str, str] = field(default_factory=dict)  # other module name -> candidate name
    default: str | None = None


# ----------------------------------------------------------------------------- public API


def candidate_layers(model: Any, input_size: int | Sequence[int]) -> list[LayerInfo]:
    """Layers a CAM can be taken from, in forward order.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier. It is not changed: train/eval flags are restored after the dry pass and
        no gradient is computed.
    input_size : int or (int, int)
        Side (or ``(height, width)``) in pixels of the tensors the model is fed in this run.

    Returns
    -------
    list of LayerInfo
        Block-level feature maps (see the module docstring), shallow to deep.

    Raises
    ------
    TypeError
        If ``model`` is not an ``nn.Module``.
    ValueError
        If ``input_size`` is not one or two positive integers, or the model cannot run on a
        dummy input of that size.
    """
    _check_model(model)
    size = _check_input_size(input_size)
    return list(_discover(model, size).candidates)


def default_layer(model: Any, input_size: int | Sequence[int]) -> LayerInfo:
    """The layer a CAM is computed at when none is chosen.

    The deepest candidate whose map is at least ``MIN_SIDE`` x ``MIN_SIDE`` at this input size;
    if no candidate is that large, the deepest one with the largest map. For ViT and Swin, the
    last block.

    Raises
    ------
    TypeError, ValueError
        As :func:`candidate_layers`; ``ValueError`` also when the model has no candidate layer.
    """
    _check_model(model)
    size = _check_input_size(input_size)
    found = _discover(model, size)
    if found.default is None:
        raise ValueError(
            f"no layer of this {type(model).__name__} produces a spatial feature map at input "
            f"size {size}; a CAM needs a convolutional or transformer backbone"
        )
    return _by_name(found)[found.default]


def resolve_layer(model: Any, input_size: int | Sequence[int], layer: str | None) -> LayerInfo:
    """The candidate named ``layer`` (an alias such as ``layer4.1`` gives its candidate,
    ``layer4``), or :func:`default_layer` when ``layer`` is None.

    Raises
    ------
    TypeError
        If ``layer`` is neither a string nor None.
    ValueError
        If ``layer`` names no candidate; the message lists the valid names.
    """
    if layer is None:
        return default_layer(model, input_size)
    if not isinstance(layer, str):
        raise TypeError(f"layer must be a module name (str) or None, got {type(layer).__name__}")
    _check_model(model)
    size = _check_input_size(input_size)
    found = _discover(model, size)
    by_name = _by_name(found)
    name = found.aliases.get(layer, layer)
    if name not in by_name:
        raise ValueError(
            f"unknown layer {layer!r} for this {type(model).__name__} at input size {size}; "
            f"valid: {list(by_name)}"
        )
    return by_name[name]


def reshape_transform(info: LayerInfo) -> Callable | None:
    """A function turning the layer's raw output into ``[B, C, h, w]``, or None for ``nchw``."""
    if info.layout == "nchw":
        return None
    if info.layout == "nhwc":
        return _nhwc_to_nchw
    if info.layout == "tokens":
        return functools.partial(
            _tokens_to_nchw,
            height=info.spatial[0],
            width=info.spatial[1],
            prefix=info.prefix_tokens,
        )
    raise ValueError(f"unknown layout {info.layout!r}; valid: {list(LAYOUTS)}")


def architecture_family(model: Any, input_size: int | Sequence[int]) -> str:
    """How the layers of ``model`` were read: a torchvision family (``"resnet"``, ``"vit"``,
    ``"swin"``, ...), ``"vit-tokens"`` (a timm / Hugging Face ViT-like model) or ``"generic"``."""
    _check_model(model)
    return _discover(model, _check_input_size(input_size)).family


def model_lock(model: Any) -> threading.RLock:
    """The lock every hook-installing pass on ``model`` holds (dry passes, CAMs).

    Hooks live on the shared module objects, so two threads (two dashboard sessions sharing one
    cached model) must not hook the same model at once.
    """
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = threading.RLock()
            _LOCKS[model] = lock
        return lock


# ----------------------------------------------------------------------------- validation


def _check_model(model: Any) -> None:
    from torch import nn

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")


def _check_input_size(input_size: Any) -> tuple[int, int]:
    import numbers

    if isinstance(input_size, numbers.Integral) and not isinstance(input_size, bool):
        size = (int(input_size), int(input_size))
    elif (
        isinstance(input_size, Sequence)
        and not isinstance(input_size, str)
        and len(input_size) == 2
        and all(isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in input_size)
    ):
        size = (int(input_size[0]), int(input_size[1]))
    else:
        raise ValueError(
            "input_size must be a positive int or a (height, width) pair of them, "
            f"got {input_size!r}"
        )
    if min(size) < 1:
        raise ValueError(f"input_size must be positive, got {input_size!r}")
    return size


# ----------------------------------------------------------------------------- reshapes


def _nhwc_to_nchw(t):
    return t.permute(0, 3, 1, 2)


def _tokens_to_nchw(t, *, height: int, width: int, prefix: int = 1):
    patches = t[:, prefix:, :]  # drop the class / distillation / register tokens
    return patches.reshape(t.shape[0], height, width, t.shape[2]).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------- discovery core

_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _by_name(found: _Discovery) -> dict[str, LayerInfo]:
    return {c.name: c for c in found.candidates}


def _param_like(model):
    import torch

    for t in model.parameters():
        return t.device, t.dtype
    for t in model.buffers():
        if t.is_floating_point():
            return t.device, t.dtype
    return torch.device("cpu"), torch.float32


def _discover(model, size: tuple[int, int]) -> _Discovery:
    """Cached per model object, input size, device, dtype and module structure."""
    device, dtype = _param_like(model)
    structure = tuple((name, id(m)) for name, m in model.named_modules())
    key = (size, str(device), str(dtype), structure)
    with model_lock(model):
        per_model = _CACHE.setdefault(model, {})
        if key not in per_model:
            per_model.clear()  # one structure at a time; an old one is stale
            per_model[key] = _discover_core(model, size, device, dtype)
        return per_model[key]


def _families():
    import torchvision.models as tvm

    # order matters only for wrappers: the first module (pre-order) of a known family wins
    return (
        ("vit", tvm.VisionTransformer),
        ("swin", tvm.SwinTransformer),
        ("resnet", tvm.ResNet),
        ("mobilenet_v2", tvm.MobileNetV2),
        ("mobilenet_v3", tvm.MobileNetV3),
        ("efficientnet", tvm.EfficientNet),
        ("convnext", tvm.ConvNeXt),
        ("densenet", tvm.DenseNet),
        ("vgg", tvm.VGG),
        ("regnet", tvm.RegNet),
        ("shufflenet", tvm.ShuffleNetV2),
    )


def _find_backbone(model) -> tuple[str, str, Any]:
    """(family, module name prefix, module) of the first known torchvision backbone."""
    families = _families()
    for name, module in model.named_modules():
        for family, cls in families:
            if isinstance(module, cls):
                return family, name, module
    return "generic", "", model


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _opens(module) -> bool:
    """Whether the block walk looks inside ``module``: a sequence of two or more blocks.

    Sequentials (plain or subclassed, e.g. RegNet's ``AnyStage``) and plain ``ModuleList`` /
    ``ModuleDict`` are opened when at least two children are blocks (a convolution or a module
    with children of its own). ``Conv2dNormActivation`` (one conv, a norm, an activation) or
    ConvNeXt's downsampling ``Sequential(LayerNorm2d, Conv2d)`` are not; ``ModuleDict``
    subclasses with their own ``forward`` (DenseNet's ``_DenseBlock``) are not either.
    """
    from torch import nn

    if not (isinstance(module, nn.Sequential) or type(module) in (nn.ModuleList, nn.ModuleDict)):
        return False
    conv_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    blocks = sum(
        1
        for c in module.children()
        if isinstance(c, conv_types) or next(c.children(), None) is not None
    )
    return blocks >= 2


def _block_names(root, prefix: str) -> list[str]:
    names: list[str] = []

    def visit(module, name):
        for child_name, child in module.named_children():
            full = _join(name, child_name)
            names.append(full)
            if _opens(child):
                visit(child, full)

    visit(root, prefix)
    return names


def _discover_core(model, size, device, dtype) -> _Discovery:
    import torch
    from torch import nn

    family, prefix, backbone = _find_backbone(model)
    events: list[tuple[str, Any]] = []  # (module name, output) in completion order
    calls: dict[str, int] = {}
    kinds: dict[str, type] = {}

    def make_hook(name):
        def hook(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            events.append((name, output))

        return hook

    outputs: dict[str, Any] = {}

    training = [(m, m.training) for m in model.modules()]
    handles = []
    try:
        for name, module in model.named_modules():
            if name:
                kinds[name] = type(module)
                handles.append(module.register_forward_hook(make_hook(name)))
        model.eval()
        dummy = torch.zeros((1, 3, *size), device=device, dtype=dtype)
        try:
            with torch.no_grad():
                model(dummy)
        except Exception as e:  # noqa: BLE001 - any model failure means this size is unusable
            raise ValueError(
                f"the model cannot run on a dummy input of size {size} "
                f"({type(e).__name__}: {e}); pass the run's input size"
            ) from e
    finally:
        for handle in handles:
            handle.remove()
        for module, flag in training:
            module.training = flag

    if family == "vit":
        infos = _vit_candidates(backbone, prefix, events, size)
        groups = [[i.name] for i in infos]
    elif family == "generic":
        for name, out in events:
            outputs.setdefault(name, out)
        family, infos, groups = _generic_candidates(model, events, outputs, calls, kinds, size)
    else:
        if family == "swin":
            blocks = _block_names(backbone.features, _join(prefix, "features"))
            layout = "nhwc"
        else:
            blocks = _block_names(backbone, prefix)
            layout = "nchw"
        infos, groups = _map_candidates(events, calls, kinds, set(blocks), layout, nn)

    aliases = {alias: group[-1] for group in groups for alias in group[:-1]}
    default = _pick_default(family, infos)
    return _Discovery(family=family, candidates=tuple(infos), aliases=aliases, default=default)


def _vit_candidates(vit, prefix, events, size) -> list[LayerInfo]:
    patch = int(vit.patch_size)
    grid = (size[0] // patch, size[1] // patch)
    outputs = {name: out for name, out in events}
    infos = []
    for block_name, _ in vit.encoder.layers.named_children():
        name = _join(prefix, f"encoder.layers.{block_name}.ln_1")
        out = outputs.get(name)
        if out is None or getattr(out, "ndim", 0) != 3 or out.shape[1] != 1 + grid[0] * grid[1]:
            continue
        infos.append(
            LayerInfo(name=name, spatial=grid, channels=int(out.shape[2]), layout="tokens")
        )
    return infos


def _map_candidates(events, calls, kinds, blocks, layout, nn):
    """Candidates (first-seen order, outermost name) and the names merged into each."""
    conv_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d)  # Conv1d/3d only mark "a conv has run"
    pool_types = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    conv_seen = False
    order: list[int] = []  # id of each distinct output tensor, in first-seen order
    names: dict[int, list[str]] = {}
    tensors: dict[int, Any] = {}  # keeps the outputs alive so ids are unique
    for name, out in events:
        kind = kinds[name]
        if issubclass(kind, conv_types):
            conv_seen = True
        if name not in blocks:
            continue
        if issubclass(kind, pool_types):
            break
        if not conv_seen or calls.get(name, 0) != 1:
            continue
        if not _is_map(out):
            continue
        key = id(out)
        if key not in names:
            order.append(key)
            names[key] = []
            tensors[key] = out
        names[key].append(name)
    infos, groups = [], []
    for key in order:
        out = tensors[key]
        if layout == "nhwc":
            spatial, channels = (int(out.shape[1]), int(out.shape[2])), int(out.shape[3])
        else:
            spatial, channels = (int(out.shape[2]), int(out.shape[3])), int(out.shape[1])
        group = names[key]
        infos.append(LayerInfo(name=group[-1], spatial=spatial, channels=channels, layout=layout))
        groups.append(group)
    return infos, groups


# ----------------------------------------------------------------------------- other libraries


def _conv_grids(events, kinds, nn) -> list[tuple[int, int]]:
    """(h, w) of every convolution's output in the dry pass, largest first: a transformer's patch
    grid is among them (the patch embedding; after a convolutional stem in hybrid ViTs)."""
    grids = {
        (int(out.shape[2]), int(out.shape[3]))
        for name, out in events
        if issubclass(kinds[name], nn.Conv2d) and _is_map(out)
    }
    return sorted(grids, key=lambda g: -g[0] * g[1])


def _first_tensor(out):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    return None


def _token_grid(out, grids) -> tuple[tuple[int, int], int] | None:
    """((h, w), prefix tokens) when ``out`` is a token sequence ``[1, P + h*w, C]`` on a
    convolution's grid (0 <= P <= 16, the largest fitting grid), or prefix-free on a grid 2**k
    times coarser than one (Swin's merged patches)."""
    import torch

    if not grids or not isinstance(out, torch.Tensor) or not out.is_floating_point():
        return None
    if out.ndim != 3 or out.shape[0] != 1 or out.shape[2] < 2:
        return None
    n = int(out.shape[1])
    for h0, w0 in grids:
        if 0 <= n - h0 * w0 <= 16:
            return (h0, w0), n - h0 * w0
    for h0, w0 in grids:
        h, w = h0, w0
        while h % 2 == 0 and w % 2 == 0 and h > 1:
            h, w = h // 2, w // 2
            if n == h * w:
                return (h, w), 0
    return None


def _map_layouts(out, size) -> set[str]:
    """Which of "nchw" / "nhwc" fit a 4-D output at this input size: the map's aspect is the
    input's and the input side is a whole multiple (within padding) of the map side."""

    def fits(h, w):
        if h < 1 or w < 1 or h > size[0] or w > size[1]:
            return False
        sh, sw = size[0] / h, size[1] / w
        return abs(sh - sw) <= max(sh, sw) * 0.15 and abs(sh - round(sh)) < 0.3 or h == w == 1

    s = out.shape
    found = set()
    if fits(int(s[2]), int(s[3])):
        found.add("nchw")
    if fits(int(s[1]), int(s[2])):
        found.add("nhwc")
    return found


def _generic_candidates(model, events, outputs, calls, kinds, size):
    """(family, candidates in forward order, alias groups) for a model of no known torchvision
    family (see the module docstring: ViT-like token models, then the generic walk)."""
    from torch import nn

    order = {}
    for i, (name, _) in enumerate(events):
        order.setdefault(name, i)
    grid = _conv_grids(events, kinds, nn)
    modules = dict(model.named_modules())

    def prenorm(name) -> str | None:
        """The first LayerNorm child of ``name`` that ran once on a token sequence."""
        for child_name, child in modules[name].named_children():
            full = _join(name, child_name)
            if isinstance(child, nn.LayerNorm) and calls.get(full) == 1:
                if _token_grid(outputs.get(full), grid) is not None:
                    return full
        return None

    # ViT-like: blocks whose output carries prefix tokens; their pre-norm is the candidate
    vit: list[tuple[str, str]] = []  # (block, pre-norm)
    plain: list[tuple[str, str, tuple[int, int]]] = []  # prefix-free token blocks, their grid
    for name, out in outputs.items():
        tg = _token_grid(out, grid)
        if tg is not None and calls.get(name) == 1:
            norm = prenorm(name)
            if norm is not None and tg[1] > 0:
                vit.append((name, norm))
            elif norm is not None:
                plain.append((name, norm, tg[0]))
    if vit:
        # blocks before a class token joins (XCiT, CaiT: class attention at the end) count too
        grids = {_token_grid(outputs[n], grid)[0] for _, n in vit}
        vit += [(b, n) for b, n, g in plain if g in grids]
        infos, groups = [], []
        for block, norm in sorted(vit, key=lambda bn: order[bn[1]]):
            (h, w), p = _token_grid(outputs[norm], grid)
            c = int(outputs[norm].shape[2])
            infos.append(LayerInfo(norm, (h, w), c, "tokens", p))
            groups.append([block, norm])
        return "vit-tokens", infos, groups

    conv_types = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    pool_types = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    first_conv = min((order[n] for n in order if issubclass(kinds[n], conv_types)), default=None)
    found: list[tuple[str, Any]] = []  # (name, output) of block-level candidates
    stop = [False]

    def visit(module, prefix_name):
        for child_name, child in module.named_children():
            if stop[0]:
                return
            full = _join(prefix_name, child_name)
            if full not in outputs:  # never called itself: a ModuleList / ModuleDict holder
                visit(child, full)
                continue
            if calls.get(full) != 1:
                continue
            out = outputs[full]
            if issubclass(kinds[full], pool_types):
                stop[0] = True
                return
            if _opens(child):
                visit(child, full)
                continue
            tensor = _first_tensor(out)
            after_conv = first_conv is not None and order[full] >= first_conv
            if tensor is not None and after_conv and (_is_map(tensor) or _token_grid(tensor, grid)):
                found.append((full, tensor))
            elif tensor is None:
                norm = prenorm(full) if isinstance(out, tuple | list) else None
                if norm is not None and order[norm] >= (first_conv or 0):
                    found.append((norm, outputs[norm]))
                else:
                    visit(child, full)
            else:
                visit(child, full)

    visit(model, "")
    votes = {"nchw": 0, "nhwc": 0}
    for _, out in found:
        if out.ndim == 4:
            fit = _map_layouts(out, size)
            if len(fit) == 1:
                votes[next(iter(fit))] += 1
    usual = "nhwc" if votes["nhwc"] > votes["nchw"] else "nchw"
    infos, groups = [], []
    seen: dict[int, list[str]] = {}  # one candidate per tensor (an Identity after a stage)
    for name, out in sorted(found, key=lambda f: order[f[0]]):
        if id(out) in seen:
            seen[id(out)].insert(0, name)  # an alias of the first name
            continue
        if out.ndim == 4:
            fit = _map_layouts(out, size)
            layout = usual if (usual in fit or not fit) else next(iter(fit))
            if layout == "nhwc":
                spatial, channels = (int(out.shape[1]), int(out.shape[2])), int(out.shape[3])
            else:
                spatial, channels = (int(out.shape[2]), int(out.shape[3])), int(out.shape[1])
            if spatial == (1, 1):
                continue
            infos.append(LayerInfo(name, spatial, channels, layout))
        else:
            (h, w), p = _token_grid(out, grid)
            infos.append(LayerInfo(name, (h, w), int(out.shape[2]), "tokens", p))
        groups.append([name])
        seen[id(out)] = groups[-1]
    return "generic", infos, groups


def _is_map(out) -> bool:
    import torch

    return isinstance(out, torch.Tensor) and out.ndim == 4 and out.is_floating_point()


def _pick_default(family: str, infos: list[LayerInfo]) -> str | None:
    if not infos:
        return None
    if family in ("vit", "vit-tokens"):  # every block has the same token grid
        return infos[-1].name
    large = [i for i in infos if min(i.spatial) >= MIN_SIDE]
    if large:
        return large[-1].name
    best = max(min(i.spatial) for i in infos)
    return [i for i in infos if min(i.spatial) == best][-1].name
