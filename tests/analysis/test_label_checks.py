"""Tests for analysis.data_issues.label_checks: when suspected label errors can be trusted."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.data_issues import label_checks as lc
from analysis.data_issues.label_issues import find_label_issues
from tests.synthetic_classes import many_class_world


def _check(world):
    table = find_label_issues(world.given, world.probs).set_index("index").sort_index()
    pred = world.probs.argmax(axis=1)
    return lc.noise_rate_check(
        pred == world.given, world.probs.max(axis=1), table["is_label_issue"].to_numpy(bool)
    )


def test_a_calibrated_model_without_label_noise_makes_the_flags_implausible() -> None:
    # every flag here is a model mistake, and the check says so
    world = many_class_world(100, 20, seed=11)
    chk = _check(world)
    assert not world.flipped.any() and chk.flagged_share > 0.02
    assert chk.verdict == lc.IMPLAUSIBLE and chk.max_real_share < 0.75
    assert chk.bound == pytest.approx(max(0.0, 1 - chk.accuracy / chk.mean_confidence), abs=1e-12)


def test_with_real_noise_the_bound_tracks_it_and_caps_the_real_share() -> None:
    world = many_class_world(100, 100, seed=12, noise=0.08)
    chk = _check(world)
    real = world.flipped.mean()
    assert abs(chk.bound - real) < 0.03  # calibrated: the confidence gap is the noise
    assert chk.verdict == lc.IMPLAUSIBLE
    flagged_real = real / chk.flagged_share
    assert chk.max_real_share >= min(1.0, flagged_real) - 0.1


def test_an_overconfident_model_is_indistinguishable_from_label_noise() -> None:
    chk = _check(many_class_world(100, 20, seed=13, temperature=3.0))
    assert chk.verdict == lc.INDISTINGUISHABLE and chk.max_real_share is None
    assert chk.mean_confidence - chk.accuracy > 0.15


def test_no_bound_when_underconfident_or_nothing_flagged() -> None:
    correct = np.array([True] * 90 + [False] * 10)
    conf = np.full(100, 0.6)  # 60% confident, 90% right
    assert lc.noise_rate_check(correct, conf, np.arange(100) < 5).verdict == lc.NO_BOUND
    assert lc.noise_rate_check(correct, np.full(100, 0.99), np.zeros(100, bool)).verdict == (
        lc.NO_BOUND
    )
    assert lc.noise_rate_check([], [], []).verdict == lc.NO_BOUND
    with pytest.raises(ValueError, match="one length"):
        lc.noise_rate_check([True], [0.5, 0.4], [False])


def test_threshold_check_marks_classes_with_too_few_images() -> None:
    rng = np.random.default_rng(0)
    sizes = [1, 5, 400, 0]
    labels = np.repeat(np.arange(4), sizes)
    q = rng.uniform(0.2, 1.0, size=labels.size)
    t = lc.threshold_check(labels, q, n_classes=4)
    assert t[lc.N].tolist() == sizes
    assert t[lc.TOO_FEW].tolist() == [True, True, False, False]
    big = q[labels == 2]
    assert t[lc.THRESHOLD][2] == pytest.approx(big.mean())
    half = 1.959963984540054 * big.std(ddof=1) / np.sqrt(big.size)
    assert t[lc.THRESHOLD_HIGH][2] - t[lc.THRESHOLD][2] == pytest.approx(half)
    assert np.isnan(t[lc.THRESHOLD][3]) and np.isnan(t[lc.THRESHOLD_LOW][0])
    with pytest.raises(ValueError, match=r"labels must be in 0..3"):
        lc.threshold_check([4], [0.5], n_classes=4)


def test_run_words_for_the_thousand_class_run(thousand_class_run) -> None:
    from analysis.present.label_trust import label_trust

    run, world, _ = thousand_class_run
    trust = label_trust(run)
    # 2 images a class: most thresholds rest on too few images, and the words say how many
    assert trust.n_too_few > 500 and f"{trust.n_too_few:,} of 1,000 classes" in trust.sentences[-1]
    flagged = run.samples["is_label_issue"].to_numpy(bool)
    assert trust.flagged_in_too_few <= flagged.sum()
    if trust.check.verdict == lc.IMPLAUSIBLE:
        from analysis.present.findings import findings

        assert "At most about" in trust.noise_sentence
        (found,) = [f for f in findings(run) if f.kind == "label_issues"]
        assert "implausibly many" in found.message and found.severity == "medium"
