"""How far to trust suspected label errors: two checks that need no ground truth.

Confident learning counts an image as a label error when the model is confidently sure of
another class. From predictions alone that looks the same as a confident model mistake, and with
few images per class its per-class thresholds are themselves noisy. These checks say when that
matters for a run (issue 17 §3; measured in ``bench/bench_many_class_label_issues.py``).

**Noise-rate bound.** If the labels carry a share ``rho`` of errors and the model were calibrated
on the true labels, its accuracy against the given labels would be about
``mean_confidence x (1 - rho)``. So ``bound = (mean_confidence - accuracy) / mean_confidence`` is
the most label noise the model's own confidence can account for (all of its overconfidence read
as label noise). Flagging more than that (the check uses the Wilson lower limit of the accuracy,
so the bound is generous) is *implausible*: at most ``bound / flagged share`` of the flags can be
real label errors, the rest are confident model mistakes. Flagging less is *indistinguishable*
from overconfidence: label noise and an overconfident model look the same in predictions. A
model less confident than accurate gives no bound.

**Thresholds on few images.** Class j's threshold is the mean probability the model gives label
j over the images labelled j. Its 95% interval (normal, from those images' spread) is reported
per class; a class whose interval is wider than ``+-max_half_width`` (default 0.1, a tenth of
the probability scale) has *too few images for its threshold*: which of its images count as
confidently elsewhere depends on a number the data barely pin down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from ..stats.intervals import wilson_interval

__all__ = ["NoiseRateCheck", "noise_entries", "noise_rate_check", "threshold_check"]

IMPLAUSIBLE = "implausible"
INDISTINGUISHABLE = "indistinguishable"
NO_BOUND = "no_bound"  # the model is less confident than accurate (or nothing is flagged)

#: threshold_check's default: a class threshold known to better than +-0.1 is usable
MAX_HALF_WIDTH = 0.1

# threshold_check's columns
CLASS = "class"
N = "n"
THRESHOLD = "threshold"
THRESHOLD_LOW = "threshold_low"
THRESHOLD_HIGH = "threshold_high"
TOO_FEW = "too_few"


@dataclass(frozen=True)
class NoiseRateCheck:
    """Flagged share of a run against the label noise its model's confidence can explain.

    Attributes
    ----------
    flagged_share : float
        Flagged images / all images.
    accuracy, accuracy_low : float
        Accuracy against the given labels and its Wilson lower limit.
    mean_confidence : float
        Mean top-class probability.
    bound : float
        ``(mean_confidence - accuracy) / mean_confidence``, clipped at 0: the label-noise rate
        that would explain all of the model's overconfidence.
    bound_high : float
        The same with ``accuracy_low`` (what the verdict uses).
    verdict : {"implausible", "indistinguishable", "no_bound"}
    max_real_share : float or None
        For "implausible": at most this share of the flags can be real label errors
        (``bound_high / flagged_share``).
    """

    flagged_share: float
    accuracy: float
    accuracy_low: float
    mean_confidence: float
    bound: float
    bound_high: float
    verdict: str
    max_real_share: float | None


def noise_rate_check(
    correct: Any, confidence: Any, flagged: Any, *, confidence_level: float = 0.95
) -> NoiseRateCheck:
    """Judge a run's flagged share against the noise its model's confidence can explain.

    Parameters
    ----------
    correct : array-like of bool, shape (n,)
        Prediction equals the given label.
    confidence : array-like of float, shape (n,)
        Top-class probability.
    flagged : array-like of bool, shape (n,)
        Suspected label errors.
    confidence_level : float, keyword-only
        Of the accuracy's Wilson interval.
    """
    c = np.asarray(correct, dtype=bool)
    p = np.asarray(confidence, dtype=np.float64)
    f = np.asarray(flagged, dtype=bool)
    if not (c.shape == p.shape == f.shape) or c.ndim != 1:
        raise ValueError(
            f"correct, confidence and flagged must be 1-D of one length, got shapes {c.shape},"
            f" {p.shape}, {f.shape}"
        )
    n = c.size
    if n == 0:
        nan = math.nan
        return NoiseRateCheck(0.0, nan, nan, nan, nan, nan, NO_BOUND, None)
    hits = int(c.sum())
    acc = hits / n
    low, _ = wilson_interval(hits, n, confidence=confidence_level)
    conf = float(p.mean())
    share = float(f.mean())
    bound = max(0.0, (conf - acc) / conf) if conf > 0 else 0.0
    bound_high = max(0.0, (conf - low) / conf) if conf > 0 else 0.0
    if conf <= low or share == 0.0:
        verdict, most = NO_BOUND, None
    elif share > bound_high:
        verdict, most = IMPLAUSIBLE, min(1.0, bound_high / share)
    else:
        verdict, most = INDISTINGUISHABLE, None
    return NoiseRateCheck(share, acc, float(low), conf, bound, bound_high, verdict, most)


def threshold_check(
    labels: Any,
    true_prob: Any,
    *,
    n_classes: int,
    max_half_width: float = MAX_HALF_WIDTH,
    confidence_level: float = 0.95,
) -> pd.DataFrame:
    """Each class's confident-learning threshold with its interval, and whether it rests on too
    few images.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Given labels ``0..n_classes-1``.
    true_prob : array-like of float, shape (n,)
        The probability the model gives each image's given label.
    n_classes : int, keyword-only
    max_half_width : float, keyword-only
        Widest usable half-interval, in probability.

    Returns
    -------
    DataFrame, one row per class: ``class, n, threshold, threshold_low, threshold_high,
    too_few`` (a class with fewer than 2 images has a NaN interval and is too few; one with no
    image has a NaN threshold and is not).
    """
    y = np.asarray(labels, dtype=np.int64)
    q = np.asarray(true_prob, dtype=np.float64)
    if y.shape != q.shape or y.ndim != 1:
        raise ValueError(
            f"labels and true_prob must be 1-D of one length, got {y.shape}, {q.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}, got [{y.min()}, {y.max()}]")
    n = np.bincount(y, minlength=n_classes).astype(np.int64)
    s1 = np.bincount(y, weights=q, minlength=n_classes)
    s2 = np.bincount(y, weights=q * q, minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(0.0, (s2 - n * mean**2) / (n - 1))
        half = NormalDist().inv_cdf(0.5 + confidence_level / 2) * np.sqrt(var / n)
    half = np.where(n >= 2, half, np.nan)
    too_few = (n == 1) | ((n >= 2) & (half > max_half_width))
    return pd.DataFrame(
        {
            CLASS: np.arange(n_classes, dtype=np.int64),
            N: n,
            THRESHOLD: mean,
            THRESHOLD_LOW: np.clip(mean - half, 0.0, 1.0),
            THRESHOLD_HIGH: np.clip(mean + half, 0.0, 1.0),
            TOO_FEW: too_few,
        }
    )


def noise_entries(noise: Any) -> pd.DataFrame:
    """The non-zero off-diagonal entries of an estimated noise matrix, largest first.

    ``noise`` is the matrix, ``noise[i, j]`` = P(given label i | true label j)
    (``schema.NOISE_MATRIX``), or the :class:`~analysis.data_issues.label_issues.NoiseEstimate`
    it comes from (read from its non-zero cells, never building the ``C x C`` matrix: 800 MB at
    10,000 classes). At most one entry per image is non-zero, so this table grows with the
    images, not with classes squared.

    Returns
    -------
    DataFrame with ``given, true, rate`` (rate = noise[given, true]), ties by (given, true).
    """
    if hasattr(noise, "cells") and hasattr(noise, "cell_noise"):
        c = noise.n_classes
        given, true = noise.cells[:, 0], noise.cells[:, 1]
        rate = np.nan_to_num(noise.cell_noise())
    else:
        z = np.asarray(noise, dtype=np.float64)
        if z.ndim != 2 or z.shape[0] != z.shape[1]:
            raise ValueError(f"noise must be a square (C, C) matrix, got shape {z.shape}")
        c = z.shape[1]
        flat = np.nan_to_num(z).ravel()
        idx = np.flatnonzero(flat > 0)
        given, true = np.divmod(idx, c)
        rate = flat[idx]
    keep = (rate > 0) & (given != true)
    given, true, rate = given[keep], true[keep], rate[keep]
    order = np.lexsort((given * c + true, -rate))
    return pd.DataFrame(
        {
            "given": given[order].astype(np.int64),
            "true": true[order].astype(np.int64),
            "rate": rate[order].astype(np.float64),
        }
    )
