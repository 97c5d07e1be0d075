"""The arithmetic every cause shares: how many of a group's errors a cause accounts for, and a test.

Three estimators, each a function of a small count table (so its 95% interval is a row bootstrap
drawn on the table, :func:`analysis.stats.intervals.multinomial_bootstrap_interval`):

- :func:`composition` — *why is the group worse than the rest?* A cause marks some images
  (``cause``: dark ones, far-from-training ones, images of a rare value, ...). It explains the
  group's excess errors to the extent that the group holds more of those images than the rest
  does, times how much more often those images fail than comparable ones::

      explained = delta * extra
      extra     = n(group & cause) - n(group) * share of cause among the baseline rows
      delta     = rate(event | cause) - rate(event | comparison)

  ``delta`` is measured on the baseline rows (outside the group) when they hold enough of the
  cause's images (at least ``min_outside`` of them), so the group's own errors do not measure
  the effect that is meant to explain them; otherwise on every row, and the result says it is
  not *separable* (the cause and the group coincide: only an outside experiment, such as a
  robustness run, separates them). This is the standardisation (Kitagawa) decomposition of a
  rate difference into a composition part and a within part; the composition part is reported.
  Test: intersection-union, ``max(p_enrich, p_effect)`` — both one-sided Fisher exact tests
  (the group holds more of the cause's images than chance; the cause's images fail more than the
  comparison rows). Rejecting both at level alpha rejects the conjunction at level alpha.
- :func:`within` — *what share of a confusion pair's errors does a cause account for?* Inside
  the group, images marked by the cause against comparable unmarked ones::

      explained = events(group & cause) - n(group & cause) * rate(event | group & comparison)

  Test: one-sided Fisher exact of the cause's rows against the comparison rows inside the group.
- :func:`mixture` — *the group's errors carry a flag more often than errors elsewhere* (suspected
  label errors, low margins). If the group's errors were a mix of ordinary errors (flagged at the
  baseline rate ``f_B``) and cause errors (always flagged), the cause errors are at least
  ``E_G * (f_G - f_B) / (1 - f_B)``: a lower bound (a detector that misses some cause errors only
  lowers ``f_G``). Test: one-sided Fisher exact of flagged errors, group against baseline.

Shares are ``explained / cost`` clipped to [0, 1] (``cost``: the group's excess errors, or a
pair's error count); NaN where the cost is not positive.
"""

from __future__ import annotations

import contextvars
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..stats.intervals import multinomial_bootstrap_interval
from ..stats.slices import fisher_worse_p

N_BOOT = 400  # bootstrap resamples of a share (count tables: cost independent of the rows)
MIN_OUTSIDE = 0.10  # share of the cause's images that must lie outside the group to separate
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Attribution:
    """How much of a group's errors one cause accounts for, and its test.

    Attributes
    ----------
    explained : float
        Errors of the group the cause accounts for (can be negative: the cause's images do
        better, or the group holds fewer of them).
    share, share_low, share_high : float
        ``explained / cost`` clipped to [0, 1], with its 95% bootstrap interval; NaN when the
        cost is not positive or the estimate is undefined.
    p_value : float
        One-sided; the estimator's test (see the module docstring). NaN when untestable.
    parts : dict
        The numbers behind it (``p_enrich``, ``p_effect``, ``extra``, ``delta``, counts, rates,
        ``separable``), for the evidence text and charts.
    """

    explained: float
    share: float
    share_low: float
    share_high: float
    p_value: float
    parts: dict


def _fisher(k: int, n: int, big_k: int, big_n: int) -> float:
    """P(X >= k), X ~ Hypergeometric(big_n, big_k, n); 1 when there is nothing to test."""
    if n <= 0 or big_n <= 0 or n >= big_n or big_k <= 0:
        return 1.0
    return float(fisher_worse_p(int(k), int(n), int(big_k), int(big_n)))


def _count(shape: tuple[int, ...], *index: np.ndarray) -> np.ndarray:
    """Counts of index tuples into an int64 array of ``shape`` (``np.add.at`` by ``bincount``,
    many times faster on 10^5 rows)."""
    flat = np.ravel_multi_index(tuple(np.asarray(i, dtype=np.int64) for i in index), shape)
    return np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.int64)


def _ratio(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1.0), np.nan)


def _share(explained, cost):
    s = _ratio(explained, cost)
    s = np.where(np.asarray(cost, dtype=np.float64) > 0, s, np.nan)
    return np.clip(s, 0.0, 1.0)


_INTERVALS = contextvars.ContextVar("triage_intervals", default=True)


@contextmanager
def point_estimates():
    """Within the block the estimators skip the bootstrap (interval NaN): triage tests every
    hypothesis first and bootstraps only the shares it reports as claimed."""
    token = _INTERVALS.set(False)
    try:
        yield
    finally:
        _INTERVALS.reset(token)


def _interval(stat, table: np.ndarray, seed: int) -> tuple[float, float, float]:
    if table.sum() == 0:
        return math.nan, math.nan, math.nan
    if not _INTERVALS.get():
        with np.errstate(invalid="ignore", divide="ignore"):
            value = float(np.asarray(stat(table[None])).reshape(-1)[0])
        return value, math.nan, math.nan
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = multinomial_bootstrap_interval(stat, table, n_boot=N_BOOT, seed=seed)
    # an all-NaN bootstrap (cost <= 0 in every resample) leaves the interval undefined
    return est.value, est.low, est.high


# --------------------------------------------------------------------------------- composition
# table axes: [region (0 = baseline, 1 = group), cause (0 = comparison, 1 = cause, 2 = neither),
#              event (0 / 1), cost event (0 / 1)]


def _stratified_delta(where: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Mean over strata of rate(cause) - rate(comparison), weighted by ``weight``.

    ``where``: [b, cause (0 cmp, 1 cause), event, stratum]; ``weight``: [b, stratum]. Strata
    without rows on both sides do not count.
    """
    n_a = where[:, 1].sum(axis=1)
    n_c = where[:, 0].sum(axis=1)
    ok = (n_a > 0) & (n_c > 0)
    diff = np.where(ok, _ratio(where[:, 1, 1], n_a) - _ratio(where[:, 0, 1], n_c), 0.0)
    w = np.where(ok, weight, 0.0)
    return _ratio((diff * w).sum(axis=1), w.sum(axis=1))


def _mantel_haenszel_p(where: np.ndarray) -> float:
    """One-sided Cochran-Mantel-Haenszel test (continuity-corrected) that the cause's rows have
    more events than the comparison rows within strata; ``where``: [cause, event, stratum]."""
    from scipy.stats import norm

    a = where[1, 1].astype(np.float64)
    n1 = where[1].sum(axis=0).astype(np.float64)
    n0 = where[0].sum(axis=0).astype(np.float64)
    m1 = (where[1, 1] + where[0, 1]).astype(np.float64)
    big = n1 + n0
    use = (n1 > 0) & (n0 > 0) & (big > 1)
    if not use.any():
        return 1.0
    a, n1, n0, m1, big = a[use], n1[use], n0[use], m1[use], big[use]
    m0 = big - m1
    expected = n1 * m1 / big
    var = n1 * n0 * m1 * m0 / (big * big * (big - 1))
    v = float(var.sum())
    if v <= 0:
        return 1.0
    z = (float(a.sum() - expected.sum()) - 0.5) / math.sqrt(v)
    return float(norm.sf(z))


def _composition_stat(separable: bool, cost_kind: str):
    # t: [b, region, cause (0 cmp, 1 cause, 2 neither), event, cost event, stratum]
    def stat(t: np.ndarray) -> np.ndarray:
        t = t.astype(np.float64)
        n_g = t[:, 1].sum(axis=(1, 2, 3, 4))
        n_b = t[:, 0].sum(axis=(1, 2, 3, 4))
        e_g = t[:, 1, :, :, 1].sum(axis=(1, 2, 3))  # cost events
        e_b = t[:, 0, :, :, 1].sum(axis=(1, 2, 3))
        n_ga = t[:, 1, 1].sum(axis=(1, 2, 3))
        t = t.sum(axis=4)  # [b, region, cause, event, stratum]
        p_ba = _ratio(t[:, 0, 1].sum(axis=(1, 2)), n_b)
        where = t[:, 0] if separable else t[:, 0] + t[:, 1]
        weight = t[:, 1, 1].sum(axis=1) if separable else where[:, 1].sum(axis=1)
        delta = _stratified_delta(where[:, :2], weight)
        explained = delta * (n_ga - n_g * p_ba)
        cost = e_g - n_g * _ratio(e_b, n_b) if cost_kind == "excess" else e_g
        return _share(explained, cost)

    return stat


def composition(
    group: np.ndarray,
    baseline: np.ndarray,
    cause: np.ndarray,
    comparison: np.ndarray,
    event: np.ndarray,
    *,
    cost: str = "excess",
    cost_event: np.ndarray | None = None,
    strata: np.ndarray | None = None,
    min_outside: float = MIN_OUTSIDE,
    effect_on_all: bool = False,
    seed: int = 0,
) -> Attribution:
    """Composition share of a group's excess errors explained by a cause (module docstring).

    Parameters
    ----------
    group, baseline : bool [N]
        The group's rows and the rows it is compared with (disjoint; other rows are ignored).
    cause : bool [N]
        Rows the cause marks (chosen without looking at errors).
    comparison : bool [N]
        Rows the cause's rows are compared with to measure its effect (usually ``~cause``;
        for a shortcut, the rows of the same class without the shortcut value).
    event : bool [N]
        The failure (an error; for a confusion pair, "predicted as b").
    cost : {"excess", "events"}, keyword-only
        What the share is a share of: the group's events beyond the baseline rate, or all of
        the group's events.
    cost_event : bool [N], optional, keyword-only
        The group's failure when the cause explains one kind of it (``event``: "predicted as
        the shortcut's class", ``cost_event``: any error). Default ``event``.
    strata : int [N], optional, keyword-only
        The effect is measured within strata (the true class): ``delta`` is the mean of the
        within-stratum differences, weighted by the group's cause rows, and ``p_effect`` a
        one-sided Cochran-Mantel-Haenszel test. A cause whose images are of an easier or harder
        class mix than the comparison rows is then not taken for an effect (metadata often
        correlates with the class: a site that sees more of a hard class).
    min_outside : float, keyword-only
        Fraction of the cause's rows (among group and baseline) that must be in the baseline,
        with at least 10 rows, for ``delta`` to be measured there (``parts["separable"]``).
    effect_on_all : bool, keyword-only
        Measure ``delta`` on every row even when the baseline could show it: for a group whose
        membership depends on the model's errors (an embedding cluster gathers what the model
        predicts alike), the rows outside it are selected by their errors too.
    """
    group, baseline, cause, comparison, event = (
        np.asarray(a, dtype=bool) for a in (group, baseline, cause, comparison, event)
    )
    n = len(group)
    cost_ev = event if cost_event is None else np.asarray(cost_event, dtype=bool)
    st = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata, dtype=np.int64)
    _, st = np.unique(st, return_inverse=True) if n else (None, st)
    k = int(st.max()) + 1 if n else 1
    comparison = comparison & ~cause
    cat = np.where(cause, 1, np.where(comparison, 0, 2))
    keep = group | (baseline & ~group)
    full = _count(
        (2, 3, 2, 2, k),
        group[keep].astype(np.int64),
        cat[keep],
        event[keep],
        cost_ev[keep],
        st[keep],
    )
    table = full.sum(axis=3)  # [region, cause, event, stratum]
    n_cause_out = int(table[0, 1].sum())
    n_cause = n_cause_out + int(table[1, 1].sum())
    n_cmp_out = int(table[0, 0].sum())
    separable = n_cause_out >= max(10, min_outside * n_cause) and n_cmp_out >= 10 and n_cause > 0
    coincide = not separable
    separable = separable and not effect_on_all
    n_g, n_b = int(table[1].sum()), int(table[0].sum())
    n_ga = int(table[1, 1].sum())
    # enrichment: the group holds more of the cause's rows than chance (hypergeometric)
    p_enrich = _fisher(n_ga, n_g, n_cause, n_g + n_b)
    where = table[0] if separable else table[0] + table[1]  # [cause, event, stratum]
    ca, cc = where[1].sum(axis=1), where[0].sum(axis=1)
    if k == 1:
        p_effect = _fisher(int(ca[1]), int(ca.sum()), int(ca[1] + cc[1]), int(ca.sum() + cc.sum()))
    else:
        p_effect = _mantel_haenszel_p(where[:2])
    weight = table[1, 1].sum(axis=0) if separable else where[1].sum(axis=0)
    delta = float(_stratified_delta(where[None, :2], weight[None])[0])
    rate_cause = float(ca[1] / ca.sum()) if ca.sum() else math.nan
    rate_cmp = float(cc[1] / cc.sum()) if cc.sum() else math.nan
    p_b = float(table[0, 1].sum() / n_b) if n_b else math.nan
    extra = n_ga - n_g * p_b if n_b else math.nan
    explained = delta * extra
    e_g = int(full[1, :, :, 1].sum())
    e_b = int(full[0, :, :, 1].sum())
    cost_value = e_g - n_g * (e_b / n_b) if (cost == "excess" and n_b) else float(e_g)
    value, low, high = _interval(_composition_stat(separable, cost), full, seed)
    untestable = n_cause == 0 or (ca.sum() == 0 or cc.sum() == 0)
    return Attribution(
        explained=float(explained) if np.isfinite(explained) else math.nan,
        share=float(value),
        share_low=float(low),
        share_high=float(high),
        p_value=math.nan if untestable else max(p_enrich, p_effect),
        parts={
            "estimator": "composition",
            "separable": bool(separable),
            "coincide": bool(coincide),
            "stratified": k > 1,
            "p_enrich": p_enrich,
            "p_effect": p_effect,
            "n_group": n_g,
            "n_group_cause": n_ga,
            "share_group_cause": n_ga / n_g if n_g else math.nan,
            "share_baseline_cause": p_b,
            "extra": float(extra),
            "n_cause_images": int(ca.sum()),
            "events_cause_images": int(ca[1]),
            "n_comparison_images": int(cc.sum()),
            "events_comparison_images": int(cc[1]),
            "rate_cause": rate_cause,
            "rate_comparison": rate_cmp,
            "delta": delta,
            "n_cause": n_cause,
            "n_cause_outside": n_cause_out,
            "cost": float(cost_value),
        },
    )


# ----------------------------------------------------------------------------------- within
# table axes: [cause (0 = comparison, 1 = cause), event (0 / 1)], plus one cell for the rest of
# the group (its events count towards the cost)


def within(
    group: np.ndarray,
    cause: np.ndarray,
    comparison: np.ndarray,
    event: np.ndarray,
    *,
    seed: int = 0,
) -> Attribution:
    """Share of a group's events among its cause rows beyond the comparison rows' rate.

    Parameters are as in :func:`composition`; the cost is every event of the group.
    """
    group, cause, comparison, event = (
        np.asarray(a, dtype=bool) for a in (group, cause, comparison, event)
    )
    comparison = comparison & ~cause
    cat = np.where(cause, 1, np.where(comparison, 0, 2))
    table = _count((3, 2), cat[group], event[group])

    def stat(t: np.ndarray) -> np.ndarray:
        t = t.astype(np.float64)
        rate_c = _ratio(t[:, 0, 1], t[:, 0].sum(axis=1))
        explained = t[:, 1, 1] - t[:, 1].sum(axis=1) * rate_c
        return _share(explained, t[:, :, 1].sum(axis=1))

    n_a, e_a = int(table[1].sum()), int(table[1, 1])
    n_c, e_c = int(table[0].sum()), int(table[0, 1])
    rate_c = e_c / n_c if n_c else math.nan
    explained = e_a - n_a * rate_c
    value, low, high = _interval(stat, table, seed)
    p = _fisher(e_a, n_a, e_a + e_c, n_a + n_c) if n_a and n_c else math.nan
    return Attribution(
        explained=float(explained) if np.isfinite(explained) else math.nan,
        share=float(value),
        share_low=float(low),
        share_high=float(high),
        p_value=p,
        parts={
            "estimator": "within",
            "separable": bool(n_a and n_c >= 10),
            "n_group_cause": n_a,
            "events_group_cause": e_a,
            "n_group_comparison": n_c,
            "events_group_comparison": e_c,
            "rate_cause": e_a / n_a if n_a else math.nan,
            "rate_comparison": rate_c,
            "delta": (e_a / n_a if n_a else math.nan) - rate_c,
            "cost": float(table[:, 1].sum()),
        },
    )


# ---------------------------------------------------------------------------------- mixture
# table axes: [region (0 = baseline, 1 = group), event (0 / 1), flag (0 / 1)]


def mixture(
    group: np.ndarray,
    baseline: np.ndarray,
    event: np.ndarray,
    flag: np.ndarray,
    *,
    cost: str = "excess",
    seed: int = 0,
) -> Attribution:
    """Lower bound of the group's errors that carry a cause, from a flag on errors.

    Parameters
    ----------
    group, baseline, event : bool [N]
        As in :func:`composition`.
    flag : bool [N]
        The per-image flag (suspected label error, low margin); only flags on events count.
    cost : {"excess", "events"}, keyword-only
    """
    group, baseline, event, flag = (
        np.asarray(a, dtype=bool) for a in (group, baseline, event, flag)
    )
    keep = group | (baseline & ~group)
    table = _count((2, 2, 2), group[keep], event[keep], (flag & event)[keep])

    def stat(t: np.ndarray) -> np.ndarray:
        t = t.astype(np.float64)
        e_g = t[:, 1, 1].sum(axis=1)
        e_b = t[:, 0, 1].sum(axis=1)
        f_g = _ratio(t[:, 1, 1, 1], e_g)
        f_b = _ratio(t[:, 0, 1, 1], e_b)
        explained = e_g * (f_g - f_b) / (1.0 - f_b)
        n_g = t[:, 1].sum(axis=(1, 2))
        n_b = t[:, 0].sum(axis=(1, 2))
        c = e_g - n_g * _ratio(e_b, n_b) if cost == "excess" else e_g
        return _share(explained, c)

    e_g, e_b = int(table[1, 1].sum()), int(table[0, 1].sum())
    k_g, k_b = int(table[1, 1, 1]), int(table[0, 1, 1])
    f_g = k_g / e_g if e_g else math.nan
    f_b = k_b / e_b if e_b else math.nan
    explained = e_g * (f_g - f_b) / (1 - f_b) if e_b and f_b < 1 else math.nan
    value, low, high = _interval(stat, table, seed)
    p = _fisher(k_g, e_g, k_g + k_b, e_g + e_b) if e_g and e_b else math.nan
    n_g, n_b = int(table[1].sum()), int(table[0].sum())
    cost_value = e_g - n_g * e_b / n_b if (cost == "excess" and n_b) else float(e_g)
    return Attribution(
        explained=float(explained) if np.isfinite(explained) else math.nan,
        share=float(value),
        share_low=float(low),
        share_high=float(high),
        p_value=p,
        parts={
            "estimator": "mixture",
            "separable": True,
            "events_group": e_g,
            "flagged_group": k_g,
            "events_baseline": e_b,
            "flagged_baseline": k_b,
            "rate_cause": f_g,
            "rate_comparison": f_b,
            "delta": f_g - f_b,
            "cost": float(cost_value),
        },
    )
