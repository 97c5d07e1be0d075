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
    the same shape elsewhere) are removed; ``sanity_rho``: the model-randomisation check's rank
    correlation (:func:`analysis.explain.cams.randomisation_check`; NaN when it cannot run)."""

    target_class: int
    cam: np.ndarray
    overlay: np.ndarray
    prob: float
    drop_top: float
    drop_random: float
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
    from .cams import CamCache, _device_dtype, faithfulness, layer_for, overlay, randomisation_check

    s = run.samples.iloc[int(row)]
    image, x = model_input(s[schema.PATH], prep)
    x = x.to(_device_dtype(model)[0])
    info = layer_for(model, prep.input_size, method, layer)
    cache = CamCache(run.path)
    out = []
    for c in dict.fromkeys(int(c) for c in classes):
        cam = cache.get_or_compute(
            model, x, sample_id=s[schema.SAMPLE_ID], target_class=c, method=method, layer=info.name
        )
        fpath = cache.path(
            sample_id=s[schema.SAMPLE_ID], method=method, layer=info.name, target_class=c
        ).with_suffix(".json")
        f = json.loads(fpath.read_text()) if fpath.exists() else {}
        if "sanity_rho" not in f:  # also files written before the sanity check existed
            if "drop_top" not in f:
                f = asdict(faithfulness(model, x, cam, target_class=c, method=method))
            check = randomisation_check(model, x, cam, target_class=c, method=method, layer=layer)
            f["sanity_rho"] = check.rank_correlation
            f["sanity_layers"] = len(check.randomised)
            fpath.write_text(json.dumps(f))
        out.append(
            ClassCam(
                c,
                cam,
                overlay(image, cam),
                float(f["prob"]),
                float(f["drop_top"]),
                float(f["drop_random"]),
                float(f["sanity_rho"]),
                int(f["sanity_layers"]),
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
