"""One per-row loss and one probability tolerance for every module (issue: the loss column
clipped at 1e-12 while log loss clipped at the dtype's epsilon, so the two could disagree)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss as sk_log_loss

from analysis import schema
from analysis.checks import PROB_ROW_SUM_ATOL, row_losses


def _probs(dtype) -> tuple[np.ndarray, np.ndarray]:
    p = np.array([[1.0, 0.0, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 1.0], [0.4, 0.6, 0.0]], dtype)
    return p, np.array([1, 1, 2, 2])  # rows 0 and 3 give their label probability 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_losses_are_scikit_learns_per_row_log_loss(dtype) -> None:
    p, y = _probs(dtype)
    got = row_losses(p, y)
    for i in range(len(y)):
        # sklearn clips at the input dtype's epsilon; normalize=False gives the row's own loss
        expected = sk_log_loss(y[i : i + 1], p[i : i + 1], labels=[0, 1, 2], normalize=False)
        assert got[i] == pytest.approx(expected, rel=1e-6)
    assert got.mean() == pytest.approx(sk_log_loss(y, p, labels=[0, 1, 2]), rel=1e-6)
    assert got[0] == pytest.approx(-np.log(np.finfo(dtype).eps))


def test_the_loss_column_and_the_log_loss_metric_agree() -> None:
    from analysis.loading.inference import prediction_columns
    from analysis.stats.metrics import log_loss

    p, y = _probs(np.float32)
    column = prediction_columns(p, y)[schema.LOSS].to_numpy()
    metric = log_loss(y, p, n_boot=10).value
    assert column.mean() == pytest.approx(metric, rel=1e-9)
    np.testing.assert_allclose(column, row_losses(p, y))


def test_one_row_sum_tolerance_everywhere() -> None:
    from analysis.data_issues.label_issues import find_label_issues
    from analysis.stats.metrics import PROB_SUM_ATOL, log_loss

    assert PROB_SUM_ATOL == PROB_ROW_SUM_ATOL
    y = np.array([0, 1])
    inside = np.array([[0.6, 0.4 + 0.9 * PROB_ROW_SUM_ATOL], [0.3, 0.7]])
    outside = np.array([[0.6, 0.4 + 2 * PROB_ROW_SUM_ATOL], [0.3, 0.7]])
    find_label_issues(y, inside)
    with pytest.raises(ValueError, match="must sum to 1"):
        find_label_issues(y, outside)
    log_loss(y, inside, n_boot=10)
    with pytest.raises(ValueError, match="must sum to 1"):
        log_loss(y, outside, n_boot=10)
