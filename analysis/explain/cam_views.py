"""CAMs for one image of a run: the predicted and the given class side by side, cached.

Glue between a run (which image, which preprocessing) and :mod:`analysis.explain.cams` (how a map is
computed). Maps and their faithfulness numbers are cached in the run's ``cams/`` folder, so a
second view of the same image, method and layer does not run the model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from .. import schema
from ..loading.models import Preprocessing


@dataclass(frozen=True)
class ClassCam:
    """One class's map for one image.

    ``cam`` float32 [S, S] in [0, 1] at the model's input size; ``overlay`` uint8 [S, S, 3];
    ``drop_top`` / ``drop_random``: probability drop when the map's top 20% pixels (or a region of
    the same shape elsewhere) are removed (NaN for a flat map: nothing to remove); ``problem``:
    why the map cannot be read, in plain words (see :func:`map_problem`), or None."""

    target_class: int
    cam: np.ndarray
    overlay: np.ndarray
    prob: float
    drop_top: float
    drop_random: float
    problem: str | None = None


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


def layer_choices(model, prep: Preprocessing) -> tuple[list, str]:
    """(candidate layers shallow->deep, name of the default layer) at the run's input size."""
    from .layers import candidate_layers, default_layer

    size = prep.input_size
    return candidate_layers(model, size), default_layer(model, size).name


def model_input(path: str, prep: Preprocessing):
    """(uint8 [S, S, 3] image as the model saw it, normalised float tensor [3, S, S])."""
    import torch

    from ..loading.images import decode_image
    from ..loading.inference import to_model_tensor

    x8 = to_model_tensor(decode_image(path).rgb, prep)
    x = x8.float().div(255.0)
    mean = torch.tensor(prep.mean).view(3, 1, 1)
    std = torch.tensor(prep.std).view(3, 1, 1)
    return x8.permute(1, 2, 0).numpy().copy(), (x - mean) / std


def cam_view(
    run,
    model,
    prep: Preprocessing,
    row: int,
    *,
    classes: list[int],
    method: str = "gradcam",
    layer: str | None = None,
) -> CamView:
    """Maps of ``classes`` (e.g. [predicted, given]) for samples row ``row``, cached on disk."""
    from .cams import CamCache, faithfulness, overlay
    from .layers import resolve_layer

    s = run.samples.iloc[int(row)]
    image, x = model_input(s[schema.PATH], prep)
    device = next(model.parameters()).device
    x = x.to(device)
    info = resolve_layer(model, prep.input_size, layer)
    cache = CamCache(run.path)
    out = []
    for c in dict.fromkeys(int(c) for c in classes):
        cam = cache.get_or_compute(
            model, x, sample_id=s[schema.SAMPLE_ID], target_class=c, method=method, layer=info.name
        )
        fpath = cache.path(
            sample_id=s[schema.SAMPLE_ID], method=method, layer=info.name, target_class=c
        ).with_suffix(".json")
        if fpath.exists():
            f = json.loads(fpath.read_text())
        else:
            f = asdict(faithfulness(model, x, cam, target_class=c, method=method))
            fpath.write_text(json.dumps(f))
        out.append(
            ClassCam(
                c,
                cam,
                overlay(image, cam),
                float(f["prob"]),
                float(f["drop_top"]),
                float(f["drop_random"]),
                map_problem(cam, info.name, tuple(info.spatial)),
            )
        )
    return CamView(method, info.name, tuple(info.spatial), image, tuple(out))


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
