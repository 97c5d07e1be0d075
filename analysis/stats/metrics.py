"""Classification metrics with honest uncertainty.

Shaped like ``sklearn.metrics``: data first (``y_true, y_pred`` or ``y_true, probs``), options
keyword-only, labels are integers ``0..K-1`` (class names are display-only and never needed
here). Every headline number is an :class:`~analysis.stats.intervals.Estimate` with a 95% interval:

========================  =====================================================================
accuracy, top-k, per-bin  Wilson score interval (closed form)
accuracy, per-class
precision and recall
balanced accuracy,        percentile bootstrap over rows, drawn as multinomial resamples of the
macro/weighted P/R/F1,    confusion matrix's non-zero cells (exactly the row bootstrap, cost
per-class F1              independent of the number of rows)
ECE, log loss             percentile bootstrap over rows (vectorised index matrices); above
                          200,000 rows its large-sample form: ECE resamples draw the bins'
                          counts exactly and each bin's sum from its normal limit, the log loss
                          (a mean) gets the normal interval (``_large_sample_row_estimates``)
ROC-AUC (per class,       DeLong-style normal interval from placement values; the macro average
macro)                    uses the per-row influence of every class's AUC, so the covariance
                          between classes is accounted for
average precision (per    percentile bootstrap over rows, drawn as per-row draw counts shared
class, macro)             by every class (so the macro interval keeps the covariance between
                          classes); each class is sorted once, and a resample costs one
                          cumulative sum over its ranking. That is rows x classes x resamples
                          cells, so the resamples are capped at
                          ``min(n_boot, max(200, 2**29 // (rows x classes)))``: 1000 up to
                          ~537k rows x classes, 536 for 100k x 10
many rows x classes       above 2**22 rows x classes (e.g. 100k x 1000): AUC and AP values are
(one-vs-rest)             the same, counted from each column's sorted values; per-class AUC
                          keeps DeLong; per-class AP gets Boyd et al.'s logit interval; the
                          macro AUC / AP intervals treat classes as independent (see
                          ``_one_vs_rest_sorted``)
========================  =====================================================================

The count bootstrap draws cells of the confusion matrix while it has few of them and rows once
it has more than one non-zero cell per 16 rows (hundreds of classes): the same row bootstrap,
at a cost independent of the number of classes.

Invalid input (wrong shape or dtype, labels out of range, probabilities that are not
probabilities) raises ``ValueError``/``TypeError`` naming what was given and what was expected;
this check lives in one place, :func:`check_classification_inputs`. Ill-defined values (empty
input, zero division, a class with no positives) are NaN with an
:class:`~analysis.stats.intervals.UndefinedMetricWarning`, never an exception. Averages over classes
("macro", "weighted") skip classes where the value is undefined, as scikit-learn does with
``zero_division=np.nan``; a class that is never predicted still counts with recall 0 and F1 0.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from analysis import schema
from analysis.checks import (
    PROB_ROW_SUM_ATOL,
    check_bootstrap,
    check_confidence,
    check_int,
    row_losses,
)
from analysis.stats.intervals import (
    Estimate,
    UndefinedMetricWarning,
    bootstrap_intervals,
    wilson_estimate,
    wilson_interval,
)
from analysis.threads import run_blocks

__all__ = [
    "Calibration",
    "ClassificationInputs",
    "MetricsSummary",
    "OneVsRest",
    "PrecisionRecallF1",
    "UndefinedMetricWarning",
    "accuracy_score",
    "balanced_accuracy_score",
    "check_classification_inputs",
    "confusion_matrix",
    "expected_calibration_error",
    "imbalance_warning",
    "log_loss",
    "one_vs_rest_scores",
    "per_class_metrics",
    "precision_recall_f1",
    "summary",
    "top_confusions",
    "top_k_accuracy_score",
]

# ---- column names of the DataFrames returned here (defined once) -----------------------------
CLASS = "class"  # int class id 0..K-1
SUPPORT = "support"  # rows whose true label is the class
N_PRED = "n_pred"  # rows predicted as the class
TP = "tp"  # true positives
PRECISION = "precision"
PRECISION_LOW = "precision_low"
PRECISION_HIGH = "precision_high"
RECALL = "recall"
RECALL_LOW = "recall_low"
RECALL_HIGH = "recall_high"
F1 = "f1"
F1_LOW = "f1_low"
F1_HIGH = "f1_high"
N_POS = "n_pos"  # one-vs-rest positives (== support)
ROC_AUC = "roc_auc"
ROC_AUC_LOW = "roc_auc_low"
ROC_AUC_HIGH = "roc_auc_high"
AVERAGE_PRECISION = "average_precision"
AVERAGE_PRECISION_LOW = "average_precision_low"
AVERAGE_PRECISION_HIGH = "average_precision_high"

BIN = "bin"  # reliability bin index 0..n_bins-1
BIN_LOW = "bin_low"  # bin covers (bin_low, bin_high]; bin 0 also holds confidence 0
BIN_HIGH = "bin_high"
COUNT = "count"
MEAN_CONFIDENCE = "mean_confidence"
ACCURACY = "accuracy"
ACCURACY_LOW = "accuracy_low"
ACCURACY_HIGH = "accuracy_high"
GAP = "gap"  # accuracy - mean_confidence: > 0 under-confident, < 0 over-confident

TRUE = "true"  # top_confusions: true class id
PRED = schema.PRED  # predicted class id
SHARE_OF_TRUE_CLASS = "share_of_true_class"  # count / support of the true class

NORMALIZE = (None, "true", "pred", "all")
#: top-k accuracies the summary reports (each when k < n_classes); top-5 is the number people
#: compare at hundreds of classes (ImageNet's convention)
TOP_K = (2, 3, 5)
AVERAGES = ("macro", "weighted")

# imbalance_warning thresholds (see its docstring)
IMBALANCE_MAX_RATIO = 5.0
IMBALANCE_MAX_GAP = 0.05

# probabilities: each row must sum to 1 within this absolute tolerance (float32 softmax is ~1e-6)
PROB_SUM_ATOL = PROB_ROW_SUM_ATOL  # one tolerance for every module (analysis.checks)

_CHUNK_CELLS = 1 << 22  # cells of a multinomial draw matrix materialised at once
# _count_replicates draws rows instead of cells once the table has more than one non-zero cell
# per this many rows (a multinomial cell costs about as much as drawing this many rows)
_ROWS_PER_CELL = 16
# one_vs_rest_scores switches to its sorted-values path above this many rows x classes (see
# _one_vs_rest_sorted): the exact shared-resample AP bootstrap costs ~200 x this many cells
_EXACT_OVR_CELLS = 1 << 22

# Average precision bootstrap: it touches rows x classes x resamples cells (~3 ns each), so the
# resamples are capped to keep it to a couple of seconds, but never below a floor under which
# the 2.5% / 97.5% percentiles would rest on a handful of resamples.
_AP_BOOT_CELLS = 1 << 29
_AP_MIN_BOOT = 200
_SUMMARY_VERSION = 1
_DENSE_CONFUSION_MAX = 64  # classes up to which metrics.json stores the confusion densely


# ==============================================================================================
# Input check (the only one)


@dataclass(frozen=True)
class ClassificationInputs:
    """Validated inputs: ``y_true`` (n,) int64, optional ``y_pred`` (n,) int64, optional
    ``probs`` (n, K) float64 (or float32 when given as float32), ``n_classes`` K, and ``eps``: the machine epsilon of the dtype
    ``probs`` came in (used to clip probabilities in the log loss, as scikit-learn does)."""

    y_true: np.ndarray
    y_pred: np.ndarray | None
    probs: np.ndarray | None
    n_classes: int
    eps: float

    @property
    def n(self) -> int:
        return int(self.y_true.shape[0])


def _check_labels(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D of shape (n,), got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class ids 0..K-1, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_range(y: np.ndarray, name: str, k: int) -> None:
    bad = (y < 0) | (y >= k)
    if np.any(bad):
        raise ValueError(
            f"{name} holds labels outside 0..{k - 1} (n_classes={k}): "
            f"{np.unique(y[bad])[:5].tolist()}"
        )


def check_classification_inputs(
    y_true: Any,
    y_pred: Any = None,
    probs: Any = None,
    *,
    n_classes: int | None = None,
) -> ClassificationInputs:
    """Validate metric inputs once; every public metric calls this.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
        True class ids in ``0..K-1``.
    y_pred : array-like of int, shape (n,), optional
        Predicted class ids in ``0..K-1``.
    probs : array-like of float, shape (n, K), optional
        Predicted class probabilities: finite, in [0, 1], rows summing to 1 within
        ``PROB_SUM_ATOL``.
    n_classes : int, keyword-only, optional
        K. Defaults to ``probs.shape[1]``, else ``max(labels) + 1`` (0 for empty input).

    Returns
    -------
    ClassificationInputs

    Raises
    ------
    ValueError, TypeError
        Naming the argument, what was given and what was expected.
    """
    k = check_int(n_classes, "n_classes", minimum=1, allow_none=True)
    yt = _check_labels(y_true, "y_true")
    yp = None if y_pred is None else _check_labels(y_pred, "y_pred")
    if yp is not None and yp.shape != yt.shape:
        raise ValueError(
            f"y_true and y_pred must have the same length, got {yt.shape[0]} and {yp.shape[0]}"
        )
    p = None
    eps = float(np.finfo(np.float64).eps)
    if probs is not None:
        p_in = np.asarray(probs)
        if p_in.ndim != 2:
            raise ValueError(f"probs must be 2-D of shape (n, n_classes), got shape {p_in.shape}")
        if p_in.shape[0] != yt.shape[0]:
            raise ValueError(
                f"probs must have one row per label, got {p_in.shape[0]} rows for "
                f"{yt.shape[0]} labels"
            )
        if p_in.size and (p_in.dtype == bool or not np.issubdtype(p_in.dtype, np.number)):
            raise TypeError(f"probs must be floats, got dtype {p_in.dtype}")
        if k is not None and p_in.shape[1] != k:
            raise ValueError(f"probs must have n_classes={k} columns, got shape {p_in.shape}")
        if np.issubdtype(p_in.dtype, np.floating):
            eps = float(np.finfo(p_in.dtype).eps)
        # float32 stays float32: a run's probs.npy is float32, and at 100k x 1000 classes a
        # float64 copy would be 800 MB and most of the time spent here
        p = p_in if p_in.dtype in (np.float32, np.float64) else p_in.astype(np.float64)
        if not np.all(np.isfinite(p)):
            raise ValueError("probs must be finite, got NaN or inf")
        if p.size and (p.min() < -PROB_SUM_ATOL or p.max() > 1 + PROB_SUM_ATOL):
            raise ValueError(
                f"probs must lie in [0, 1], got values in [{p.min():.4g}, {p.max():.4g}]"
                " (pass probabilities, not logits)"
            )
        sums = p.sum(axis=1, dtype=np.float64)
        bad = np.abs(sums - 1.0) > PROB_SUM_ATOL
        if np.any(bad):
            raise ValueError(
                f"probs rows must sum to 1 (within {PROB_SUM_ATOL}), got row sums "
                f"{sums[bad][:3].round(4).tolist()} (pass softmax probabilities, not logits)"
            )
        k = p.shape[1] if k is None else k
    if k is None:
        k = 0 if yt.size == 0 else int(max(yt.max(), -1 if yp is None else yp.max())) + 1
    _check_range(yt, "y_true", k)
    if yp is not None:
        _check_range(yp, "y_pred", k)
    return ClassificationInputs(yt, yp, p, int(k), eps)


def _warn(message: str) -> None:
    warnings.warn(message, UndefinedMetricWarning, stacklevel=3)


def _nan_estimate(method: str, confidence: float, n: int = 0) -> Estimate:
    return Estimate(math.nan, math.nan, math.nan, method, n, confidence)


# ==============================================================================================
# Confusion matrix and count-based metrics


def _confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(y_true * k + y_pred, minlength=k * k).reshape(k, k).astype(np.int64)


def confusion_matrix(
    y_true: Any, y_pred: Any, *, n_classes: int | None = None, normalize: str | None = None
) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = rows with true class ``i`` predicted as ``j``.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
    n_classes : int, keyword-only, optional
    normalize : {None, "true", "pred", "all"}, keyword-only
        None: counts (int64). "true": divide each row by its sum (rows = recall-like),
        "pred": each column by its sum, "all": by n. A zero row/column (a class never present /
        never predicted) gives NaN there, with a warning.

    Returns
    -------
    ndarray of shape (K, K)
    """
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {list(NORMALIZE)}, got {normalize!r}")
    x = check_classification_inputs(y_true, y_pred, n_classes=n_classes)
    return _normalize(_confusion(x.y_true, x.y_pred, x.n_classes), normalize)


def _normalize(cm: np.ndarray, normalize: str | None) -> np.ndarray:
    if normalize is None:
        return cm
    if normalize == "true":
        denom, what = cm.sum(axis=1, keepdims=True), "rows (classes never present)"
    elif normalize == "pred":
        denom, what = cm.sum(axis=0, keepdims=True), "columns (classes never predicted)"
    else:
        denom, what = np.array(cm.sum()), "all (empty input)"
    zero = np.flatnonzero(np.ravel(denom) == 0)
    if zero.size:
        classes = "" if normalize == "all" else f" for classes {zero.tolist()}"
        _warn(f"confusion matrix normalised over {what} divides by 0{classes}: NaN")
    with np.errstate(invalid="ignore", divide="ignore"):
        return cm / np.where(denom == 0, np.nan, denom)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def _nanmean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    ok = np.isfinite(x)
    cnt = ok.sum(axis=axis)
    tot = np.where(ok, x, 0.0).sum(axis=axis)
    return _ratio(tot, cnt)


def _nanaverage(x: np.ndarray, weights: np.ndarray, axis: int = -1) -> np.ndarray:
    """Weighted mean over finite entries (scikit-learn's ``_nanaverage``): falls back to the
    plain mean of the finite entries where their weights sum to 0."""
    ok = np.isfinite(x)
    w = np.where(ok, weights, 0.0)
    wsum = w.sum(axis=axis)
    weighted = _ratio((w * np.where(ok, x, 0.0)).sum(axis=axis), wsum)
    return np.where(wsum > 0, weighted, _nanmean(x, axis=axis))


def _class_scores(tp: np.ndarray, n_true: np.ndarray, n_pred: np.ndarray) -> dict[str, Any]:
    """Per-class precision/recall/F1 (last axis = class), NaN where undefined."""
    return {
        PRECISION: _ratio(tp, n_pred),
        RECALL: _ratio(tp, n_true),
        F1: _ratio(2.0 * tp, n_true + n_pred),
    }


def _averaged(tp: np.ndarray, n_true: np.ndarray, n_pred: np.ndarray, average: str) -> dict:
    scores = _class_scores(tp, n_true, n_pred)
    if average == "macro":
        return {name: _nanmean(v) for name, v in scores.items()}
    return {name: _nanaverage(v, n_true.astype(np.float64)) for name, v in scores.items()}


def _count_replicates(
    cm: np.ndarray, *, n_boot: int, seed: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-bootstrap replicates of (tp, n_true, n_pred), each of shape (n_boot, K).

    Resampling the n rows with replacement makes the confusion cells
    ``Multinomial(n, cm / n)``; only non-zero cells can be drawn, so the draw is over those
    (at most min(n, K^2) cells), in chunks.
    """
    k = cm.shape[0]
    n = int(cm.sum())
    flat = cm.ravel()
    cells = np.flatnonzero(flat)
    p = flat[cells] / n
    t_cls, p_cls = cells // k, cells % k
    diag = t_cls == p_cls
    # group cells by true class (already sorted, row-major) and by predicted class
    t_classes, t_starts = np.unique(t_cls, return_index=True)
    p_order = np.argsort(p_cls, kind="stable")
    p_classes, p_starts = np.unique(p_cls[p_order], return_index=True)
    tp = np.zeros((n_boot, k), dtype=np.int64)
    n_true = np.zeros((n_boot, k), dtype=np.int64)
    n_pred = np.zeros((n_boot, k), dtype=np.int64)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // max(cells.size, 1))
    # numpy draws a multinomial one cell after another: with hundreds of classes the table
    # has tens of thousands of cells and drawing the n rows themselves is several times faster
    # (the same distribution: the row bootstrap is what the multinomial stands for)
    by_rows = cells.size > n // _ROWS_PER_CELL
    if by_rows:
        row_cell = np.repeat(np.arange(cells.size, dtype=np.int64), flat[cells])
        chunk = max(1, _CHUNK_CELLS // max(n, cells.size))
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        if by_rows:
            b = stop - start
            idx = rng.integers(0, n, size=(b, n), dtype=np.int32 if n < 2**31 else np.int64)
            keys = row_cell[idx] + cells.size * np.arange(b)[:, None]
            draws = np.bincount(keys.ravel(), minlength=b * cells.size).reshape(b, cells.size)
        else:
            draws = rng.multinomial(n, p, size=stop - start)
        tp[start:stop, t_cls[diag]] = draws[:, diag]
        n_true[start:stop, t_classes] = np.add.reduceat(draws, t_starts, axis=1)
        n_pred[start:stop, p_classes] = np.add.reduceat(draws[:, p_order], p_starts, axis=1)
    return tp, n_true, n_pred


def _boot_estimate(value: float, reps: np.ndarray, *, n: int, confidence: float) -> Estimate:
    """Percentile interval, NaN replicates dropped silently (a class absent from a resample)."""
    ok = np.isfinite(reps)
    if not ok.any():
        return Estimate(value, math.nan, math.nan, "bootstrap", n, confidence)
    alpha = 1.0 - confidence
    low, high = np.quantile(reps[ok], [alpha / 2, 1 - alpha / 2])
    return Estimate(value, float(low), float(high), "bootstrap", n, confidence)


def _columnwise_interval(reps: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-column percentile bounds of (n_boot, K) replicates, NaN-aware."""
    alpha = 1.0 - confidence
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
    return low, high


def _warn_undefined(scores: dict[str, np.ndarray], why: dict[str, str]) -> None:
    for name, values in scores.items():
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            _warn(
                f"{name} is undefined for classes {bad[:20].tolist()} ({why[name]}): NaN, "
                "left out of macro/weighted averages"
            )


_WHY = {
    PRECISION: "never predicted",
    RECALL: "never present",
    F1: "never present nor predicted",
}


def accuracy_score(
    y_true: Any, y_pred: Any, *, n_classes: int | None = None, confidence: float = 0.95
) -> Estimate:
    """Fraction of rows with ``y_pred == y_true``, with a Wilson interval.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
    n_classes : int, keyword-only, optional
    confidence : float, keyword-only

    Returns
    -------
    Estimate
        ``method="wilson"``; NaN with a warning for empty input.
    """
    confidence = check_confidence(confidence)
    x = check_classification_inputs(y_true, y_pred, n_classes=n_classes)
    return _accuracy(int((x.y_true == x.y_pred).sum()), x.n, confidence)


def _accuracy(correct: int, n: int, confidence: float) -> Estimate:
    if n == 0:
        _warn("accuracy of empty input is undefined: NaN")
        return _nan_estimate("wilson", confidence)
    return wilson_estimate(correct, n, confidence=confidence)


def balanced_accuracy_score(
    y_true: Any,
    y_pred: Any,
    *,
    n_classes: int | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Mean per-class recall over the classes present in ``y_true``, bootstrap interval.

    Same as scikit-learn's ``balanced_accuracy_score`` (``adjusted=False``): classes that are
    predicted but never present are left out.

    Returns
    -------
    Estimate
        ``method="bootstrap"``; NaN with a warning for empty input.
    """
    confidence = check_confidence(confidence)
    n_boot, seed = check_bootstrap(n_boot, seed)
    x = check_classification_inputs(y_true, y_pred, n_classes=n_classes)
    cm = _confusion(x.y_true, x.y_pred, x.n_classes)
    if x.n == 0:
        _warn("balanced accuracy of empty input is undefined: NaN")
        return _nan_estimate("bootstrap", confidence)
    tp, nt, npred = _count_replicates(cm, n_boot=n_boot, seed=seed)
    value = float(_nanmean(_ratio(np.diag(cm), cm.sum(axis=1))))
    reps = _nanmean(_ratio(tp, nt))
    return _boot_estimate(value, reps, n=x.n, confidence=confidence)


@dataclass(frozen=True)
class PrecisionRecallF1:
    """Averaged precision, recall and F1, each an :class:`Estimate` (bootstrap interval)."""

    precision: Estimate
    recall: Estimate
    f1: Estimate
    average: str


def precision_recall_f1(
    y_true: Any,
    y_pred: Any,
    *,
    n_classes: int | None = None,
    average: str = "macro",
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> PrecisionRecallF1:
    """Macro or support-weighted precision, recall and F1 with bootstrap intervals.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n,)
    average : {"macro", "weighted"}, keyword-only
        "macro": unweighted mean over classes; "weighted": weighted by support.
        Classes where a score is undefined (precision of a class never predicted, recall of a
        class never present) are skipped with a warning, as scikit-learn does with
        ``zero_division=np.nan``.
    n_boot, confidence, seed : keyword-only
        Bootstrap options; the three scores share the same resamples.

    Returns
    -------
    PrecisionRecallF1
    """
    if average not in AVERAGES:
        raise ValueError(f"average must be one of {list(AVERAGES)}, got {average!r}")
    confidence = check_confidence(confidence)
    n_boot, seed = check_bootstrap(n_boot, seed)
    x = check_classification_inputs(y_true, y_pred, n_classes=n_classes)
    cm = _confusion(x.y_true, x.y_pred, x.n_classes)
    if x.n == 0:
        _warn("precision, recall and F1 of empty input are undefined: NaN")
        nan = _nan_estimate("bootstrap", confidence)
        return PrecisionRecallF1(nan, nan, nan, average)
    _warn_undefined(_class_scores(np.diag(cm), cm.sum(1), cm.sum(0)), _WHY)
    reps = _count_replicates(cm, n_boot=n_boot, seed=seed)
    return _prf(cm, reps, average=average, confidence=confidence)


def _prf(
    cm: np.ndarray, reps: tuple[np.ndarray, ...], *, average: str, confidence: float
) -> PrecisionRecallF1:
    n = int(cm.sum())
    values = _averaged(np.diag(cm), cm.sum(1), cm.sum(0), average)
    boots = _averaged(*reps, average)
    est = {
        name: _boot_estimate(float(values[name]), boots[name], n=n, confidence=confidence)
        for name in values
    }
    return PrecisionRecallF1(est[PRECISION], est[RECALL], est[F1], average)


def per_class_metrics(
    y_true: Any,
    y_pred: Any,
    *,
    n_classes: int | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Per-class precision, recall, F1 and support with intervals.

    Returns
    -------
    DataFrame, one row per class 0..K-1
        ``class, support, n_pred, tp, precision, precision_low, precision_high, recall,
        recall_low, recall_high, f1, f1_low, f1_high``. Precision (tp of n_pred) and recall
        (tp of support) have Wilson intervals; F1 a bootstrap interval. Undefined: NaN.
    """
    confidence = check_confidence(confidence)
    n_boot, seed = check_bootstrap(n_boot, seed)
    x = check_classification_inputs(y_true, y_pred, n_classes=n_classes)
    cm = _confusion(x.y_true, x.y_pred, x.n_classes)
    _warn_undefined(_class_scores(np.diag(cm), cm.sum(1), cm.sum(0)), _WHY)
    reps = _count_replicates(cm, n_boot=n_boot, seed=seed) if x.n else None
    return _per_class_table(cm, reps, confidence=confidence)


def _per_class_table(
    cm: np.ndarray, reps: tuple[np.ndarray, ...] | None, *, confidence: float
) -> pd.DataFrame:
    k = cm.shape[0]
    tp, nt, npred = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    scores = _class_scores(tp, nt, npred)
    p_low, p_high = wilson_interval(tp, npred, confidence=confidence)
    r_low, r_high = wilson_interval(tp, nt, confidence=confidence)
    if reps is None:
        f_low = f_high = np.full(k, np.nan)
    else:
        f_low, f_high = _columnwise_interval(_class_scores(*reps)[F1], confidence)
        undefined = ~np.isfinite(scores[F1])
        f_low, f_high = np.where(undefined, np.nan, f_low), np.where(undefined, np.nan, f_high)
    return pd.DataFrame(
        {
            CLASS: np.arange(k, dtype=np.int64),
            SUPPORT: nt.astype(np.int64),
            N_PRED: npred.astype(np.int64),
            TP: tp.astype(np.int64),
            PRECISION: scores[PRECISION],
            PRECISION_LOW: np.asarray(p_low, dtype=np.float64).reshape(k),
            PRECISION_HIGH: np.asarray(p_high, dtype=np.float64).reshape(k),
            RECALL: scores[RECALL],
            RECALL_LOW: np.asarray(r_low, dtype=np.float64).reshape(k),
            RECALL_HIGH: np.asarray(r_high, dtype=np.float64).reshape(k),
            F1: scores[F1],
            F1_LOW: f_low,
            F1_HIGH: f_high,
        }
    )


def top_confusions(
    y_true: Any, y_pred: Any, *, n_classes: int | None = None, k: int = 10
) -> pd.DataFrame:
    """The ``k`` most frequent off-diagonal (true, predicted) pairs.

    Returns
    -------
    DataFrame with columns ``true, pred, count, share_of_true_class``
        Only pairs with count > 0, sorted by count (desc), then share, then true, pred.
        ``share_of_true_class`` = count / support of the true class, in (0, 1].
    """
    k = check_int(k, "k", minimum=1)
    x = check_classification_inputs(y_true, y_pred, n_classes=n_classes)
    cm = _confusion(x.y_true, x.y_pred, x.n_classes)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    t, p = np.nonzero(off)
    counts = off[t, p]
    share = counts / cm.sum(axis=1)[t]
    order = np.lexsort((p, t, -share, -counts))[:k]
    return pd.DataFrame(
        {
            TRUE: t[order].astype(np.int64),
            PRED: p[order].astype(np.int64),
            COUNT: counts[order].astype(np.int64),
            SHARE_OF_TRUE_CLASS: share[order].astype(np.float64),
        }
    )


def imbalance_warning(
    y_true: Any,
    *,
    n_classes: int | None = None,
    y_pred: Any = None,
    max_ratio: float = IMBALANCE_MAX_RATIO,
    max_gap: float = IMBALANCE_MAX_GAP,
) -> str | None:
    """A short message when class imbalance makes plain accuracy misleading, else None.

    Triggers (any of):

    - a class in ``0..n_classes-1`` has no samples (accuracy says nothing about it);
    - largest / smallest class count ``>= max_ratio`` (default 5: the majority class
      outweighs the minority five to one in accuracy);
    - with ``y_pred``: ``|accuracy - balanced accuracy| >= max_gap`` (default 0.05, five
      percentage points: accuracy and mean per-class recall tell different stories).

    Empty input gives None (nothing to warn about yet).
    """
    if isinstance(max_ratio, bool) or not isinstance(max_ratio, numbers.Real) or max_ratio < 1:
        raise ValueError(f"max_ratio must be a number >= 1, got {max_ratio!r}")
    if isinstance(max_gap, bool) or not isinstance(max_gap, numbers.Real) or max_gap < 0:
        raise ValueError(f"max_gap must be a number >= 0, got {max_gap!r}")
    x = check_classification_inputs(y_true, y_pred, n_classes=n_classes)
    if x.n == 0:
        return None
    support = np.bincount(x.y_true, minlength=x.n_classes)
    parts = []
    absent = np.flatnonzero(support == 0)
    if absent.size:
        parts.append(
            f"{absent.size} class(es) have no samples ({absent[:10].tolist()}): accuracy says "
            "nothing about them"
        )
    present = np.flatnonzero(support > 0)
    big, small = present[np.argmax(support[present])], present[np.argmin(support[present])]
    ratio = support[big] / support[small]
    if ratio >= max_ratio:
        parts.append(
            f"largest class has {ratio:.1f}x the samples of the smallest (class {big}: "
            f"{support[big]} vs class {small}: {support[small]})"
        )
    if x.y_pred is not None:
        acc = float((x.y_true == x.y_pred).mean())
        cm = _confusion(x.y_true, x.y_pred, x.n_classes)
        bal = float(_nanmean(_ratio(np.diag(cm), cm.sum(axis=1))))
        if abs(acc - bal) >= max_gap:
            parts.append(
                f"accuracy {acc:.3f} vs balanced accuracy {bal:.3f} (gap {abs(acc - bal):.3f})"
            )
    if not parts:
        return None
    return (
        "Class imbalance makes accuracy misleading: "
        + "; ".join(parts)
        + ". Read balanced accuracy and per-class recall."
    )


# ==============================================================================================
# Probability-based metrics


def top_k_accuracy_score(
    y_true: Any, probs: Any, *, k: int = 2, confidence: float = 0.95
) -> Estimate:
    """Fraction of rows whose true class is among the ``k`` highest probabilities (Wilson).

    Ties are broken by class index, lower first, exactly as the top-1 prediction (``argmax``)
    breaks them, so top-1 accuracy equals accuracy even for a constant model; counting ties in
    the model's favour would give a uniform-probability model 100%. Identical to scikit-learn on
    untied scores.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
    probs : array-like of float, shape (n, K)
    k : int, keyword-only, 1 <= k <= K
    """
    confidence = check_confidence(confidence)
    x = check_classification_inputs(y_true, probs=probs)
    k = check_int(k, "k", minimum=1, maximum=x.n_classes)
    return _top_k(x, k, confidence)


def _top_k(
    x: ClassificationInputs, k: int, confidence: float, rank: np.ndarray | None = None
) -> Estimate:
    if x.n == 0:
        _warn("top-k accuracy of empty input is undefined: NaN")
        return _nan_estimate("wilson", confidence)
    rank = _true_rank(x) if rank is None else rank
    return wilson_estimate(int((rank < k).sum()), x.n, confidence=confidence)


def _true_rank(x: ClassificationInputs) -> np.ndarray:
    """int64 [n]: 0-based rank of each row's true class among its probabilities, ties broken
    by class index (lower first) as argmax breaks them; in row chunks, so the (n, K)
    comparisons never materialise whole."""
    rank = np.empty(x.n, dtype=np.int64)
    cls = np.arange(x.n_classes)[None, :]
    step = max(1, _CHUNK_CELLS // max(x.n_classes, 1))
    for a in range(0, x.n, step):
        p, y = x.probs[a : a + step], x.y_true[a : a + step]
        true_p = p[np.arange(len(y)), y][:, None]
        above = (p > true_p).sum(axis=1)
        rank[a : a + step] = above + ((p == true_p) & (cls < y[:, None])).sum(axis=1)
    return rank


@dataclass(frozen=True)
class Calibration:
    """Expected calibration error and its reliability diagram.

    Attributes
    ----------
    ece : Estimate
        sum over bins of ``count / n * |accuracy - mean_confidence|``; bootstrap interval.
    bins : DataFrame, one row per bin
        ``bin, bin_low, bin_high, count, mean_confidence, accuracy, accuracy_low,
        accuracy_high, gap``; empty bins have NaN statistics.
    """

    ece: Estimate
    bins: pd.DataFrame


def expected_calibration_error(
    y_true: Any,
    probs: Any,
    *,
    n_bins: int = 15,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Calibration:
    """Top-label expected calibration error (Guo et al. 2017) with reliability bins.

    Confidence is the highest probability of a row, the prediction its argmax. Bins are
    equal-width on [0, 1] and right-closed, ``(i / n_bins, (i + 1) / n_bins]`` (bin 0 also
    holds confidence 0). Each bin reports count, mean confidence and accuracy with a Wilson
    interval; the ECE has a percentile bootstrap interval over rows.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
    probs : array-like of float, shape (n, K)
    n_bins : int, keyword-only, >= 1
    n_boot, confidence, seed : keyword-only
        Bootstrap options.

    Returns
    -------
    Calibration
    """
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    confidence = check_confidence(confidence)
    n_boot, seed = check_bootstrap(n_boot, seed)
    x = check_classification_inputs(y_true, probs=probs)
    rows = _calibration_rows(x, n_bins)
    bins = _reliability_table(*rows[:3], n_bins=n_bins, confidence=confidence)
    if x.n == 0:
        _warn("expected calibration error of empty input is undefined: NaN")
        return Calibration(_nan_estimate("bootstrap", confidence), bins)
    stats = {"ece": _ece_statistic(n_bins, x.n)}
    est = bootstrap_intervals(
        stats, rows[0], rows[3], n_boot=n_boot, confidence=confidence, seed=seed, vectorized=True
    )
    return Calibration(est["ece"], bins)


def _calibration_rows(
    x: ClassificationInputs, n_bins: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(bin index, confidence, correct, correct - confidence) per row."""
    if x.n == 0:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty.astype(bool), empty
    conf = x.probs.max(axis=1)
    correct = x.probs.argmax(axis=1) == x.y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    dtype = np.int16 if n_bins < 2**15 else np.int64
    return b.astype(dtype), conf, correct, correct - conf


def _ece_statistic(n_bins: int, n: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Vectorised ECE of (b, n) resampled bin indices and (correct - confidence)."""

    def ece(bins: np.ndarray, diff: np.ndarray, *_: np.ndarray) -> np.ndarray:
        b = bins.shape[0]
        keys = bins.astype(np.int64) + n_bins * np.arange(b)[:, None]
        sums = np.bincount(keys.ravel(), weights=diff.ravel(), minlength=b * n_bins)
        return np.abs(sums.reshape(b, n_bins)).sum(axis=1) / n

    return ece


def _reliability_table(
    bins: np.ndarray, conf: np.ndarray, correct: np.ndarray, *, n_bins: int, confidence: float
) -> pd.DataFrame:
    count = np.bincount(bins, minlength=n_bins).astype(np.int64)
    conf_sum = np.bincount(bins, weights=conf, minlength=n_bins)
    hits = np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
    low, high = wilson_interval(hits, count, confidence=confidence)
    acc = _ratio(hits, count)
    mean_conf = _ratio(conf_sum, count)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return pd.DataFrame(
        {
            BIN: np.arange(n_bins, dtype=np.int64),
            BIN_LOW: edges[:-1],
            BIN_HIGH: edges[1:],
            COUNT: count,
            MEAN_CONFIDENCE: mean_conf,
            ACCURACY: acc,
            ACCURACY_LOW: np.asarray(low, dtype=np.float64).reshape(n_bins),
            ACCURACY_HIGH: np.asarray(high, dtype=np.float64).reshape(n_bins),
            GAP: acc - mean_conf,
        }
    )


def log_loss(
    y_true: Any,
    probs: Any,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Mean cross-entropy of the true class, in nats, with a bootstrap interval.

    Probabilities are clipped to ``[eps, 1 - eps]`` with ``eps`` the machine epsilon of the
    dtype ``probs`` came in, as scikit-learn does, so a zero probability costs a finite loss.
    """
    confidence = check_confidence(confidence)
    n_boot, seed = check_bootstrap(n_boot, seed)
    x = check_classification_inputs(y_true, probs=probs)
    if x.n == 0:
        _warn("log loss of empty input is undefined: NaN")
        return _nan_estimate("bootstrap", confidence)
    est = bootstrap_intervals(
        {"log_loss": _mean_statistic},
        _row_losses(x),
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        vectorized=True,
    )
    return est["log_loss"]


#: Above this many rows the ECE and log-loss intervals come from the large-sample form of the
#: row bootstrap (:func:`_large_sample_row_estimates`): 1,000 resamples of a million rows cost
#: minutes, the large-sample form milliseconds, and at this size they agree (tested at 60,000
#: rows against the row bootstrap itself).
ROW_BOOTSTRAP_MAX = 200_000
_EXACT_BIN_ROWS = 50  # calibration bins with fewer rows are resampled row by row


def _large_sample_row_estimates(
    bins: np.ndarray,
    diff: np.ndarray,
    losses: np.ndarray,
    *,
    n_bins: int,
    n_boot: int,
    confidence: float,
    seed: int | None,
) -> dict[str, Estimate]:
    """ECE and log-loss intervals for very many rows, from the row bootstrap's own structure.

    ECE is ``sum_b |S_b| / n`` with ``S_b`` the sum of ``correct - confidence`` over bin b. A
    row resample draws the bins' counts from a multinomial (drawn here exactly, per resample)
    and, given its count ``n_b*``, ``S_b*`` is a sum of ``n_b*`` draws from the bin's rows,
    normal to within sampling noise at these sizes (``N(n_b* mean_b, n_b* var_b)``; bins of
    fewer than 50 rows are drawn row by row). The percentile interval of the resulting ECEs is
    reported as ``method="bootstrap"``. The log loss is a mean of independent rows: its
    bootstrap distribution is the normal ``N(mean, var / n)``, reported as ``method="normal"``.
    """
    rng = np.random.default_rng(seed)
    n = diff.size
    alpha = 1.0 - confidence
    count = np.bincount(bins, minlength=n_bins).astype(np.int64)
    s1 = np.bincount(bins, weights=diff, minlength=n_bins)
    s2 = np.bincount(bins, weights=diff * diff, minlength=n_bins)
    safe = np.maximum(count, 1)
    mean = s1 / safe
    var = np.maximum(s2 / safe - mean * mean, 0.0)
    draws = rng.multinomial(n, count / n, size=n_boot)  # (n_boot, n_bins) exact bin counts
    sums = rng.normal(draws * mean, np.sqrt(draws * var))
    for b in np.flatnonzero((count > 0) & (count < _EXACT_BIN_ROWS)):
        values = diff[bins == b]
        for i in np.flatnonzero(draws[:, b]):
            sums[i, b] = rng.choice(values, size=int(draws[i, b])).sum()
    reps = np.abs(sums).sum(axis=1) / n
    low, high = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    ece = Estimate(float(np.abs(s1).sum() / n), float(low), float(high), "bootstrap", n, confidence)
    z = NormalDist().inv_cdf(1 - alpha / 2)
    m, sd = float(losses.mean()), float(losses.std(ddof=1))
    half = z * sd / math.sqrt(n)
    log_loss = Estimate(m, m - half, m + half, "normal", n, confidence)
    return {"ece": ece, "log_loss": log_loss}


def _row_losses(x: ClassificationInputs) -> np.ndarray:
    return row_losses(x.probs, x.y_true, eps=x.eps)


def _mean_statistic(values: np.ndarray, *_: np.ndarray) -> np.ndarray:
    return values.mean(axis=-1)


@dataclass(frozen=True)
class OneVsRest:
    """One-vs-rest ranking scores.

    Attributes
    ----------
    per_class : DataFrame, one row per class
        ``class, n_pos, roc_auc, roc_auc_low, roc_auc_high, average_precision,
        average_precision_low, average_precision_high``.
    macro_roc_auc : Estimate
        Mean AUC over classes with both positives and negatives (``method="delong"``).
    macro_average_precision : Estimate
        Mean AP over the same classes (``method="bootstrap"``).
    ap_n_boot : int
        Resamples behind the average precision intervals: ``n_boot``, or fewer for many
        rows x classes (see the module docstring); 0 when no class is defined.
    """

    per_class: pd.DataFrame
    macro_roc_auc: Estimate
    macro_average_precision: Estimate
    ap_n_boot: int = 0


def one_vs_rest_scores(
    y_true: Any,
    probs: Any,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> OneVsRest:
    """Per-class one-vs-rest ROC-AUC and average precision with intervals, and macro means.

    ROC-AUC of class k ranks ``probs[:, k]`` of rows labelled k against all others (ties count
    one half, as the trapezoidal ROC area). Its interval is DeLong's normal interval from
    placement values, clipped to [0, 1]; the macro interval uses the per-row influence of every
    class's AUC so correlated classes are not treated as independent. Average precision is
    scikit-learn's step-wise ``sum_n (R_n - R_{n-1}) P_n``; its intervals (per class and macro)
    are percentile row bootstraps on resamples shared by all classes, with at most ``n_boot``
    resamples (fewer for many rows x classes, see :attr:`OneVsRest.ap_n_boot`). A class with no
    positives (or no negatives) gets NaN with a warning and is left out of the macro means.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
    probs : array-like of float, shape (n, K)
    n_boot, confidence, seed : keyword-only
        Bootstrap options (average precision); ``confidence`` also sets the AUC interval.
    """
    confidence = check_confidence(confidence)
    n_boot, seed = check_bootstrap(n_boot, seed)
    x = check_classification_inputs(y_true, probs=probs)
    return _one_vs_rest(x, confidence, n_boot=n_boot, seed=seed)


def _ap_n_boot(n_boot: int, n: int, n_classes: int) -> int:
    """Resamples for the average precision bootstrap (see ``_AP_BOOT_CELLS``)."""
    affordable = _AP_BOOT_CELLS // max(1, n * n_classes)
    return min(n_boot, max(_AP_MIN_BOOT, affordable))


def _one_vs_rest(
    x: ClassificationInputs, confidence: float, *, n_boot: int, seed: int | None
) -> OneVsRest:
    k, n = x.n_classes, x.n
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    n_pos = np.bincount(x.y_true, minlength=k).astype(np.int64)
    defined = (n_pos > 0) & (n_pos < n)
    n_defined = int(defined.sum())
    if n * n_defined > _EXACT_OVR_CELLS:
        return _one_vs_rest_sorted(x, confidence, n_pos, defined)
    auc = np.full(k, np.nan)
    var = np.full(k, np.nan)
    ap = np.full(k, np.nan)
    b = _ap_n_boot(n_boot, n, n_defined) if n_defined else 0
    counts = _row_draw_counts(n, b, seed) if b else None
    ap_reps = np.full((b, k), np.nan)
    influence = np.zeros(n)
    for c in np.flatnonzero(defined):
        # one sort per class serves the AUC, the AP and the AP bootstrap; the contiguous copy
        # keeps the gathers below off a column strided by n_classes
        s = np.ascontiguousarray(x.probs[:, c])
        order = np.argsort(-s)  # ties are grouped below, so the faster unstable sort suffices
        s = s[order]
        positive = x.y_true[order] == c
        ends = np.r_[np.flatnonzero(np.diff(s)), n - 1]  # last position of each tie group
        auc[c], var[c], psi = _auc_delong(positive, ends)
        influence[order] += psi
        ranking = _Ranking.of(order, positive, ends)
        ap[c] = ranking.average_precision()
        if counts is not None:
            ap_reps[:, c] = ranking.resampled_average_precision(counts)
    undefined = np.flatnonzero(~defined)
    if undefined.size and n:
        _warn(
            f"ROC-AUC and average precision are undefined for classes {undefined[:20].tolist()} "
            "(no positives or no negatives): NaN, left out of macro averages"
        )
    if n == 0:
        _warn("ROC-AUC and average precision of empty input are undefined: NaN")
    sd = np.sqrt(var)
    if b:
        ap_low, ap_high = _columnwise_interval(ap_reps, confidence)
    else:
        ap_low = ap_high = np.full(k, np.nan)
    table = pd.DataFrame(
        {
            CLASS: np.arange(k, dtype=np.int64),
            N_POS: n_pos,
            ROC_AUC: auc,
            ROC_AUC_LOW: np.clip(auc - z * sd, 0.0, 1.0),
            ROC_AUC_HIGH: np.clip(auc + z * sd, 0.0, 1.0),
            AVERAGE_PRECISION: ap,
            AVERAGE_PRECISION_LOW: np.where(defined, ap_low, np.nan),
            AVERAGE_PRECISION_HIGH: np.where(defined, ap_high, np.nan),
        }
    )
    if n_defined == 0:
        macro_auc = _nan_estimate("delong", confidence, n)
        macro_ap = _nan_estimate("bootstrap", confidence, n)
    else:
        value = float(np.nanmean(auc))
        half = z * float(np.sqrt(np.sum((influence / n_defined) ** 2)))
        macro_auc = Estimate(
            value, max(0.0, value - half), min(1.0, value + half), "delong", n, confidence
        )
        macro_ap = _boot_estimate(
            float(np.nanmean(ap)), _nanmean(ap_reps, axis=1), n=n, confidence=confidence
        )
    return OneVsRest(table, macro_auc, macro_ap, b)


def _one_vs_rest_sorted(
    x: ClassificationInputs, confidence: float, n_pos: np.ndarray, defined: np.ndarray
) -> OneVsRest:
    """One-vs-rest scores for many rows x classes, from each column's sorted values.

    The values are exactly the exact path's: a class's AUC and average precision only need,
    at each distinct score of its positives, how many rows score at or above it, which one
    sort of the column's values (no row ids: several times cheaper than ``argsort``) and a
    binary search give; rows below the lowest positive are only counted. Per-class AUC
    intervals are DeLong's, from the same counts. What changes is the uncertainty that needs
    rows shared between classes: the macro AUC and AP intervals treat the classes' estimates
    as independent (variance = sum of the per-class variances / classes^2; with hundreds of
    classes a row's share in other classes' rankings is a small part of it), and average
    precision gets Boyd, Eng & Page's logit interval (ECML PKDD 2013: ``logit(AP) +- z /
    sqrt(m AP (1 - AP))`` for m positives) instead of the row bootstrap, whose cost here would
    be rows x classes x resamples. ``ap_n_boot`` is 0 and the AP estimates say ``"logit"``.
    """
    k, n = x.n_classes, x.n
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    auc, var, ap, ap_var = (np.full(k, np.nan) for _ in range(4))
    order = np.argsort(x.y_true, kind="stable")
    starts = np.r_[0, np.cumsum(n_pos)]
    block = max(1, _CHUNK_CELLS // max(n, 1))

    def columns(c0: int) -> None:
        cols = np.ascontiguousarray(x.probs[:, c0 : c0 + block].T)  # a block of columns
        for j, col in enumerate(cols):
            c = c0 + j
            if defined[c]:
                pos = col[order[starts[c] : starts[c + 1]]]
                auc[c], var[c], ap[c] = _sorted_column_scores(col, pos)

    # blocks of columns on every core: numpy's sort (most of the time) releases the GIL, and
    # each block writes only its own classes' entries (1,000 classes x 100,000 rows: 2.6 s on
    # one core of the development machine, 1.3 s on its two)
    run_blocks(columns, range(0, k, block))
    m = n_pos.astype(np.float64)
    clip = np.clip(ap, 0.5 / np.maximum(m, 1), 1 - 0.5 / np.maximum(m, 1))
    tau = 1.0 / np.sqrt(m * clip * (1 - clip))
    eta = np.log(clip / (1 - clip))
    ap_low, ap_high = 1 / (1 + np.exp(-(eta - z * tau))), 1 / (1 + np.exp(-(eta + z * tau)))
    ap_var = clip * (1 - clip) / m  # the logit interval's variance, back on the AP scale
    sd = np.sqrt(var)
    table = pd.DataFrame(
        {
            CLASS: np.arange(k, dtype=np.int64),
            N_POS: n_pos,
            ROC_AUC: auc,
            ROC_AUC_LOW: np.clip(auc - z * sd, 0.0, 1.0),
            ROC_AUC_HIGH: np.clip(auc + z * sd, 0.0, 1.0),
            AVERAGE_PRECISION: ap,
            AVERAGE_PRECISION_LOW: np.where(defined, ap_low, np.nan),
            AVERAGE_PRECISION_HIGH: np.where(defined, ap_high, np.nan),
        }
    )
    undefined = np.flatnonzero(~defined)
    if undefined.size:
        _warn(
            f"ROC-AUC and average precision are undefined for classes {undefined[:20].tolist()} "
            "(no positives or no negatives): NaN, left out of macro averages"
        )
    n_defined = int(defined.sum())

    def macro(values: np.ndarray, variances: np.ndarray, method: str) -> Estimate:
        value = float(np.nanmean(values[defined]))
        half = z * math.sqrt(float(np.nansum(variances[defined]))) / n_defined
        return Estimate(
            value, max(0.0, value - half), min(1.0, value + half), method, n, confidence
        )

    return OneVsRest(table, macro(auc, var, "delong"), macro(ap, ap_var, "logit"), 0)


def _sorted_column_scores(col: np.ndarray, pos: np.ndarray) -> tuple[float, float, float]:
    """(AUC, DeLong variance, average precision) of one class from its column of scores
    ``col`` (all n rows) and its positives' scores ``pos`` (see :func:`_one_vs_rest_sorted`).
    Ties count one half in the AUC and form one step of the precision-recall curve, as in
    scikit-learn."""
    n, m = col.size, pos.size
    q = n - m
    u, cnt = np.unique(pos, return_counts=True)
    u, cnt = u[::-1], cnt[::-1]  # distinct positive scores, descending
    at_or_above = col[col >= u[-1]]  # rows below every positive only count
    srt = np.sort(at_or_above)
    ranked = at_or_above.size - np.searchsorted(srt, u, side="left")  # rows >= u_g
    above = at_or_above.size - np.searchsorted(srt, u, side="right")  # rows > u_g
    tp = np.cumsum(cnt)
    ap = float(np.sum(cnt / m * tp / ranked))
    neg_tied = ranked - above - cnt
    neg_ge = ranked - tp
    v10 = (q - neg_ge + 0.5 * neg_tied) / q
    auc = float(np.sum(cnt * v10) / m)
    if m < 2 or q < 2:
        return auc, math.nan, ap
    s10 = float(np.sum(cnt * (v10 - auc) ** 2) / (m - 1))
    # negatives: above the top positive (V01 = 0), tied with u_g, strictly between u_g and the
    # next lower positive score (V01 = tp_g / m; below the last one that is 1)
    neg_gt = above - (tp - cnt)  # negatives strictly above u_g
    between = np.r_[neg_gt[1:], q] - neg_ge
    weights = np.r_[neg_gt[0], neg_tied, between]
    v01 = np.r_[0.0, (tp - 0.5 * cnt) / m, tp / m]
    s01 = float(np.sum(weights * (v01 - auc) ** 2) / (q - 1))
    return auc, s10 / m + s01 / q, ap


def _auc_delong(positive: np.ndarray, ends: np.ndarray) -> tuple[float, float, np.ndarray]:
    """AUC, DeLong variance, and per-row influence, all from one ranking.

    ``positive`` is the class mask of the rows sorted by descending score, ``ends`` the last
    position of each tie group. Placement values: V10(i) = P(neg < pos_i) + P(neg = pos_i) / 2,
    V01(j) = P(pos > neg_j) + P(pos = neg_j) / 2, read off the cumulative counts of the tie
    groups. var = S10 / m + S01 / n_neg; the influences (in ranking order) are scaled so that
    the sum of their squares equals this variance, and sum over rows to give covariances
    between classes.
    """
    n = positive.size
    m = int(positive.sum())
    q = n - m
    size = np.diff(ends, prepend=-1)
    pos_in = np.diff(np.cumsum(positive)[ends], prepend=0)
    neg_in = size - pos_in
    pos_above = np.cumsum(pos_in) - pos_in
    neg_below = q - np.cumsum(neg_in)
    group = np.repeat(np.arange(ends.size), size)
    v10 = ((neg_below + 0.5 * neg_in) / q)[group]
    v01 = ((pos_above + 0.5 * pos_in) / m)[group]
    v10, v01 = v10[positive], v01[~positive]
    auc = float(v10.mean())
    if m < 2 or q < 2:
        return auc, math.nan, np.zeros(n)
    var = float(v10.var(ddof=1) / m + v01.var(ddof=1) / q)
    psi = np.empty(n)
    psi[positive] = (v10 - auc) / math.sqrt(m * (m - 1))
    psi[~positive] = (v01 - auc) / math.sqrt(q * (q - 1))
    return auc, var, psi


def _row_draw_counts(n: int, n_boot: int, seed: int | None) -> np.ndarray:
    """(n_boot, n) uint8: how often the row bootstrap draws each row in each resample.

    One byte a cell keeps this, the AP bootstrap's largest array, small; it cannot overflow in
    practice, as a row drawn 256 times among n draws has probability below 1e-500 for any n.
    """
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, n), dtype=np.uint8)
    index_dtype = np.int32 if n < 2**31 else np.int64
    for i in range(n_boot):
        out[i] = np.bincount(rng.integers(0, n, size=n, dtype=index_dtype), minlength=n)
    return out


@dataclass(frozen=True)
class _Ranking:
    """One class's rows ranked by descending score, reduced to what average precision needs.

    Average precision only changes at a tie group (rows sharing a score) that holds a
    positive, so a resample is summarised by two cumulative counts at the ends of those
    groups: the rows ranked up to there and the positives among them. Rows ranked below the
    last positive never count, so they are left out of ``order``.
    """

    order: np.ndarray  # row ids by descending score, cut after the last positive
    hits: np.ndarray  # row ids of the positives, in ranking order
    group_end: np.ndarray  # per positive tie group: its last position in ``order``
    group_hits: np.ndarray  # per positive tie group: positives ranked up to and within it
    precision: np.ndarray  # per positive tie group, on the full data
    recall: np.ndarray

    @classmethod
    def of(cls, order: np.ndarray, positive: np.ndarray, ends: np.ndarray) -> _Ranking:
        """From row ids by descending score, their class mask and tie group ends."""
        tps = np.cumsum(positive)[ends]
        hit = np.diff(tps, prepend=0) > 0
        group_end, group_hits = ends[hit], tps[hit]
        return cls(
            order=order[: group_end[-1] + 1],
            hits=order[positive],
            group_end=group_end,
            group_hits=group_hits,
            precision=group_hits / (group_end + 1),
            recall=group_hits / tps[-1],
        )

    def average_precision(self) -> float:
        """scikit-learn's ``average_precision_score``: groups without positives add 0."""
        return float(np.sum(np.diff(np.r_[0.0, self.recall]) * self.precision))

    def resampled_average_precision(self, counts: np.ndarray) -> np.ndarray:
        """Average precision on each resample of ``counts`` (b, n): exactly scikit-learn's
        value on the resampled rows (a drawn copy ties with its original); NaN where a resample
        holds no positive."""
        b = counts.shape[0]
        out = np.empty(b)
        chunk = max(1, _CHUNK_CELLS // self.order.size)
        for start in range(0, b, chunk):
            w = counts[start : start + chunk]
            # one resample at a time: a 1-D gather and cumsum beat the 2-D ones by ~15%, and
            # cumulative counts reach at most n (a resample's draws), which int32 holds
            ranked = np.empty((w.shape[0], self.group_end.size), dtype=np.int32)
            for i, row in enumerate(w):
                ranked[i] = np.cumsum(row[self.order], dtype=np.int32)[self.group_end]
            hits = np.cumsum(np.take(w, self.hits, axis=1), axis=1, dtype=np.int32)
            hits = hits[:, self.group_hits - 1]
            new_hits = np.diff(hits, axis=1, prepend=0)
            # a group with new hits has ranked >= hits >= 1; the others add nothing
            area = np.einsum("ij,ij->i", new_hits, hits / np.maximum(ranked, 1))
            out[start : start + chunk] = _ratio(area, hits[:, -1])
        return out


# ==============================================================================================
# Summary


@dataclass(frozen=True, eq=False)
class MetricsSummary:
    """Headline metrics of one evaluation, stored in the run's manifest.

    Every scalar is an :class:`Estimate`. ``top_k`` maps k (2, 3 and 5 when ``n_classes``
    allows, see :data:`TOP_K`)
    to top-k accuracy. ``per_class`` is :func:`per_class_metrics`' table joined with
    :func:`one_vs_rest_scores`' ``n_pos, roc_auc, roc_auc_low, roc_auc_high,
    average_precision, average_precision_low, average_precision_high`` columns; ``confusion``
    the (K, K) int64 counts; ``reliability`` the calibration bins; ``imbalance``
    :func:`imbalance_warning`'s message or None; ``warnings`` every ill-defined-value warning
    raised while computing it; ``ap_n_boot`` the resamples behind the average precision
    intervals (``n_boot`` or fewer, see :attr:`OneVsRest.ap_n_boot`).

    ``to_dict()`` is JSON-ready (NaN -> None) and ``from_dict(to_dict())`` equals the original.
    """

    n: int
    n_classes: int
    confidence: float
    n_boot: int
    seed: int | None
    accuracy: Estimate
    balanced_accuracy: Estimate
    macro_precision: Estimate
    macro_recall: Estimate
    macro_f1: Estimate
    weighted_precision: Estimate
    weighted_recall: Estimate
    weighted_f1: Estimate
    top_k: dict[int, Estimate]
    ece: Estimate
    log_loss: Estimate
    macro_auc: Estimate
    macro_average_precision: Estimate
    per_class: pd.DataFrame
    confusion: np.ndarray
    reliability: pd.DataFrame
    imbalance: str | None = None
    warnings: tuple[str, ...] = ()
    ap_n_boot: int = 0

    _ESTIMATES = (
        "accuracy",
        "balanced_accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "weighted_precision",
        "weighted_recall",
        "weighted_f1",
        "ece",
        "log_loss",
        "macro_auc",
        "macro_average_precision",
    )
    _SCALARS = ("n", "n_classes", "confidence", "n_boot", "seed", "imbalance", "ap_n_boot")
    # added after version 1 files were first written: an older file reads them as "not
    # computed" (NaN, method "none"; 0 resamples) rather than failing to open the run
    _LATER = {"weighted_precision": None, "weighted_recall": None, "ap_n_boot": 0}

    __hash__ = None  # type: ignore[assignment]  # holds DataFrames

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MetricsSummary):
            return NotImplemented
        return (
            all(getattr(self, f) == getattr(other, f) for f in self._SCALARS)
            and all(getattr(self, f) == getattr(other, f) for f in self._ESTIMATES)
            and self.top_k == other.top_k
            and tuple(self.warnings) == tuple(other.warnings)
            and np.array_equal(self.confusion, other.confusion)
            and self.confusion.dtype == other.confusion.dtype
            and self.per_class.equals(other.per_class)
            and self.reliability.equals(other.reliability)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None)."""
        d: dict[str, Any] = {"kind": "metrics_summary", "version": _SUMMARY_VERSION}
        d.update({f: getattr(self, f) for f in self._SCALARS})
        d.update({f: getattr(self, f).to_dict() for f in self._ESTIMATES})
        d["top_k"] = {str(k): v.to_dict() for k, v in sorted(self.top_k.items())}
        d["per_class"] = _frame_to_dict(self.per_class)
        d["confusion"] = _confusion_to_json(self.confusion)
        d["reliability"] = _frame_to_dict(self.reliability)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MetricsSummary:
        """Inverse of :meth:`to_dict`."""
        if d.get("kind") != "metrics_summary" or d.get("version") != _SUMMARY_VERSION:
            raise ValueError(
                f"expected a metrics_summary dict of version {_SUMMARY_VERSION}, got "
                f"kind={d.get('kind')!r} version={d.get('version')!r}"
            )
        k = int(d["n_classes"])
        missing = _nan_estimate("none", float(d["confidence"]), int(d["n"])).to_dict()
        d = {**{f: missing if v is None else v for f, v in cls._LATER.items()}, **d}
        return cls(
            **{f: d[f] for f in cls._SCALARS},
            **{f: Estimate.from_dict(d[f]) for f in cls._ESTIMATES},
            top_k={int(key): Estimate.from_dict(v) for key, v in d["top_k"].items()},
            per_class=_frame_from_dict(d["per_class"]),
            confusion=_confusion_from_json(d["confusion"], k),
            reliability=_frame_from_dict(d["reliability"]),
            warnings=tuple(d["warnings"]),
        )


def _confusion_to_json(cm: np.ndarray) -> list | dict:
    """The (K, K) counts as nested lists up to ``_DENSE_CONFUSION_MAX`` classes (readable by
    any tool), beyond that as its non-zero cells ``{"shape", "rows", "cols", "counts"}``: at most
    one cell per image, so metrics.json grows with the images, not with classes squared (a
    dense 10,000-class matrix would be 100 million numbers)."""
    if cm.shape[0] <= _DENSE_CONFUSION_MAX:
        return cm.tolist()
    rows, cols = np.nonzero(cm)
    return {
        "shape": list(cm.shape),
        "rows": rows.tolist(),
        "cols": cols.tolist(),
        "counts": cm[rows, cols].tolist(),
    }


def _confusion_from_json(d: list | dict, k: int) -> np.ndarray:
    if isinstance(d, dict):
        cm = np.zeros(tuple(d["shape"]), dtype=np.int64)
        cm[np.asarray(d["rows"], dtype=np.int64), np.asarray(d["cols"], dtype=np.int64)] = d[
            "counts"
        ]
        return cm
    return np.asarray(d, dtype=np.int64).reshape(k, k)


def _frame_to_dict(df: pd.DataFrame) -> dict[str, Any]:
    columns = {}
    for name in df.columns:
        values = df[name].to_numpy()
        if np.issubdtype(values.dtype, np.floating):
            columns[name] = [None if math.isnan(v) else float(v) for v in values]
        else:
            columns[name] = values.tolist()
    return {"dtypes": {c: str(df[c].dtype) for c in df.columns}, "columns": columns}


def _frame_from_dict(d: dict[str, Any]) -> pd.DataFrame:
    data = {}
    for name, dtype in d["dtypes"].items():
        values = d["columns"][name]
        if np.issubdtype(np.dtype(dtype), np.floating):
            values = [math.nan if v is None else v for v in values]
        data[name] = np.asarray(values, dtype=dtype)
    return pd.DataFrame(data, columns=list(d["dtypes"]))


def summary(
    y_true: Any,
    probs: Any,
    *,
    n_classes: int,
    n_boot: int = 1000,
    n_bins: int = 15,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> MetricsSummary:
    """All headline metrics of an evaluation, with intervals, in one pass.

    Parameters
    ----------
    y_true : array-like of int, shape (n,)
    probs : array-like of float, shape (n, n_classes)
        Predictions are ``argmax(probs)`` (first class on ties).
    n_classes : int, keyword-only
    n_boot : int, keyword-only
        Bootstrap resamples; the count-based metrics share one set of resamples, ECE / log
        loss another, and average precision a third, capped for many rows x classes (the
        number used is ``ap_n_boot``; see the module docstring).
    n_bins : int, keyword-only
        Reliability bins.
    confidence, seed : keyword-only

    Returns
    -------
    MetricsSummary
    """
    if n_classes is None:
        raise TypeError("summary needs n_classes (an int >= 1), got None")
    n_bins = check_int(n_bins, "n_bins", minimum=1)
    confidence = check_confidence(confidence)
    n_boot, seed = check_bootstrap(n_boot, seed)
    x = check_classification_inputs(y_true, probs=probs, n_classes=n_classes)
    y_pred = x.probs.argmax(axis=1) if x.n else np.zeros(0, dtype=np.int64)
    x = ClassificationInputs(x.y_true, y_pred, x.probs, x.n_classes, x.eps)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UndefinedMetricWarning)
        result = _summary_core(x, n_boot=n_boot, n_bins=n_bins, confidence=confidence, seed=seed)
    messages = []
    for w in caught:
        if issubclass(w.category, UndefinedMetricWarning):
            if str(w.message) not in messages:
                messages.append(str(w.message))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for message in messages:
        warnings.warn(message, UndefinedMetricWarning, stacklevel=2)
    return MetricsSummary(**result, warnings=tuple(messages))


def _summary_core(
    x: ClassificationInputs, *, n_boot: int, n_bins: int, confidence: float, seed: int | None
) -> dict[str, Any]:
    k, n = x.n_classes, x.n
    cm = _confusion(x.y_true, x.y_pred, k)
    tp, nt, npred = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    if n:
        _warn_undefined(_class_scores(tp, nt, npred), _WHY)
        reps = _count_replicates(cm, n_boot=n_boot, seed=seed)
        macro = _prf(cm, reps, average="macro", confidence=confidence)
        weighted = _prf(cm, reps, average="weighted", confidence=confidence)
        balanced = macro.recall  # mean recall over classes present == balanced accuracy
    else:
        _warn("metrics of empty input are undefined: NaN")
        reps = None
        nan = _nan_estimate("bootstrap", confidence)
        macro = weighted = PrecisionRecallF1(nan, nan, nan, "macro")
        balanced = nan
    per_class = _per_class_table(cm, reps, confidence=confidence)
    ovr = _one_vs_rest(x, confidence, n_boot=n_boot, seed=seed)
    per_class = per_class.merge(ovr.per_class, on=CLASS, how="left", validate="one_to_one")
    rows = _calibration_rows(x, n_bins)
    reliability = _reliability_table(*rows[:3], n_bins=n_bins, confidence=confidence)
    rank = _true_rank(x) if n and k > min(TOP_K) else None
    if n > ROW_BOOTSTRAP_MAX:  # a million rows: the row bootstrap's large-sample form
        row_est = _large_sample_row_estimates(
            rows[0],
            rows[3],
            _row_losses(x),
            n_bins=n_bins,
            n_boot=n_boot,
            confidence=confidence,
            seed=seed,
        )
    elif n:
        row_est = bootstrap_intervals(
            {"ece": _ece_statistic(n_bins, n), "log_loss": lambda _b, _d, loss: loss.mean(-1)},
            rows[0],
            rows[3],
            _row_losses(x),
            n_boot=n_boot,
            confidence=confidence,
            seed=seed,
            vectorized=True,
        )
    else:
        row_est = dict.fromkeys(("ece", "log_loss"), _nan_estimate("bootstrap", confidence))
    return {
        "n": n,
        "n_classes": k,
        "confidence": confidence,
        "n_boot": n_boot,
        "seed": seed,
        "accuracy": _accuracy(int(tp.sum()), n, confidence),
        "balanced_accuracy": balanced,
        "macro_precision": macro.precision,
        "macro_recall": macro.recall,
        "macro_f1": macro.f1,
        "weighted_precision": weighted.precision,
        "weighted_recall": weighted.recall,
        "weighted_f1": weighted.f1,
        "top_k": {kk: _top_k(x, kk, confidence, rank) for kk in TOP_K if kk < k},
        "ece": row_est["ece"],
        "log_loss": row_est["log_loss"],
        "macro_auc": ovr.macro_roc_auc,
        "macro_average_precision": ovr.macro_average_precision,
        "ap_n_boot": ovr.ap_n_boot,
        "per_class": per_class,
        "confusion": cm,
        "reliability": reliability,
        "imbalance": imbalance_warning(x.y_true, n_classes=k, y_pred=x.y_pred),
    }
