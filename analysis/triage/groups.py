"""Failure groups: the sets of images a team asks *why* about, each with its cost in errors.

A group is a weak class, a confusion pair, a significant slice or discovered slice, or a
significant error cluster, as the other sections found them (``slices.parquet``,
``discovered_slices.parquet``; pairs are tested here). Each carries its rows, its failure event
and the rows it is compared with:

==================  ========================  ===============================  ==================
kind                rows                      event                            compared with
==================  ========================  ===============================  ==================
weak_class          given label ``a``         wrong                            other labels
confusion           given label ``a``         predicted ``b``                  labels not a or b
slice, discovered   the slice                 wrong                            the other rows
error_cluster       the cluster               wrong                            the other rows
==================  ========================  ===============================  ==================

``cost`` is what the group costs in errors: for a pair, its images (every one is an error); for
the others, the *excess* errors, ``errors - n * rest error rate`` (how many errors would go if the
group did as well as the rest). Groups are ranked by it. A group whose rows are (nearly) those of
a better-ranked one (Jaccard >= 0.9) is the same failure seen twice and is dropped; its
description is kept in ``also``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import schema
from ..stats.slices import (
    Predicate,
    SliceSpec,
    apply_slice,
    bh_adjust,
    describe,
    fisher_worse_p,
    spec_from_json,
    spec_to_json,
)

KINDS = {
    "weak_class": "weak class",
    "confusion": "confusion pair",
    "slice": "slice",
    "discovered": "discovered slice",
    "error_cluster": "error cluster",
}
MAX_GROUPS = 20  # groups triaged, by cost (every cause of each is tested and corrected for)
MAX_PAIRS = 6  # confusion pairs among them
MIN_PAIR = 5  # a pair needs this many images
SAME_GROUP_JACCARD = 0.9
ALPHA = 0.05


@dataclass(frozen=True, eq=False)
class FailureGroup:
    """One failure group (see the module docstring).

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`.
    key : str
        Stable id: ``kind`` + the spec JSON.
    description : str
        Plain words: "lighting is night", "given cross predicted as triangle".
    spec : SliceSpec
        The group's rows (for a pair: the given class only; ``event_spec`` adds the prediction).
    rows : bool [N]
    event : bool [N]
        The failure among all rows (wrong, or predicted ``b`` for a pair).
    baseline : bool [N]
        Rows the group is compared with.
    classes : tuple of int
        The class(es) it is about: (a,) for a weak class, (a, b) for a pair, () otherwise.
    p_value : float
        The test that made it a failure group (BH-adjusted where the section adjusted it).
    also : tuple of str
        Descriptions of dropped near-copies.
    """

    kind: str
    key: str
    description: str
    spec: SliceSpec
    rows: np.ndarray
    event: np.ndarray
    baseline: np.ndarray
    classes: tuple[int, ...] = ()
    p_value: float = math.nan
    also: tuple[str, ...] = field(default=())

    @property
    def n(self) -> int:
        return int(self.rows.sum())

    @property
    def events(self) -> int:
        return int((self.rows & self.event).sum())

    @property
    def baseline_rate(self) -> float:
        nb = int(self.baseline.sum())
        return float((self.baseline & self.event).sum() / nb) if nb else math.nan

    @property
    def cost_kind(self) -> str:
        """ "events" for a confusion pair (each image is an error), else "excess"."""
        return "events" if self.kind == "confusion" else "excess"

    @property
    def expected(self) -> float:
        """Events expected at the baseline rate."""
        return self.n * self.baseline_rate

    @property
    def cost(self) -> float:
        """Errors the group costs (see the module docstring)."""
        if self.kind == "confusion":
            return float(self.events)
        return float(self.events - self.expected)

    @property
    def excess(self) -> float:
        return float(self.events - self.expected)

    @property
    def event_spec(self) -> SliceSpec:
        """The group's failing images: its rows and the event as predicates."""
        if self.kind == "confusion":
            extra = Predicate(schema.PRED, "==", int(self.classes[1]))
        else:
            extra = Predicate(schema.CORRECT, "==", False)
        return SliceSpec((*self.spec.predicates, extra))


def _wrong(samples: pd.DataFrame) -> np.ndarray:
    return ~samples[schema.CORRECT].to_numpy(dtype=bool)


def _slice_group(
    samples: pd.DataFrame, row: pd.Series, kind: str, class_names, wrong: np.ndarray
) -> FailureGroup | None:
    try:
        spec = spec_from_json(str(row["spec"]))
        rows = apply_slice(samples, spec)
    except (ValueError, TypeError):  # a slice on a column the table no longer has
        return None
    if not rows.any() or rows.all():
        return None
    classes: tuple[int, ...] = ()
    if kind == "weak_class":
        classes = (int(spec.predicates[0].value),)
    return FailureGroup(
        kind=kind,
        key=f"{kind}:{spec_to_json(spec)}",
        description=describe(spec, class_names),
        spec=spec,
        rows=rows,
        event=wrong,
        baseline=~rows,
        classes=classes,
        p_value=float(row.get("p_adj", math.nan)),
    )


def confusion_pairs(
    samples: pd.DataFrame,
    n_classes: int,
    *,
    min_count: int = MIN_PAIR,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Confusion pairs (given ``a`` predicted ``b``) more frequent than other classes' rate.

    For each off-diagonal cell with at least ``min_count`` images: one-sided Fisher exact test
    that images of ``a`` are predicted ``b`` more often than images of the classes other than
    ``a`` and ``b``; Benjamini-Hochberg over every cell tested.

    Returns
    -------
    DataFrame
        ``a, b, count, n_a, rate, baseline_rate, excess, p_value, p_adj, significant``, most
        frequent first.
    """
    cols = ["a", "b", "count", "n_a", "rate", "baseline_rate", "excess", "p_value", "p_adj"]
    label = samples[schema.LABEL].to_numpy(np.int64)
    pred = samples[schema.PRED].to_numpy(np.int64)
    if n_classes < 3 or not len(label):
        return pd.DataFrame(columns=[*cols, "significant"])
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (label, pred), 1)
    n_true = cm.sum(axis=1)
    pred_b = cm.sum(axis=0)
    a, b = np.nonzero((cm >= min_count) & ~np.eye(n_classes, dtype=bool))
    if not a.size:
        return pd.DataFrame(columns=[*cols, "significant"])
    count = cm[a, b]
    # rows of classes other than a and b; how many of them are predicted b
    other_n = len(label) - n_true[a] - n_true[b]
    other_b = pred_b[b] - cm[a, b] - cm[b, b]
    ok = other_n > 0
    p = np.ones(a.size)
    p[ok] = fisher_worse_p(
        count[ok], n_true[a][ok], (count + other_b)[ok], (n_true[a] + other_n)[ok]
    )
    rate0 = np.where(ok, other_b / np.maximum(other_n, 1), np.nan)
    out = pd.DataFrame(
        {
            "a": a,
            "b": b,
            "count": count,
            "n_a": n_true[a],
            "rate": count / n_true[a],
            "baseline_rate": rate0,
            "excess": count - n_true[a] * rate0,
            "p_value": p,
            "p_adj": bh_adjust(p),
        }
    )
    out["significant"] = out["p_adj"] < alpha
    return out.sort_values(["count", "p_value"], ascending=[False, True]).reset_index(drop=True)


def _pair_group(samples: pd.DataFrame, a: int, b: int, p_adj: float, class_names):
    label = samples[schema.LABEL].to_numpy(np.int64)
    pred = samples[schema.PRED].to_numpy(np.int64)
    spec = SliceSpec((Predicate(schema.LABEL, "==", int(a)),))
    rows = label == a
    return FailureGroup(
        kind="confusion",
        key=f"confusion:{a}->{b}",
        description=f"given {class_names[a]} predicted as {class_names[b]}",
        spec=spec,
        rows=rows,
        event=pred == b,
        baseline=(label != a) & (label != b),
        classes=(int(a), int(b)),
        p_value=float(p_adj),
    )


def failure_groups(
    samples: pd.DataFrame,
    *,
    class_names: list[str],
    slices: pd.DataFrame | None,
    discovered: pd.DataFrame | None,
    max_groups: int = MAX_GROUPS,
    max_pairs: int = MAX_PAIRS,
) -> list[FailureGroup]:
    """Every failure group of a run, costliest first (see the module docstring).

    Parameters
    ----------
    samples : DataFrame
        The run's samples table (``label``, ``pred``, ``correct`` and the columns the slices
        name).
    class_names : list of str, keyword-only
    slices, discovered : DataFrame or None, keyword-only
        ``slices.parquet`` and ``discovered_slices.parquet``; significant rows with a positive
        gap become groups (true-class slices become weak classes, cluster slices error clusters,
        discovered slices of two or more conditions discovered slices).
    max_groups, max_pairs : int, keyword-only

    Returns
    -------
    list of FailureGroup
        At most ``max_groups``, ranked by :attr:`FailureGroup.cost`, near-copies dropped.
    """
    wrong = _wrong(samples)
    found: list[FailureGroup] = []
    kinds = {"label": "weak_class", "cluster": "error_cluster"}
    for table, default in ((slices, "slice"), (discovered, "discovered")):
        if table is None or table.empty or "significant" not in table.columns:
            continue
        sig = table[table["significant"].astype(bool) & (table["gap"] > 0)]
        for _, row in sig.iterrows():
            source = str(row.get("source", ""))
            if source == "pred":  # "predicted as b" is a confusion pair's view; pairs cover it
                continue
            if default == "discovered" and int(row.get("depth", 1)) < 2:
                continue  # single conditions are the slices table's
            kind = kinds.get(source, default)
            g = _slice_group(samples, row, kind, class_names, wrong)
            if g is not None:
                found.append(g)
    pairs = confusion_pairs(samples, len(class_names))
    if len(pairs):
        sig = pairs[pairs["significant"]].sort_values("count", ascending=False).head(max_pairs)
        for _, r in sig.iterrows():
            found.append(_pair_group(samples, int(r["a"]), int(r["b"]), r["p_adj"], class_names))
    found.sort(key=lambda g: (-g.cost, g.kind, g.key))
    kept: list[FailureGroup] = []
    for g in found:
        twin = next((k for k in kept if _same(k, g)), None)
        if twin is not None:
            i = kept.index(twin)
            kept[i] = _with_also(twin, g.description)
            continue
        kept.append(g)
        if len(kept) >= max_groups:
            break
    return kept


def _same(a: FailureGroup, b: FailureGroup) -> bool:
    if (a.kind == "confusion") != (b.kind == "confusion"):
        return False
    if a.kind == "confusion":
        return a.classes == b.classes
    inter = int((a.rows & b.rows).sum())
    union = int((a.rows | b.rows).sum())
    return union > 0 and inter / union >= SAME_GROUP_JACCARD


def _with_also(g: FailureGroup, description: str) -> FailureGroup:
    from dataclasses import replace

    return replace(g, also=(*g.also, description))


def group_record(g: FailureGroup) -> dict:
    """The group's columns of the triage table."""
    return {
        "group_key": g.key,
        "group_kind": g.kind,
        "group": g.description,
        "group_n": g.n,
        "group_errors": g.events,
        "group_expected": g.expected,
        "group_cost": g.cost,
        "group_p_adj": g.p_value,
        "group_spec": spec_to_json(g.spec),
        "group_event_spec": spec_to_json(g.event_spec),
        "group_also": json.dumps(list(g.also)),
    }
