"""Is this the user's model at all? Checks that a run's numbers can mean something.

A wrong preprocessing (``--resize 64`` with a crop of 224, ImageNet statistics on a model trained
otherwise, mean/std on the 0-255 scale), a class list in another order or the wrong checkpoint
all give the same picture: accuracy at the majority-class rate and a confidence that says
nothing. :func:`chance_check` tests for both after the pass, so a run like that says so loudly
instead of showing a page of meaningless slices. :func:`subset_error_effect` compares the error
rate of a group of images (e.g. photos with an EXIF rotation) with the rest, as the slices do.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .intervals import wilson_interval

#: Significance level of the one-sided test "accuracy > majority-class rate".
CHANCE_ALPHA = 0.01

#: Median entropy / log(C) above which predictions count as near uniform. Measured (10 classes,
#: random 112 px inputs): random-weight mobilenet_v3_small and efficientnet_b0 give 1.00, a
#: random-weight resnet18 0.62 (its untrained logits are not small: the binomial test catches it);
#: the bundled sample's trained mobilenet gives 0.04 on its evaluation set. At 0.95 the top class
#: of a 10-class model gets at most ~0.25 on the median image.
UNIFORM_ENTROPY = 0.95


@dataclass(frozen=True)
class ChanceCheck:
    """Whether a model beats always answering the most frequent class, and how sure it is.

    Attributes
    ----------
    n, n_correct : int
        Images and correct predictions.
    accuracy, accuracy_low, accuracy_high : float
        Accuracy with its 95% Wilson interval.
    majority_class : int
        The most frequent given label; ``majority_rate`` its share (the accuracy of always
        answering it).
    p_value : float
        One-sided exact binomial test, H0: accuracy <= majority_rate
        (``scipy.stats.binomtest(n_correct, n, majority_rate, alternative="greater")``).
    better_than_chance : bool
        ``p_value < alpha``.
    median_entropy : float
        Median of entropy / log(C) over images, in [0, 1] (1 = uniform predictions).
    near_uniform : bool
        ``median_entropy > uniform_entropy``.
    top_pred_class : int
        The most frequent prediction; ``top_pred_share`` its share of all predictions.
    alpha, uniform_entropy : float
        The thresholds used.
    """

    n: int
    n_correct: int
    accuracy: float
    accuracy_low: float
    accuracy_high: float
    majority_class: int
    majority_rate: float
    p_value: float
    better_than_chance: bool
    median_entropy: float
    near_uniform: bool
    top_pred_class: int
    top_pred_share: float
    alpha: float = CHANCE_ALPHA
    uniform_entropy: float = UNIFORM_ENTROPY

    @property
    def ok(self) -> bool:
        """Neither at chance nor near-uniform: the numbers can describe a working model."""
        return self.better_than_chance and not self.near_uniform

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict) -> ChanceCheck:
        keys = cls.__dataclass_fields__
        return cls(**{k: (math.nan if d.get(k) is None else d[k]) for k in keys if k in d})


def chance_check(
    labels: Any,
    probs: Any,
    *,
    alpha: float = CHANCE_ALPHA,
    uniform_entropy: float = UNIFORM_ENTROPY,
) -> ChanceCheck:
    """Test whether predictions beat the majority-class rate and are not near uniform.

    Parameters
    ----------
    labels : int array-like [N]
        Given labels, 0..C-1.
    probs : float array-like [N, C]
        Predicted class probabilities, rows summing to 1.
    alpha : float, keyword-only
        Level of the one-sided binomial test.
    uniform_entropy : float, keyword-only
        Median normalised entropy above which predictions count as near uniform.

    Returns
    -------
    ChanceCheck
        With no images, NaN numbers and ``better_than_chance`` False.
    """
    y = np.asarray(labels)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D [N, C], got shape {p.shape}")
    if y.ndim != 1 or len(y) != len(p):
        raise ValueError(
            f"labels must be 1-D with one entry per row of probs: {y.shape} vs {p.shape}"
        )
    n, c = p.shape
    if n and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= c):
        raise ValueError(f"labels must be integers in 0..{c - 1}")
    if not 0 < alpha < 1 or not 0 < uniform_entropy <= 1:
        raise ValueError(
            f"alpha and uniform_entropy must lie in (0, 1), got {alpha}, {uniform_entropy}"
        )
    if n == 0:
        nan = math.nan
        return ChanceCheck(
            0, 0, nan, nan, nan, -1, nan, nan, False, nan, False, -1, nan, alpha, uniform_entropy
        )
    from scipy.stats import binomtest

    pred = p.argmax(axis=1)
    k = int((pred == y).sum())
    counts = np.bincount(y, minlength=c)
    majority = int(counts.argmax())
    rate = float(counts[majority] / n)
    p_value = float(binomtest(k, n, rate, alternative="greater").pvalue) if rate < 1 else 1.0
    low, high = wilson_interval(k, n)
    if c > 1:
        ent = -(p * np.log(np.clip(p, 1e-12, 1.0))).sum(axis=1) / math.log(c)
        median_entropy = float(np.median(ent))
    else:
        median_entropy = 0.0
    pred_counts = np.bincount(pred, minlength=c)
    top = int(pred_counts.argmax())
    return ChanceCheck(
        n=n,
        n_correct=k,
        accuracy=k / n,
        accuracy_low=float(low),
        accuracy_high=float(high),
        majority_class=majority,
        majority_rate=rate,
        p_value=p_value,
        better_than_chance=p_value < alpha,
        median_entropy=median_entropy,
        near_uniform=median_entropy > uniform_entropy,
        top_pred_class=top,
        top_pred_share=float(pred_counts[top] / n),
        alpha=alpha,
        uniform_entropy=uniform_entropy,
    )


@dataclass(frozen=True)
class SubsetErrorEffect:
    """Error rate of a group of images against the rest, as the slices report it.

    ``p_value`` is the one-sided Fisher exact test that the group has more errors than chance
    (:func:`analysis.stats.slices.fisher_worse_p`); the rates carry 95% Wilson intervals (NaN for
    an empty side)."""

    n: int
    errors: int
    error_rate: float
    low: float
    high: float
    rest_n: int
    rest_errors: int
    rest_error_rate: float
    rest_low: float
    rest_high: float
    p_value: float


def subset_error_effect(correct: Any, in_subset: Any) -> SubsetErrorEffect:
    """Compare the error rate inside ``in_subset`` with the rest.

    Parameters
    ----------
    correct : bool array-like [N]
    in_subset : bool array-like [N]
    """
    from .slices import fisher_worse_p

    ok = np.asarray(correct, dtype=bool)
    sub = np.asarray(in_subset, dtype=bool)
    if ok.shape != sub.shape or ok.ndim != 1:
        raise ValueError(
            f"correct and in_subset must be 1-D of one length, got {ok.shape}, {sub.shape}"
        )
    n, rest_n = int(sub.sum()), int((~sub).sum())
    e, rest_e = int((~ok & sub).sum()), int((~ok & ~sub).sum())
    (lo, r_lo), (hi, r_hi) = wilson_interval(np.array([e, rest_e]), np.array([n, rest_n]))
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = e / n if n else math.nan
        rest_rate = rest_e / rest_n if rest_n else math.nan
    p_value = float(fisher_worse_p(e, n, e + rest_e, n + rest_n)) if n else math.nan
    return SubsetErrorEffect(
        n,
        e,
        rate,
        float(lo),
        float(hi),
        rest_n,
        rest_e,
        rest_rate,
        float(r_lo),
        float(r_hi),
        p_value,
    )
