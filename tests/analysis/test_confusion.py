"""Tests for analysis.stats.confusion: reading a confusion matrix too large to look at whole."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest

from analysis.stats import confusion as C

CM = np.array(
    [
        [50, 9, 0, 1],  # class 0: 10 errors, 9 of them to class 1
        [3, 40, 0, 0],
        [0, 0, 30, 0],  # class 2: never wrong, never the target of an error
        [0, 5, 2, 20],
    ]
)


def test_empty_and_error_free_matrices() -> None:
    assert C.confusion_pairs(np.zeros((0, 0), int)).empty
    assert C.confusion_pairs(np.eye(3, dtype=int) * 4).empty
    assert C.most_confused_classes(np.eye(3, dtype=int), 5).size == 0
    assert C.class_partners(np.eye(3, dtype=int), 1, 5).tolist() == [1]


def test_error_mass_counts_errors_made_and_absorbed() -> None:
    # class 1 makes 3 errors and absorbs 9 + 5
    assert C.error_mass(CM).tolist() == [10 + 3, 3 + 14, 0 + 2, 7 + 1]


def test_most_confused_classes_take_the_largest_pairs_and_drop_error_free_classes() -> None:
    # pairs by count: (0, 1) 9, (3, 1) 5, (1, 0) 3, (3, 2) 2, (0, 3) 1
    assert C.most_confused_classes(CM, 2).tolist() == [0, 1]
    assert C.most_confused_classes(CM, 3).tolist() == [0, 1, 3]
    assert C.most_confused_classes(CM, 10).tolist() == [0, 1, 3, 2]
    cm = CM.copy()
    cm[3, 2] = 0  # class 2 now takes part in no error at all
    assert C.most_confused_classes(cm, 10).tolist() == [0, 1, 3]


def test_most_confused_submatrix_holds_the_largest_confusions() -> None:
    # many classes with one error each and two heavily confused pairs: the sub-matrix of four
    # classes must hold both pairs, not four classes that merely make many errors elsewhere
    k = 50
    cm = np.eye(k, dtype=int) * 10
    for c in range(k):
        cm[c, (c + 7) % k] += 3
    cm[10, 11] = cm[11, 10] = 20
    cm[30, 31] = 25
    ids = C.most_confused_classes(cm, 4)
    assert sorted(ids.tolist()) == [10, 11, 30, 31]
    sub = C.submatrix(cm, ids)
    assert sub.sum() - np.trace(sub) == 20 + 20 + 25


def test_class_partners_focus_one_class_row_and_column() -> None:
    # class 3: 5 to class 1 + 0 back, 2 to class 2, 1 from class 0
    assert C.class_partners(CM, 3, 10).tolist() == [3, 1, 2, 0]
    assert C.class_partners(CM, 3, 2).tolist() == [3, 1]
    sub = C.submatrix(CM, C.class_partners(CM, 3, 10))
    assert sub[0].tolist() == [20, 5, 2, 0] and sub[:, 0].tolist() == [20, 0, 0, 1]


def test_confusion_pairs_counts_rates_and_wilson_intervals() -> None:
    pairs = C.confusion_pairs(CM)
    assert list(pairs.columns) == C.PAIR_COLUMNS
    assert pairs[[C.TRUE, C.PRED, C.COUNT]].values.tolist() == [
        [0, 1, 9],
        [3, 1, 5],
        [1, 0, 3],
        [3, 2, 2],
        [0, 3, 1],
    ]
    first = pairs.iloc[0]
    assert first[C.SUPPORT] == 60 and first[C.RATE] == pytest.approx(9 / 60)
    assert first[C.N_PRED] == 54 and first[C.SHARE_OF_PRED] == pytest.approx(9 / 54)
    assert pairs[C.SHARE_OF_ERRORS].sum() == pytest.approx(1.0)
    cis = [
        binomtest(int(k), int(n)).proportion_ci(method="wilson")
        for k, n in zip(pairs[C.COUNT], pairs[C.SUPPORT], strict=True)
    ]
    low, high = [c.low for c in cis], [c.high for c in cis]
    np.testing.assert_allclose(pairs[C.RATE_LOW], low, atol=1e-12)
    np.testing.assert_allclose(pairs[C.RATE_HIGH], high, atol=1e-12)
    assert len(C.confusion_pairs(CM, k=2)) == 2
    only3 = C.confusion_pairs(CM, classes=[3])
    assert set(map(tuple, only3[[C.TRUE, C.PRED]].values.tolist())) == {(3, 1), (3, 2), (0, 3)}


def test_ties_in_count_go_to_the_higher_rate_then_lower_ids() -> None:
    cm = np.array([[8, 2, 0], [0, 2, 2], [2, 0, 8]])
    pairs = C.confusion_pairs(cm)
    assert pairs[[C.TRUE, C.PRED]].values.tolist() == [[1, 2], [0, 1], [2, 0]]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: C.confusion_pairs(np.zeros((2, 3))), r"square \(K, K\).*\(2, 3\)"),
        (lambda: C.confusion_pairs(-np.eye(2)), "counts >= 0"),
        (lambda: C.most_confused_classes(CM, 0), "n must be an int >= 1, got 0"),
        (lambda: C.class_partners(CM, 4, 3), r"class id in 0..3, got 4"),
        (lambda: C.submatrix(CM, [0, 7]), r"ids in 0..3"),
        (lambda: C.confusion_pairs(CM, k=0), "k must be an int >= 1 or None"),
    ],
)
def test_validation_messages(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_a_thousand_classes_stays_cheap() -> None:
    # a realistic large matrix: the functions return the right shapes without K^2 Python work
    rng = np.random.default_rng(0)
    k = 1000
    y = rng.integers(0, k, 50_000)
    pred = np.where(rng.random(50_000) < 0.7, y, rng.integers(0, k, 50_000))
    cm = np.zeros((k, k), int)
    np.add.at(cm, (y, pred), 1)
    top = C.most_confused_classes(cm, 25)
    assert top.size == 25 and len(set(top.tolist())) == 25
    largest = C.confusion_pairs(cm, k=1).iloc[0]
    assert {largest[C.TRUE], largest[C.PRED]} <= set(top.tolist())
    pairs = C.confusion_pairs(cm, k=100)
    assert len(pairs) == 100 and pairs[C.COUNT].is_monotonic_decreasing
