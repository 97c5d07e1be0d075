"""Tests for analysis.stats.metrics: parity with scikit-learn, known answers, intervals, invariances."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm

from analysis.stats import metrics as M
from analysis.stats.intervals import Estimate, UndefinedMetricWarning, bootstrap_interval

K = 5
NEVER_PREDICTED = 2  # its logit is pushed down by 100
NEVER_PRESENT = 4  # no label is ever 4
SEEDS = [0, 1, 2]


def make_data(seed: int, n: int = 400, dtype: type = np.float64):
    """Random labels over 0..3 (class 4 absent), probabilities that never rank class 2 first."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K - 1, size=n)
    logits = rng.normal(size=(n, K))
    logits[np.arange(n), y] += 1.0
    logits[:, NEVER_PREDICTED] -= 100.0
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = (probs / probs.sum(axis=1, keepdims=True)).astype(dtype)
    return y, probs.argmax(axis=1), probs


@pytest.fixture(autouse=True)
def _quiet_undefined():
    """Ill-defined classes are part of the fixtures; tests that care use pytest.warns."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        yield


def assert_nan_estimate(est: Estimate) -> None:
    assert isinstance(est, Estimate)
    assert math.isnan(est.value) and math.isnan(est.low) and math.isnan(est.high)


# ============================================================== empty input


def test_empty_input_gives_nan_and_warns() -> None:
    y = np.array([], dtype=int)
    probs = np.zeros((0, 3))
    calls = [
        lambda: M.accuracy_score(y, y, n_classes=3),
        lambda: M.balanced_accuracy_score(y, y, n_classes=3),
        lambda: M.precision_recall_f1(y, y, n_classes=3).f1,
        lambda: M.top_k_accuracy_score(y, probs, k=2),
        lambda: M.expected_calibration_error(y, probs).ece,
        lambda: M.log_loss(y, probs),
        lambda: M.one_vs_rest_scores(y, probs).macro_roc_auc,
        lambda: M.one_vs_rest_scores(y, probs).macro_average_precision,
    ]
    for call in calls:
        with pytest.warns(UndefinedMetricWarning, match="empty input"):
            assert_nan_estimate(call())


def test_empty_input_tables_and_summary() -> None:
    y = np.array([], dtype=int)
    assert M.confusion_matrix(y, y, n_classes=3).tolist() == [[0] * 3] * 3
    assert M.confusion_matrix([], []).shape == (0, 0)
    table = M.per_class_metrics(y, y, n_classes=3)
    assert len(table) == 3 and table[M.SUPPORT].sum() == 0 and table[M.F1].isna().all()
    assert M.top_confusions(y, y, n_classes=3).empty
    assert M.imbalance_warning(y, n_classes=3) is None
    with pytest.warns(UndefinedMetricWarning, match="empty input"):
        s = M.summary(y, np.zeros((0, 3)), n_classes=3, n_boot=10)
    assert s.n == 0 and math.isnan(s.accuracy.value) and math.isnan(s.ece.value)
    assert s.reliability[M.COUNT].sum() == 0 and s.confusion.sum() == 0
    assert M.MetricsSummary.from_dict(json.loads(json.dumps(s.to_dict()))) == s


# ============================================================== parity with scikit-learn


@pytest.mark.parametrize("seed", SEEDS)
def test_fixture_has_a_class_never_predicted_and_one_never_present(seed: int) -> None:
    y, pred, _ = make_data(seed)
    assert NEVER_PREDICTED not in pred and NEVER_PREDICTED in y
    assert NEVER_PRESENT not in y and NEVER_PRESENT in pred


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("normalize", [None, "true", "pred", "all"])
def test_confusion_matrix_parity(seed: int, normalize: str | None) -> None:
    y, pred, _ = make_data(seed)
    ours = M.confusion_matrix(y, pred, n_classes=K, normalize=normalize)
    ref = skm.confusion_matrix(y, pred, labels=range(K), normalize=normalize)
    if normalize is None:
        assert ours.dtype == np.int64
        np.testing.assert_array_equal(ours, ref)
        return
    # scikit-learn writes 0 for a zero row/column; we write NaN (undefined, not zero)
    zero_row = {"true": NEVER_PRESENT, "pred": None, "all": None}[normalize]
    zero_col = NEVER_PREDICTED if normalize == "pred" else None
    if zero_row is not None:
        assert np.isnan(ours[zero_row]).all()
        ours[zero_row] = 0.0
    if zero_col is not None:
        assert np.isnan(ours[:, zero_col]).all()
        ours[:, zero_col] = 0.0
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=0)


def test_confusion_matrix_normalize_warns_on_zero_rows() -> None:
    with pytest.warns(UndefinedMetricWarning, match=r"rows .*for classes \[1\]"):
        cm = M.confusion_matrix([0, 0, 2], [0, 2, 2], n_classes=3, normalize="true")
    np.testing.assert_allclose(cm[0], [0.5, 0, 0.5])
    assert np.isnan(cm[1]).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_accuracy_and_balanced_accuracy_parity(seed: int) -> None:
    y, pred, _ = make_data(seed)
    acc = M.accuracy_score(y, pred, n_classes=K)
    assert acc.value == pytest.approx(skm.accuracy_score(y, pred), abs=1e-15)
    assert acc.method == "wilson" and acc.n == len(y)
    bal = M.balanced_accuracy_score(y, pred, n_classes=K, n_boot=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about class 4 (predicted, not present)
        ref = skm.balanced_accuracy_score(y, pred)
    assert bal.value == pytest.approx(ref, abs=1e-15)
    assert bal.method == "bootstrap" and bal.low < bal.value < bal.high


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("average", ["macro", "weighted"])
def test_precision_recall_f1_averaged_parity(seed: int, average: str) -> None:
    y, pred, _ = make_data(seed)
    ours = M.precision_recall_f1(y, pred, n_classes=K, average=average, n_boot=200)
    ref = skm.precision_recall_fscore_support(
        y, pred, labels=range(K), average=average, zero_division=np.nan
    )
    assert ours.precision.value == pytest.approx(ref[0], abs=1e-12)
    assert ours.recall.value == pytest.approx(ref[1], abs=1e-12)
    assert ours.f1.value == pytest.approx(ref[2], abs=1e-12)
    for est in (ours.precision, ours.recall, ours.f1):
        assert est.low <= est.value <= est.high


@pytest.mark.parametrize("seed", SEEDS)
def test_per_class_parity(seed: int) -> None:
    y, pred, _ = make_data(seed)
    table = M.per_class_metrics(y, pred, n_classes=K, n_boot=200)
    p, r, f, s = skm.precision_recall_fscore_support(
        y, pred, labels=range(K), average=None, zero_division=np.nan
    )
    np.testing.assert_allclose(table[M.PRECISION], p, equal_nan=True, rtol=1e-12)
    np.testing.assert_allclose(table[M.RECALL], r, equal_nan=True, rtol=1e-12)
    np.testing.assert_allclose(table[M.F1], f, equal_nan=True, rtol=1e-12)
    np.testing.assert_array_equal(table[M.SUPPORT], s)
    assert list(table[M.CLASS]) == list(range(K))
    # the never-predicted class: precision undefined, recall and F1 exactly 0
    row = table.iloc[NEVER_PREDICTED]
    assert np.isnan(row[M.PRECISION]) and np.isnan(row[M.PRECISION_LOW])
    assert row[M.RECALL] == 0 and row[M.RECALL_LOW] == 0 and row[M.RECALL_HIGH] > 0
    assert row[M.F1] == 0 and row[M.F1_HIGH] == 0
    # the never-present class: recall undefined
    assert np.isnan(table.iloc[NEVER_PRESENT][M.RECALL])
    defined = table[table[M.N_PRED] > 0]
    assert (defined[M.PRECISION_LOW] <= defined[M.PRECISION]).all()
    assert (defined[M.PRECISION] <= defined[M.PRECISION_HIGH]).all()
    present = table[table[M.SUPPORT] > 0]
    assert (present[M.F1_LOW] <= present[M.F1]).all()
    assert (present[M.F1] <= present[M.F1_HIGH]).all()


def test_undefined_precision_warns_naming_the_class() -> None:
    y, pred, _ = make_data(0)
    with pytest.warns(UndefinedMetricWarning, match=r"precision is undefined for classes \[2\]"):
        M.precision_recall_f1(y, pred, n_classes=K, n_boot=10)
    with pytest.warns(UndefinedMetricWarning, match=r"recall is undefined for classes \[4\]"):
        M.per_class_metrics(y, pred, n_classes=K, n_boot=10)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_top_k_parity(seed: int, k: int) -> None:
    y, _, probs = make_data(seed)
    ours = M.top_k_accuracy_score(y, probs, k=k)
    ref = skm.top_k_accuracy_score(y, probs, k=k, labels=range(K))
    assert ours.value == pytest.approx(ref, abs=1e-15)
    assert ours.method == "wilson" and ours.low <= ours.value <= ours.high


def test_top_1_equals_accuracy_and_ties_break_like_argmax() -> None:
    y, pred, probs = make_data(0)
    assert M.top_k_accuracy_score(y, probs, k=1).value == M.accuracy_score(y, pred).value
    tied = np.array([[0.5, 0.5, 0.0], [0.2, 0.4, 0.4]])
    # argmax picks class 0 and class 1: neither row is a top-1 hit, both are top-2 hits
    assert M.top_k_accuracy_score([1, 2], tied, k=1).value == 0.0
    assert M.top_k_accuracy_score([1, 2], tied, k=2).value == 1.0


@pytest.mark.parametrize("seed", SEEDS)
def test_roc_auc_and_average_precision_parity(seed: int) -> None:
    y, _, probs = make_data(seed)
    with pytest.warns(UndefinedMetricWarning, match=r"undefined for classes \[4\]"):
        ovr = M.one_vs_rest_scores(y, probs)
    table = ovr.per_class
    for c in range(K):
        if c == NEVER_PRESENT:
            assert np.isnan(table[M.ROC_AUC][c]) and np.isnan(table[M.AVERAGE_PRECISION][c])
            continue
        auc = skm.roc_auc_score(y == c, probs[:, c])
        ap = skm.average_precision_score(y == c, probs[:, c])
        assert table[M.ROC_AUC][c] == pytest.approx(auc, abs=1e-12)
        assert table[M.AVERAGE_PRECISION][c] == pytest.approx(ap, abs=1e-12)
        assert table[M.ROC_AUC_LOW][c] <= auc <= table[M.ROC_AUC_HIGH][c]
    present = [c for c in range(K) if c != NEVER_PRESENT]
    ref_macro = np.mean([skm.roc_auc_score(y == c, probs[:, c]) for c in present])
    assert ovr.macro_roc_auc.value == pytest.approx(ref_macro, abs=1e-12)
    assert ovr.macro_roc_auc.low < ovr.macro_roc_auc.value < ovr.macro_roc_auc.high
    ref_ap = np.mean([skm.average_precision_score(y == c, probs[:, c]) for c in present])
    macro_ap = ovr.macro_average_precision
    assert macro_ap.value == pytest.approx(ref_ap, abs=1e-12)
    assert macro_ap.method == "bootstrap" and macro_ap.n == len(y)
    assert macro_ap.low < macro_ap.value < macro_ap.high
    assert ovr.ap_n_boot == 1000  # 400 rows x 4 classes: far below the resample budget
    defined = table.drop(index=NEVER_PRESENT)
    assert (defined[M.AVERAGE_PRECISION_LOW] < defined[M.AVERAGE_PRECISION]).all()
    assert (defined[M.AVERAGE_PRECISION] < defined[M.AVERAGE_PRECISION_HIGH]).all()
    assert np.isnan(table[M.AVERAGE_PRECISION_LOW][NEVER_PRESENT])
    assert np.isnan(table[M.AVERAGE_PRECISION_HIGH][NEVER_PRESENT])


def test_average_precision_resamples_equal_sklearn_on_the_resampled_rows() -> None:
    # ties (integer scores) and duplicated rows are where a shortcut would go wrong
    rng = np.random.default_rng(8)
    n = 150
    y = rng.integers(0, 3, size=n)
    probs = rng.integers(1, 4, size=(n, 3)).astype(float)
    probs /= probs.sum(axis=1, keepdims=True)
    counts = M._row_draw_counts(n, 25, seed=2)
    assert (counts.sum(axis=1) == n).all()
    for c in range(3):
        order = np.argsort(-probs[:, c])
        score = probs[order, c]
        ends = np.r_[np.flatnonzero(np.diff(score)), n - 1]
        ranking = M._Ranking.of(order, y[order] == c, ends)
        ours = ranking.resampled_average_precision(counts)
        for i, row_counts in enumerate(counts):
            rows = np.repeat(np.arange(n), row_counts)
            ref = skm.average_precision_score(y[rows] == c, probs[rows, c])
            assert ours[i] == pytest.approx(ref, abs=1e-12)


def _three_class_problem(seed: int = 3, n: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Labels [n] and softmax probabilities [n, 3] of a moderately good model."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    logits = rng.normal(size=(n, 3))
    logits[np.arange(n), y] += 0.8
    return y, np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_average_precision_interval_matches_a_row_bootstrap_of_sklearn() -> None:
    # classes are resampled together, as a row bootstrap of the macro value resamples them
    y, probs = _three_class_problem()
    ovr = M.one_vs_rest_scores(y, probs, n_boot=1000, seed=0)

    def macro_ap(yy: np.ndarray, pp: np.ndarray) -> float:
        return float(np.mean([skm.average_precision_score(yy == c, pp[:, c]) for c in range(3)]))

    boot = bootstrap_interval(macro_ap, y, probs, n_boot=300, seed=1)
    assert ovr.macro_average_precision.low == pytest.approx(boot.low, abs=0.01)
    assert ovr.macro_average_precision.high == pytest.approx(boot.high, abs=0.01)


def test_average_precision_resamples_are_capped_for_many_rows_times_classes() -> None:
    assert M._ap_n_boot(1000, 400, 4) == 1000
    assert M._ap_n_boot(1000, 100_000, 10) == M._AP_BOOT_CELLS // 1_000_000 < 1000
    assert M._ap_n_boot(1000, 100_000, 1000) == M._AP_MIN_BOOT
    assert M._ap_n_boot(50, 100_000, 1000) == 50  # never more than asked for


def test_roc_auc_with_ties_matches_sklearn() -> None:
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, size=200)
    probs = rng.integers(1, 4, size=(200, 3)).astype(float)  # many ties
    probs /= probs.sum(axis=1, keepdims=True)
    table = M.one_vs_rest_scores(y, probs).per_class
    for c in range(3):
        assert table[M.ROC_AUC][c] == pytest.approx(skm.roc_auc_score(y == c, probs[:, c]))
        ref_ap = skm.average_precision_score(y == c, probs[:, c])
        assert table[M.AVERAGE_PRECISION][c] == pytest.approx(ref_ap)


def test_roc_auc_delong_interval_close_to_bootstrap() -> None:
    y, probs = _three_class_problem()
    ovr = M.one_vs_rest_scores(y, probs)

    def macro_auc(yy: np.ndarray, pp: np.ndarray) -> float:
        return float(np.mean([skm.roc_auc_score(yy == c, pp[:, c]) for c in range(3)]))

    boot = bootstrap_interval(macro_auc, y, probs, n_boot=300, seed=1)
    width = ovr.macro_roc_auc.high - ovr.macro_roc_auc.low
    assert width == pytest.approx(boot.high - boot.low, rel=0.25)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_loss_parity(seed: int, dtype: type) -> None:
    y, _, probs = make_data(seed, dtype=dtype)
    ours = M.log_loss(y, probs, n_boot=200)
    ref = skm.log_loss(y, probs, labels=range(K))
    assert ours.value == pytest.approx(ref, rel=1e-6)
    assert ours.low < ours.value < ours.high


def test_log_loss_of_zero_probability_is_finite() -> None:
    est = M.log_loss([0], np.array([[0.0, 1.0]]), n_boot=5)
    assert est.value == pytest.approx(-math.log(np.finfo(np.float64).eps))


# ============================================================== calibration


def test_ece_hand_computed() -> None:
    # 4 bins of width 0.25. Confidences 0.3, 0.4 (bin 1), 0.6 (bin 2), 0.9, 1.0 (bin 3).
    probs = np.array(
        [
            [0.3, 0.35, 0.35],  # conf 0.35 argmax 1 (first max), label 1 -> correct
            [0.4, 0.3, 0.3],  # conf 0.4, pred 0, label 2 -> wrong
            [0.6, 0.2, 0.2],  # conf 0.6, pred 0, label 0 -> correct
            [0.05, 0.9, 0.05],  # conf 0.9, pred 1, label 1 -> correct
            [0.0, 0.0, 1.0],  # conf 1.0, pred 2, label 0 -> wrong
        ]
    )
    y = np.array([1, 2, 0, 1, 0])
    cal = M.expected_calibration_error(y, probs, n_bins=4, n_boot=200)
    # bin 1: acc 1/2, conf (0.35+0.4)/2 = 0.375 -> |0.125| * 2/5
    # bin 2: acc 1, conf 0.6 -> 0.4 * 1/5 ; bin 3: acc 1/2, conf 0.95 -> 0.45 * 2/5
    expected = 0.125 * 2 / 5 + 0.4 / 5 + 0.45 * 2 / 5
    assert cal.ece.value == pytest.approx(expected)
    assert cal.ece.low <= cal.ece.value + 1e-12 and cal.ece.method == "bootstrap"
    bins = cal.bins
    assert bins[M.COUNT].tolist() == [0, 2, 1, 2]
    assert bins[M.BIN_LOW].tolist() == [0.0, 0.25, 0.5, 0.75]
    assert bins[M.BIN_HIGH].tolist() == [0.25, 0.5, 0.75, 1.0]
    np.testing.assert_allclose(bins[M.MEAN_CONFIDENCE], [np.nan, 0.375, 0.6, 0.95])
    np.testing.assert_allclose(bins[M.ACCURACY], [np.nan, 0.5, 1.0, 0.5])
    np.testing.assert_allclose(bins[M.GAP], [np.nan, 0.125, 0.4, -0.45])
    assert bins[M.ACCURACY_LOW][2] < 1.0 == bins[M.ACCURACY_HIGH][2]
    assert np.isnan(bins[M.ACCURACY_LOW][0])


def test_ece_bins_are_right_closed_and_default_to_15() -> None:
    # confidence exactly 0.5 with 2 bins belongs to (0, 0.5], i.e. bin 0
    cal = M.expected_calibration_error([0, 0], np.array([[0.5, 0.5], [1.0, 0.0]]), n_bins=2)
    assert cal.bins[M.COUNT].tolist() == [1, 1]
    assert len(M.expected_calibration_error([0], np.array([[1.0, 0.0]]), n_boot=5).bins) == 15


def test_perfectly_calibrated_model_has_small_ece() -> None:
    rng = np.random.default_rng(0)
    n = 20000
    probs = rng.dirichlet([1.0, 1.0, 1.0], size=n)
    y = np.array([rng.choice(3, p=p) for p in probs])  # labels drawn from the probabilities
    cal = M.expected_calibration_error(y, probs, n_boot=200)
    assert cal.ece.value < 0.02
    overconfident = np.where(probs == probs.max(1, keepdims=True), 0.98, 0.01)
    assert M.expected_calibration_error(y, overconfident, n_boot=20).ece.value > 0.3


# ============================================================== intervals behave


def test_bootstrap_intervals_contain_point_and_narrow_with_n() -> None:
    widths: dict[str, list[float]] = {}
    for n in (200, 2000, 20000):
        y, pred, probs = make_data(7, n=n)
        weighted = M.precision_recall_f1(y, pred, average="weighted", n_boot=200)
        ovr = M.one_vs_rest_scores(y, probs, n_boot=200)
        ests = {
            "balanced_accuracy": M.balanced_accuracy_score(y, pred, n_boot=200),
            "macro_f1": M.precision_recall_f1(y, pred, n_boot=200).f1,
            "weighted_f1": M.precision_recall_f1(y, pred, average="weighted", n_boot=200).f1,
            "weighted_precision": weighted.precision,
            "weighted_recall": weighted.recall,
            "macro_average_precision": ovr.macro_average_precision,
            "average_precision_class_0": _ap_estimate(ovr, 0),
            "ece": M.expected_calibration_error(y, probs, n_boot=200).ece,
            "log_loss": M.log_loss(y, probs, n_boot=200),
            "accuracy": M.accuracy_score(y, pred),
            "macro_auc": ovr.macro_roc_auc,
        }
        for name, est in ests.items():
            assert est.low <= est.value <= est.high, name
            widths.setdefault(name, []).append(est.high - est.low)
    for name, w in widths.items():
        assert w[0] > w[1] > w[2] > 0, (name, w)


def _ap_estimate(ovr: M.OneVsRest, c: int) -> Estimate:
    row = ovr.per_class.iloc[c]
    return Estimate(
        row[M.AVERAGE_PRECISION],
        row[M.AVERAGE_PRECISION_LOW],
        row[M.AVERAGE_PRECISION_HIGH],
        "bootstrap",
        int(ovr.macro_average_precision.n),
    )


def test_count_bootstrap_matches_row_bootstrap() -> None:
    # the multinomial-on-cells bootstrap must agree with resampling rows
    y, pred, _ = make_data(11, n=300)
    ours = M.balanced_accuracy_score(y, pred, n_boot=3000, seed=0)

    def bal(a: np.ndarray, b: np.ndarray) -> float:
        return M.balanced_accuracy_score(a, b, n_classes=K, n_boot=1).value

    rows = bootstrap_interval(bal, y, pred, n_boot=600, seed=1)
    assert ours.low == pytest.approx(rows.low, abs=0.02)
    assert ours.high == pytest.approx(rows.high, abs=0.02)


def test_seed_makes_intervals_reproducible() -> None:
    y, pred, probs = make_data(0)
    a = M.precision_recall_f1(y, pred, n_boot=100, seed=3)
    assert a == M.precision_recall_f1(y, pred, n_boot=100, seed=3)
    assert a != M.precision_recall_f1(y, pred, n_boot=100, seed=4)
    assert M.log_loss(y, probs, n_boot=50, seed=1) == M.log_loss(y, probs, n_boot=50, seed=1)


def test_confidence_level_widens_intervals() -> None:
    y, pred, _ = make_data(0)
    narrow = M.accuracy_score(y, pred, confidence=0.8)
    wide = M.accuracy_score(y, pred, confidence=0.99)
    assert wide.low < narrow.low < narrow.high < wide.high and wide.confidence == 0.99


# ============================================================== invariances over the registry


def _prf(average: str, attr: str):
    return lambda y, pred, **o: getattr(M.precision_recall_f1(y, pred, average=average, **o), attr)


def _probs(fn, attr: str | None = None, **fixed):
    def metric(y, probs, *, n_classes: int, **options):
        assert probs.shape[1] == n_classes
        out = fn(y, probs, **fixed, **options)
        return out if attr is None else getattr(out, attr)

    return metric


#: Every scalar metric by name: (what it takes, f(y_true, labels or probs, **options) -> Estimate).
REGISTRY = {
    "accuracy": ("labels", M.accuracy_score),
    "balanced_accuracy": ("labels", M.balanced_accuracy_score),
    **{
        f"{avg}_{attr}": ("labels", _prf(avg, attr))
        for avg in ("macro", "weighted")
        for attr in ("precision", "recall", "f1")
    },
    "top_2_accuracy": ("probs", _probs(M.top_k_accuracy_score, k=2)),
    "top_3_accuracy": ("probs", _probs(M.top_k_accuracy_score, k=3)),
    "ece": ("probs", _probs(M.expected_calibration_error, "ece")),
    "log_loss": ("probs", _probs(M.log_loss)),
    "macro_auc": ("probs", _probs(M.one_vs_rest_scores, "macro_roc_auc")),
    "macro_average_precision": ("probs", _probs(M.one_vs_rest_scores, "macro_average_precision")),
}
ALL_METRICS = sorted(REGISTRY)


UNBOOTSTRAPPED = {"accuracy", "top_2_accuracy", "top_3_accuracy", "macro_auc"}


def _value(name: str, y: np.ndarray, probs: np.ndarray) -> float:
    kind, fn = REGISTRY[name]
    options = {} if name in UNBOOTSTRAPPED else {"n_boot": 5}
    data = probs.argmax(axis=1) if kind == "labels" else probs
    return fn(y, data, n_classes=K, **options).value


@pytest.mark.parametrize("name", ALL_METRICS)
def test_registry_metric_is_invariant_to_row_order(name: str) -> None:
    y, _, probs = make_data(3)
    perm = np.random.default_rng(0).permutation(len(y))
    assert _value(name, y[perm], probs[perm]) == pytest.approx(_value(name, y, probs), rel=1e-12)


@pytest.mark.parametrize("name", ALL_METRICS)
def test_registry_metric_is_invariant_to_consistent_relabelling(name: str) -> None:
    y, _, probs = make_data(4)
    relabel = np.array([3, 0, 4, 1, 2])  # class c becomes relabel[c]
    new_probs = np.empty_like(probs)
    new_probs[:, relabel] = probs
    assert _value(name, relabel[y], new_probs) == pytest.approx(_value(name, y, probs), rel=1e-12)


def test_registry_metrics_detect_a_broken_model() -> None:
    # the invariance tests above would pass for a constant metric; this one would not
    y, _, probs = make_data(3)
    shuffled = probs[np.random.default_rng(1).permutation(len(y))]
    for name in ("accuracy", "macro_f1", "macro_auc", "top_2_accuracy"):
        assert _value(name, y, shuffled) < _value(name, y, probs) - 0.05, name
    assert _value("log_loss", y, shuffled) > _value("log_loss", y, probs)


# ============================================================== tables and warnings


def test_top_confusions_known_answer() -> None:
    y = [0, 0, 0, 0, 1, 1, 2, 2, 2]
    pred = [1, 1, 2, 0, 0, 1, 0, 0, 1]
    table = M.top_confusions(y, pred, n_classes=3, k=3)
    assert list(table.columns) == [M.TRUE, M.PRED, M.COUNT, M.SHARE_OF_TRUE_CLASS]
    # (0->1) 2 of 4, (2->0) 2 of 3: same count, larger share first; then (1->0) 1 of 2
    assert table[[M.TRUE, M.PRED, M.COUNT]].values.tolist() == [[2, 0, 2], [0, 1, 2], [1, 0, 1]]
    np.testing.assert_allclose(table[M.SHARE_OF_TRUE_CLASS], [2 / 3, 0.5, 0.5])
    assert len(M.top_confusions(y, pred, n_classes=3)) == 5  # all off-diagonal pairs with count
    assert M.top_confusions([0, 1], [0, 1]).empty


def test_imbalance_warning() -> None:
    balanced = np.repeat(np.arange(3), 10)
    assert M.imbalance_warning(balanced, n_classes=3) is None
    assert M.imbalance_warning(balanced, n_classes=3, y_pred=balanced) is None
    skewed = np.r_[np.zeros(50, int), np.ones(10, int), np.full(9, 2)]
    msg = M.imbalance_warning(skewed, n_classes=3)
    assert msg is not None and "5.6x" in msg and "class 0: 50 vs class 2: 9" in msg
    assert M.imbalance_warning(skewed, n_classes=3, max_ratio=6) is None
    # predicting the majority everywhere: accuracy 0.72, balanced accuracy 1/3
    msg = M.imbalance_warning(skewed, n_classes=3, y_pred=np.zeros_like(skewed), max_ratio=100)
    assert msg is not None and "accuracy 0.725 vs balanced accuracy 0.333" in msg
    msg = M.imbalance_warning(balanced, n_classes=4)
    assert msg is not None and "have no samples ([3])" in msg
    with pytest.raises(ValueError, match="max_ratio must be a number >= 1"):
        M.imbalance_warning(balanced, max_ratio=0.5)
    with pytest.raises(ValueError, match="max_gap must be a number >= 0"):
        M.imbalance_warning(balanced, max_gap=-1)


# ============================================================== summary


def test_summary_bundles_the_same_numbers_as_the_functions() -> None:
    y, pred, probs = make_data(0)
    s = M.summary(y, probs, n_classes=K, n_boot=200, seed=0)
    assert s.n == len(y) and s.n_classes == K and s.confusion.shape == (K, K)
    assert s.accuracy == M.accuracy_score(y, pred, n_classes=K)
    macro = M.precision_recall_f1(y, pred, n_classes=K, n_boot=200, seed=0)
    assert s.macro_f1 == macro.f1 and s.macro_precision == macro.precision
    weighted = M.precision_recall_f1(y, pred, n_classes=K, average="weighted", n_boot=200, seed=0)
    assert s.weighted_precision == weighted.precision and s.weighted_recall == weighted.recall
    assert s.weighted_f1 == weighted.f1
    ref = skm.precision_recall_fscore_support(
        y, pred, labels=range(K), average="weighted", zero_division=np.nan
    )
    assert s.weighted_precision.value == pytest.approx(ref[0], abs=1e-12)
    assert s.weighted_recall.value == pytest.approx(ref[1], abs=1e-12)
    for est in (s.weighted_precision, s.weighted_recall):
        assert est.method == "bootstrap" and est.low < est.value < est.high
    assert s.balanced_accuracy == M.balanced_accuracy_score(y, pred, n_classes=K, n_boot=200)
    assert s.ece.value == pytest.approx(M.expected_calibration_error(y, probs).ece.value)
    assert s.log_loss.value == pytest.approx(skm.log_loss(y, probs, labels=range(K)))
    assert sorted(s.top_k) == [2, 3]
    assert s.top_k[3].value == pytest.approx(
        skm.top_k_accuracy_score(y, probs, k=3, labels=range(K))
    )
    ovr = M.one_vs_rest_scores(y, probs, n_boot=200, seed=0)
    assert s.macro_auc == ovr.macro_roc_auc
    assert s.macro_average_precision == ovr.macro_average_precision and s.ap_n_boot == 200
    pd.testing.assert_frame_equal(
        s.per_class[[M.AVERAGE_PRECISION, M.AVERAGE_PRECISION_LOW, M.AVERAGE_PRECISION_HIGH]],
        ovr.per_class[[M.AVERAGE_PRECISION, M.AVERAGE_PRECISION_LOW, M.AVERAGE_PRECISION_HIGH]],
    )
    assert {M.PRECISION, M.F1_HIGH, M.ROC_AUC, M.AVERAGE_PRECISION} <= set(s.per_class.columns)
    assert len(s.reliability) == 15 and s.reliability[M.COUNT].sum() == len(y)
    assert s.imbalance is not None and "no samples ([4])" in s.imbalance
    assert any("precision is undefined for classes [2]" in w for w in s.warnings)


def test_summary_top_k_only_when_n_classes_allows() -> None:
    y = np.array([0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.5, 0.5]])
    s = M.summary(y, probs, n_classes=2, n_boot=20)
    assert s.top_k == {}
    s3 = M.summary(np.array([0, 1, 2]), np.eye(3), n_classes=3, n_boot=20)
    assert sorted(s3.top_k) == [2]


def test_summary_roundtrips_through_json() -> None:
    y, _, probs = make_data(2, dtype=np.float32)
    s = M.summary(y, probs, n_classes=K, n_boot=100, seed=5)
    text = json.dumps(s.to_dict(), allow_nan=False)  # strict JSON: NaN stored as null
    loaded = M.MetricsSummary.from_dict(json.loads(text))
    assert loaded == s
    pd.testing.assert_frame_equal(loaded.per_class, s.per_class)
    pd.testing.assert_frame_equal(loaded.reliability, s.reliability)
    changed = s.to_dict()
    changed["confusion"][0][0] += 1
    assert M.MetricsSummary.from_dict(changed) != s
    changed = s.to_dict()
    changed["per_class"]["columns"][M.F1][0] = 0.123
    assert M.MetricsSummary.from_dict(changed) != s
    with pytest.raises(ValueError, match="expected a metrics_summary dict of version 1"):
        M.MetricsSummary.from_dict({"kind": "other"})


def test_summary_from_a_file_written_before_weighted_precision_and_recall() -> None:
    y, _, probs = make_data(2)
    d = M.summary(y, probs, n_classes=K, n_boot=20).to_dict()
    for key in ("weighted_precision", "weighted_recall", "ap_n_boot"):
        del d[key]
    old = M.MetricsSummary.from_dict(d)
    assert math.isnan(old.weighted_precision.value) and old.weighted_precision.method == "none"
    assert math.isnan(old.weighted_recall.high) and old.weighted_recall.n == len(y)
    assert old.ap_n_boot == 0 and old.weighted_f1.value == d["weighted_f1"]["value"]


def test_metrics_section_writes_the_new_keys_to_metrics_json(tmp_path) -> None:
    from types import SimpleNamespace

    from analysis import schema
    from analysis.pipeline.sections import METRICS_FILE, SECTIONS, SectionContext
    from analysis.store.runstore import RunWriter

    y, pred, probs = make_data(5, dtype=np.float32)
    with RunWriter(tmp_path, "run") as writer:
        ctx = SectionContext(
            writer,
            pd.DataFrame({schema.LABEL: y}),
            probs,
            None,
            [f"c{c}" for c in range(K)],
            [],
            None,
            None,
            None,
            None,
            SimpleNamespace(seed=0),
            lambda *_: None,
        )
        SECTIONS["metrics"](ctx)
        d = json.loads((writer.tmp / METRICS_FILE).read_text())
    ref = skm.precision_recall_fscore_support(
        y, pred, labels=range(K), average="weighted", zero_division=np.nan
    )
    for key, expected in (("weighted_precision", ref[0]), ("weighted_recall", ref[1])):
        est = d[key]
        assert est["method"] == "bootstrap" and est["value"] == pytest.approx(expected)
        assert est["low"] < est["value"] < est["high"]
    present = [c for c in range(K) if c != NEVER_PRESENT]
    ap = [skm.average_precision_score(y == c, probs[:, c].astype(np.float64)) for c in present]
    macro_ap = d["macro_average_precision"]
    assert macro_ap["method"] == "bootstrap" and macro_ap["value"] == pytest.approx(np.mean(ap))
    assert macro_ap["low"] < macro_ap["value"] < macro_ap["high"] and d["ap_n_boot"] == 1000
    columns = d["per_class"]["columns"]
    np.testing.assert_allclose([columns[M.AVERAGE_PRECISION][c] for c in present], ap)
    for c in present:
        low, high = columns[M.AVERAGE_PRECISION_LOW][c], columns[M.AVERAGE_PRECISION_HIGH][c]
        assert low < columns[M.AVERAGE_PRECISION][c] < high
    assert columns[M.AVERAGE_PRECISION_LOW][NEVER_PRESENT] is None


def test_summary_reemits_undefined_warnings() -> None:
    y, _, probs = make_data(0)
    with pytest.warns(UndefinedMetricWarning, match=r"undefined for classes \[4\]"):
        M.summary(y, probs, n_classes=K, n_boot=10)


# ============================================================== validation


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (
            lambda: M.accuracy_score([[0, 1]], [[0, 1]]),
            ValueError,
            r"y_true must be 1-D .*\(1, 2\)",
        ),
        (lambda: M.accuracy_score([0.0, 1.0], [0, 1]), TypeError, "y_true must hold integer"),
        (lambda: M.accuracy_score([True], [True]), TypeError, "y_true must hold integer"),
        (lambda: M.accuracy_score([0, 1], [0]), ValueError, "same length, got 2 and 1"),
        (lambda: M.accuracy_score([0, 3], [0, 1], n_classes=3), ValueError, r"y_true .*\[3\]"),
        (lambda: M.accuracy_score([0, 1], [0, -1]), ValueError, r"y_pred holds labels .*\[-1\]"),
        (lambda: M.accuracy_score([0], [0], n_classes=0), ValueError, "n_classes must be >= 1"),
        (lambda: M.accuracy_score([0], [0], n_classes=2.0), TypeError, "n_classes must be an"),
        (lambda: M.accuracy_score([0], [0], confidence=95), ValueError, "confidence must be in"),
        (lambda: M.log_loss([0], [0.5, 0.5]), ValueError, r"probs must be 2-D .*\(2,\)"),
        (lambda: M.log_loss([0, 1], [[0.5, 0.5]]), ValueError, "one row per label, got 1 rows"),
        (lambda: M.log_loss([0], [["a", "b"]]), TypeError, "probs must be floats"),
        (lambda: M.log_loss([0], [[np.nan, 1.0]]), ValueError, "probs must be finite"),
        (lambda: M.log_loss([0], [[2.0, -1.0]]), ValueError, r"\[0, 1\].*not logits"),
        (lambda: M.log_loss([0], [[0.5, 0.6]]), ValueError, r"sum to 1 .*\[1\.1\]"),
        (lambda: M.log_loss([0], [[1.0]], n_boot=0), ValueError, "n_boot must be >= 1"),
        (lambda: M.log_loss([0], [[1.0]], seed=1.5), TypeError, "seed must be an int"),
        (
            lambda: M.summary([0], [[0.5, 0.5]], n_classes=3),
            ValueError,
            r"n_classes=3 columns, got shape \(1, 2\)",
        ),
        (lambda: M.summary([0], [[1.0]], n_classes=None), TypeError, "summary needs n_classes"),
        (lambda: M.top_k_accuracy_score([0], [[0.5, 0.5]], k=3), ValueError, r"k must be in 1..2"),
        (lambda: M.top_confusions([0], [0], k=0), ValueError, "k must be >= 1"),
        (
            lambda: M.expected_calibration_error([0], [[1.0]], n_bins=0),
            ValueError,
            "n_bins must be >= 1",
        ),
        (
            lambda: M.confusion_matrix([0], [0], normalize="rows"),
            ValueError,
            r"normalize must be one of \[None, 'true', 'pred', 'all'\]",
        ),
        (
            lambda: M.precision_recall_f1([0], [0], average="micro"),
            ValueError,
            r"average must be one of \['macro', 'weighted'\]",
        ),
    ],
)
def test_validation_messages(call, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


def test_float32_probs_that_sum_to_one_loosely_are_accepted() -> None:
    probs = np.array([[0.3333, 0.3333, 0.3334]], dtype=np.float32) * np.float32(1.0004)
    assert M.log_loss([0], probs, n_boot=5).n == 1


def test_importing_metrics_stays_light() -> None:
    code = (
        "import sys, analysis.stats.metrics, analysis.stats.intervals; "
        "heavy = [m for m in ('sklearn', 'scipy', 'torch', 'streamlit', 'plotly', 'umap') "
        "if m in sys.modules]; print(heavy)"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root
    )
    assert out.stdout.strip() == "[]"


def test_top_k_breaks_ties_like_argmax_not_in_the_models_favour():
    from analysis.stats.metrics import accuracy_score, top_k_accuracy_score

    y = np.array([0, 1, 2, 3, 4, 5])
    probs = np.full((6, 6), 1 / 6)  # an untrained model: every class tied
    assert top_k_accuracy_score(y, probs, k=1).value == accuracy_score(y, probs.argmax(1)).value
    assert top_k_accuracy_score(y, probs, k=2).value == pytest.approx(2 / 6)
