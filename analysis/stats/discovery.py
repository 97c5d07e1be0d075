"""Automatic slice discovery: conjunctions of up to three predicates where the model does worse.

Method: SliceLine (Sagadeeva & Boehm, "SliceLine: Fast, Linear-Algebra-based Slice Finding for
ML Model Debugging", SIGMOD 2021), with every candidate tested and corrected for.

- **Vocabulary.** The same single predicates as :func:`analysis.stats.slices.compute_slices` (metadata
  values and quantile bins, property bins and tails, true class, predicted class, cluster).
  Predicates of one column are mutually exclusive groups (:class:`analysis.stats.slices.Partition`); a
  conjunction takes at most one predicate per column, and never both the true and the predicted
  class (``label == a and pred == b`` is a confusion-matrix cell: its error rate is 0 or 1 by
  definition, not a finding).
- **Lattice.** Level-wise, as in SliceLine: level 1 the single predicates, level ``d`` the
  conjunctions of ``d`` predicates. All the cells of one column combination are counted at once
  with one ``np.bincount`` over the combined integer codes (``O(rows)`` per combination), rows and
  errors alike, and a cell's parents (one predicate dropped) are sums over one axis of the same
  count array.
- **Size pruning** (SliceLine's, exact): a candidate needs ``min_support`` rows, and a slice's
  rows bound its children's, so predicates below ``min_support`` are dropped before combining,
  and a column combination is only expanded when each of its sub-combinations had a candidate. A
  conjunction selecting exactly the rows of one of its parents is the same slice and no new
  candidate.
- **Score** (SliceLine): ``score = w * (e_s / e_bar - 1) - (1 - w) * (N / n_s - 1)`` with
  ``e_s`` the slice's error rate, ``e_bar`` the overall one, ``n_s`` its rows, ``N`` all rows and
  ``w = error_weight`` (SliceLine's alpha, 0.95): positive when a slice is worse by more than its
  smallness costs. Stored with every finding; ``rank_by="sliceline"`` ranks by it.
- **Excess errors** (the default ranking, ``rank_by="excess_errors"``): ``n_s * (e_s -
  r_rest)``, the errors beyond what the rest's error rate ``r_rest`` predicts for a slice of
  that size: how many errors fixing the slice would remove. It puts a large, moderately worse
  slice (a camera with a third of the images) above a tiny, very bad one, which is the order a
  team should work in; SliceLine's score favours the small ones at ``w = 0.95``.

Why not SliceLine's score upper-bound pruning, nor a decision tree on the error indicator: at depth
three the whole size-feasible lattice is counted in seconds (one bincount per column combination),
so nothing needs pruning for speed. And pruning on a bound of the score decides *from the errors*
which candidates are looked at; the family of tests would then depend on the data being tested.
Here which candidates exist depends only on the columns (their sizes), never on the errors. A
decision tree gives one greedy path per split and no count of how many hypotheses it looked at,
so its leaves cannot be tested honestly.

Honest statistics:

1. Every candidate counts toward the multiple-testing correction: each gets the one-sided Fisher
   exact p-value of "worse than the rest" (:func:`analysis.stats.slices.fisher_worse_p`), and
   Benjamini-Hochberg runs over all of them (``attrs["n_tested"]``). Candidates whose error rate
   is not above the overall rate are not given an exact p-value and count with ``p = 1``: BH is
   monotone in the p-values, so raising some can only remove discoveries, never add any. Their
   exact p-values are about 0.5 or more and could not pass anyway.
2. A conjunction is kept only if each of its predicates matters: inside each parent (the
   conjunction with one predicate dropped) its rows must be worse than the parent's other rows
   (one-sided Fisher, the largest of those p-values, BH over every conjunction of two or more
   predicates, those not surviving step 1 counting with p = 1). This removes "a conjunction no
   worse than its best parent" and, more strictly, the accidental refinements of a real slice.
3. Near-copies go: in ranking order, a slice whose rows are at least 90% the same (Jaccard) as
   a better-ranked reported slice is dropped. A slice at least 80% of whose rows lie inside a
   reported one (a piece of it: "the darkest 10%" inside "lighting is night") replaces it when
   it explains it (it is worse, and what is left of the broader slice is no worse than the rows
   outside it); otherwise it is kept beside it (``pieces="keep"``), since it already passed
   step 2's test of being worse than the rest of each parent. The first ``top_k`` are reported.

**Defaults, and what they were chosen on.** ``bench/bench_discovery.py`` runs every setting on
random planted worlds (``bench/worlds.py``: 300 seeded tables with 0-4 planted weak slices of
1-3 input conditions, and 1,000 with nothing planted; none of them is the bundled sample).
Recall of the planted slices in the top 3 / top 10 (Jaccard >= 0.5), false slices per world
(reported slices whose rows are not worse in truth) and the share of null worlds with anything
reported:

============================ ======== ========= =========== =================
setting                      recall@3 recall@10 false/world null worlds
============================ ======== ========= =========== =================
pieces="keep" (default)      0.58     0.70      0.09        0.0% (of 200)
pieces="drop" (the old rule) 0.56     0.62      0.09        0.4% (of 1,000)
rank_by="sliceline"          0.60     0.66      0.08        0.0% (of 200)
model_outputs=True           0.46     0.61      2.65        79.5% (of 200)
containment off              0.53     0.69      0.11        0.0% (of 200)
n_bins=10                    0.48     0.52      0.08        0.5% (of 200)
============================ ======== ========= =========== =================

Keeping the pieces that do not explain their slice finds the planted slices more often at the
same false-slice rate; ranking by SliceLine's score instead of excess errors gains recall@3
with the old rule but not with the new one (0.58 / 0.70 either way), so the ranking stays the
order a team should work in. Model outputs stay out: the predicted class and the cluster are
worse by construction whenever errors go to some classes more than others, which made
something reported in 80% of the worlds where nothing was planted. The sample's acceptance
test then checks what these defaults give on the sample.

What is promised: on data where errors depend on no column, anything is reported in at most
``alpha`` of data sets (Benjamini-Hochberg under the complete null). The family is large and
its tests overlap, so it is conservative here: 4 of 1,000 random null worlds
(``bench/bench_discovery.py``) and 2 of 400 seeded null tables (``make test``, against the
binomial bound of 5%) reported anything.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Sequence

import numpy as np
import pandas as pd

from analysis.stats.intervals import wilson_interval

from .. import schema
from .slices import (
    MAX_SHARE,
    SLICE_COLUMNS,
    Partition,
    SliceSpec,
    _check_inputs,
    _empty_table,
    _fisher_core,
    _Inputs,
    _partitions,
    _quality,
    _table,
    bh_adjust,
    is_testable_size,
)

__all__ = ["DEPTH", "DISCOVERY_COLUMNS", "SCORE", "discover_slices"]

DEPTH = "depth"  # number of predicates
SCORE = "score"  # SliceLine score, higher = worse and larger
DISCOVERY_COLUMNS = [*SLICE_COLUMNS, DEPTH, SCORE]

JACCARD_REDUNDANT = 0.9  # rows at least this much the same as a better slice: a near-copy
CONTAINED_REDUNDANT = 0.8  # this share of its rows inside a better slice: a piece of that slice
MAX_DEPTH = 3
_MAX_CELLS = 1 << 22  # a column combination with more cells than this is not expanded
_CLASS_GROUP = "\x00class"  # label and pred: never in the same conjunction


def _group(part: Partition) -> str:
    return _CLASS_GROUP if part.column in (schema.LABEL, schema.PRED) else part.column


class _Candidates:
    """The candidates of every level: one block of arrays per column combination."""

    def __init__(self) -> None:
        self.combo: list[tuple[int, ...]] = []  # per block
        self.blocks: list[dict[str, np.ndarray]] = []

    def add(self, combo: tuple[int, ...], cells: np.ndarray, n, e, parent_n, parent_e) -> None:
        self.combo.append(combo)
        self.blocks.append(
            {"cells": cells, "n": n, "e": e, "parent_n": parent_n, "parent_e": parent_e}
        )


def discover_slices(
    samples: pd.DataFrame,
    *,
    metadata_columns: Sequence[str],
    property_columns: Sequence[str],
    cluster_column: str | None = None,
    class_names: Sequence[str] | None,
    max_depth: int = 3,
    min_support: int = 20,
    alpha: float = 0.05,
    top_k: int = 20,
    n_bins: int = 5,
    error_weight: float = 0.95,
    model_outputs: bool = False,
    rank_by: str = "excess_errors",
    containment: float = CONTAINED_REDUNDANT,
    max_share: float = MAX_SHARE,
    pieces: str = "keep",
) -> pd.DataFrame:
    """Conjunctions of up to ``max_depth`` predicates with significantly more errors.

    By default (``model_outputs=False``) the vocabulary is conditions on the *inputs*: metadata,
    image properties and the true class. The predicted class and the embedding cluster are the
    model's own outputs: a slice conditioned on them is worse partly by construction and says
    nothing the confusion matrix and the error-cluster list do not already say, while it crowds
    out the actionable findings (a camera, a lighting condition). Pass ``model_outputs=True``
    to include them.

    Parameters
    ----------
    samples : DataFrame, N rows
        Needs ``label``, ``pred`` (int class ids), ``correct`` (bool) and the named columns.
    metadata_columns, property_columns, cluster_column, class_names, n_bins
        As in :func:`analysis.stats.slices.compute_slices`: they define the predicate vocabulary.
    max_depth : int, keyword-only
        Most predicates per slice, 1 to 3.
    min_support : int
        Fewest rows of a candidate.
    alpha : float
        False-discovery rate of the reported slices (Benjamini-Hochberg over every candidate).
    top_k : int
        Most slices reported, after removing near-copies.
    error_weight : float
        SliceLine's alpha in (0, 1]: weight of the error ratio against the size penalty in
        ``score``.
    rank_by : {"excess_errors", "sliceline"}
        Order of the findings (and of the near-copy step): the errors a slice adds beyond the
        rest's rate (default), or SliceLine's ``score``.
    containment : float
        In (0, 1]: a slice with at least this share of its rows inside a better-ranked reported
        slice is a piece of it (kept only when it explains it; step 3 of the module docstring).
        Above 1 turns the rule off.
    pieces : {"keep", "drop"}
        What happens to such a piece when it does not explain the broader slice: kept beside it
        as a finding of its own (default), or dropped as leading to the same images.
    max_share : float
        Candidates holding more than this share of the rows, or leaving fewer than
        ``min_support`` outside, are not slices: not tested, not counted, not reported (they
        still combine into smaller conjunctions).

    Returns
    -------
    DataFrame, columns :data:`DISCOVERY_COLUMNS` (the slices table plus ``depth``, ``score``)
        Only significant, non-redundant slices, in ``rank_by`` order (most excess errors first
        by default); empty (same columns) when
        nothing survives. ``attrs``: ``n_tested`` (candidates in the correction),
        ``n_significant`` (candidates with ``p_adj < alpha`` before the redundancy steps) and
        ``n_skipped_combinations`` (column combinations with more than 4M cells, not expanded).

    See the module docstring for the method and why its statistics hold.
    """
    inputs, meta, props = _check_inputs(
        samples,
        metadata_columns=metadata_columns,
        property_columns=property_columns,
        cluster_column=cluster_column,
        class_names=class_names,
        min_support=min_support,
        alpha=alpha,
        n_bins=n_bins,
        max_share=max_share,
    )
    for name, value, low, high in (
        ("max_depth", max_depth, 1, MAX_DEPTH),
        ("top_k", top_k, 1, None),
    ):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an int, got {type(value).__name__}")
        if value < low or (high is not None and value > high):
            expected = f"between {low} and {high}" if high is not None else f">= {low}"
            raise ValueError(f"{name} must be {expected}, got {value}")
    if isinstance(error_weight, bool) or not isinstance(error_weight, numbers.Real):
        raise TypeError(
            f"error_weight must be a float in (0, 1], got {type(error_weight).__name__}"
        )
    if not 0.0 < float(error_weight) <= 1.0:
        raise ValueError(
            f"error_weight must be in (0, 1] (SliceLine uses 0.95), got {error_weight!r}"
        )
    parts = (
        _partitions(
            samples,
            inputs,
            metadata_columns=meta,
            property_columns=props,
            cluster_column=cluster_column,
            n_bins=int(n_bins),
        )
        if len(samples)
        else []
    )
    if rank_by not in ("excess_errors", "sliceline"):
        raise ValueError(f"rank_by must be 'excess_errors' or 'sliceline', got {rank_by!r}")
    if isinstance(containment, bool) or not isinstance(containment, numbers.Real):
        raise TypeError(f"containment must be a float, got {type(containment).__name__}")
    if not float(containment) > 0.0:
        raise ValueError(f"containment must be > 0 (above 1 turns it off), got {containment!r}")
    if pieces not in ("drop", "keep"):
        raise ValueError(f"pieces must be 'drop' or 'keep', got {pieces!r}")
    if not model_outputs:
        parts = [p for p in parts if p.source not in ("pred", "cluster")]
    return _discover_core(
        parts,
        inputs,
        max_depth=int(max_depth),
        min_support=int(min_support),
        alpha=float(alpha),
        top_k=int(top_k),
        error_weight=float(error_weight),
        rank_by=rank_by,
        containment=float(containment),
        max_share=float(max_share),
        pieces=pieces,
    )


def _empty(n_tested: int = 0, n_significant: int = 0, n_skipped: int = 0) -> pd.DataFrame:
    out = _empty_table(DISCOVERY_COLUMNS)
    out.attrs.update(
        n_tested=n_tested, n_significant=n_significant, n_skipped_combinations=n_skipped
    )
    return out


def _reduce(parts: list[Partition], error: np.ndarray, min_support: int) -> list[Partition]:
    """Keep each partition's predicates with >= min_support rows (codes re-numbered)."""
    total = len(error)
    out = []
    for part in parts:
        k = len(part.predicates)
        n_k = np.bincount(part.codes[part.codes >= 0], minlength=k)
        keep = np.flatnonzero((n_k >= min_support) & (n_k < total))
        if not keep.size:
            continue
        remap = np.full(k + 1, -1, dtype=np.int64)  # index k: code -1
        remap[keep] = np.arange(keep.size)
        codes = remap[part.codes]  # -1 indexes the last entry, which is -1
        preds = tuple(part.predicates[j] for j in keep)
        out.append(Partition(part.source, part.column, codes, preds))
    return out


def _count_cells(
    code: np.ndarray,
    code_err: np.ndarray,
    sizes: list[int],
    min_support: int,
) -> tuple[np.ndarray, ...] | None:
    """Feasible cells of one column combination, their counts and their parents' counts.

    ``code`` / ``code_err``: the combined cell index of every row / of every error row, where
    each column contributes ``codes + 1`` (0 = "none of this column's predicates").
    """
    cells = math.prod(sizes)
    n_full = np.bincount(code, minlength=cells).reshape(sizes)
    e_full = np.bincount(code_err, minlength=cells).reshape(sizes)
    d = len(sizes)
    inner = tuple(slice(1, None) for _ in range(d))
    n_c, e_c = n_full[inner], e_full[inner]
    parent_n, parent_e = [], []
    for axis in range(d):
        keep_axis = tuple(slice(None) if j == axis else slice(1, None) for j in range(d))
        parent_n.append(n_full.sum(axis=axis, keepdims=True)[keep_axis])
        parent_e.append(e_full.sum(axis=axis, keepdims=True)[keep_axis])
    feasible = n_c >= min_support
    for pn in parent_n:
        feasible &= n_c < pn  # a strict subset of every parent (and so of all rows)
    idx = np.nonzero(feasible)
    if not idx[0].size:
        return None
    zero = np.zeros_like(idx[0])
    parent_idx = [tuple(zero if j == axis else ix for j, ix in enumerate(idx)) for axis in range(d)]
    pn = np.stack([p[i] for p, i in zip(parent_n, parent_idx, strict=True)], axis=1)
    pe = np.stack([p[i] for p, i in zip(parent_e, parent_idx, strict=True)], axis=1)
    return np.stack(idx, axis=1), n_c[idx], e_c[idx], pn, pe


def _lattice(
    parts: list[Partition], error: np.ndarray, *, max_depth: int, min_support: int
) -> tuple[_Candidates, int]:
    """Level-wise enumeration of the size-feasible conjunctions (SliceLine's lattice).

    Level ``d`` extends each feasible combination of ``d - 1`` columns by one later column, and
    only when every ``d - 1`` sub-combination was feasible too. The prefix's combined codes are
    computed once and reused for all its extensions.
    """
    groups = [_group(p) for p in parts]
    sizes = [len(p.predicates) + 1 for p in parts]
    shifted = [p.codes + 1 for p in parts]
    shifted_err = [s[error] for s in shifted]
    found = _Candidates()
    feasible: list[tuple[int, ...]] = [()]
    feasible_set: set[tuple[int, ...]] = {()}
    skipped = 0
    for depth in range(1, max_depth + 1):
        next_level: list[tuple[int, ...]] = []
        for prefix in feasible:
            prefix_code = prefix_err = None
            for k in range(prefix[-1] + 1 if prefix else 0, len(parts)):
                combo = (*prefix, k)
                if groups[k] in {groups[i] for i in prefix}:
                    continue
                if depth >= 2 and any(
                    sub not in feasible_set for sub in itertools.combinations(combo, depth - 1)
                ):
                    continue
                combo_sizes = [sizes[i] for i in combo]
                if math.prod(combo_sizes) > _MAX_CELLS:
                    skipped += 1
                    continue
                if prefix and prefix_code is None:
                    prefix_code, prefix_err = shifted[prefix[0]], shifted_err[prefix[0]]
                    for i in prefix[1:]:
                        prefix_code = prefix_code * sizes[i] + shifted[i]
                        prefix_err = prefix_err * sizes[i] + shifted_err[i]
                if prefix:
                    code = prefix_code * sizes[k] + shifted[k]
                    code_err = prefix_err * sizes[k] + shifted_err[k]
                else:
                    code, code_err = shifted[k], shifted_err[k]
                counted = _count_cells(code, code_err, combo_sizes, min_support)
                if counted is None:
                    continue
                next_level.append(combo)
                found.add(combo, *counted)
        feasible = next_level
        feasible_set.update(next_level)
    return found, skipped


def _mask(parts: list[Partition], combo: tuple[int, ...], cell: np.ndarray) -> np.ndarray:
    mask = parts[combo[0]].codes == cell[0]
    for i, k in zip(combo[1:], cell[1:], strict=True):
        mask &= parts[i].codes == k
    return mask


def _discover_core(
    parts: list[Partition],
    inputs: _Inputs,
    *,
    max_depth: int,
    min_support: int,
    alpha: float,
    top_k: int,
    error_weight: float,
    rank_by: str = "excess_errors",
    containment: float = CONTAINED_REDUNDANT,
    max_share: float = MAX_SHARE,
    pieces: str = "keep",
) -> pd.DataFrame:
    error = inputs.error
    total, total_errors = len(error), int(error.sum())
    if total == 0 or total_errors == 0 or total_errors == total:
        return _empty()  # nothing can be worse than the rest
    parts = _reduce(parts, error, min_support)
    found, skipped = _lattice(parts, error, max_depth=max_depth, min_support=min_support)
    if not found.blocks:
        return _empty(n_skipped=skipped)
    block_of = np.concatenate(
        [np.full(len(b["n"]), j, dtype=np.int64) for j, b in enumerate(found.blocks)]
    )
    row_in_block = np.concatenate([np.arange(len(b["n"])) for b in found.blocks])
    n = np.concatenate([b["n"] for b in found.blocks]).astype(np.int64)
    e = np.concatenate([b["e"] for b in found.blocks]).astype(np.int64)
    depth = np.asarray([len(found.combo[j]) for j in block_of], dtype=np.int64)
    # slices of (nearly) every row are no slices: out of the family before anything is tested
    sized = is_testable_size(n, total, min_support=min_support, max_share=max_share)
    block_of, row_in_block, n, e, depth = (a[sized] for a in (block_of, row_in_block, n, e, depth))
    m = len(n)
    if not m:
        return _empty(n_skipped=skipped)

    # 1. every candidate against the rest; BH over all m of them
    p_value = _fisher_core(e, n, np.full(m, total_errors), np.full(m, total), upper_only=True)
    p_adj = bh_adjust(p_value, n_tests=m)
    significant = p_adj < alpha
    n_significant = int(significant.sum())
    if not n_significant:
        return _empty(m, 0, skipped)

    # 2. each predicate must matter: worse than the rest of each parent (BH over conjunctions)
    conj = np.flatnonzero(significant & (depth >= 2))
    keep = significant.copy()
    if conj.size:
        owner, child_n, child_e, par_n, par_e = [], [], [], [], []
        for pos, (j, r) in enumerate(zip(block_of[conj], row_in_block[conj], strict=True)):
            b = found.blocks[j]
            d = b["parent_n"].shape[1]
            owner.append(np.full(d, pos))
            child_n.append(np.full(d, n[conj[pos]]))
            child_e.append(np.full(d, e[conj[pos]]))
            par_n.append(b["parent_n"][r])
            par_e.append(b["parent_e"][r])
        p_parent = _fisher_core(
            np.concatenate(child_e),
            np.concatenate(child_n),
            np.concatenate(par_e),
            np.concatenate(par_n),
            upper_only=True,
        )
        p_ref = np.zeros(conj.size)
        np.maximum.at(p_ref, np.concatenate(owner), p_parent)
        n_conj = int((depth >= 2).sum())
        keep[conj] = bh_adjust(p_ref, n_tests=n_conj) < alpha

    # 3. rank by SliceLine score; drop near-copies of better slices; first top_k
    rate, e_bar = e / n, total_errors / total
    score = error_weight * (rate / e_bar - 1.0) - (1.0 - error_weight) * (total / n - 1.0)
    order = np.flatnonzero(keep)
    rest_rate = (total_errors - e) / np.maximum(total - n, 1)
    excess = e - n * rest_rate
    if rank_by == "excess_errors":
        key = excess
    else:
        key = score
    order = order[np.lexsort((p_value[order], -key[order]))]

    def n_err_of(m):
        return np.count_nonzero(error & m)

    chosen: list[int] = []
    masks: list[np.ndarray] = []
    for i in order:
        combo = found.combo[block_of[i]]
        cell = found.blocks[block_of[i]]["cells"][row_in_block[i]]
        mask = _mask(parts, combo, cell)
        size = int(n[i])
        inside, explained = [], True
        skip = False
        for slot, kept in enumerate(masks):
            inter = int(np.count_nonzero(mask & kept))
            if not inter:
                continue
            k = chosen[slot]
            if inter / (size + int(kept.sum()) - inter) >= JACCARD_REDUNDANT:
                skip = True
                break
            if inter / size >= containment:
                inside.append(slot)
                # a piece of a reported slice replaces it when it is worse and what is left of
                # the broader slice without it is no longer clearly worse than the rows outside
                # the broader slice (the broader slice was explained by it); otherwise the piece
                # adds nothing. The baseline is the outside rows, not all rows: the overall rate
                # contains the broader slice's own errors and would call a weak remainder normal.
                kept_n, kept_e = int(kept.sum()), int(n_err_of(kept))
                rest_n = kept_n - inter
                rest_e = kept_e - int(n_err_of(mask & kept))
                low, _ = wilson_interval(rest_e, rest_n) if rest_n else (0.0, 0.0)
                outside = (total_errors - kept_e) / max(total - kept_n, 1)
                explained &= bool(rate[i] > rate[k] and low <= outside)
        if skip or (inside and not explained and pieces == "drop"):
            continue
        if not explained:
            inside = []  # kept beside the slices it is a piece of
        for slot in sorted(inside, reverse=True):
            del chosen[slot], masks[slot]
        chosen.append(int(i))
        masks.append(mask)
        if len(chosen) == top_k:
            break
    chosen.sort(key=lambda i: (-key[i], p_value[i]))

    specs, sources = [], []
    for i in chosen:
        combo = found.combo[block_of[i]]
        cell = found.blocks[block_of[i]]["cells"][row_in_block[i]]
        preds = [parts[c].predicates[k] for c, k in zip(combo, cell, strict=True)]
        spec = SliceSpec(tuple(preds))
        source_of = {parts[c].column: parts[c].source for c in combo}
        specs.append(spec)
        sources.append("+".join(dict.fromkeys(source_of[c] for c in spec.columns)))
    idx = np.asarray(chosen, dtype=np.int64)
    out = _table(
        specs,
        sources,
        n[idx],
        e[idx],
        [_quality(m, inputs) for m in masks],
        inputs,
        p_value=p_value[idx],
        p_adj=p_adj[idx],
        alpha=alpha,
    )
    out[DEPTH] = depth[idx]
    out[SCORE] = score[idx]
    out = out[DISCOVERY_COLUMNS].reset_index(drop=True)
    out.attrs.update(n_tested=m, n_significant=n_significant, n_skipped_combinations=skipped)
    return out
