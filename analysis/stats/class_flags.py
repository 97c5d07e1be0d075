"""Per-class flags, each a tested "worse": weak classes and confusion pairs.

A class is *weak* when its images are misclassified more often than the other classes' images:
the one-sided Fisher exact test of the slices (:func:`analysis.stats.slices.fisher_worse_p`,
class ``k``'s errors against everyone else's), Benjamini-Hochberg over every class present. A
*confusion pair* ``true -> predicted`` is flagged when images of the true class are predicted as
that class more often than the images of the other classes are (the same one-sided test on
"predicted as ``p``", among the images whose true class is not ``p``), Benjamini-Hochberg over
every ordered pair of present classes (pairs that never happen count with ``p = 1``). Both come
with 95% Wilson intervals.

The tests are exact at any size, so the flags hold with a handful of images per class: a class
of 3 images with 3 errors is flagged only when that is surprising after the correction over the
classes (with a 10% overall error rate and 100 classes it is not); the interval shows how little
3 images say. A point estimate ("recall more than 15 points below accuracy") would flag it.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .intervals import wilson_interval
from .slices import _fisher_core, bh_adjust

__all__ = [
    "CLASS_FLAG_COLUMNS",
    "PAIR_COLUMNS",
    "WorseTest",
    "confusion_pairs",
    "weak_classes",
    "worse_than_rest",
]

CLASS = "class"
SUPPORT = "support"  # images whose true class this is
ERRORS = "errors"
RECALL = "recall"
RECALL_LOW = "recall_low"  # 95% Wilson interval of recall
RECALL_HIGH = "recall_high"
REST_RECALL = "rest_recall"  # share right among the other classes' images
EXCESS_ERRORS = "excess_errors"  # errors - support x the other classes' error rate
P_VALUE = "p_value"  # one-sided Fisher: this class errs more than the others
P_ADJ = "p_adj"  # Benjamini-Hochberg over the classes present
SIGNIFICANT = "significant"

CLASS_FLAG_COLUMNS = [
    CLASS,
    SUPPORT,
    ERRORS,
    RECALL,
    RECALL_LOW,
    RECALL_HIGH,
    REST_RECALL,
    EXCESS_ERRORS,
    P_VALUE,
    P_ADJ,
    SIGNIFICANT,
]

TRUE = "true"
PRED = "pred"
COUNT = "count"  # images of class `true` predicted `pred`
RATE = "rate"  # count / support: share of the true class's images predicted `pred`
RATE_LOW = "rate_low"
RATE_HIGH = "rate_high"
BASE_RATE = (
    "base_rate"  # share of images of the other classes (not `true`, not `pred`) predicted `pred`
)

PAIR_COLUMNS = [
    TRUE,
    PRED,
    COUNT,
    SUPPORT,
    RATE,
    RATE_LOW,
    RATE_HIGH,
    BASE_RATE,
    P_VALUE,
    P_ADJ,
    SIGNIFICANT,
]


@dataclass(frozen=True, eq=False)
class WorseTest:
    """One-sided tests of groups against the rest, corrected together.

    Attributes
    ----------
    p_value : np.ndarray
        float64 [k], one-sided Fisher exact p of "this group errs more than the rest".
    p_adj : np.ndarray
        float64 [k], Benjamini-Hochberg over the ``n_tests`` groups.
    significant : np.ndarray
        bool [k], ``p_adj < alpha``.
    low, high : np.ndarray
        float64 [k], the 95% Wilson interval of each group's error rate.
    """

    p_value: np.ndarray
    p_adj: np.ndarray
    significant: np.ndarray
    low: np.ndarray
    high: np.ndarray


def worse_than_rest(
    n: Any,
    errors: Any,
    *,
    total: int,
    total_errors: int,
    alpha: float = 0.05,
    n_tests: int | None = None,
) -> WorseTest:
    """Which of several groups of images (clusters, outlier types, ...) err more than the rest.

    The slices' test for any family of groups: each group's one-sided Fisher exact p-value
    against the rows outside it, Benjamini-Hochberg over the family (``n_tests`` groups, default
    the ones given), and Wilson intervals of the error rates. A group holding every row, or
    none, gets ``p = 1``.

    Parameters
    ----------
    n, errors : array-like of int, shape (k,)
        Rows and errors of each group.
    total, total_errors : int, keyword-only
        Rows and errors of the whole table.
    alpha : float, keyword-only
    n_tests : int, optional, keyword-only
        Size of the family when it holds groups not listed here (they count as ``p = 1``).
    """
    n = np.asarray(n, dtype=np.int64)
    e = np.asarray(errors, dtype=np.int64)
    if n.shape != e.shape or n.ndim != 1:
        raise ValueError(f"n and errors must be 1-D of one length, got {n.shape} and {e.shape}")
    if np.any((e < 0) | (e > n) | (n > total)) or not 0 <= total_errors <= total:
        raise ValueError("inconsistent counts: need 0 <= errors <= n <= total")
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (e.g. 0.05), got {alpha!r}")
    p = np.ones(n.shape)
    ok = (n > 0) & (n < total)
    if ok.any():
        k = int(ok.sum())
        p[ok] = _fisher_core(e[ok], n[ok], np.full(k, total_errors), np.full(k, total))
    p_adj = bh_adjust(p, n_tests=n_tests) if n.size else p
    low, high = wilson_interval(e, n)
    return WorseTest(
        p_value=p,
        p_adj=p_adj,
        significant=p_adj < alpha,
        low=np.asarray(low, dtype=np.float64),
        high=np.asarray(high, dtype=np.float64),
    )


def _check(
    labels: Any, pred: Any, n_classes: Any, alpha: Any
) -> tuple[np.ndarray, np.ndarray, int]:
    y = np.asarray(labels)
    p = np.asarray(pred)
    for name, a in (("labels", y), ("pred", p)):
        if a.ndim != 1:
            raise ValueError(f"{name} must be 1-D, got shape {a.shape}")
        if a.size and (a.dtype == bool or not np.issubdtype(a.dtype, np.integer)):
            raise TypeError(f"{name} must be integer class ids, got dtype {a.dtype}")
    if y.shape != p.shape:
        raise ValueError(f"labels and pred must have the same length, got {y.size} and {p.size}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
    for name, a in (("labels", y), ("pred", p)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(
                f"{name} must be in 0..{n_classes - 1}, got values in [{a.min()}, {a.max()}]"
            )
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1) (e.g. 0.05), got {alpha!r}")
    return y.astype(np.int64), p.astype(np.int64), int(n_classes)


def weak_classes(labels: Any, pred: Any, *, n_classes: int, alpha: float = 0.05) -> pd.DataFrame:
    """Per class: recall with its interval, and whether the class is significantly worse.

    Parameters
    ----------
    labels, pred : array-like of int, shape (N,)
        Given labels and predictions, ``0 .. n_classes - 1``.
    n_classes : int, keyword-only
    alpha : float, keyword-only
        False-discovery rate of the flags.

    Returns
    -------
    DataFrame, columns :data:`CLASS_FLAG_COLUMNS`
        One row per class with at least one image, significant first, then by excess errors
        (largest first). ``p_value``: one-sided Fisher exact test of "this class's images are
        misclassified more often than the other classes'"; ``p_adj``: Benjamini-Hochberg over
        the classes present. A class holding every image (nothing to compare with) gets
        ``p = 1``.
    """
    y, p, c = _check(labels, pred, n_classes, alpha)
    support = np.bincount(y, minlength=c)
    wrong = y != p
    errors = np.bincount(y[wrong], minlength=c)
    present = np.flatnonzero(support > 0)
    if not present.size:
        return _empty(CLASS_FLAG_COLUMNS)
    n, e = support[present], errors[present]
    total, total_errors = int(y.size), int(wrong.sum())
    p_value = _fisher_core(e, n, np.full_like(n, total_errors), np.full_like(n, total))
    p_value[n >= total] = 1.0
    p_adj = bh_adjust(p_value)
    low, high = wilson_interval(n - e, n)
    rest_n = total - n
    with np.errstate(invalid="ignore", divide="ignore"):
        rest_rate = np.where(rest_n > 0, (total_errors - e) / np.maximum(rest_n, 1), np.nan)
    out = pd.DataFrame(
        {
            CLASS: present.astype(np.int64),
            SUPPORT: n.astype(np.int64),
            ERRORS: e.astype(np.int64),
            RECALL: (n - e) / n,
            RECALL_LOW: np.asarray(low, dtype=np.float64),
            RECALL_HIGH: np.asarray(high, dtype=np.float64),
            REST_RECALL: 1.0 - rest_rate,
            EXCESS_ERRORS: e - n * np.nan_to_num(rest_rate),
            P_VALUE: p_value,
            P_ADJ: p_adj,
            SIGNIFICANT: p_adj < alpha,
        }
    )
    return out.sort_values(
        [SIGNIFICANT, EXCESS_ERRORS, P_VALUE, CLASS],
        ascending=[False, False, True, True],
        kind="mergesort",
    ).reset_index(drop=True)


def confusion_pairs(
    labels: Any, pred: Any, *, n_classes: int, alpha: float = 0.05, min_count: int = 1
) -> pd.DataFrame:
    """Every ``true -> predicted`` confusion that happens, with its rate, interval and test.

    Parameters
    ----------
    labels, pred : array-like of int, shape (N,)
    n_classes : int, keyword-only
    alpha : float, keyword-only
        False-discovery rate of the flags.
    min_count : int, keyword-only
        Pairs with fewer images are left out of the table (they still count in the correction).

    Returns
    -------
    DataFrame, columns :data:`PAIR_COLUMNS`
        One row per pair with ``count >= min_count``, significant first, then by count and rate.
        ``rate`` is the share of the true class's images predicted as ``pred`` (Wilson
        interval); ``base_rate`` the share of the images of every other class (neither ``true``
        nor ``pred``) predicted as ``pred``; ``p_value`` the one-sided Fisher exact test of
        ``rate > base_rate``; ``p_adj`` Benjamini-Hochberg over all ``m (m - 1)`` ordered pairs
        of the ``m`` classes present (pairs with no image count with ``p = 1``).
    """
    y, p, c = _check(labels, pred, n_classes, alpha)
    if isinstance(min_count, bool) or not isinstance(min_count, numbers.Integral) or min_count < 1:
        raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
    wrong = y != p
    if not wrong.any():
        return _empty(PAIR_COLUMNS)
    support = np.bincount(y, minlength=c)
    predicted_as = np.bincount(p, minlength=c)  # every image predicted as k (right or wrong)
    code, count = np.unique(y[wrong] * c + p[wrong], return_counts=True)
    t, q = np.divmod(code, c)
    # the comparison group: images whose true class is neither t nor q
    other_n = y.size - support[t] - support[q]
    # predicted_as[q] also counts class q's own right answers and the pair itself: neither is in
    # the comparison group
    other_e = predicted_as[q] - _right(y, p, c)[q] - count
    m = int((support > 0).sum())
    n_pairs = max(m * (m - 1), len(count))
    total_n = support[t] + other_n
    total_e = count + other_e
    p_value = np.ones(len(count))
    ok = other_n > 0
    p_value[ok] = _fisher_core(count[ok], support[t][ok], total_e[ok], total_n[ok])
    p_adj = bh_adjust(p_value, n_tests=n_pairs)
    low, high = wilson_interval(count, support[t])
    with np.errstate(invalid="ignore", divide="ignore"):
        base = np.where(other_n > 0, other_e / np.maximum(other_n, 1), np.nan)
    out = pd.DataFrame(
        {
            TRUE: t.astype(np.int64),
            PRED: q.astype(np.int64),
            COUNT: count.astype(np.int64),
            SUPPORT: support[t].astype(np.int64),
            RATE: count / support[t],
            RATE_LOW: np.asarray(low, dtype=np.float64),
            RATE_HIGH: np.asarray(high, dtype=np.float64),
            BASE_RATE: base,
            P_VALUE: p_value,
            P_ADJ: p_adj,
            SIGNIFICANT: p_adj < alpha,
        }
    )
    out = out[out[COUNT] >= min_count]
    return out.sort_values(
        [SIGNIFICANT, COUNT, RATE, TRUE, PRED],
        ascending=[False, False, False, True, True],
        kind="mergesort",
    ).reset_index(drop=True)


def _right(y: np.ndarray, p: np.ndarray, c: int) -> np.ndarray:
    return np.bincount(y[y == p], minlength=c)


def _empty(columns: list[str]) -> pd.DataFrame:
    ints = {CLASS, SUPPORT, ERRORS, TRUE, PRED, COUNT}
    return pd.DataFrame(
        {
            col: np.array(
                [], dtype="int64" if col in ints else bool if col == SIGNIFICANT else "float64"
            )
            for col in columns
        }
    )
