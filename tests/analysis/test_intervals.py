"""Tests for analysis.stats.intervals: Wilson, row bootstrap, multinomial bootstrap, Estimate."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy.stats import binomtest

from analysis.stats.intervals import (
    Estimate,
    UndefinedMetricWarning,
    bootstrap_interval,
    bootstrap_intervals,
    multinomial_bootstrap_interval,
    percentile_interval,
    wilson_estimate,
    wilson_interval,
)

Z95 = 1.959963984540054


def wilson_reference(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Closed formula, written out independently of the implementation."""
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return max(0.0, centre - half), min(1.0, centre + half)


# ---------------------------------------------------------------- Wilson


def test_wilson_empty_trials_gives_nan() -> None:
    low, high = wilson_interval(0, 0)
    assert math.isnan(low) and math.isnan(high)


def test_wilson_empty_array_gives_empty_arrays() -> None:
    low, high = wilson_interval(np.array([], dtype=int), np.array([], dtype=int))
    assert low.shape == (0,) and high.shape == (0,)


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (5, 10), (1, 3), (97, 100), (0, 1)])
def test_wilson_known_values(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    ref = wilson_reference(k, n)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert low == pytest.approx(ref[0], abs=1e-12)
    assert high == pytest.approx(ref[1], abs=1e-12)
    assert low == pytest.approx(ci.low, abs=1e-12)
    assert high == pytest.approx(ci.high, abs=1e-12)


def test_wilson_textbook_values() -> None:
    # 0 of 10 -> [0, 0.2775]; 5 of 10 -> [0.2366, 0.7634] (Wilson 1927 / Newcombe 1998)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)


def test_wilson_other_confidence_matches_scipy() -> None:
    low, high = wilson_interval(7, 20, confidence=0.9)
    ci = binomtest(7, 20).proportion_ci(confidence_level=0.9, method="wilson")
    assert (low, high) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_vectorised_and_broadcast() -> None:
    k = np.array([[0, 1, 5], [2, 0, 0]])
    n = np.array([[10, 3, 10], [4, 1, 0]])
    low, high = wilson_interval(k, n)
    assert low.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            if n[i, j] == 0:
                assert np.isnan(low[i, j]) and np.isnan(high[i, j])
            else:
                assert (low[i, j], high[i, j]) == pytest.approx(wilson_reference(k[i, j], n[i, j]))
    low_b, _ = wilson_interval(np.array([0, 5, 10]), 10)
    assert low_b == pytest.approx([wilson_reference(k, 10)[0] for k in (0, 5, 10)])


def test_wilson_narrows_with_n() -> None:
    widths = [np.subtract(*wilson_interval(n // 2, n)[::-1]) for n in (10, 100, 1000)]
    assert widths[0] > widths[1] > widths[2] > 0


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        ({"successes": 11, "trials": 10}, ValueError, "successes must be <= trials"),
        ({"successes": -1, "trials": 10}, ValueError, "successes must be >= 0"),
        ({"successes": 1, "trials": np.inf}, ValueError, "trials must be finite"),
        ({"successes": "a", "trials": 10}, TypeError, "successes must be numeric"),
        ({"successes": [1, 2], "trials": [3, 4, 5]}, ValueError, "must broadcast"),
        ({"successes": 1, "trials": 2, "confidence": 1.5}, ValueError, r"confidence must be in"),
        ({"successes": 1, "trials": 2, "confidence": "x"}, TypeError, "confidence must be a float"),
    ],
)
def test_wilson_validation(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        wilson_interval(**kwargs)


def test_wilson_estimate() -> None:
    est = wilson_estimate(5, 10)
    assert est.value == 0.5 and est.method == "wilson" and est.n == 10
    assert (est.low, est.high) == pytest.approx(wilson_reference(5, 10))
    with pytest.warns(UndefinedMetricWarning, match="0 trials"):
        empty = wilson_estimate(0, 0)
    assert math.isnan(empty.value) and empty.n == 0
    with pytest.raises(ValueError, match="takes scalars"):
        wilson_estimate([1, 2], [3, 4])


# ---------------------------------------------------------------- Estimate


def test_estimate_roundtrips_through_json_with_nan() -> None:
    for est in (Estimate(0.5, 0.4, 0.6, "wilson", 10), Estimate(math.nan, math.nan, 1.0, "x", 0)):
        loaded = Estimate.from_dict(json.loads(json.dumps(est.to_dict(), allow_nan=False)))
        assert loaded == est
        assert hash(loaded) == hash(est)
    assert Estimate(0.5, 0.4, 0.6, "wilson", 10) != Estimate(0.5, 0.4, 0.7, "wilson", 10)


# ---------------------------------------------------------------- bootstrap


def test_bootstrap_empty_input_gives_nan_and_warns() -> None:
    with pytest.warns(UndefinedMetricWarning, match="empty"):
        est = bootstrap_interval(np.mean, np.array([]))
    assert math.isnan(est.value) and math.isnan(est.low) and est.n == 0


def _mean_vec(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=-1)


@pytest.mark.parametrize("vectorized", [False, True])
def test_bootstrap_contains_point_and_narrows(vectorized: bool) -> None:
    rng = np.random.default_rng(1)
    stat = _mean_vec if vectorized else np.mean
    widths = []
    for n in (50, 500, 5000):
        x = rng.normal(size=n)
        est = bootstrap_interval(stat, x, n_boot=300, seed=3, vectorized=vectorized)
        assert est.value == pytest.approx(x.mean())
        assert est.low <= est.value <= est.high
        assert est.method == "bootstrap" and est.n == n
        widths.append(est.high - est.low)
    assert widths[0] > widths[1] > widths[2]
    # width of a mean's 95% interval ~ 2 * 1.96 / sqrt(n)
    assert widths[2] == pytest.approx(2 * 1.96 / math.sqrt(5000), rel=0.2)


def test_bootstrap_seeded_and_vectorised_matches_loop() -> None:
    x = np.arange(40.0)
    a = bootstrap_interval(np.mean, x, n_boot=200, seed=7)
    b = bootstrap_interval(np.mean, x, n_boot=200, seed=7)
    c = bootstrap_interval(np.mean, x, n_boot=200, seed=8)
    v = bootstrap_interval(_mean_vec, x, n_boot=200, seed=7, vectorized=True)
    assert a == b and a != c
    # same generator, same index draws (row by row vs matrix): same replicates
    assert (v.low, v.high) == pytest.approx((a.low, a.high))


def test_bootstrap_rows_stay_aligned() -> None:
    # statistic is exactly 0 on every resample only if rows of x and y move together
    x = np.arange(30.0)

    def diff(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).max())

    est = bootstrap_interval(diff, x, x.copy(), n_boot=50)
    assert est.low == 0.0 and est.high == 0.0


def test_bootstrap_undefined_resamples_warn() -> None:
    y = np.array([0] * 19 + [1])

    def ratio(v: np.ndarray) -> float:
        return 1.0 if v.sum() else math.nan

    with pytest.warns(UndefinedMetricWarning, match="bootstrap resamples gave an undefined"):
        est = bootstrap_interval(ratio, y, n_boot=200)
    assert est.low == 1.0 and est.high == 1.0
    with pytest.warns(UndefinedMetricWarning, match="every bootstrap resample"):
        est = bootstrap_interval(lambda v: math.nan, y, n_boot=20)
    assert math.isnan(est.low)


@pytest.mark.parametrize(
    "args,kwargs,exc,match",
    [
        ((np.mean,), {}, ValueError, "at least one array"),
        (("mean", [1, 2]), {}, TypeError, "statistic must be callable"),
        ((np.mean, [1, 2], [1, 2, 3]), {}, ValueError, "same number of rows"),
        ((np.mean, 3.0), {}, ValueError, "must have a row axis"),
        ((np.mean, [1, 2]), {"n_boot": 0}, ValueError, "n_boot must be >= 1"),
        ((np.mean, [1, 2]), {"n_boot": 2.5}, TypeError, "n_boot must be an int"),
        ((np.mean, [1, 2]), {"seed": "a"}, TypeError, "seed must be an int"),
        ((np.mean, [1, 2]), {"confidence": 0}, ValueError, "confidence must be in"),
        ((np.mean, [1, 2]), {"vectorized": True}, ValueError, "must return shape"),
    ],
)
def test_bootstrap_validation(args: tuple, kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        bootstrap_interval(*args, **kwargs)


def test_bootstrap_intervals_share_resamples() -> None:
    x = np.random.default_rng(0).normal(size=200)
    both = bootstrap_intervals(
        {"mean": _mean_vec, "twice": lambda v: 2 * v.mean(axis=-1)},
        x,
        n_boot=300,
        seed=2,
        vectorized=True,
    )
    assert list(both) == ["mean", "twice"]
    # same resamples: the second statistic's bounds are exactly twice the first's
    assert both["twice"].low == pytest.approx(2 * both["mean"].low)
    assert both["twice"].high == pytest.approx(2 * both["mean"].high)
    assert both["mean"] == bootstrap_interval(_mean_vec, x, n_boot=300, seed=2, vectorized=True)
    with pytest.raises(TypeError, match="non-empty dict name -> callable"):
        bootstrap_intervals({}, x)
    with pytest.raises(TypeError, match="statistic must be callable, got int for 'a'"):
        bootstrap_intervals({"a": 1}, x)
    with pytest.warns(UndefinedMetricWarning, match="empty"):
        empty = bootstrap_intervals({"a": np.mean, "b": np.mean}, np.array([]))
    assert math.isnan(empty["a"].value) and math.isnan(empty["b"].high)


def test_percentile_interval() -> None:
    est = percentile_interval(0.5, np.arange(101) / 100, n=7, confidence=0.9)
    assert (est.low, est.high) == pytest.approx((0.05, 0.95))
    assert est.value == 0.5 and est.n == 7 and est.method == "bootstrap" and est.confidence == 0.9
    with pytest.warns(UndefinedMetricWarning, match="1 of 3 bootstrap resamples"):
        est = percentile_interval(1.0, [0.0, np.nan, 2.0], n=3)
    assert (est.low, est.high) == pytest.approx((0.05, 1.95))
    with pytest.raises(ValueError, match="confidence must be in"):
        percentile_interval(1.0, [1.0], n=1, confidence=2)


def test_multinomial_bootstrap_agrees_with_row_bootstrap() -> None:
    # accuracy from a 2x2 confusion table vs. from rows: same distribution
    table = np.array([[40, 10], [5, 45]])
    rows_true = np.repeat([0, 0, 1, 1], table.ravel())
    rows_pred = np.repeat([0, 1, 0, 1], table.ravel())

    def acc_tables(t: np.ndarray) -> np.ndarray:
        return np.trace(t, axis1=-2, axis2=-1) / t.sum(axis=(-2, -1))

    def acc_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a == b).mean(axis=-1)

    m = multinomial_bootstrap_interval(acc_tables, table, n_boot=4000, seed=0)
    r = bootstrap_interval(acc_rows, rows_true, rows_pred, n_boot=4000, seed=1, vectorized=True)
    assert m.value == r.value == 0.85 and m.n == 100
    assert m.low == pytest.approx(r.low, abs=0.015)
    assert m.high == pytest.approx(r.high, abs=0.015)


def test_multinomial_bootstrap_empty_and_validation() -> None:
    with pytest.warns(UndefinedMetricWarning, match="empty count table"):
        est = multinomial_bootstrap_interval(lambda t: t.sum(axis=(1, 2)), np.zeros((2, 2), int))
    assert math.isnan(est.value) and est.n == 0
    with pytest.raises(TypeError, match="counts must be an integer array"):
        multinomial_bootstrap_interval(np.sum, np.ones((2, 2)))
    with pytest.raises(ValueError, match="counts must be >= 0"):
        multinomial_bootstrap_interval(np.sum, -np.ones((2, 2), int))
    with pytest.raises(ValueError, match="must return shape"):
        multinomial_bootstrap_interval(lambda t: np.zeros(3), np.ones((2, 2), int), n_boot=5)


def test_no_warning_on_well_defined_input() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wilson_interval([1, 2], [3, 4])
        bootstrap_interval(np.mean, np.arange(10.0), n_boot=20)
