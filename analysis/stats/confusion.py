"""Reading a confusion matrix that is too large to look at whole.

At a few classes a person reads every cell; at hundreds or thousands the matrix is a dark block
and the questions change: *which classes are confused at all*, *what does class c get confused
with*, *which (given, predicted) pairs cost the most errors, and how sure is each rate*. These
functions answer them from the ``(K, K)`` count matrix alone (rows = given label, columns =
predicted class), so they cost ``O(K^2)`` at most and never touch the images; every class they
return is an id ``0..K-1`` a page can turn into an image query.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .intervals import wilson_interval

__all__ = [
    "class_partners",
    "confusion_pairs",
    "error_mass",
    "most_confused_classes",
    "submatrix",
]

# Columns of confusion_pairs (defined once).
TRUE = "true"  # given class id
PRED = "pred"  # predicted class id
COUNT = "count"  # images given TRUE and predicted PRED
SUPPORT = "support"  # images given TRUE
RATE = "rate"  # COUNT / SUPPORT: share of the given class predicted as PRED
RATE_LOW = "rate_low"  # 95% Wilson interval of RATE
RATE_HIGH = "rate_high"
N_PRED = "n_pred"  # images predicted PRED
SHARE_OF_PRED = "share_of_pred"  # COUNT / N_PRED: share of PRED's predictions that are TRUE
SHARE_OF_ERRORS = "share_of_errors"  # COUNT / all off-diagonal images

PAIR_COLUMNS = [
    TRUE,
    PRED,
    COUNT,
    SUPPORT,
    RATE,
    RATE_LOW,
    RATE_HIGH,
    N_PRED,
    SHARE_OF_PRED,
    SHARE_OF_ERRORS,
]


def _check_cm(cm: Any) -> np.ndarray:
    a = np.asarray(cm)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"cm must be a square (K, K) count matrix, got shape {a.shape}")
    if a.size and (not np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise TypeError(f"cm must hold counts (integers), got dtype {a.dtype}")
    if a.size and (a < 0).any():
        raise ValueError("cm must hold counts >= 0, got a negative entry")
    return a.astype(np.int64, copy=False)


def _off(cm: np.ndarray) -> np.ndarray:
    off = cm.copy()
    np.fill_diagonal(off, 0)
    return off


def error_mass(cm: Any) -> np.ndarray:
    """Errors each class takes part in: int64 [K], ``row off-diagonal + column off-diagonal``.

    Class c's mass counts the images of c predicted as something else plus the images of other
    classes predicted as c, so a class that only *absorbs* errors (a catch-all) ranks too.
    """
    off = _off(_check_cm(cm))
    return off.sum(axis=1) + off.sum(axis=0)


def most_confused_classes(cm: Any, n: int) -> np.ndarray:
    """``n`` classes whose sub-matrix holds the most errors, partners next to each other.

    Chosen greedily from the largest confusion pairs: walk :func:`confusion_pairs` from the
    largest down and take both classes of each cell until ``n`` are taken, so the
    sub-matrix of the result holds the largest confusions themselves (ranking classes by their
    own error mass instead picks error-prone classes that need not be confused *with each
    other*: at 1,000 classes their sub-matrix is mostly empty). Ties as in :func:`confusion_pairs`.
    Classes without any error are left out, so fewer than ``n`` come back when fewer than ``n``
    classes take part in an error.

    Returns
    -------
    np.ndarray of int64 class ids, in the order taken.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    t, p, *_ = _ordered_pairs(_check_cm(cm))
    return _take_classes(t, p, n)


def most_confused_in(pairs: pd.DataFrame, n: int) -> np.ndarray:
    """:func:`most_confused_classes` from the table of :func:`confusion_pairs` (every pair,
    in its order) instead of the matrix: at 10,000 classes the matrix has 100 million cells,
    the table one row per pair that occurs."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    return _take_classes(pairs[TRUE].to_numpy(), pairs[PRED].to_numpy(), n)


def _take_classes(t: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    """Both classes of each pair, from the first pair on, until ``n`` are taken."""
    taken: dict[int, None] = {}
    for a, b in zip(t.tolist(), p.tolist(), strict=True):  # n <= a few dozen: stops early
        taken.setdefault(a)
        if len(taken) < n:
            taken.setdefault(b)
        if len(taken) >= n:
            break
    return np.fromiter(taken, dtype=np.int64, count=len(taken))[: int(n)]


def class_partners(cm: Any, c: int, n: int, *, checked: bool = False) -> np.ndarray:
    """Class ``c`` followed by the ``n - 1`` classes it is most confused with, either way.

    Partners are ranked by ``cm[c, j] + cm[j, c]`` (images of c predicted as j plus images of j
    predicted as c), ties to the lower id; only classes with at least one such image. Use the
    result as the rows and columns of a focused sub-matrix: ``c``'s own row and column then
    hold every error it takes part in, ranked. ``checked``: ``cm`` is a count matrix already
    checked (the check reads every cell: 100 million at 10,000 classes; this reads one row
    and one column).
    """
    a = np.asarray(cm) if checked else _check_cm(cm)
    k = a.shape[0]
    if isinstance(c, bool) or not isinstance(c, int | np.integer) or not 0 <= c < k:
        raise ValueError(f"c must be a class id in 0..{k - 1}, got {c!r}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    both = a[c, :].astype(np.int64) + a[:, c]
    both[c] = 0
    order = np.lexsort((np.arange(k), -both))
    order = order[both[order] > 0][: int(n) - 1]
    return np.r_[int(c), order].astype(np.int64)


def submatrix(cm: Any, classes: Any) -> np.ndarray:
    """``cm`` restricted to ``classes`` (rows and columns in that order), int64."""
    a = _check_cm(cm)
    idx = np.asarray(classes, dtype=np.int64)
    if idx.size and (idx.min() < 0 or idx.max() >= a.shape[0]):
        raise ValueError(f"classes must be ids in 0..{a.shape[0] - 1}, got {idx.tolist()[:10]}")
    return a[np.ix_(idx, idx)]


def _ordered_pairs(a: np.ndarray, classes: Any = None) -> tuple[np.ndarray, ...]:
    """(true, pred, count, support, n_pred, rate) of every off-diagonal cell with a count,
    largest count first, then highest rate, then lower ids (``classes``: involving these)."""
    flat = np.flatnonzero(a)
    k = a.shape[0]
    t, p = np.divmod(flat, k)
    keep = t != p
    if classes is not None:
        wanted = np.asarray(classes)
        keep &= np.isin(t, wanted) | np.isin(p, wanted)
    t, p = t[keep], p[keep]
    counts = a.ravel()[flat[keep]]
    support = a.sum(axis=1)[t]
    n_pred = a.sum(axis=0)[p]
    rate = counts / support  # support >= count > 0
    order = np.lexsort((p, t, -rate, -counts))
    return t[order], p[order], counts[order], support[order], n_pred[order], rate[order]


def confusion_pairs(
    cm: Any, *, k: int | None = None, confidence: float = 0.95, classes: Any = None
) -> pd.DataFrame:
    """The off-diagonal (given, predicted) pairs with their count, rate and interval.

    Parameters
    ----------
    cm : int [K, K]
        Counts, rows = given label, columns = predicted class.
    k : int, optional, keyword-only
        Keep the ``k`` largest pairs (default: every pair with a count).
    confidence : float, keyword-only
        Level of the Wilson interval on ``rate``.
    classes : array-like of int, optional, keyword-only
        Keep only pairs whose given *or* predicted class is one of these (a class search).

    Returns
    -------
    DataFrame with :data:`PAIR_COLUMNS`
        Sorted by count (desc), then rate (desc), then given, predicted id. ``rate`` is the share
        of the given class's images predicted as ``pred`` (the confusion-matrix cell in row %),
        with its Wilson interval; ``share_of_pred`` the share of ``pred``'s predictions that
        were really ``true`` (the cell in column %); ``share_of_errors`` the pair's share of all
        errors.
    """
    a = _check_cm(cm)
    if k is not None and (isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1):
        raise ValueError(f"k must be an int >= 1 or None, got {k!r}")
    t, p, counts, support, n_pred, rate = _ordered_pairs(a, classes)
    if k is not None:
        t, p, counts, support, n_pred, rate = (
            x[: int(k)] for x in (t, p, counts, support, n_pred, rate)
        )
    low, high = wilson_interval(counts, support, confidence=confidence)
    total_errors = max(int(a.sum() - np.trace(a)), 1)
    return pd.DataFrame(
        {
            TRUE: t.astype(np.int64),
            PRED: p.astype(np.int64),
            COUNT: counts.astype(np.int64),
            SUPPORT: support.astype(np.int64),
            RATE: rate.astype(np.float64),
            RATE_LOW: np.asarray(low, dtype=np.float64).reshape(-1),
            RATE_HIGH: np.asarray(high, dtype=np.float64).reshape(-1),
            N_PRED: n_pred.astype(np.int64),
            SHARE_OF_PRED: (counts / n_pred).astype(np.float64),
            SHARE_OF_ERRORS: (counts / total_errors).astype(np.float64),
        },
        columns=PAIR_COLUMNS,
    )
