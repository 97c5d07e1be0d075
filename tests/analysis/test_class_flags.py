"""Tests for analysis.stats.class_flags: weak classes and confusion pairs are tested "worse",
against scipy, and hold with 2-20 images per class (the null, corrected over the classes)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom, false_discovery_control, fisher_exact

from analysis.stats.class_flags import (
    CLASS_FLAG_COLUMNS,
    PAIR_COLUMNS,
    confusion_pairs,
    weak_classes,
    worse_than_rest,
)
from analysis.stats.intervals import wilson_interval

ALPHA = 0.05


def _bound(n: int, p: float = ALPHA, tail: float = 1e-3) -> int:
    """The count n Bernoulli(p) trials exceed with probability at most ``tail``."""
    return int(binom.ppf(1 - tail, n, p))


def few_per_class(seed: int, n_classes: int = 60, error: float = 0.2):
    """2-20 images per class, errors independent of the class, wrong predictions uniform."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(2, 21, n_classes)
    y = np.repeat(np.arange(n_classes), sizes)
    wrong = rng.random(y.size) < error
    pred = np.where(wrong, (y + rng.integers(1, n_classes, y.size)) % n_classes, y)
    return y, pred


# ----------------------------------------------------------------------------- empty and shape


def test_empty_input() -> None:
    empty = np.array([], dtype=np.int64)
    out = weak_classes(empty, empty, n_classes=3)
    assert list(out.columns) == CLASS_FLAG_COLUMNS and out.empty
    pairs = confusion_pairs(empty, empty, n_classes=3)
    assert list(pairs.columns) == PAIR_COLUMNS and pairs.empty


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(labels=[0, 1], pred=[0]), ValueError, "same length"),
        (dict(labels=[0, 3], pred=[0, 1]), ValueError, r"labels must be in 0..2"),
        (dict(labels=[0.0, 1.0], pred=[0, 1]), TypeError, "integer class ids"),
        (dict(labels=[0, 1], pred=[0, 1], alpha=1.5), ValueError, r"alpha must be in \(0, 1\)"),
    ],
)
def test_validation(kw, exc, match) -> None:
    kw = {"n_classes": 3, **kw}
    with pytest.raises(exc, match=match):
        weak_classes(kw.pop("labels"), kw.pop("pred"), **kw)


# ----------------------------------------------------------------------------- against scipy


def test_weak_classes_match_scipy() -> None:
    y, pred = few_per_class(3, n_classes=12, error=0.25)
    y[:15], pred[:15] = 0, 1  # class 0: 15 extra images, all wrong
    out = weak_classes(y, pred, n_classes=12).set_index("class")
    wrong = y != pred
    ps = []
    for k in range(12):
        inside = y == k
        table = [
            [wrong[inside].sum(), (~wrong[inside]).sum()],
            [wrong[~inside].sum(), (~wrong[~inside]).sum()],
        ]
        p = fisher_exact(table, alternative="greater").pvalue
        assert out.loc[k, "p_value"] == pytest.approx(p, rel=1e-9, abs=1e-15)
        low, high = wilson_interval(int((~wrong[inside]).sum()), int(inside.sum()))
        assert (out.loc[k, "recall_low"], out.loc[k, "recall_high"]) == pytest.approx((low, high))
        ps.append(p)
    adj = false_discovery_control(ps, method="bh")
    np.testing.assert_allclose(out.sort_index()["p_adj"], adj, rtol=1e-9)
    assert bool(out.loc[0, "significant"])
    assert out.index[0] == 0  # significant first, most excess errors first


def test_confusion_pairs_match_scipy() -> None:
    rng = np.random.default_rng(4)
    c = 8
    y = rng.integers(0, c, 800)
    pred = y.copy()
    pred[(y == 2) & (rng.random(800) < 0.4)] = 5  # 2 -> 5, systematic
    noise = rng.random(800) < 0.1
    pred[noise] = rng.integers(0, c, int(noise.sum()))
    out = confusion_pairs(y, pred, n_classes=c)
    top = out.iloc[0]
    assert (top["true"], top["pred"]) == (2, 5) and bool(top["significant"])
    for _, r in out.iterrows():
        t, q = int(r["true"]), int(r["pred"])
        group = (y != t) & (y != q)
        table = [
            [int(((y == t) & (pred == q)).sum()), int(((y == t) & (pred != q)).sum())],
            [int((group & (pred == q)).sum()), int((group & (pred != q)).sum())],
        ]
        assert r["count"] == table[0][0] and r["support"] == (y == t).sum()
        p = fisher_exact(table, alternative="greater").pvalue
        assert r["p_value"] == pytest.approx(p, rel=1e-9, abs=1e-15), (t, q)
        assert r["base_rate"] == pytest.approx(table[1][0] / sum(table[1]))
    # BH over every ordered pair of the 8 classes, the pairs that never happen counting as 1
    p_all = np.ones(c * (c - 1))
    p_all[: len(out)] = out["p_value"].to_numpy()
    adj = false_discovery_control(p_all, method="bh")[: len(out)]
    np.testing.assert_allclose(out["p_adj"], adj, rtol=1e-9)


def test_worse_than_rest_matches_scipy() -> None:
    n, e = np.array([40, 10, 0, 200]), np.array([20, 2, 0, 30])
    got = worse_than_rest(n, e, total=200, total_errors=30)
    for i in (0, 1):
        table = [[e[i], n[i] - e[i]], [30 - e[i], 170 - (n[i] - e[i])]]
        assert got.p_value[i] == pytest.approx(fisher_exact(table, alternative="greater").pvalue)
    assert got.p_value[2] == 1.0 and got.p_value[3] == 1.0  # empty, and every row
    np.testing.assert_allclose(got.p_adj, false_discovery_control(got.p_value, method="bh"))


# ----------------------------------------------------------------------------- few images


def test_a_tiny_class_is_not_flagged_on_its_point_estimate() -> None:
    """3 images, 3 wrong, recall 0%: a point-estimate rule flags it; among 100 classes at a 10%
    error rate, 3 of 3 wrong is not surprising after the correction."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(100), 50)
    wrong = rng.random(y.size) < 0.1
    y = np.r_[y, [100, 100, 100]]
    wrong = np.r_[wrong, [True, True, True]]
    pred = np.where(wrong, (y + 1) % 101, y)
    out = weak_classes(y, pred, n_classes=101).set_index("class")
    row = out.loc[100]
    assert row["recall"] == 0 and not bool(row["significant"])
    assert row["recall_high"] > 0.5  # the interval says how little 3 images say


@pytest.mark.parametrize("n_classes", [20, 100])
def test_null_with_2_to_20_images_per_class_flags_rarely(n_classes: int) -> None:
    """Errors independent of the class: a run flags any weak class or confusion pair in at
    most alpha of runs (BH over the classes / pairs). 300 seeded runs against the binomial
    bound of 5%; uncorrected, most runs would flag something."""
    n = 300
    weak = pair = raw = 0
    for seed in range(n):
        y, pred = few_per_class(seed, n_classes=n_classes)
        classes = weak_classes(y, pred, n_classes=n_classes)
        pairs = confusion_pairs(y, pred, n_classes=n_classes)
        weak += bool(classes["significant"].any())
        pair += bool(pairs["significant"].any())
        raw += bool((classes["p_value"] < ALPHA).any())
    print(f"{n_classes} classes: weak {weak}, pair {pair}, uncorrected {raw} of {n}")
    assert weak <= _bound(n) and pair <= _bound(n)
    assert raw > 2 * _bound(n)


def test_a_real_weak_class_of_20_images_is_found() -> None:
    """Among 50 classes of 2-20 images at 10% errors, a class of 20 images at 60% errors is
    flagged in nearly every run."""
    hits = 0
    for seed in range(20):
        y, pred = few_per_class(seed, n_classes=50, error=0.1)
        rng = np.random.default_rng(seed)
        weak_pred = np.where(rng.random(20) < 0.6, 3, 50)
        y, pred = np.r_[y, np.full(20, 50)], np.r_[pred, weak_pred]
        out = weak_classes(y, pred, n_classes=51)
        hits += bool(out.loc[out["class"] == 50, "significant"].iloc[0])
    assert hits >= 18, hits
