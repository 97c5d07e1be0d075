"""Robustness stress tests: accuracy of a run's model on perturbed copies of its images.

A perturbation is a small named function of the float batch ``x`` (torch, ``[B, 3, S, S]``, RGB in
[0, 1], before normalisation) and a severity 1..5; :data:`PERTURBATIONS` is the registry.
:func:`run_robustness` makes one pass of :func:`analysis.loading.inference.run_pass` per (perturbation,
severity) with the perturbation as its ``perturb`` hook, and stores the predictions next to the
run in ``<run>/robustness/<key>/`` (``key`` is a hash of the settings, so the same request reuses
the stored result). Everything else (accuracy with intervals per severity, per class, per slice,
which images flip first) is derived from the stored ``[P, S, n]`` prediction array.

Severities (``S`` is the side of the model input in pixels; spatial parameters are given for a
224 px input and scaled by ``S / 224``, so a severity means the same at every input size):

================  ==========================================  =====  =====  =====  =====  =====
name              parameter                                   1      2      3      4      5
================  ==========================================  =====  =====  =====  =====  =====
brightness_down   brightness factor (``adjust_brightness``)   0.8    0.65   0.5    0.35   0.2
brightness_up     brightness factor, clipped at 1             1.3    1.6    1.9    2.2    2.5
contrast          contrast factor (``adjust_contrast``)       0.6    0.45   0.3    0.2    0.1
gaussian_blur     sigma, px at 224                            1      2      3      4      6
motion_blur       line length, px at 224 (random direction)   5      9      13     19     27
gaussian_noise    sigma of additive noise, [0, 1] units       0.04   0.08   0.12   0.18   0.26
occlusion         side of a grey square, fraction of ``S``    0.2    0.3    0.4    0.5    0.6
rotation          degrees (random sign), black corners        5      10     15     20     30
jpeg              JPEG quality                                50     30     20     12     7
downscale         factor down (antialiased) then back up      1.5    2      3      4      6
================  ==========================================  =====  =====  =====  =====  =====

Random parts (noise, the patch position, the blur direction, the rotation sign) are drawn per
image from a seed made of ``seed`` and the image's own pixels, so a result does not depend on batch
size, order or subset, and the same draw is reused at every severity of a perturbation: severity 5
is severity 1 made stronger, never a different image.

Clean predictions are the run's own (``samples.pred``); ``drop`` is clean accuracy minus perturbed
accuracy on the same rows (positive = worse).
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..checks import check_seed
from .intervals import wilson_interval

__all__ = [
    "PERTURBATIONS",
    "SEVERITIES",
    "Perturbation",
    "RobustnessResult",
    "apply_perturbation",
    "estimate_cost",
    "first_flip_severity",
    "flips",
    "accuracy_rises",
    "is_monotone",
    "list_robustness",
    "load_robustness",
    "make_perturb",
    "per_slice",
    "perturbation_table",
    "run_robustness",
    "select_rows",
]

SEVERITIES = (1, 2, 3, 4, 5)
REFERENCE_SIZE = 224  # spatial parameters are given for this input size
OCCLUSION_FILL = 0.5  # grey
_VERSION = 1  # of the stored result; part of the settings hash

# Files in <run>/robustness/<key>/
SUMMARY_FILE = "summary.parquet"
PER_CLASS_FILE = "per_class.parquet"
PREDICTIONS_FILE = "predictions.npy"  # int32 [P, S, n]; -1 = image could not be read
ROWS_FILE = "rows.parquet"  # the n rows used: ROW, sample_id, label, CLEAN_PRED
SETTINGS_FILE = "settings.json"

# Columns of the summary / per-class / per-slice / flips tables
PERTURBATION = "perturbation"
SEVERITY = "severity"
PARAMETER = "parameter"  # the severity's parameter value (see the module table)
N = "n"  # rows with a prediction under this perturbation
CORRECT = "correct"  # rows right under the perturbation
ACCURACY = "accuracy"
LOW = "low"  # 95% Wilson interval of accuracy
HIGH = "high"
CLEAN_CORRECT = "clean_correct"  # rows right without perturbation (same n rows)
CLEAN_ACCURACY = "clean_accuracy"
DROP = "drop"  # clean_accuracy - accuracy
FLIPPED = "flipped"  # rows whose prediction differs from the clean one
FLIP_RATE = "flip_rate"  # flipped / n
CLASS = "class"  # per_class: true class id
CLASS_NAME = "class_name"
ROW = "row"  # position in the run's samples.parquet
CLEAN_PRED = "clean_pred"
CLEAN_IS_CORRECT = "clean_is_correct"
BECAME_WRONG = "became_wrong"
BECAME_RIGHT = "became_right"

SUMMARY_COLUMNS = [
    PERTURBATION,
    SEVERITY,
    PARAMETER,
    N,
    CORRECT,
    ACCURACY,
    LOW,
    HIGH,
    CLEAN_CORRECT,
    CLEAN_ACCURACY,
    DROP,
    FLIPPED,
    FLIP_RATE,
]
PER_CLASS_COLUMNS = [PERTURBATION, SEVERITY, CLASS, CLASS_NAME] + SUMMARY_COLUMNS[3:]


# --------------------------------------------------------------------------------------------
# the perturbations


@dataclass(frozen=True)
class Perturbation:
    """One registered perturbation.

    Attributes
    ----------
    name : str
    parameter : str
        What ``levels`` are, in words (with units).
    levels : tuple of 5 floats
        Parameter at severities 1..5 (spatial ones for a 224 px input).
    fn : callable
        ``fn(x, level, seeds) -> x``: ``x`` float tensor [B, 3, S, S] in [0, 1], ``level`` one of
        ``levels``, ``seeds`` int64 array [B] (per-image seeds, or None when ``random`` is
        False). Must not modify ``x`` in place.
    random : bool
        Whether ``fn`` draws random numbers (and so needs per-image seeds).
    """

    name: str
    parameter: str
    levels: tuple[float, ...]
    fn: Callable = field(repr=False, compare=False)
    random: bool = False


def _scale(x, level: float) -> float:
    """A length given for a 224 px input, in pixels of ``x``."""
    return float(level) * x.shape[-1] / REFERENCE_SIZE


def _uniform(seeds: np.ndarray, k: int):
    """float64 [B, k] uniform draws in [0, 1), one stream per image seed."""
    return (
        np.stack([np.random.default_rng(int(s)).random(k) for s in seeds])
        if len(seeds)
        else (np.zeros((0, k)))
    )


def _brightness(x, level, seeds):
    from torchvision.transforms.v2 import functional as F

    return F.adjust_brightness(x, float(level))


def _contrast(x, level, seeds):
    from torchvision.transforms.v2 import functional as F

    return F.adjust_contrast(x, float(level))


def _gaussian_blur(x, level, seeds):
    """torchvision's ``gaussian_blur`` (same kernel, reflect padding), applied as two 1-D
    passes: identical output, ``k / 2`` times fewer operations than its 2-D convolution (at 224
    px and severity 5, k = 37)."""
    import torch

    b, ch, h, w = x.shape
    if b == 0:
        return x.clone()
    sigma = max(_scale(x, level), 1e-3)
    k = max(3, min(2 * math.ceil(3.0 * sigma) + 1, 2 * min(h, w) - 1))  # reflect: k // 2 < side
    half = (k - 1) * 0.5
    t = torch.linspace(-half, half, steps=k, dtype=x.dtype, device=x.device)
    kern = torch.exp(-0.5 * (t / sigma) ** 2)
    kern = kern / kern.sum()
    pad = k // 2
    y = torch.nn.functional.pad(x, (pad, pad, pad, pad), mode="reflect")
    y = torch.nn.functional.conv2d(y, kern.view(1, 1, 1, k).expand(ch, 1, 1, k), groups=ch)
    return torch.nn.functional.conv2d(y, kern.view(1, 1, k, 1).expand(ch, 1, k, 1), groups=ch)


def _line_kernels(lengths: float, angles: np.ndarray):
    """Anti-aliased line kernels [B, K, K] of ``lengths`` px at ``angles`` (radians), sum 1.

    The line is sampled at sub-pixel steps and splatted bilinearly, so the kernel changes
    continuously with the length (a 2.5 px line blurs more than a 2 px one).
    """
    import torch

    b = len(angles)
    half = lengths / 2.0
    k = 2 * math.ceil(half) + 1
    c = k // 2
    m = max(2, math.ceil(8 * lengths)) + 1
    t = torch.linspace(-half, half, m, dtype=torch.float64)
    ang = torch.as_tensor(angles, dtype=torch.float64)[:, None]
    px = c + t[None] * torch.cos(ang)  # [B, m]
    py = c + t[None] * torch.sin(ang)
    x0, y0 = px.floor(), py.floor()
    fx, fy = px - x0, py - y0
    kernels = torch.zeros(b, k * k, dtype=torch.float64)
    for dx, dy, w in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi = (x0 + dx).long().clamp(0, k - 1)
        yi = (y0 + dy).long().clamp(0, k - 1)
        kernels.scatter_add_(1, yi * k + xi, w)
    kernels /= kernels.sum(dim=1, keepdim=True)
    return kernels.view(b, k, k)


def _motion_blur(x, level, seeds):
    import torch

    b, ch, h, w = x.shape
    if b == 0:
        return x.clone()
    length = _scale(x, level)
    angles = _uniform(seeds, 1)[:, 0] * math.pi
    kern = _line_kernels(length, angles).to(device=x.device, dtype=x.dtype)
    k = kern.shape[-1]
    pad = min(k // 2, h - 1, w - 1)
    if pad < k // 2:  # kernel larger than the image allows: crop it to what reflect can pad
        c = k // 2
        kern = kern[:, c - pad : c + pad + 1, c - pad : c + pad + 1]
        kern = kern / kern.sum(dim=(1, 2), keepdim=True)
        k = 2 * pad + 1
    weight = kern.repeat_interleave(ch, dim=0)[:, None]  # [B*3, 1, k, k]
    xp = torch.nn.functional.pad(x.reshape(1, b * ch, h, w), (pad, pad, pad, pad), mode="reflect")
    return torch.nn.functional.conv2d(xp, weight, groups=b * ch).view(b, ch, h, w)


def _gaussian_noise(x, level, seeds):
    """torchvision's ``gaussian_noise``, one image at a time under the image's own seed, so the
    noise an image gets does not depend on its batch (the detail page redraws the same one)."""
    import torch
    from torchvision.transforms.v2 import functional as F

    out = torch.empty_like(x)
    for i, seed in enumerate(seeds):
        with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG untouched
            torch.manual_seed(int(seed))
            noisy = F.gaussian_noise(x[i].cpu(), mean=0.0, sigma=float(level), clip=True)
        out[i] = noisy.to(device=x.device)
    return out


def _occlusion(x, level, seeds):
    """A grey square (``OCCLUSION_FILL``) of side ``level`` x the image, at a seeded position,
    pasted with torchvision's ``erase``."""
    import torch
    from torchvision.transforms.v2 import functional as F

    out = x.clone()
    h, w = x.shape[-2:]
    sh, sw = max(1, round(float(level) * h)), max(1, round(float(level) * w))
    u = _uniform(seeds, 2)
    fill = torch.tensor(OCCLUSION_FILL, dtype=x.dtype, device=x.device)
    for i in range(x.shape[0]):
        top = int(math.floor(u[i, 0] * (h - sh)))
        left = int(math.floor(u[i, 1] * (w - sw)))
        out[i] = F.erase(x[i], top, left, sh, sw, fill)
    return out


def _rotation(x, level, seeds):
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    out = x.clone()
    sign = np.where(_uniform(seeds, 1)[:, 0] < 0.5, -1.0, 1.0)
    for s in (-1.0, 1.0):
        idx = np.flatnonzero(sign == s)
        if idx.size:
            out[idx] = F.rotate(
                x[idx], s * float(level), interpolation=InterpolationMode.BILINEAR, fill=[0.0]
            )
    return out


def _jpeg(x, level, seeds):
    import torch
    from torchvision.transforms.v2 import functional as F

    if x.shape[0] == 0:
        return x.clone()
    x8 = (x.detach().cpu() * 255.0).round_().clamp_(0, 255).to(dtype=torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its codecs for torchcodec
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="torchvision")
        y = F.jpeg(x8, int(level))
    return (y.to(dtype=x.dtype) / 255.0).to(x.device)


def _downscale(x, level, seeds):
    from torchvision.transforms.v2 import functional as F

    h, w = x.shape[-2:]
    small = [max(2, round(h / float(level))), max(2, round(w / float(level)))]
    down = F.resize(x, small, antialias=True)
    return F.resize(down, [h, w], antialias=False)


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation(
            "brightness_down", "brightness factor", (0.8, 0.65, 0.5, 0.35, 0.2), _brightness
        ),
        Perturbation(
            "brightness_up",
            "brightness factor (clipped at 1)",
            (1.3, 1.6, 1.9, 2.2, 2.5),
            _brightness,
        ),
        Perturbation("contrast", "contrast factor", (0.6, 0.45, 0.3, 0.2, 0.1), _contrast),
        Perturbation(
            "gaussian_blur", "sigma, px at 224", (1.0, 2.0, 3.0, 4.0, 6.0), _gaussian_blur
        ),
        Perturbation(
            "motion_blur",
            "line length, px at 224",
            (5.0, 9.0, 13.0, 19.0, 27.0),
            _motion_blur,
            random=True,
        ),
        Perturbation(
            "gaussian_noise",
            "noise sigma, [0, 1] units",
            (0.04, 0.08, 0.12, 0.18, 0.26),
            _gaussian_noise,
            random=True,
        ),
        Perturbation(
            "occlusion",
            "square side, fraction of the image side",
            (0.2, 0.3, 0.4, 0.5, 0.6),
            _occlusion,
            random=True,
        ),
        Perturbation("rotation", "degrees", (5.0, 10.0, 15.0, 20.0, 30.0), _rotation, random=True),
        Perturbation("jpeg", "JPEG quality", (50.0, 30.0, 20.0, 12.0, 7.0), _jpeg),
        Perturbation("downscale", "downscale factor", (1.5, 2.0, 3.0, 4.0, 6.0), _downscale),
    )
}


def perturbation_table() -> pd.DataFrame:
    """The registry as a table: ``perturbation, parameter, 1, 2, 3, 4, 5`` (for display)."""
    return pd.DataFrame(
        [
            {
                PERTURBATION: p.name,
                PARAMETER: p.parameter,
                **{str(s): p.levels[s - 1] for s in SEVERITIES},
            }
            for p in PERTURBATIONS.values()
        ]
    )


def _check_name(name: Any) -> Perturbation:
    if not isinstance(name, str):
        raise TypeError(f"perturbation name must be a str, got {type(name).__name__}")
    if name not in PERTURBATIONS:
        raise ValueError(
            f"unknown perturbation {name!r}; expected one of {', '.join(PERTURBATIONS)}"
        )
    return PERTURBATIONS[name]


def _check_severity(severity: Any) -> int:
    if isinstance(severity, bool) or not isinstance(severity, numbers.Integral):
        raise TypeError(f"severity must be an int 1..5, got {type(severity).__name__}")
    if int(severity) not in SEVERITIES:
        raise ValueError(f"severity must be one of {list(SEVERITIES)}, got {severity}")
    return int(severity)


def image_seeds(x, seed: int) -> np.ndarray:
    """Per-image seeds [B] from ``seed`` and each image's pixels (quantised to 8 bits)."""
    import torch

    x8 = (x.detach() * 255.0).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    key = int(seed).to_bytes(8, "little", signed=True)
    return np.array(
        [
            int.from_bytes(
                hashlib.blake2b(img.tobytes(), digest_size=8, key=key).digest(), "little"
            )
            >> 1
            for img in x8
        ],
        dtype=np.int64,
    )


def _apply(p: Perturbation, x, severity: int, seed: int):
    seeds = image_seeds(x, seed) if p.random else None
    return p.fn(x, p.levels[severity - 1], seeds).clamp(0.0, 1.0)


def apply_perturbation(x, name: str, severity: int, *, seed: int = 0):
    """Perturb a float image batch.

    Parameters
    ----------
    x : torch.Tensor
        float [B, 3, S, S] (any H, W), RGB in [0, 1]. Not modified.
    name : str
        A key of :data:`PERTURBATIONS`.
    severity : int
        1 (mild) .. 5 (strong); parameters in the module docstring.
    seed : int, keyword-only
        Combined with each image's pixels to seed that image's random draws.

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device as ``x``, values in [0, 1].
    """
    import torch

    p = _check_name(name)
    severity = _check_severity(severity)
    seed = check_seed(seed, allow_none=False)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor [B, 3, H, W], got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"x must have shape [B, 3, H, W], got {list(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(
            f"x must be in [0, 1] (before normalisation), got range "
            f"[{float(x.min()):.3g}, {float(x.max()):.3g}]"
        )
    return _apply(p, x, severity, seed)


def make_perturb(name: str, severity: int, *, seed: int = 0) -> Callable:
    """``f(x) -> x`` for :func:`analysis.loading.inference.run_pass`'s ``perturb`` hook (checked once)."""
    p = _check_name(name)
    severity = _check_severity(severity)
    seed = check_seed(seed, allow_none=False)

    def perturb(x):
        return _apply(p, x, severity, seed)

    perturb.__name__ = f"perturb_{name}_{severity}"
    return perturb


# --------------------------------------------------------------------------------------------
# the result


@dataclass(frozen=True, eq=False)
class RobustnessResult:
    """Predictions of a run's model under perturbations, and the tables derived from them.

    Attributes
    ----------
    key : str
        Hash of the settings; the folder name under ``<run>/robustness/``.
    perturbations : tuple of str
        Axis 0 of ``predictions``.
    severities : tuple of int
        Axis 1 of ``predictions``.
    rows : ndarray of int64, shape (n,)
        Positions in the run's ``samples.parquet`` of the images used (ascending).
    sample_ids : ndarray of object, shape (n,)
    labels, clean_pred : ndarray of int64, shape (n,)
        Given labels and the run's own (unperturbed) predictions of those rows.
    predictions : ndarray of int32, shape (P, S, n)
        Predicted class per perturbation, severity and row; -1 where the image could not be read.
    summary : DataFrame
        One row per (perturbation, severity), columns :data:`SUMMARY_COLUMNS`.
    per_class : DataFrame
        One row per (perturbation, severity, true class), columns :data:`PER_CLASS_COLUMNS`.
    settings : dict
        Seed, subset, parameters, run id, creation time, seconds taken.
    """

    key: str
    perturbations: tuple[str, ...]
    severities: tuple[int, ...]
    rows: np.ndarray
    sample_ids: np.ndarray
    labels: np.ndarray
    clean_pred: np.ndarray
    predictions: np.ndarray
    summary: pd.DataFrame
    per_class: pd.DataFrame
    settings: dict = field(default_factory=dict)

    __hash__ = None  # type: ignore[assignment]

    @property
    def n(self) -> int:
        return int(self.rows.size)

    def index_of(self, perturbation: str, severity: int) -> tuple[int, int]:
        """Positions of ``(perturbation, severity)`` on the axes of ``predictions``."""
        if perturbation not in self.perturbations:
            raise ValueError(
                f"perturbation {perturbation!r} is not in this result; it has "
                f"{', '.join(self.perturbations)}"
            )
        if severity not in self.severities:
            raise ValueError(
                f"severity {severity!r} is not in this result; it has {list(self.severities)}"
            )
        return self.perturbations.index(perturbation), self.severities.index(severity)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RobustnessResult):
            return NotImplemented
        return (
            self.key == other.key
            and self.perturbations == other.perturbations
            and self.severities == other.severities
            and np.array_equal(self.rows, other.rows)
            and np.array_equal(self.sample_ids, other.sample_ids)
            and np.array_equal(self.labels, other.labels)
            and np.array_equal(self.clean_pred, other.clean_pred)
            and np.array_equal(self.predictions, other.predictions)
            and self.predictions.dtype == other.predictions.dtype
            and self.summary.equals(other.summary)
            and self.per_class.equals(other.per_class)
            and self.settings == other.settings
        )


def _accuracy_rows(
    pred: np.ndarray, labels: np.ndarray, clean_pred: np.ndarray
) -> dict[str, np.ndarray]:
    """Counts and accuracies of the last axis of ``pred`` [..., n] (rows with pred -1 left out)."""
    valid = pred >= 0
    n = valid.sum(axis=-1)
    correct = ((pred == labels) & valid).sum(axis=-1)
    clean_correct = ((clean_pred == labels) & valid).sum(axis=-1)
    flipped = ((pred != clean_pred) & valid).sum(axis=-1)
    low, high = wilson_interval(correct, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n > 0, correct / np.maximum(n, 1), np.nan)
        clean = np.where(n > 0, clean_correct / np.maximum(n, 1), np.nan)
        flip_rate = np.where(n > 0, flipped / np.maximum(n, 1), np.nan)
    return {
        N: np.asarray(n, dtype=np.int64),
        CORRECT: np.asarray(correct, dtype=np.int64),
        ACCURACY: np.asarray(acc, dtype=np.float64),
        LOW: np.asarray(low, dtype=np.float64),
        HIGH: np.asarray(high, dtype=np.float64),
        CLEAN_CORRECT: np.asarray(clean_correct, dtype=np.int64),
        CLEAN_ACCURACY: np.asarray(clean, dtype=np.float64),
        DROP: np.asarray(clean - acc, dtype=np.float64),
        FLIPPED: np.asarray(flipped, dtype=np.int64),
        FLIP_RATE: np.asarray(flip_rate, dtype=np.float64),
    }


def _summary_table(
    predictions: np.ndarray,
    labels: np.ndarray,
    clean_pred: np.ndarray,
    perturbations: Sequence[str],
    severities: Sequence[int],
    mask: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per (perturbation, severity) over the rows in ``mask`` (all by default)."""
    if mask is not None:
        predictions, labels, clean_pred = predictions[..., mask], labels[mask], clean_pred[mask]
    p, s = len(perturbations), len(severities)
    stats = _accuracy_rows(predictions.reshape(p * s, -1), labels, clean_pred)
    table = pd.DataFrame(
        {
            PERTURBATION: np.repeat(np.asarray(perturbations, dtype=object), s),
            SEVERITY: np.tile(np.asarray(severities, dtype=np.int64), p),
            PARAMETER: [
                float(PERTURBATIONS[name].levels[sev - 1]) if name in PERTURBATIONS else math.nan
                for name in perturbations
                for sev in severities
            ],
            **stats,
        }
    )
    return table[SUMMARY_COLUMNS]


def _per_class_table(
    predictions: np.ndarray,
    labels: np.ndarray,
    clean_pred: np.ndarray,
    perturbations: Sequence[str],
    severities: Sequence[int],
    class_names: Sequence[str],
) -> pd.DataFrame:
    parts = []
    for k, name in enumerate(class_names):
        t = _summary_table(
            predictions, labels, clean_pred, perturbations, severities, mask=labels == k
        )
        t.insert(2, CLASS, np.int64(k))
        t.insert(3, CLASS_NAME, str(name))
        parts.append(t.drop(columns=[PARAMETER]))
    if not parts:
        return pd.DataFrame({c: [] for c in PER_CLASS_COLUMNS})
    out = pd.concat(parts, ignore_index=True)
    order = np.lexsort(
        (
            out[CLASS].to_numpy(),
            out[SEVERITY].to_numpy(),
            pd.Categorical(out[PERTURBATION], categories=list(perturbations)).codes,
        )
    )
    return out.iloc[order].reset_index(drop=True)[PER_CLASS_COLUMNS]


def per_class_ranking(per_class: pd.DataFrame, perturbation: str) -> pd.DataFrame:
    """The per-class table under one perturbation, the classes it hurts most first, by a bound
    rather than a point estimate (as error clusters are): sorted by the upper end of the 95%
    Wilson interval of accuracy at the highest severity, so a class of 3 images at 0% does not
    top a class of 300 at 20% (ties: lower mean accuracy over the severities first).

    Returns one row per class: ``class_name``, the accuracy at each severity (columns named by
    the severity, ints) and ``low``/``high`` at the highest severity.
    """
    t = per_class[per_class[PERTURBATION] == perturbation]
    if t.empty:
        return pd.DataFrame(columns=[CLASS_NAME, LOW, HIGH])
    acc = t.pivot_table(index=CLASS_NAME, columns=SEVERITY, values=ACCURACY, sort=False)
    top = t[t[SEVERITY] == t[SEVERITY].max()].set_index(CLASS_NAME)[[LOW, HIGH]]
    view = acc.join(top)
    order = np.lexsort((acc.mean(axis=1).to_numpy(), view[HIGH].to_numpy()))
    return view.iloc[order].reset_index()


# --------------------------------------------------------------------------------------------
# running and storing


def select_rows(labels: Any, subset: int | None, *, seed: int = 0) -> np.ndarray:
    """At most ``subset`` row positions, stratified by label, seeded; all rows when None.

    Each class gets ``subset * n_class / n`` rows rounded by largest remainder, drawn without
    replacement. Returns int64 positions, ascending.
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {y.shape}")
    n = y.size
    if subset is None or subset >= n:
        return np.arange(n, dtype=np.int64)
    if isinstance(subset, bool) or not isinstance(subset, numbers.Integral):
        raise TypeError(f"subset must be an int >= 1 or None, got {type(subset).__name__}")
    if subset < 1:
        raise ValueError(f"subset must be >= 1 (a number of images) or None, got {subset}")
    rng = np.random.default_rng(check_seed(seed, allow_none=False))
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    exact = subset * counts / n
    quota = np.floor(exact).astype(np.int64)
    rest = int(subset - quota.sum())
    if rest:
        order = np.lexsort((np.arange(classes.size), -(exact - quota)))
        quota[order[:rest]] += 1
    picked = [
        rng.choice(np.flatnonzero(inverse == k), size=int(q), replace=False)
        for k, q in enumerate(quota)
        if q
    ]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _check_run(run: Any):
    from ..store.runstore import Run, open_run

    if isinstance(run, str | os.PathLike):
        return open_run(run)
    if not isinstance(run, Run):
        raise TypeError(f"run must be a Run or a run directory path, got {type(run).__name__}")
    return run


def _check_choices(perturbations: Any, severities: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    if perturbations is None:
        names = tuple(PERTURBATIONS)
    else:
        if isinstance(perturbations, str) or not isinstance(perturbations, Iterable):
            raise TypeError(f"perturbations must be a list of names or None, got {perturbations!r}")
        names = tuple(perturbations)
        if not names:
            raise ValueError(
                f"perturbations must name at least one of {', '.join(PERTURBATIONS)}, got []"
            )
        for name in names:
            _check_name(name)
        dupes = sorted({x for x in names if names.count(x) > 1})
        if dupes:
            raise ValueError(f"perturbations named more than once: {dupes}")
    if isinstance(severities, str) or not isinstance(severities, Iterable):
        raise TypeError(f"severities must be a list of ints 1..5, got {severities!r}")
    sev = tuple(sorted({_check_severity(s) for s in severities}))
    if not sev:
        raise ValueError("severities must hold at least one of 1..5, got []")
    return names, sev


def _settings_key(run_id: str, names, sev, subset, seed) -> str:
    payload = json.dumps(
        {
            "version": _VERSION,
            "run_id": run_id,
            "perturbations": [[n, list(PERTURBATIONS[n].levels)] for n in names],
            "severities": list(sev),
            "subset": subset,
            "seed": seed,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def estimate_cost(
    run: Any,
    *,
    perturbations: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    subset: int | None = None,
) -> float:
    """Seconds :func:`run_robustness` will take, to show before it starts.

    The run's measured pass rate (manifest ``images_per_second``, decoding included) times the
    number of images times the number of passes (perturbations x severities). Runs without a
    measured rate fall back to :func:`analysis.loading.inference.estimate_seconds` for the input size.
    """
    from ..loading.inference import estimate_seconds

    run = _check_run(run)
    names, sev = _check_choices(perturbations, severities)
    n_total = len(run.samples)
    if subset is not None:
        if isinstance(subset, bool) or not isinstance(subset, numbers.Integral) or subset < 1:
            raise ValueError(f"subset must be an int >= 1 or None, got {subset!r}")
    n = n_total if subset is None else min(int(subset), n_total)
    passes = len(names) * len(sev)
    rate = run.manifest.get("images_per_second")
    if isinstance(rate, int | float) and rate > 0 and math.isfinite(rate):
        per_pass = n / float(rate)
    else:
        prep = run.manifest.get("preprocessing") or {}
        size = prep.get("crop") or prep.get("resize") or REFERENCE_SIZE
        per_pass = estimate_seconds(n, int(size))
    return float(per_pass * passes)


def run_robustness(
    run: Any,
    *,
    perturbations: Sequence[str] | None = None,
    severities: Sequence[int] = SEVERITIES,
    subset: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | None = None,
    progress: Callable[[str, float], None] | None = None,
    force: bool = False,
) -> RobustnessResult:
    """Accuracy of the run's model under every (perturbation, severity), stored in the run.

    Parameters
    ----------
    run : Run or path
        A run made with a model checkpoint (not a predictions file); the checkpoint must still be
        where the run found it, unchanged.
    perturbations : list of str, optional
        Names from :data:`PERTURBATIONS`; all of them by default.
    severities : list of int
        Any of 1..5.
    subset : int, optional
        At most this many images, stratified by class and seeded (:func:`select_rows`), for
        large sets. None: every image.
    seed : int
        Seeds the subset and the perturbations' random draws.
    batch_size, num_workers, device :
        As in :func:`analysis.loading.inference.run_pass`.
    progress : callable(str, float), optional
        Message and overall fraction done.
    force : bool
        Recompute even if a result with the same settings is stored.

    Returns
    -------
    RobustnessResult
        Also written to ``<run>/robustness/<key>/`` (see the module docstring).
    """
    from ..loading.inference import pick_device, run_pass, softmax
    from ..loading.models import load_run_model
    from ..store.runstore import now_iso

    run = _check_run(run)
    names, sev = _check_choices(perturbations, severities)
    seed = check_seed(seed, allow_none=False)
    if subset is not None and (
        isinstance(subset, bool) or not isinstance(subset, numbers.Integral)
    ):
        raise TypeError(f"subset must be an int >= 1 or None, got {type(subset).__name__}")
    if subset is not None and subset < 1:
        raise ValueError(f"subset must be >= 1 (a number of images) or None, got {subset}")
    if (
        isinstance(batch_size, bool)
        or not isinstance(batch_size, numbers.Integral)
        or (batch_size < 1)
    ):
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    key = _settings_key(run.run_id, names, sev, None if subset is None else int(subset), seed)
    root = run.path / schema.ROBUSTNESS_DIR
    final = root / key
    if not force and (final / SETTINGS_FILE).exists():
        return _read(final)

    samples = run.samples
    labels_all = samples[schema.LABEL].to_numpy(dtype=np.int64)
    rows = select_rows(labels_all, None if subset is None else int(subset), seed=seed)
    dev = pick_device(device)
    loaded, prep = load_run_model(run.manifest, device=dev)
    cfg = run.manifest.get("config") or {}
    paths = samples[schema.PATH].to_numpy()[rows].tolist()
    relpaths = samples[schema.RELPATH].to_numpy()[rows].tolist()
    preds = np.full((len(names), len(sev), rows.size), -1, dtype=np.int32)
    total = len(names) * len(sev)
    t0 = time.perf_counter()
    done = 0
    for i, name in enumerate(names):
        for j, s in enumerate(sev):

            def sub(msg: str, frac: float, _at: tuple = (name, s, done)) -> None:
                progress(f"{_at[0]} severity {_at[1]}: {msg}", (_at[2] + frac) / total)

            res = run_pass(
                paths,
                prep,
                model=loaded.model,
                relpaths=relpaths,
                batch_size=int(batch_size),
                num_workers=num_workers,
                device=dev,
                perturb=make_perturb(name, s, seed=seed),
                want_embeddings=False,
                max_pixels=cfg.get("max_pixels"),
                max_file_bytes=cfg.get("max_file_bytes"),
                progress=sub if progress is not None else None,
                desc=f"{name} s{s}",
            )
            if res.logits is not None and res.ok_index.size:
                # the run's own rule: argmax of the float32 probabilities (first on ties)
                preds[i, j, res.ok_index] = softmax(res.logits).argmax(axis=1).astype(np.int32)
            done += 1
    if not (preds >= 0).any() and rows.size:
        raise ValueError(
            f"none of the run's {rows.size} images could be read for the robustness passes "
            f"(moved or deleted?); e.g. {paths[:2]}"
        )
    labels = labels_all[rows]
    clean_pred = samples[schema.PRED].to_numpy(dtype=np.int64)[rows]
    settings = {
        "version": _VERSION,
        "run_id": run.run_id,
        "perturbations": list(names),
        "severities": list(sev),
        "levels": {n: list(PERTURBATIONS[n].levels) for n in names},
        "subset": None if subset is None else int(subset),
        "seed": seed,
        "n": int(rows.size),
        "device": dev,
        "created": now_iso(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    result = RobustnessResult(
        key=key,
        perturbations=names,
        severities=sev,
        rows=rows,
        sample_ids=samples[schema.SAMPLE_ID].to_numpy(dtype=object)[rows],
        labels=labels,
        clean_pred=clean_pred,
        predictions=preds,
        summary=_summary_table(preds, labels, clean_pred, names, sev),
        per_class=_per_class_table(preds, labels, clean_pred, names, sev, run.class_names),
        settings=settings,
    )
    _write(result, root)
    if progress is not None:
        progress("robustness done", 1.0)
    return result


def _write(result: RobustnessResult, root: Path) -> Path:
    """Write into a temporary folder and rename it into place (never a half result)."""
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{result.key}-", dir=root))
    final = root / result.key
    try:
        result.summary.to_parquet(tmp / SUMMARY_FILE, index=False)
        result.per_class.to_parquet(tmp / PER_CLASS_FILE, index=False)
        np.save(tmp / PREDICTIONS_FILE, result.predictions)
        pd.DataFrame(
            {
                ROW: result.rows,
                schema.SAMPLE_ID: result.sample_ids.astype(str),
                schema.LABEL: result.labels,
                CLEAN_PRED: result.clean_pred,
            }
        ).to_parquet(tmp / ROWS_FILE, index=False)
        (tmp / SETTINGS_FILE).write_text(
            json.dumps({"key": result.key, **result.settings}, indent=2)
        )
        if final.exists():  # a forced recompute replaces the old result
            shutil.rmtree(final)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def _read(folder: Path) -> RobustnessResult:
    settings = json.loads((folder / SETTINGS_FILE).read_text())
    key = settings.pop("key")
    rows = pd.read_parquet(folder / ROWS_FILE)
    return RobustnessResult(
        key=key,
        perturbations=tuple(settings["perturbations"]),
        severities=tuple(int(s) for s in settings["severities"]),
        rows=rows[ROW].to_numpy(dtype=np.int64),
        sample_ids=rows[schema.SAMPLE_ID].to_numpy(dtype=object),
        labels=rows[schema.LABEL].to_numpy(dtype=np.int64),
        clean_pred=rows[CLEAN_PRED].to_numpy(dtype=np.int64),
        predictions=np.load(folder / PREDICTIONS_FILE),
        summary=pd.read_parquet(folder / SUMMARY_FILE),
        per_class=pd.read_parquet(folder / PER_CLASS_FILE),
        settings=settings,
    )


def _stored(run) -> list[Path]:
    root = run.path / schema.ROBUSTNESS_DIR
    if not root.exists():
        return []
    found = [
        d for d in root.iterdir() if not d.name.startswith(".") and (d / SETTINGS_FILE).exists()
    ]
    return sorted(found, key=lambda d: (d / SETTINGS_FILE).stat().st_mtime_ns, reverse=True)


def list_robustness(run: Any) -> pd.DataFrame:
    """Stored robustness results of ``run``, newest first: key, created, perturbations,
    severities, subset, seed, n."""
    run = _check_run(run)
    records = []
    for d in _stored(run):
        s = json.loads((d / SETTINGS_FILE).read_text())
        records.append(
            {
                "key": d.name,
                "created": s.get("created", ""),
                "perturbations": ",".join(s.get("perturbations", [])),
                "severities": ",".join(str(x) for x in s.get("severities", [])),
                "subset": s.get("subset"),
                "seed": s.get("seed"),
                "n": s.get("n"),
            }
        )
    cols = ["key", "created", "perturbations", "severities", "subset", "seed", "n"]
    return pd.DataFrame(records, columns=cols)


def load_robustness(run: Any, key: str | None = None) -> RobustnessResult | None:
    """The stored result with ``key``, or the latest one; None when there is none."""
    run = _check_run(run)
    if key is not None:
        if not isinstance(key, str) or not key or "/" in key or key.startswith("."):
            raise ValueError(f"key must be a stored result's folder name, got {key!r}")
        folder = run.path / schema.ROBUSTNESS_DIR / key
        return _read(folder) if (folder / SETTINGS_FILE).exists() else None
    stored = _stored(run)
    return _read(stored[0]) if stored else None


# --------------------------------------------------------------------------------------------
# derived views


def _check_result(result: Any) -> RobustnessResult:
    if not isinstance(result, RobustnessResult):
        raise TypeError(f"result must be a RobustnessResult, got {type(result).__name__}")
    return result


def flips(result: RobustnessResult, perturbation: str, severity: int) -> pd.DataFrame:
    """Rows whose prediction under ``(perturbation, severity)`` differs from the clean one.

    Returns
    -------
    DataFrame
        ``row, sample_id, label, clean_pred, pred, clean_is_correct, correct, became_wrong,
        became_right``, in row order. Unreadable images (pred -1) are left out.
    """
    result = _check_result(result)
    i, j = result.index_of(perturbation, severity)
    pred = result.predictions[i, j].astype(np.int64)
    changed = (pred >= 0) & (pred != result.clean_pred)
    label = result.labels[changed]
    clean_ok = result.clean_pred[changed] == label
    ok = pred[changed] == label
    return pd.DataFrame(
        {
            ROW: result.rows[changed],
            schema.SAMPLE_ID: result.sample_ids[changed],
            schema.LABEL: label,
            CLEAN_PRED: result.clean_pred[changed],
            schema.PRED: pred[changed],
            CLEAN_IS_CORRECT: clean_ok,
            CORRECT: ok,
            BECAME_WRONG: clean_ok & ~ok,
            BECAME_RIGHT: ~clean_ok & ok,
        }
    )


def first_flip_severity(
    result: RobustnessResult,
    *,
    perturbations: Sequence[str] | None = None,
    became_wrong: bool = False,
) -> pd.DataFrame:
    """The lowest severity at which each image's prediction changes, per perturbation.

    Parameters
    ----------
    result : RobustnessResult
    perturbations : list of str, optional
        Columns to compute; all of the result's by default.
    became_wrong : bool, keyword-only
        False: first severity whose prediction differs from the clean one. True: first severity
        at which an image the model got right becomes wrong (NaN for images wrong when clean).

    Returns
    -------
    DataFrame, one row per image of the result
        ``row, sample_id`` and one float column per perturbation: the severity, NaN if never.
    """
    result = _check_result(result)
    names = result.perturbations if perturbations is None else tuple(perturbations)
    out = pd.DataFrame({ROW: result.rows, schema.SAMPLE_ID: result.sample_ids})
    sev = np.asarray(result.severities, dtype=np.float64)
    for name in names:
        i, _ = result.index_of(name, result.severities[0])
        pred = result.predictions[i].astype(np.int64)  # [S, n]
        valid = pred >= 0
        if became_wrong:
            hit = valid & (pred != result.labels) & (result.clean_pred == result.labels)
        else:
            hit = valid & (pred != result.clean_pred)
        first = np.where(hit.any(axis=0), sev[np.argmax(hit, axis=0)], np.nan)
        out[name] = first
    return out


def per_slice(result: RobustnessResult, run: Any, spec: Any) -> pd.DataFrame:
    """The summary table restricted to the images of a slice.

    Parameters
    ----------
    result : RobustnessResult
    run : Run or DataFrame
        The run the result belongs to (or its samples table): the slice is applied to it.
    spec : SliceSpec

    Returns
    -------
    DataFrame, columns :data:`SUMMARY_COLUMNS`
        Over the result's rows inside the slice; NaN accuracies where the slice has none.
    """
    from ..store.runstore import Run
    from .slices import SliceSpec, apply_slice

    result = _check_result(result)
    if not isinstance(spec, SliceSpec):
        raise TypeError(f"spec must be a SliceSpec, got {type(spec).__name__}")
    if isinstance(run, Run):
        samples = run.samples
    elif isinstance(run, pd.DataFrame):
        samples = run
    else:
        raise TypeError(f"run must be a Run or its samples DataFrame, got {type(run).__name__}")
    if result.rows.size and int(result.rows.max()) >= len(samples):
        raise ValueError(
            f"result uses row {int(result.rows.max())} but samples has {len(samples)} rows: "
            "not the run this result was made on"
        )
    mask = apply_slice(samples, spec)[result.rows]
    return _summary_table(
        result.predictions,
        result.labels,
        result.clean_pred,
        result.perturbations,
        result.severities,
        mask=mask,
    )


def slice_vs_rest(result: RobustnessResult, run: Any, spec: Any) -> pd.DataFrame:
    """How much more a perturbation hurts inside a slice than outside it.

    Parameters
    ----------
    result : RobustnessResult
    run : Run or DataFrame
        The run the result belongs to (or its samples table).
    spec : SliceSpec

    Returns
    -------
    DataFrame, one row per (perturbation, severity)
        ``perturbation, severity, n_in, accuracy_in, low_in, high_in, drop_in, n_out,
        accuracy_out, low_out, high_out, drop_out, extra_drop`` where ``drop`` is the clean
        accuracy minus the perturbed one on the same images (fractions) and ``extra_drop =
        drop_in - drop_out``: positive when the slice suffers more. Intervals are 95% Wilson on
        the perturbed accuracy. Whether it *significantly* suffers more: ``break_in`` /
        ``break_out``, the share of the images right when clean that the perturbation makes
        wrong inside / outside the slice, ``p_value`` the one-sided Fisher exact test of
        ``break_in > break_out`` (the slices' test), ``p_adj`` Benjamini-Hochberg over the
        table's cells, ``significant`` ``p_adj < 0.05``.
    """
    from .slices import apply_slice

    inside = per_slice(result, run, spec)
    samples = run.samples if hasattr(run, "samples") else run
    mask = apply_slice(samples, spec)[result.rows]
    outside = _summary_table(
        result.predictions,
        result.labels,
        result.clean_pred,
        result.perturbations,
        result.severities,
        mask=~mask,
    )
    keep = [N, ACCURACY, LOW, HIGH, DROP]
    out = inside[[PERTURBATION, SEVERITY]].copy()
    for suffix, t in (("_in", inside), ("_out", outside)):
        for c in keep:
            out[f"{c}{suffix}"] = t[c].to_numpy()
    out["extra_drop"] = out["drop_in"] - out["drop_out"]
    return _suffers_more(out, result, mask)


def _suffers_more(out: pd.DataFrame, result: RobustnessResult, mask: np.ndarray) -> pd.DataFrame:
    """Add the test of "the slice suffers more": among the images right when clean, the share a
    perturbation breaks inside the slice against outside it (one-sided Fisher exact, the slices'
    test), Benjamini-Hochberg over the (perturbation, severity) cells."""
    from .slices import _fisher_core, bh_adjust

    labels = np.asarray(result.labels)
    was_right = np.asarray(result.clean_pred) == labels
    k_in, m_in, k_out, m_out = [], [], [], []
    for pi in range(len(result.perturbations)):
        for si in range(len(result.severities)):
            pred = np.asarray(result.predictions[pi, si])
            base = was_right & (pred >= 0)
            broke = base & (pred != labels)
            k_in.append(int((broke & mask).sum()))
            m_in.append(int((base & mask).sum()))
            k_out.append(int((broke & ~mask).sum()))
            m_out.append(int((base & ~mask).sum()))
    k_in, m_in, k_out, m_out = (np.asarray(a, dtype=np.int64) for a in (k_in, m_in, k_out, m_out))
    with np.errstate(invalid="ignore", divide="ignore"):
        out["break_in"] = np.where(m_in > 0, k_in / np.maximum(m_in, 1), np.nan)
        out["break_out"] = np.where(m_out > 0, k_out / np.maximum(m_out, 1), np.nan)
    p = np.ones(len(out))
    ok = (m_in > 0) & (m_out > 0)
    if ok.any():
        p[ok] = _fisher_core(k_in[ok], m_in[ok], (k_in + k_out)[ok], (m_in + m_out)[ok])
    out["p_value"] = p
    out["p_adj"] = bh_adjust(p) if len(p) else p
    out["significant"] = out["p_adj"] < 0.05
    return out


def fragile_images(result: RobustnessResult, perturbation: str) -> pd.DataFrame:
    """Images the model got right that a perturbation makes wrong, most fragile first.

    Returns
    -------
    DataFrame
        ``row, sample_id, severity`` (the lowest severity at which the image becomes wrong),
        sorted by severity then row; images never made wrong are left out.
    """
    first = first_flip_severity(result, perturbations=[perturbation], became_wrong=True)
    first = first.rename(columns={perturbation: SEVERITY}).dropna(subset=[SEVERITY])
    first[SEVERITY] = first[SEVERITY].astype(np.int64)
    return first.sort_values([SEVERITY, ROW], kind="stable").reset_index(drop=True)


#: Columns of :func:`accuracy_rises`.
RISE_COLUMNS = ["from_severity", "to_severity", "n", "gained", "lost", "p_value", "p_adj"]


def accuracy_rises(
    result: RobustnessResult, perturbation: str, *, include_clean: bool = True
) -> pd.DataFrame:
    """Does accuracy rise with severity? Paired tests on the same images.

    Every image is classified at every severity, so two severities are compared on the same
    images: for severities ``s < t`` (and the clean images as severity 0), ``gained`` counts
    the images right at ``t`` and wrong at ``s``, ``lost`` the reverse; the one-sided exact
    McNemar test ``P(Binomial(gained + lost, 1/2) >= gained)`` asks whether more were gained
    than chance allows, and Holm's correction runs over all pairs. Two unpaired intervals that
    overlap say nothing here: a rise from 60% to 75% on the same 100 images, with no image
    getting worse, is certain, though the two Wilson intervals overlap.

    Parameters
    ----------
    result : RobustnessResult
    perturbation : str
        One of ``result.perturbations``.
    include_clean : bool, keyword-only
        Compare with the unperturbed predictions too (as severity 0).

    Returns
    -------
    DataFrame, columns :data:`RISE_COLUMNS`
        One row per pair of severities; images unreadable at either are left out of it.
    """
    from scipy.stats import binom

    if not isinstance(result, RobustnessResult):
        raise TypeError(f"result must be a RobustnessResult, got {type(result).__name__}")
    if perturbation not in result.perturbations:
        raise ValueError(
            f"perturbation {perturbation!r} is not in result; it has {list(result.perturbations)}"
        )
    preds = np.asarray(result.predictions[result.perturbations.index(perturbation)])
    levels = list(result.severities)
    if include_clean:
        clean = np.asarray(result.clean_pred, dtype=preds.dtype)[None, :]
        preds = np.vstack([clean, preds])
        levels = [0, *levels]
    readable = preds >= 0
    right = preds == np.asarray(result.labels)[None, :]
    rows = []
    for a in range(len(levels)):
        for b in range(a + 1, len(levels)):
            both = readable[a] & readable[b]
            gained = int((right[b] & ~right[a] & both).sum())
            lost = int((right[a] & ~right[b] & both).sum())
            p = float(binom.sf(gained - 1, gained + lost, 0.5)) if gained + lost else 1.0
            rows.append([levels[a], levels[b], int(both.sum()), gained, lost, p])
    out = pd.DataFrame(rows, columns=RISE_COLUMNS[:-1])
    out["p_adj"] = _holm(out["p_value"].to_numpy(dtype=np.float64))
    return out


def _holm(p: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control)."""
    m = p.size
    if not m:
        return p.astype(np.float64)
    order = np.argsort(p, kind="mergesort")
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(stepped, 1.0)
    return out


def is_monotone(
    result: RobustnessResult, perturbation: str, *, alpha: float = 0.05, include_clean: bool = True
) -> bool:
    """True unless accuracy significantly rises between two severities (:func:`accuracy_rises`,
    Holm-adjusted p < ``alpha``)."""
    rises = accuracy_rises(result, perturbation, include_clean=include_clean)
    return not bool((rises["p_adj"] < alpha).any())
