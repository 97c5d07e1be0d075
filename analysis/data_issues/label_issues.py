"""Suspected label errors by confident learning, on plain NumPy arrays.

Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 70, 2021) estimates the joint distribution of given (noisy) and true labels
from held-out predicted probabilities, then ranks and prunes the examples that most likely carry
a wrong label. Written here from the paper's definitions (no cleanlab dependency).

Notation: ``N`` examples, ``C`` classes, ``labels[n]`` the given label, ``pred_probs[n, k]`` the
out-of-sample probability of class ``k``.

1. **Per-class thresholds** ``t[j]`` = mean of ``pred_probs[n, j]`` over the examples labelled
   ``j`` (the model's average self-confidence in class ``j``). A class nobody is labelled with gets
   ``t[j] = inf``: no example can be confidently in it. *Shrunk* by default (``shrink_thresholds``,
   a departure from the paper): a mean of a handful of images is noisy, and with hundreds of
   classes every image has many chances to clear some class's accidentally low threshold (at
   1,000 classes of 5 images a calibrated model with no label noise had 30% of its images
   flagged). Each threshold is pulled towards the mean self-confidence of all images by
   ``B[j] = se2[j] / (se2[j] + tau2)`` (empirical Bayes, method of moments): ``se2[j]`` is the
   pooled within-class variance of self-confidence over ``n[j]``, ``tau2`` the spread of the
   class thresholds beyond that noise. A class of hundreds of images keeps its own threshold
   (B of a few percent); one of 5 images among 1,000 moves most of the way. Measured in
   ``bench/bench_many_class_label_issues.py``: false flags at 1,000 classes x 5 images 30% ->
   9%, the real flips found almost unchanged; ``shrink_thresholds=False`` is the paper's rule
   (the tests check it against cleanlab).
2. **Confident joint** ``confident_joint[i, j]`` = number of examples labelled ``i`` whose
   ``pred_probs[n, j] >= t[j]``, where, when several classes pass their threshold, ``j`` is the
   one with the largest probability among those that pass (the paper's definition; cleanlab's
   implementation takes the overall argmax instead). Examples with no class above threshold are
   not counted.
3. **Calibration**: each row ``i`` is rescaled to sum to the number of examples labelled ``i``,
   then the matrix to sum to ``N``; ``joint = calibrated / N`` is the estimate ``Q[i, j]`` of
   ``P(given = i, true = j)``. ``prune_counts = round(N * Q)`` rounded per row so that row totals
   are preserved (largest remainder; ties go to the lower class index).
4. **Noise matrix** ``noise_matrix[i, j] = P(given = i | true = j)``: ``Q`` normalised per
   column, so every column sums to 1. Read it column-wise: column ``j`` says where examples of true
   class ``j`` ended up labelled. Its transpose ``noise_matrix.T[j, i] = P(given = i | true = j)``
   is the row-stochastic "true -> given" layout (rows = true class), the one
   ``schema.NOISE_MATRIX`` describes. The inverse noise matrix ``P(true = j | given = i)`` is ``Q``
   normalised per row.
5. **Estimated number of label errors** = sum of the off-diagonal ``prune_counts``.

Filtering methods (registry :data:`FILTER_METHODS`), all of which finally keep no example whose
given label is the model's top prediction (ties count as agreement), as cleanlab does:

- ``"prune_by_noise_rate"`` (default): for each off-diagonal ``(i, j)``, flag the
  ``prune_counts[i, j]`` examples labelled ``i`` with the largest margin
  ``pred_probs[n, j] - pred_probs[n, i]``.
- ``"prune_by_class"``: for each class ``i``, flag the ``sum_{j != i} prune_counts[i, j]``
  examples labelled ``i`` with the lowest ``pred_probs[n, i]``.
- ``"both"``: flagged by both of the above (the paper's ``C+NR``).
- ``"confident_learning"``: the off-diagonal entries of the confident joint (``C_confusion``-like:
  confidently in a class other than the given one).
- ``"predicted_neq_given"``: the baseline, argmax differs from the given label.

Label-quality scores (registry :data:`QUALITY_SCORES`) are in [0, 1], low = suspicious:
``"self_confidence"`` (default) ``p_given`` and ``"normalized_margin"``
``(p_given - max_{k != given} p_k + 1) / 2``.

**Defaults, and what they were chosen on.** ``bench/bench_label_issues.py`` runs every filter x
score on real, human-verified label errors (20 Newsgroups' test set: 82 errors people verified
among 93 rows they checked; Northcutt, Athalye & Mueller 2021; validation data, in no test) and
on nine synthetic problems (random flips, systematic and confident model errors with and without
flips, weak and overconfident models). Real and synthetic count alike: on 20news the F1 of the
flags (found / flagged as a lower bound on precision) and the AUC of the ranking among the rows
people checked; on the synthetic problems the F1 of the flags and the recall of the flips among
the first 2 x flips rows. Measured (combined score, higher is better):

====================== ================= ========= ===== ========
filter                 score             synthetic real  combined
====================== ================= ========= ===== ========
prune_by_noise_rate    self_confidence   0.700     0.591 0.645
both (the old default) self_confidence   0.715     0.548 0.632
confident_learning     self_confidence   0.697     0.560 0.629
prune_by_class         self_confidence   0.729     0.522 0.625
prune_by_noise_rate    normalized_margin 0.676     0.562 0.619
====================== ================= ========= ===== ========

(``bench/results/label_issues.json``, remeasured with the empirical-Bayes threshold shrinkage
on; the defaults did not change.)

On 20news ``prune_by_noise_rate`` flags 95 rows holding 56 of the 82 (the old ``both``: 44
holding 32). The normalized margin puts all 82 in its top 164 rows, but that rewards looking
like the ranking that picked the rows people checked: among those 93 rows it orders errors and
non-errors at chance (AUC 0.49) where self-confidence reaches 0.55 (0.62 without the filter),
and self-confidence ranks the flips higher on the synthetic problems (recall at 2 x flips 0.62
against 0.39 for a weak 20-class model): a model error usually leaves some probability on the
given (correct) label, a flip almost none. Checked on data the defaults were not chosen on: the
bundled sample's planted flips (``tests/analysis/test_sample_acceptance.py``).

**Evidence that is not the model's output.** Probabilities alone cannot tell a wrong label
from a confident model mistake. With a labelled reference (training) set, the pipeline passes
``neighbour_labels`` (the labels of each flagged image's 10 nearest reference images in
embedding space) and ``copy_labels`` (the label of its near-copy in the reference set, found on
appearance, not by the model): an image is not flagged when at least half of its neighbours
(:data:`SUPPORTED`) or its near-copy carry its given label, and ``label_quality`` becomes the
mean of the model's score and the neighbour agreement. Measured on the synthetic problems with
embeddings: confident errors of the classifier head (the embedding still among its class)
precision 0.43 -> 1.00 at the same recall, and with no flips at all 269 -> 130 false flags;
confident errors of the representation itself are barely helped (0.36 -> 0.38); annotators who
mislabel a whole style *in the reference set too* cost recall (0.94 -> 0.85), since there the
neighbours share the wrong label.

**Honest words.** What share of the flags are real label errors depends on the model:
:func:`expected_precision` looks it up, by the run's accuracy and calibration error, in a table
measured on 400 random synthetic problems (``label_precision.json``, written by the benchmark):
about a quarter for a model below 80% accuracy, about half at 80-90%, about 90% above. The dashboard
says "suspected, to review" and quotes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..checks import PROB_ROW_SUM_ATOL
from ..threads import run_blocks

__all__ = [
    "DEFAULT_METHOD",
    "DEFAULT_SCORE",
    "FILTER_METHODS",
    "PRECISION_TABLE_PATH",
    "QUALITY_SCORES",
    "ExpectedPrecision",
    "NoiseEstimate",
    "estimate_noise",
    "expected_precision",
    "estimate_noise_matrix",
    "estimate_num_label_issues",
    "find_label_issues",
    "label_quality_scores",
    "neighbour_agreement",
    "precision_table_from_family",
]

#: Defaults of find_label_issues (and so of every run); see the module docstring for why.
DEFAULT_METHOD = "prune_by_noise_rate"
DEFAULT_SCORE = "self_confidence"

# Columns of the find_label_issues table that schema.py does not name.
INDEX = "index"  # row position in labels / pred_probs (= samples.parquet row)
GIVEN_LABEL = "given_label"
REASON = "reason"
MODEL_SCORE = "model_score"  # the probability-only score (label_quality before the neighbours)
NEIGHBOUR_AGREEMENT = "neighbour_agreement"  # share of nearest reference images with the label
COPY_LABEL = "copy_label"  # label of the image's near-copy in the reference set, -1 if none

ISSUE_COLUMNS = [
    INDEX,
    GIVEN_LABEL,
    schema.SUGGESTED_LABEL,
    schema.LABEL_ISSUE_SCORE,
    schema.IS_LABEL_ISSUE,
    REASON,
    MODEL_SCORE,
    NEIGHBOUR_AGREEMENT,
    COPY_LABEL,
]

#: Neighbours agreeing with the given label at least this share of the time support the label:
#: the model's disagreement is then more likely its own mistake (see the module docstring).
SUPPORTED = 0.5


@dataclass(frozen=True, eq=False)
class NoiseEstimate:
    """Everything confident learning estimates from ``(labels, pred_probs)``.

    Held as the non-zero cells of the confident joint (at most one per example: the matrices
    are sparse whenever classes are many; at 10,000 classes each dense one is 800 MB); the
    dense ``C x C`` matrices are built when asked for.

    Attributes
    ----------
    thresholds : np.ndarray
        float64 [C], per-class thresholds ``t[j]``; ``inf`` for a class with no labelled example.
    true_label_guess : np.ndarray
        int64 [N], the column each example was counted in, ``-1`` when no class is above threshold.
    num_label_issues : int
        Estimated number of label errors, the off-diagonal sum of ``prune_counts``.
    cells : np.ndarray
        int64 [M, 2], ``(given i, true j)`` of the confident joint's non-zero cells, sorted by
        ``i`` then ``j``.
    cell_counts, cell_joint, cell_prune : np.ndarray
        [M] those cells' ``confident_joint`` (int64), ``joint`` (float64) and ``prune_counts``
        (int64) entries; every other entry is 0 (``joint``: NaN everywhere when no example is
        confident).
    best_other : np.ndarray or None
        int64 [N], the most probable class other than the given label (found in the same pass
        over the probabilities as the true-label guess; :func:`find_label_issues` reuses it).
    best_other_prob : np.ndarray or None
        float64 [N], its probability.

    Dense views (each built on first use, ``C x C``): ``confident_joint`` (rows = given label,
    columns = confidently predicted), ``joint`` (``Q[i, j]`` estimate of ``P(given = i, true =
    j)``, sums to 1, all NaN for empty input), ``prune_counts`` (``N * Q`` rounded preserving row
    totals: how many examples labelled ``i`` are estimated to truly be ``j``), ``noise_matrix``
    (``P(given = i | true = j)``, columns sum to 1, NaN columns for a class estimated to have no
    true examples; its transpose is the "rows = true class" layout) and
    ``inverse_noise_matrix`` (``P(true = j | given = i)``, rows sum to 1, NaN rows for unused
    labels).
    """

    thresholds: np.ndarray
    true_label_guess: np.ndarray
    num_label_issues: int
    cells: np.ndarray
    cell_counts: np.ndarray
    cell_joint: np.ndarray
    cell_prune: np.ndarray
    best_other: np.ndarray | None = field(default=None, repr=False)
    best_other_prob: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_classes(self) -> int:
        return int(self.thresholds.shape[0])

    @property
    def any_confident(self) -> bool:
        return bool(self.cell_counts.size)

    def _dense(self, values: np.ndarray, dtype) -> np.ndarray:
        c = self.n_classes
        out = np.zeros((c, c), dtype=dtype)
        out[self.cells[:, 0], self.cells[:, 1]] = values
        return out

    @cached_property
    def confident_joint(self) -> np.ndarray:
        return self._dense(self.cell_counts, np.int64)

    @cached_property
    def joint(self) -> np.ndarray:
        if not self.any_confident:
            return np.full((self.n_classes,) * 2, np.nan)
        return self._dense(self.cell_joint, np.float64)

    @cached_property
    def prune_counts(self) -> np.ndarray:
        return self._dense(self.cell_prune, np.int64)

    def cell_noise(self) -> np.ndarray:
        """float64 [M], ``noise_matrix`` at :attr:`cells` (NaN where the true class's column
        is NaN)."""
        j = self.cells[:, 1]
        col = np.bincount(j, weights=self.cell_joint, minlength=self.n_classes)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(col[j] > 0, self.cell_joint / col[j], np.nan)

    @cached_property
    def noise_matrix(self) -> np.ndarray:
        c = self.n_classes
        col = np.bincount(self.cells[:, 1], weights=self.cell_joint, minlength=c)
        out = self._dense(self.cell_noise(), np.float64)
        out[:, ~(col > 0)] = np.nan
        return out

    @cached_property
    def inverse_noise_matrix(self) -> np.ndarray:
        c = self.n_classes
        i = self.cells[:, 0]
        row = np.bincount(i, weights=self.cell_joint, minlength=c)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(row[i] > 0, self.cell_joint / row[i], np.nan)
        out = self._dense(values, np.float64)
        out[~(row > 0), :] = np.nan
        return out


# ----------------------------------------------------------------------------- validation


def _check_shapes(labels: Any, pred_probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Types and shapes of the inputs (not the probabilities' values)."""
    probs = np.asarray(pred_probs)
    if probs.dtype == object or not (
        np.issubdtype(probs.dtype, np.floating) or np.issubdtype(probs.dtype, np.integer)
    ):
        raise TypeError(f"pred_probs must be a float array, got dtype {probs.dtype}")
    if probs.ndim != 2:
        raise ValueError(f"pred_probs must be 2-D [N, C], got shape {probs.shape}")
    n, c = probs.shape
    if c < 2:
        raise ValueError(f"pred_probs must have at least 2 classes (columns), got {c}")
    if probs.dtype not in (np.float32, np.float64):
        probs = probs.astype(np.float32 if probs.dtype == np.float16 else np.float64)
    lab = np.asarray(labels)
    if lab.ndim != 1:
        raise ValueError(f"labels must be 1-D [N], got shape {lab.shape}")
    if lab.size and not np.issubdtype(lab.dtype, np.integer):
        raise TypeError(f"labels must be integers 0..C-1, got dtype {lab.dtype}")
    lab = lab.astype(np.int64)
    if lab.shape[0] != n:
        raise ValueError(f"labels has {lab.shape[0]} rows but pred_probs has {n}")
    if n and (lab.min() < 0 or lab.max() >= c):
        raise ValueError(
            f"labels must be in 0..{c - 1} (pred_probs has {c} columns), got values in "
            f"[{lab.min()}, {lab.max()}]"
        )
    return lab, probs


def _check_inputs(labels: Any, pred_probs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate once at the public boundary; returns (int64 labels, float32/64 pred_probs)."""
    lab, probs = _check_shapes(labels, pred_probs)
    step = _block_rows(probs)
    for s in range(0, probs.shape[0], step):
        _check_block(probs[s : s + step], s)
    return lab, probs


def _check_name(name: Any, registry: dict, what: str) -> None:
    if name not in registry:
        raise ValueError(f"unknown {what} {name!r}; valid: {sorted(registry)}")


# ----------------------------------------------------------------------------- estimation


def estimate_noise(
    labels: Any, pred_probs: Any, *, shrink_thresholds: bool = True
) -> NoiseEstimate:
    """Thresholds, confident joint, joint, noise matrices and number of label errors.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Given labels ``0..C-1``.
    pred_probs : array-like of float, shape (N, C)
        Held-out (out-of-sample, e.g. cross-validated) predicted probabilities; rows sum to 1.
        In-sample probabilities of a model that memorised its labels find almost nothing.
    shrink_thresholds : bool, keyword-only
        Pull thresholds resting on few images towards the overall mean (default; see the module
        docstring); False is the paper's per-class mean.

    Returns
    -------
    NoiseEstimate
        See the module docstring for the definitions.
    """
    lab, probs = _check_shapes(labels, pred_probs)
    return _estimate_core(lab, probs, shrink=shrink_thresholds, check=True)


def estimate_noise_matrix(
    labels: Any, pred_probs: Any, *, shrink_thresholds: bool = True
) -> np.ndarray:
    """Estimated noise matrix ``P(given = i | true = j)``, float64 [C, C], columns sum to 1.

    Entry ``[i, j]`` is the probability that an example whose true class is ``j`` carries the
    label ``i``. The transpose is the row-stochastic "rows = true class, columns = given label"
    layout. Columns of classes estimated to have no true example are NaN (all NaN for N = 0).
    """
    return estimate_noise(labels, pred_probs, shrink_thresholds=shrink_thresholds).noise_matrix


def estimate_num_label_issues(
    labels: Any, pred_probs: Any, *, shrink_thresholds: bool = True
) -> int:
    """Estimated number of label errors: off-diagonal sum of the calibrated confident joint."""
    return estimate_noise(labels, pred_probs, shrink_thresholds=shrink_thresholds).num_label_issues


#: Floor of the between-class spread of thresholds (a variance, in probability^2) in the
#: shrinkage: with classes that all look alike it keeps B below 1 for classes of many images.
_TAU2_FLOOR = 1e-4


def _thresholds(lab: np.ndarray, probs: np.ndarray, *, shrink: bool = True) -> np.ndarray:
    n, c = probs.shape
    counts = np.bincount(lab, minlength=c)
    own = probs[np.arange(n), lab].astype(np.float64)
    sums = np.bincount(lab, weights=own, minlength=c)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = sums / counts
    present = counts > 0
    if shrink and present.sum() > 1 and n > present.sum():
        # empirical Bayes: se2 = pooled within-class variance / n_j, tau2 by moments
        sq = np.bincount(lab, weights=own * own, minlength=c)
        within = (sq[present].sum() - (counts[present] * t[present] ** 2).sum()) / (
            n - present.sum()
        )
        se2 = max(within, 0.0) / np.maximum(counts, 1)
        tau2 = max(float(np.var(t[present])) - float(se2[present].mean()), _TAU2_FLOOR)
        pull = se2 / (se2 + tau2)
        t = np.where(present, pull * own.mean() + (1.0 - pull) * t, t)
    t[~present] = np.inf
    return t


def _round_preserving_row_totals(rows: np.ndarray, x: np.ndarray, c: int) -> np.ndarray:
    """Largest-remainder rounding of each row to integers summing to the rounded row total.

    ``x`` are a matrix's non-zero entries, ``rows`` their rows, sorted by row then column. A
    short row's units go to its largest fractions, ties to the lower column; an entry that is
    zero never gets one (a row is short by at most the number of its positive fractions)."""
    floors = np.floor(x)
    frac = x - floors
    out = floors.astype(np.int64)
    missing = np.rint(np.bincount(rows, weights=x, minlength=c)).astype(np.int64) - np.bincount(
        rows, weights=out, minlength=c
    ).astype(np.int64)
    short = missing[rows] > 0
    if short.any():
        cand = np.flatnonzero(short)  # entries of short rows, by row then column
        order = cand[np.lexsort((cand, -frac[cand], rows[cand]))]  # largest fraction first
        r = rows[order]
        first = np.searchsorted(r, r)  # where each row's run starts
        rank = np.arange(order.size) - first
        out[order[rank < missing[r]]] += 1
    return out


#: Bytes of probabilities in one block of :func:`_scan`: a block stays in the cache while every
#: per-row quantity is read from it (at 100,000 x 1,000 each separate pass over the 400 MB of
#: probabilities from memory cost about what the whole section costs at 10 classes). Measured
#: at 100,000 x 1,000 on the 2-core development machine (2 MiB L2, 32 MiB L3): 128 KiB blocks
#: 0.22 s (numpy's per-call cost), 512 KiB 0.16, 2 MiB 0.14, 8 MiB 0.15, 32 MiB 0.22 s.
_SCAN_BYTES = 1 << 21
#: Probabilities (rows x classes) from which the scan's blocks run on every core (below, the
#: threads cost more than they save): 100,000 x 1,000 took 0.117 s on one core here, 0.066 s on two.
_THREAD_CELLS = 1 << 22


@dataclass(frozen=True)
class _Scan:
    guess: np.ndarray  # int64 [N], the true-label guess (-1: no class clears its threshold)
    best_other: np.ndarray  # int64 [N], most probable class other than the given one
    best_other_prob: np.ndarray  # float64 [N], its probability


def _block_rows(probs: np.ndarray) -> int:
    """Rows in one cache-sized block of ``probs`` (:data:`_SCAN_BYTES`), at least 16."""
    return max(16, _SCAN_BYTES // max(1, probs.shape[1] * probs.itemsize))


def _check_block(p: np.ndarray, start: int) -> None:
    """The probabilities' values, one block of rows starting at row ``start``."""
    lo, hi = float(p.min()), float(p.max())  # NaN and inf carried along
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("pred_probs must be finite, got NaN or inf")
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(
            f"pred_probs must lie in [0, 1], got values in [{lo:.4g}, {hi:.4g}]"
            f" (rows {start:,}-{start + len(p) - 1:,})"
        )
    # in the input's dtype (numpy sums pairwise: float32 error ~1e-7 x log2(C), far inside the
    # tolerance); a float64 accumulator costs a conversion per value, 3x the whole check
    sums = p.sum(axis=1).astype(np.float64)
    bad = np.abs(sums - 1.0) > PROB_ROW_SUM_ATOL
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"pred_probs rows must sum to 1 within {PROB_ROW_SUM_ATOL} (probabilities, not"
            f" logits), row {start + first} sums to {sums[first]:.4g}"
        )


def _scan(lab: np.ndarray, probs: np.ndarray, t: np.ndarray | None, *, check: bool) -> _Scan:
    """One pass over the probabilities in cache-sized blocks of rows: their values' checks (when
    ``check``), the true-label guess (all -1 when ``t`` is None) and the most probable class
    other than the given one.

    The guess is the most probable class among those at or above their threshold ``t``, -1 if
    none: where the row's argmax clears its own threshold it is that class (nothing above it can
    pass; among equal maxima argmax is the lowest index either way), so the masked search runs
    only on the other rows. The best other class is the argmax itself unless that is the given
    label (then the argmax with the given label masked; ties to the lower index as before).
    """
    n, c = probs.shape
    step = _block_rows(probs)
    # the thresholds in the probabilities' dtype, rounded up: for a float32 p, p >= t exactly
    # when p >= t_up (comparing with float64 t converted every value of the block)
    if t is not None:
        t_up = t.astype(probs.dtype)
        low = t_up < t
        t_up[low] = np.nextafter(t_up[low], np.inf)
    guess = np.full(n, -1, dtype=np.int64)
    best = np.zeros(n, dtype=np.int64)
    value = np.zeros(n, dtype=np.float64)

    def block(s: int) -> None:
        p, given = probs[s : s + step], lab[s : s + step]
        if check:
            _check_block(p, s)
        rows = np.arange(p.shape[0])
        top = p.argmax(axis=1)
        top_p = p[rows, top]
        if t is not None:
            guess[s : s + step] = _guess_block(p, top, top_p, t, t_up)
        b, v = top.copy(), top_p.astype(np.float64)
        own = np.flatnonzero(top == given)
        if own.size:
            # a copy in the input's own dtype (a float64 copy of 100k x 1,000 float32
            # probabilities moved 800 MB); -inf exists in both
            q = p[own]
            q[np.arange(own.size), given[own]] = -np.inf
            bo = q.argmax(axis=1)
            b[own], v[own] = bo, q[np.arange(own.size), bo]
        best[s : s + step], value[s : s + step] = b, v

    if n * c < _THREAD_CELLS:
        for s in range(0, n, step):
            block(s)
    else:  # every core; a bad row raised is still the first one
        run_blocks(block, range(0, n, step))
    return _Scan(guess, best, value)


def _guess_block(
    p: np.ndarray, top: np.ndarray, top_p: np.ndarray, t: np.ndarray, t_up: np.ndarray
) -> np.ndarray:
    """The true-label guess of one block of rows (see :func:`_scan`)."""
    clears = top_p >= t[top]
    g = np.where(clears, top, -1)
    rest = np.flatnonzero(~clears)
    if rest.size:
        # probabilities are >= 0: a class below its threshold becomes -1, and the row has a
        # passing class exactly when its maximum is >= 0 (no separate any() pass)
        q = p[rest]
        np.putmask(q, q < t_up[None, :], -1.0)  # q is a copy (fancy indexing)
        h = q.argmax(axis=1)
        g[rest] = np.where(q[np.arange(rest.size), h] >= 0, h, -1)
    return g


def _estimate_core(
    lab: np.ndarray, probs: np.ndarray, *, shrink: bool = True, check: bool = False
) -> NoiseEstimate:
    """The estimate from checked labels and probabilities; ``check`` also checks the
    probabilities' values (in the same pass that makes the guess). Every matrix is computed on
    its non-zero cells only (at most one per example)."""
    n, c = probs.shape
    t = _thresholds(lab, probs, shrink=shrink)  # NaN from bad values: the scan raises
    sc = _scan(lab, probs, t, check=check)
    guess = sc.guess
    ok = guess >= 0
    keys, counts = np.unique(lab[ok] * c + guess[ok], return_counts=True)  # row-major order
    i, j = np.divmod(keys, c)
    label_counts = np.bincount(lab, minlength=c).astype(np.float64)
    row = np.bincount(i, weights=counts, minlength=c)
    calibrated = counts / np.maximum(row, 1.0)[i] * label_counts[i]
    total = calibrated.sum()
    joint = calibrated / total if total > 0 else calibrated
    prune = _round_preserving_row_totals(i, joint * n, c) if total > 0 else np.zeros_like(counts)
    return NoiseEstimate(
        thresholds=t,
        true_label_guess=guess,
        num_label_issues=int(prune[i != j].sum()),
        cells=np.stack([i, j], axis=1).astype(np.int64),
        cell_counts=counts.astype(np.int64),
        cell_joint=joint.astype(np.float64),
        cell_prune=prune.astype(np.int64),
        best_other=sc.best_other,
        best_other_prob=sc.best_other_prob,
    )


# ----------------------------------------------------------------------------- filters


def _by_class_index(lab: np.ndarray, c: int) -> list[np.ndarray]:
    order = np.argsort(lab, kind="stable")
    bounds = np.searchsorted(lab[order], np.arange(c + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(c)]


def _prune_by_noise_rate(lab: np.ndarray, probs: np.ndarray, est: NoiseEstimate) -> np.ndarray:
    """For every off-diagonal ``(i, j)``, the ``prune_counts[i, j]`` examples labelled ``i``
    with the largest margin ``p[j] - p[i]`` (ties to the lower index).

    One step per given class over all its partner classes at once, reading only those columns
    (a loop over the (i, j) pairs paid numpy's per-call cost ~10,000 times at 1,000 classes).
    Where few are taken from many (10 classes: thousands of images, a few hundred flags per
    pair) each column is selected with a partition instead of sorted: 0.067 -> 0.018 s at
    100,000 images x 10 classes, 0.089 -> 0.068 s at 1,000 classes.
    """
    n, c = probs.shape
    mask = np.zeros(n, dtype=bool)
    members = _by_class_index(lab, c)
    gi, gj = est.cells[:, 0], est.cells[:, 1]
    take = (gi != gj) & (est.cell_prune > 0)
    gi, gj, counts = gi[take], gj[take], est.cell_prune[take]  # by given class, then true
    bounds = np.searchsorted(gi, np.arange(c + 1))
    for i in np.flatnonzero(np.diff(bounds)):
        js, k = gj[bounds[i] : bounds[i + 1]], counts[bounds[i] : bounds[i + 1]]
        idx = members[i]  # ascending: ties to the lower index
        margin = (
            probs[idx[:, None], js[None, :]].astype(np.float64)
            - probs[idx, i].astype(np.float64)[:, None]
        )
        if idx.size > 2048 and idx.size > 4 * k.max():
            for col in range(js.size):
                m, kk = margin[:, col], int(k[col])
                kth = m[np.argpartition(-m, kk - 1)[:kk]].min()  # the kk-th largest margin
                above = np.flatnonzero(m > kth)
                mask[idx[above]] = True
                mask[idx[np.flatnonzero(m == kth)[: kk - above.size]]] = True
        else:
            order = np.argsort(-margin, axis=0, kind="stable")
            mask[idx[order[np.arange(idx.size)[:, None] < k[None, :]]]] = True
    return mask


def _prune_by_class(lab: np.ndarray, probs: np.ndarray, est: NoiseEstimate) -> np.ndarray:
    n, c = probs.shape
    mask = np.zeros(n, dtype=bool)
    members = _by_class_index(lab, c)
    gi, gj = est.cells[:, 0], est.cells[:, 1]
    off = gi != gj
    per_class = np.bincount(gi[off], weights=est.cell_prune[off], minlength=c).astype(np.int64)
    for i in np.flatnonzero(per_class > 0):
        idx = members[i]
        order = np.lexsort((idx, probs[idx, i]))  # lowest self-confidence first
        mask[idx[order[: per_class[i]]]] = True
    return mask


def _both(lab: np.ndarray, probs: np.ndarray, est: NoiseEstimate) -> np.ndarray:
    return _prune_by_noise_rate(lab, probs, est) & _prune_by_class(lab, probs, est)


def _confident_off_diagonal(lab: np.ndarray, probs: np.ndarray, est: NoiseEstimate) -> np.ndarray:
    g = est.true_label_guess
    return (g >= 0) & (g != lab)


def _predicted_neq_given(lab: np.ndarray, probs: np.ndarray, est: NoiseEstimate) -> np.ndarray:
    return probs.argmax(axis=1) != lab


#: name -> function(labels, pred_probs, estimate) -> bool [N] (before the agreement filter).
FILTER_METHODS: dict[str, Callable[[np.ndarray, np.ndarray, NoiseEstimate], np.ndarray]] = {
    "prune_by_noise_rate": _prune_by_noise_rate,
    "prune_by_class": _prune_by_class,
    "both": _both,
    "confident_learning": _confident_off_diagonal,
    "predicted_neq_given": _predicted_neq_given,
}


# ----------------------------------------------------------------------------- scores


def _best_other(lab: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, probability) of the most probable class other than the given one, per row."""
    sc = _scan(lab, probs, None, check=False)
    return sc.best_other, sc.best_other_prob


def _self_confidence(lab: np.ndarray, probs: np.ndarray) -> np.ndarray:
    return np.clip(probs[np.arange(lab.size), lab].astype(np.float64), 0.0, 1.0)


def _normalized_margin(lab: np.ndarray, probs: np.ndarray) -> np.ndarray:
    own = probs[np.arange(lab.size), lab].astype(np.float64)
    _, best = _best_other(lab, probs)
    return np.clip((own - best + 1.0) / 2.0, 0.0, 1.0)


#: name -> function(labels, pred_probs) -> float64 [N] in [0, 1], low = likely label error.
QUALITY_SCORES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "normalized_margin": _normalized_margin,
    "self_confidence": _self_confidence,
}


def label_quality_scores(labels: Any, pred_probs: Any, *, score: str = DEFAULT_SCORE):
    """Per-example label quality in [0, 1]; low = the given label is suspicious.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
    pred_probs : array-like of float, shape (N, C)
    score : {"self_confidence", "normalized_margin"}, keyword-only
        ``self_confidence = p_given`` (default); ``normalized_margin = (p_given - max_{k != given}
        p_k + 1) / 2`` (0.5 = tie with the best other class).

    Returns
    -------
    np.ndarray
        float64 [N].
    """
    _check_name(score, QUALITY_SCORES, "score")
    lab, probs = _check_inputs(labels, pred_probs)
    return QUALITY_SCORES[score](lab, probs)


# ----------------------------------------------------------------------------- other evidence


def _check_evidence(
    lab: np.ndarray, c: int, neighbour_labels: Any, copy_labels: Any
) -> tuple[np.ndarray | None, np.ndarray | None]:
    n = lab.size
    out = []
    for name, value, ndim in (
        ("neighbour_labels", neighbour_labels, 2),
        ("copy_labels", copy_labels, 1),
    ):
        if value is None:
            out.append(None)
            continue
        arr = np.asarray(value)
        if arr.ndim != ndim or arr.shape[0] != n:
            shape = "(N, k)" if ndim == 2 else "(N,)"
            raise ValueError(f"{name} must have shape {shape} with N = {n}, got {arr.shape}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{name} must be integer class ids (-1 = none), got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
        if arr.size and (arr.min() < -1 or arr.max() >= c):
            raise ValueError(
                f"{name} must be class ids in 0..{c - 1} or -1 (none), got values in "
                f"[{arr.min()}, {arr.max()}]"
            )
        out.append(arr)
    return out[0], out[1]


def neighbour_agreement(labels: Any, neighbour_labels: Any) -> np.ndarray:
    """Share of each example's neighbours that carry its given label.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Given labels.
    neighbour_labels : array-like of int, shape (N, k)
        Labels of each example's ``k`` nearest reference images (``-1`` = no neighbour there).

    Returns
    -------
    np.ndarray
        float64 [N] in [0, 1]; NaN for a row with no neighbour.
    """
    lab = np.asarray(labels).astype(np.int64)
    nb = np.asarray(neighbour_labels).astype(np.int64)
    if nb.ndim != 2 or nb.shape[0] != lab.size:
        raise ValueError(
            f"neighbour_labels must have shape (N, k) with N = {lab.size}, got {nb.shape}"
        )
    return _agreement(lab, nb)


def _agreement(lab: np.ndarray, nb: np.ndarray) -> np.ndarray:
    present = (nb >= 0).sum(axis=1)
    same = (nb == lab[:, None]).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(present > 0, same / np.maximum(present, 1), np.nan)


# ----------------------------------------------------------------------------- public entry


def find_label_issues(
    labels: Any,
    pred_probs: Any,
    *,
    method: str = DEFAULT_METHOD,
    score: str = DEFAULT_SCORE,
    class_names: Sequence[str] | None = None,
    neighbour_labels: Any = None,
    copy_labels: Any = None,
    shrink_thresholds: bool = True,
    estimate: NoiseEstimate | None = None,
) -> pd.DataFrame:
    """Rank every example by label quality and flag the suspected label errors.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Given labels ``0..C-1``.
    pred_probs : array-like of float, shape (N, C)
        Held-out predicted probabilities, rows sum to 1.
    method : str, keyword-only
        Filter from :data:`FILTER_METHODS` (see the module docstring).
    score : str, keyword-only
        Label-quality score from :data:`QUALITY_SCORES`.
    class_names : sequence of str, optional, keyword-only
        Display names for the ``reason`` text; defaults to ``"class <k>"``.
    neighbour_labels : array-like of int, shape (N, k), optional, keyword-only
        Labels of each example's nearest reference (training) images in embedding space, ``-1``
        where there is none. Evidence that does not come from the model's probabilities: see
        the module docstring for how it is used.
    copy_labels : array-like of int, shape (N,), optional, keyword-only
        Label of each example's near-copy in the reference set, ``-1`` when it has none.
    shrink_thresholds : bool, keyword-only
        See :func:`estimate_noise`.
    estimate : NoiseEstimate, optional, keyword-only
        :func:`estimate_noise` of these same labels and probabilities, when already computed
        (at 100,000 x 1,000 the estimate and the checks of the probabilities' values are most of
        the work; with an estimate only shapes and types are checked again);
        ``shrink_thresholds`` is then the estimate's.

    Returns
    -------
    pd.DataFrame
        One row per example, flagged issues first, then by increasing label quality (ties by
        index). Columns: ``index`` (row position in the inputs), ``given_label``,
        ``suggested_label`` (the most probable class other than the given one),
        ``label_quality`` in [0, 1] (the ranking key: ``model_score`` alone, or averaged with
        ``neighbour_agreement`` where there are neighbours), ``is_label_issue`` (bool),
        ``reason`` (plain words), ``model_score`` (the ``score`` of the probabilities),
        ``neighbour_agreement`` (NaN without neighbours), ``copy_label`` (-1 without a copy).
    """
    _check_name(method, FILTER_METHODS, "method")
    _check_name(score, QUALITY_SCORES, "score")
    # the values are checked in the estimate's pass over the probabilities (estimate_noise
    # checked them already when an estimate is given)
    lab, probs = _check_shapes(labels, pred_probs)
    c = probs.shape[1]
    if class_names is None:
        names = [f"class {k}" for k in range(c)]
    else:
        if isinstance(class_names, str) or len(class_names) != c:
            raise ValueError(
                f"class_names must be a sequence of {c} names (one per pred_probs column), got "
                f"{class_names!r}"
            )
        names = [str(x) for x in class_names]
    nb, copies = _check_evidence(lab, c, neighbour_labels, copy_labels)
    if estimate is not None and (
        estimate.true_label_guess.shape != lab.shape or estimate.thresholds.shape != (c,)
    ):
        raise ValueError(
            f"estimate is of {estimate.true_label_guess.shape[0]} examples and"
            f" {estimate.thresholds.shape[0]} classes, but the inputs have {lab.size} and {c}"
        )
    est = (
        estimate
        if estimate is not None
        else _estimate_core(lab, probs, shrink=shrink_thresholds, check=True)
    )
    return _find_core(
        lab,
        probs,
        method=method,
        score=score,
        names=names,
        neighbours=nb,
        copies=copies,
        estimate=est,
    )


def _find_core(
    lab: np.ndarray,
    probs: np.ndarray,
    *,
    method: str,
    score: str,
    names: list[str],
    neighbours: np.ndarray | None = None,
    copies: np.ndarray | None = None,
    estimate: NoiseEstimate | None = None,
) -> pd.DataFrame:
    n = lab.size
    est = _estimate_core(lab, probs) if estimate is None else estimate
    if est.best_other is not None and est.best_other.shape == lab.shape:
        suggested, p_suggested = est.best_other, est.best_other_prob
    else:  # an estimate made without them
        suggested, p_suggested = _best_other(lab, probs)
    p_given = probs[np.arange(n), lab].astype(np.float64)
    # the given label is (one of) the model's top predictions: as probable as the best other
    agrees = p_given >= p_suggested
    issue = FILTER_METHODS[method](lab, probs, est) & ~agrees
    if score == "normalized_margin":  # from the best other class already found
        model_score = np.clip((p_given - p_suggested + 1.0) / 2.0, 0.0, 1.0)
    else:
        model_score = QUALITY_SCORES[score](lab, probs)
    quality = model_score
    agree = np.full(n, np.nan)
    copy = np.full(n, -1, dtype=np.int64) if copies is None else copies
    if neighbours is not None:
        agree = _agreement(lab, neighbours)
        known = ~np.isnan(agree)
        quality = np.where(known, (model_score + np.nan_to_num(agree)) / 2.0, model_score)
        issue &= ~(known & (agree >= SUPPORTED))  # the neighbours support the given label
    has_copy = copy >= 0
    issue &= ~(has_copy & (copy == lab))  # its near-copy in the reference carries the label
    t_given = est.thresholds[lab]
    reason = [
        f"labelled {names[g]} (p {pg:.2f}, {names[g]} threshold {tg:.2f}); "
        f"model gives {names[s]} {ps:.2f}"
        for g, pg, tg, s, ps in zip(
            lab.tolist(),
            p_given.tolist(),
            t_given.tolist(),
            suggested.tolist(),
            p_suggested.tolist(),
            strict=True,
        )
    ]
    if neighbours is not None or copies is not None:
        k = int(neighbours.shape[1]) if neighbours is not None else 0
        for i in np.flatnonzero((~np.isnan(agree)) | has_copy):
            extra = []
            if not np.isnan(agree[i]):
                extra.append(
                    f"{int(round(agree[i] * k))} of its {k} nearest reference images are"
                    f" labelled {names[lab[i]]}"
                )
            if has_copy[i]:
                extra.append(f"its near-copy in the reference set is labelled {names[copy[i]]}")
            reason[i] = f"{reason[i]}; " + "; ".join(extra)
    df = pd.DataFrame(
        {
            INDEX: np.arange(n, dtype=np.int64),
            GIVEN_LABEL: lab,
            schema.SUGGESTED_LABEL: suggested,
            schema.LABEL_ISSUE_SCORE: quality,
            schema.IS_LABEL_ISSUE: issue,
            REASON: pd.Series(reason, dtype=object),
            MODEL_SCORE: model_score,
            NEIGHBOUR_AGREEMENT: agree,
            COPY_LABEL: copy,
        },
        columns=ISSUE_COLUMNS,
    )
    order = np.lexsort((np.arange(n), quality, ~issue))
    return df.iloc[order].reset_index(drop=True)


# ----------------------------------------------------------------------------- honest words

#: The measured table: precision of the default flags on random synthetic problems (written by
#: ``bench/bench_label_issues.py``; rows: accuracy, ECE, flagged and real flags, without and with
#: neighbour evidence).
PRECISION_TABLE_PATH = Path(__file__).with_name("label_precision.json")
NEAREST_PROBLEMS = 25  # problems pooled for one run's expected precision
_SCALE = 0.05  # accuracy and ECE differences in units of 5 points


@dataclass(frozen=True)
class ExpectedPrecision:
    """The share of flags that were real label errors on problems like a run's.

    Attributes
    ----------
    pooled : float
        Real label errors among all flags of the nearest problems (the central estimate).
    low, high : float
        10th and 90th percentile of the per-problem precision (how much it varied).
    n_problems : int
        Problems pooled (those with at least one flag among the nearest).
    accuracy : tuple of float
        Range of model accuracy of those problems.
    ece : tuple of float
        Range of their expected calibration error.
    evidence : bool
        Whether the flags used neighbour evidence.
    """

    pooled: float
    low: float
    high: float
    n_problems: int
    accuracy: tuple[float, float]
    ece: tuple[float, float]
    evidence: bool


def precision_table_from_family(rows: Sequence[dict]) -> dict:
    """The stored table from the benchmark's random family (see ``bench/bench_label_issues.py``).

    Each row needs ``accuracy``, ``ece``, ``flagged_probabilities``, ``real_probabilities``,
    ``flagged_neighbours``, ``real_neighbours``.
    """
    cols = [
        "accuracy",
        "ece",
        "flagged_probabilities",
        "real_probabilities",
        "flagged_neighbours",
        "real_neighbours",
    ]
    return {
        "about": (
            "Precision of errorscope's default label-issue flags on random synthetic problems"
            " (bench/bench_label_issues.py): 0-10% label noise, 3-30 classes, weak to strong and"
            " under- to overconfident models, with and without confident systematic model"
            " errors. One row per problem."
        ),
        "method": DEFAULT_METHOD,
        "score": DEFAULT_SCORE,
        "columns": cols,
        "rows": [[float(r[c]) for c in cols] for r in rows],
    }


@lru_cache(maxsize=1)
def _stored_table() -> dict | None:
    try:
        return json.loads(PRECISION_TABLE_PATH.read_text())
    except (OSError, ValueError):
        return None


def expected_precision(
    accuracy: float, ece: float, *, evidence: bool = False, table: dict | None = None
) -> ExpectedPrecision | None:
    """What share of the flags were real label errors on problems like this one.

    The problems of the measured table nearest to the run in (accuracy, calibration error),
    both in units of 5 points, are pooled (:data:`NEAREST_PROBLEMS` of them): the central value
    is their real flags over their flags, the range their per-problem 10th-90th percentile.
    A nearest-neighbour lookup, not a model: it says what happened on problems like this one,
    and the range says how much that varied with the (unknown) amount of label noise.

    Parameters
    ----------
    accuracy, ece : float
        The run's accuracy and expected calibration error on its given labels, in [0, 1].
    evidence : bool, keyword-only
        The flags used neighbour / near-copy evidence (the run had a labelled reference set).
    table : dict, optional, keyword-only
        The table (default: the stored one, :data:`PRECISION_TABLE_PATH`).

    Returns
    -------
    ExpectedPrecision or None
        None when the table is missing or the inputs are not finite.
    """
    t = _stored_table() if table is None else table
    if t is None or not (np.isfinite(accuracy) and np.isfinite(ece)):
        return None
    data = np.asarray(t["rows"], dtype=np.float64).reshape(-1, 6)
    flagged = data[:, 4] if evidence else data[:, 2]
    real = data[:, 5] if evidence else data[:, 3]
    use = flagged > 0
    if not use.any():
        return None
    data, flagged, real = data[use], flagged[use], real[use]
    dist = ((data[:, 0] - accuracy) / _SCALE) ** 2 + ((data[:, 1] - ece) / _SCALE) ** 2
    near = np.argsort(dist, kind="stable")[:NEAREST_PROBLEMS]
    per = real[near] / flagged[near]
    return ExpectedPrecision(
        pooled=float(real[near].sum() / flagged[near].sum()),
        low=float(np.percentile(per, 10)),
        high=float(np.percentile(per, 90)),
        n_problems=int(near.size),
        accuracy=(float(data[near, 0].min()), float(data[near, 0].max())),
        ece=(float(data[near, 1].min()), float(data[near, 1].max())),
        evidence=bool(evidence),
    )
