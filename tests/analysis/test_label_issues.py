"""Tests for analysis.data_issues.label_issues (confident learning on NumPy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.data_issues.label_issues import (
    DEFAULT_METHOD,
    FILTER_METHODS,
    ISSUE_COLUMNS,
    QUALITY_SCORES,
    estimate_noise,
    estimate_noise_matrix,
    estimate_num_label_issues,
    find_label_issues,
    label_quality_scores,
)

# ----------------------------------------------------------------------------- fixtures


def noisy_problem(seed: int = 7, n: int = 400, c: int = 4):
    """Held-out-style probabilities that follow the TRUE labels, and given labels with flips.

    Classes 0 and 1 are a confusable pair (like cat / dog): most flips go between them, the rest
    are uniform. Returns (given_labels, pred_probs, flipped_mask, true_labels).
    """
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, size=n)
    alpha = np.ones((n, c))
    alpha[np.arange(n), true] += 5.0
    pair = true < 2  # 0 <-> 1 share some mass
    alpha[pair, 1 - true[pair]] += 1.5
    probs = np.stack([rng.dirichlet(a) for a in alpha])
    given = true.copy()
    flip = rng.random(n) < 0.12
    for k in np.flatnonzero(flip):
        if true[k] < 2 and rng.random() < 0.6:
            given[k] = 1 - true[k]
        else:
            given[k] = rng.choice([x for x in range(c) if x != true[k]])
    return given, probs, given != true, true


def weak_problem(seed: int = 3, n: int = 400, c: int = 6):
    """A weak model on 6 classes: low thresholds, so many examples pass several thresholds (the
    argmax over above-threshold classes matters) and some pass none."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, size=n)
    alpha = np.full((n, c), 0.7)
    alpha[np.arange(n), true] += 1.0
    probs = np.stack([rng.dirichlet(a) for a in alpha])
    flip = rng.random(n) < 0.15
    given = true.copy()
    given[flip] = (true[flip] + rng.integers(1, c, size=int(flip.sum()))) % c
    return given, probs, flip, true


PROBLEMS = {"clear": noisy_problem, "weak": weak_problem}


# ----------------------------------------------------------------------------- reference
# A direct, loop-based reading of the paper's definitions, written independently of the module.


def ref_estimate(labels, probs):
    n, c = len(labels), len(probs[0])
    t = []
    for j in range(c):
        vals = [probs[k][j] for k in range(n) if labels[k] == j]
        t.append(sum(vals) / len(vals) if vals else float("inf"))
    cj = [[0] * c for _ in range(c)]
    guess = []
    for k in range(n):
        confident = [j for j in range(c) if probs[k][j] >= t[j]]
        if not confident:
            guess.append(None)
            continue
        best = max(confident, key=lambda j: (probs[k][j], -j))
        guess.append(best)
        cj[labels[k]][best] += 1
    counts = [sum(1 for k in range(n) if labels[k] == i) for i in range(c)]
    cal = [[0.0] * c for _ in range(c)]
    for i in range(c):
        row = sum(cj[i])
        for j in range(c):
            cal[i][j] = cj[i][j] / row * counts[i] if row else 0.0
    total = sum(sum(r) for r in cal)
    q = [[cal[i][j] / total for j in range(c)] for i in range(c)]
    prune = []
    for i in range(c):
        vals = [q[i][j] * n for j in range(c)]
        ints = [int(np.floor(v)) for v in vals]
        missing = round(sum(vals)) - sum(ints)
        by_frac = sorted(range(c), key=lambda j: (-(vals[j] - ints[j]), j))
        for j in by_frac[:missing]:
            ints[j] += 1
        prune.append(ints)
    return t, cj, guess, q, prune


def ref_flags(labels, probs, method):
    n, c = len(labels), len(probs[0])
    t, cj, guess, q, prune = ref_estimate(labels, probs)
    noise_rate, by_class, cl = set(), set(), set()
    for i in range(c):
        members = [k for k in range(n) if labels[k] == i]
        for j in range(c):
            if j != i and prune[i][j] > 0:
                ranked = sorted(members, key=lambda k: (-(probs[k][j] - probs[k][i]), k))
                noise_rate.update(ranked[: prune[i][j]])
        m = sum(prune[i][j] for j in range(c) if j != i)
        by_class.update(sorted(members, key=lambda k: (probs[k][i], k))[:m])
    for k in range(n):
        if guess[k] is not None and guess[k] != labels[k]:
            cl.add(k)
    flags = {
        "prune_by_noise_rate": noise_rate,
        "prune_by_class": by_class,
        "both": noise_rate & by_class,
        "confident_learning": cl,
        "predicted_neq_given": {k for k in range(n) if max(probs[k]) > probs[k][labels[k]]},
    }[method]
    # the model agreeing with the given label (ties included) is never a label issue
    return {k for k in flags if probs[k][labels[k]] < max(probs[k])}


# ----------------------------------------------------------------------------- empty / invalid


def test_empty_input_gives_empty_table_and_nan_matrix():
    df = find_label_issues(np.zeros(0, dtype=int), np.zeros((0, 3)))
    assert list(df.columns) == ISSUE_COLUMNS
    assert len(df) == 0
    est = estimate_noise(np.zeros(0, dtype=int), np.zeros((0, 3)))
    assert est.num_label_issues == 0
    assert est.noise_matrix.shape == (3, 3)
    assert np.isnan(est.noise_matrix).all()
    assert np.isinf(est.thresholds).all()
    assert label_quality_scores([], np.zeros((0, 2))).shape == (0,)


@pytest.mark.parametrize(
    ("labels", "probs", "exc", "match"),
    [
        ([0, 1], [[1.0, 0.0], [0.0, 1.0]], None, None),
        ([0, 1], np.array([["a", "b"], ["c", "d"]]), TypeError, "pred_probs must be a float"),
        ([0, 1], [0.5, 0.5], ValueError, r"pred_probs must be 2-D \[N, C\], got shape \(2,\)"),
        ([0, 0], [[1.0], [1.0]], ValueError, "at least 2 classes"),
        ([[0, 1]], [[1.0, 0.0], [0.0, 1.0]], ValueError, "labels must be 1-D"),
        ([0.0, 1.0], [[1.0, 0.0], [0.0, 1.0]], TypeError, "labels must be integers"),
        ([0, 1, 1], [[1.0, 0.0], [0.0, 1.0]], ValueError, "labels has 3 rows but pred_probs has 2"),
        ([0, 1], [[np.nan, 1.0], [0.0, 1.0]], ValueError, "must be finite"),
        ([0, 1], [[1.5, -0.5], [0.0, 1.0]], ValueError, r"must lie in \[0, 1\]"),
        ([0, 1], [[0.2, 0.2], [0.0, 1.0]], ValueError, "row 0 sums to 0.4"),
        ([0, 2], [[1.0, 0.0], [0.0, 1.0]], ValueError, r"labels must be in 0..1 .*\[0, 2\]"),
        ([-1, 1], [[1.0, 0.0], [0.0, 1.0]], ValueError, r"labels must be in 0..1"),
    ],
)
def test_validation(labels, probs, exc, match):
    if exc is None:
        assert len(find_label_issues(labels, probs)) == 2
        return
    with pytest.raises(exc, match=match):
        find_label_issues(labels, probs)


def test_unknown_method_and_score_list_valid_names():
    with pytest.raises(ValueError, match=r"unknown method 'nope'; valid: \['both', "):
        find_label_issues([0, 1], [[1.0, 0.0], [0.0, 1.0]], method="nope")
    with pytest.raises(ValueError, match=r"unknown score 'x'; valid: \['normalized_margin'"):
        label_quality_scores([0, 1], [[1.0, 0.0], [0.0, 1.0]], score="x")


def test_class_names_length_checked():
    with pytest.raises(ValueError, match="class_names must be a sequence of 2 names"):
        find_label_issues([0, 1], [[1.0, 0.0], [0.0, 1.0]], class_names=["cat"])


# ----------------------------------------------------------------------------- known answers


def test_one_obvious_flip_is_flagged_with_reason():
    # four clean cats, four clean dogs, one "cat" that the model is sure is a dog
    probs = np.array([[0.9, 0.1]] * 4 + [[0.2, 0.8]] * 4 + [[0.05, 0.95]])
    labels = np.array([0] * 4 + [1] * 4 + [0])
    df = find_label_issues(labels, probs, class_names=["cat", "dog"], shrink_thresholds=False)
    top = df.iloc[0]
    assert top["index"] == 8
    assert bool(top[schema.IS_LABEL_ISSUE])
    assert top[schema.SUGGESTED_LABEL] == 1
    assert top[schema.LABEL_ISSUE_SCORE] == pytest.approx((0.05 - 0.95 + 1) / 2)
    # cat threshold = mean p(cat) over the five examples labelled cat = (4*0.9 + 0.05)/5 = 0.73
    assert top["reason"] == "labelled cat (p 0.05, cat threshold 0.73); model gives dog 0.95"
    assert df[schema.IS_LABEL_ISSUE].sum() == 1
    est = estimate_noise(labels, probs, shrink_thresholds=False)
    assert est.confident_joint.tolist() == [[4, 1], [0, 4]]
    assert est.num_label_issues == 1
    np.testing.assert_allclose(est.noise_matrix, [[1.0, 0.2], [0.0, 0.8]])
    np.testing.assert_allclose(est.inverse_noise_matrix, [[0.8, 0.2], [0.0, 1.0]])


def test_scores_known_values():
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    labels = np.array([0, 1])
    np.testing.assert_allclose(
        label_quality_scores(labels, probs, score="normalized_margin"), [0.75, 0.35]
    )
    np.testing.assert_allclose(
        label_quality_scores(labels, probs, score="self_confidence"), [0.7, 0.3]
    )
    # the default is self-confidence (chosen in bench/bench_label_issues.py)
    np.testing.assert_allclose(label_quality_scores(labels, probs), [0.7, 0.3])


def test_class_without_labels_is_never_a_confident_target():
    probs = np.array([[0.6, 0.1, 0.3], [0.1, 0.6, 0.3], [0.5, 0.2, 0.3]])
    est = estimate_noise([0, 1, 0], probs)
    assert np.isinf(est.thresholds[2])
    assert est.confident_joint[:, 2].sum() == 0
    assert np.isnan(est.noise_matrix[:, 2]).all()  # no estimated true example of class 2


# ----------------------------------------------------------------------------- synthetic problem


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("method", sorted(FILTER_METHODS))
def test_flagged_set_equals_the_paper_definitions(method, problem):
    labels, probs, _, _ = PROBLEMS[problem]()
    expected = ref_flags(labels.tolist(), probs.tolist(), method)
    df = find_label_issues(labels, probs, method=method, shrink_thresholds=False)
    got = set(df.loc[df[schema.IS_LABEL_ISSUE], "index"].tolist())
    assert len(expected) > 10  # the problem is not trivial
    assert got == expected


def test_many_pairs_with_ties_equal_the_paper_definitions():
    """Many (given, true) pairs with tied probabilities (coarse steps): the flags are the
    paper's, pair by pair (ties to the lower index)."""
    rng = np.random.default_rng(3)
    n, c = 600, 30
    labels = rng.integers(0, c, n)
    z = rng.normal(size=(n, c)) + 2.5 * np.eye(c)[labels]
    probs = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    probs = np.round(probs * 20) / 20 + 1e-3  # ties within and across rows
    probs /= probs.sum(1, keepdims=True)
    est = estimate_noise(labels, probs, shrink_thresholds=False)
    off = est.prune_counts - np.diag(np.diag(est.prune_counts))
    assert (off > 0).sum() > 25  # many pairs
    for method in ("prune_by_noise_rate", "both"):
        expected = ref_flags(labels.tolist(), probs.tolist(), method)
        df = find_label_issues(labels, probs, method=method, shrink_thresholds=False)
        assert set(df.loc[df[schema.IS_LABEL_ISSUE], "index"].tolist()) == expected


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_estimates_equal_the_paper_definitions(problem):
    labels, probs, _, _ = PROBLEMS[problem]()
    c = probs.shape[1]
    t, cj, guess, q, prune = ref_estimate(labels.tolist(), probs.tolist())
    est = estimate_noise(labels, probs, shrink_thresholds=False)
    above = probs >= est.thresholds
    if problem == "weak":  # the fixture exercises every branch of the confident joint
        assert (above.sum(1) > 1).sum() > 20 and (above.sum(1) == 0).sum() > 20
        several = above.sum(1) > 1
        assert (np.where(above, probs, -1).argmax(1) != probs.argmax(1))[several].any()
    np.testing.assert_allclose(est.thresholds, t, rtol=0, atol=1e-12)
    assert est.confident_joint.tolist() == cj
    assert est.true_label_guess.tolist() == [-1 if g is None else g for g in guess]
    np.testing.assert_allclose(est.joint, q, atol=1e-12)
    assert est.prune_counts.tolist() == prune
    off = sum(prune[i][j] for i in range(c) for j in range(c) if i != j)
    assert (
        est.num_label_issues
        == off
        == estimate_num_label_issues(labels, probs, shrink_thresholds=False)
    )


def test_noise_matrix_columns_sum_to_one_and_track_the_true_noise():
    labels, probs, flipped, true = noisy_problem()
    nm = estimate_noise_matrix(labels, probs)
    np.testing.assert_allclose(nm.sum(axis=0), 1.0)
    np.testing.assert_allclose(estimate_noise(labels, probs).inverse_noise_matrix.sum(1), 1.0)
    # the empirical P(given = i | true = j) of the planted flips
    emp = pd.crosstab(labels, true, normalize="columns").to_numpy()
    assert np.abs(nm - emp).max() < 0.12
    # the confusable pair 0 <-> 1 is the largest off-diagonal noise rate
    off = nm.copy()
    np.fill_diagonal(off, 0)
    i, j = np.unravel_index(off.argmax(), off.shape)
    assert {int(i), int(j)} == {0, 1}


def test_ranking_recovers_the_planted_flips():
    labels, probs, flipped, _ = noisy_problem()
    k = int(flipped.sum())
    for score in QUALITY_SCORES:
        df = find_label_issues(labels, probs, score=score)
        ranked = df.sort_values([schema.LABEL_ISSUE_SCORE, "index"])["index"].to_numpy()
        recall = flipped[ranked[:k]].mean()
        chance = k / len(labels)
        print(f"{score}: recall@K={k} of planted flips = {recall:.3f} (chance {chance:.3f})")
        assert recall > 0.6 > 4 * chance
    # the default filter finds mostly real flips; "both" (C+NR) trades recall for precision
    precision, recall = {}, {}
    for method in (DEFAULT_METHOD, "both"):
        df = find_label_issues(labels, probs, method=method)
        flagged = df.loc[df[schema.IS_LABEL_ISSUE], "index"].to_numpy()
        precision[method] = flipped[flagged].mean()
        recall[method] = flipped[flagged].sum() / flipped.sum()
        print(f"{method}: {len(flagged)} flagged, precision {precision[method]:.3f}")
    assert precision[DEFAULT_METHOD] > 0.7 and recall[DEFAULT_METHOD] > 0.6
    assert precision["both"] >= precision[DEFAULT_METHOD]
    assert recall[DEFAULT_METHOD] >= recall["both"]


def test_table_is_ranked_issues_first_then_quality():
    labels, probs, _, _ = noisy_problem()
    df = find_label_issues(labels, probs)
    assert sorted(df["index"]) == list(range(len(labels)))
    n_issues = int(df[schema.IS_LABEL_ISSUE].sum())
    assert df[schema.IS_LABEL_ISSUE].iloc[:n_issues].all()
    assert not df[schema.IS_LABEL_ISSUE].iloc[n_issues:].any()
    q = df[schema.LABEL_ISSUE_SCORE].to_numpy()
    assert np.all(np.diff(q[:n_issues]) >= 0) and np.all(np.diff(q[n_issues:]) >= 0)
    assert ((q >= 0) & (q <= 1)).all()
    assert (df[schema.SUGGESTED_LABEL] != df["given_label"]).all()
    # no flagged example has its given label as the model's prediction
    flagged = df.loc[df[schema.IS_LABEL_ISSUE], "index"].to_numpy()
    assert (probs[flagged].argmax(1) != labels[flagged]).all()


def test_float32_and_float16_probs_accepted():
    labels, probs, _, _ = noisy_problem()
    a = find_label_issues(labels, probs.astype(np.float32))
    b = find_label_issues(labels, probs.astype(np.float16))
    assert a[schema.IS_LABEL_ISSUE].sum() > 0 and b[schema.IS_LABEL_ISSUE].sum() > 0


# ----------------------------------------------------------------------------- cleanlab
# cleanlab is the reference implementation by the paper's authors: an independent check of the
# definitions (not a loop rewrite of the module's own choices).


def _cleanlab_guess(labels, probs):
    """cleanlab's rule for the confident joint's column, from its source (count.py): above
    threshold (minus 1e-6); several above -> the overall argmax; one above -> that one."""
    from cleanlab.count import get_confident_thresholds

    t = get_confident_thresholds(labels, probs)
    above = probs >= t - 1e-6
    n_above = above.sum(axis=1)
    guess = np.where(n_above > 1, probs.argmax(axis=1), above.argmax(axis=1))
    return np.where(n_above > 0, guess, -1), above


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_estimates_match_cleanlab(problem):
    from cleanlab.count import compute_confident_joint, estimate_joint, get_confident_thresholds

    labels, probs, _, _ = PROBLEMS[problem]()
    est = estimate_noise(labels, probs, shrink_thresholds=False)  # the paper's thresholds
    np.testing.assert_allclose(est.thresholds, get_confident_thresholds(labels, probs), rtol=1e-12)
    ours, theirs = est.true_label_guess, _cleanlab_guess(labels, probs)[0]
    differ = ours != theirs
    # the one documented difference: when several classes pass their threshold, the paper (and
    # this module) takes the most probable *of those*, cleanlab the overall argmax
    above = probs >= est.thresholds[None, :]
    assert np.all(above[differ].sum(axis=1) > 1)
    assert np.all(~above[differ, probs[differ].argmax(axis=1)])
    cj = compute_confident_joint(labels, probs, calibrate=False)
    if not differ.any():
        np.testing.assert_array_equal(est.confident_joint, cj)
    # cleanlab rounds the calibrated joint to integer counts before normalising: within 1/N
    joint = estimate_joint(labels, probs, confident_joint=est.confident_joint)
    assert np.abs(joint - est.joint).max() <= 1.0 / len(labels)
    print(f"{problem}: {int(differ.sum())} rows differ by the argmax rule")


@pytest.mark.parametrize("method", ["prune_by_noise_rate", "prune_by_class", "both"])
def test_flags_match_cleanlab(method):
    """Same flags as cleanlab.filter.find_label_issues up to its integer rounding of the
    calibrated joint: on the clear problem (no argmax difference), at most 1% of rows differ."""
    from cleanlab.filter import find_label_issues as cleanlab_find

    labels, probs, _, _ = noisy_problem()
    theirs = cleanlab_find(labels, probs, filter_by=method, n_jobs=1)
    ours = find_label_issues(labels, probs, method=method, shrink_thresholds=False)
    ours = ours.sort_values("index")
    ours = ours[schema.IS_LABEL_ISSUE].to_numpy()
    assert theirs.sum() > 20
    assert (ours != theirs).sum() <= 0.01 * len(labels), (ours.sum(), theirs.sum())


# ----------------------------------------------------------------------------- other evidence


def _one_confident_model_error():
    """Row 0: labelled 0, model confident in 1. Rows 1-8: clear examples of both classes."""
    probs = np.array([[0.05, 0.95]] + [[0.9, 0.1]] * 4 + [[0.1, 0.9]] * 4)
    labels = np.array([0] + [0] * 4 + [1] * 4)
    return labels, probs


def test_neighbours_that_share_the_label_unflag_it():
    labels, probs = _one_confident_model_error()
    plain = find_label_issues(labels, probs).set_index("index")
    assert bool(plain.loc[0, schema.IS_LABEL_ISSUE])
    nb = np.full((9, 4), -1)
    nb[0] = [0, 0, 0, 1]  # 3 of its 4 nearest reference images are labelled like it
    df = find_label_issues(labels, probs, neighbour_labels=nb, class_names=["a", "b"])
    row = df.set_index("index").loc[0]
    assert not bool(row[schema.IS_LABEL_ISSUE])
    assert row["neighbour_agreement"] == pytest.approx(0.75)
    assert row["model_score"] == pytest.approx(plain.loc[0, schema.LABEL_ISSUE_SCORE])
    # the ranking key averages the model's score with the agreement
    assert row[schema.LABEL_ISSUE_SCORE] == pytest.approx((row["model_score"] + 0.75) / 2)
    assert "3 of its 4 nearest reference images are labelled a" in row["reason"]
    assert np.isnan(df.set_index("index").loc[1, "neighbour_agreement"])


def test_neighbours_that_disagree_keep_the_flag():
    labels, probs = _one_confident_model_error()
    nb = np.full((9, 3), -1)
    nb[0] = [1, 1, 0]
    row = find_label_issues(labels, probs, neighbour_labels=nb).set_index("index").loc[0]
    assert bool(row[schema.IS_LABEL_ISSUE]) and row["neighbour_agreement"] == pytest.approx(1 / 3)


def test_a_near_copy_with_the_same_label_unflags_it():
    labels, probs = _one_confident_model_error()
    same = np.full(9, -1)
    same[0] = 0
    other = np.full(9, -1)
    other[0] = 1
    a = find_label_issues(labels, probs, copy_labels=same).set_index("index").loc[0]
    b = find_label_issues(labels, probs, copy_labels=other, class_names=["a", "b"])
    b = b.set_index("index").loc[0]
    assert not bool(a[schema.IS_LABEL_ISSUE]) and bool(b[schema.IS_LABEL_ISSUE])
    assert "near-copy in the reference set is labelled b" in b["reason"]


@pytest.mark.parametrize(
    "kw, exc, match",
    [
        (dict(neighbour_labels=np.zeros((3, 2), int)), ValueError, r"shape \(N, k\) with N = 9"),
        (dict(neighbour_labels=np.zeros((9, 2))), TypeError, "integer class ids"),
        (dict(neighbour_labels=np.full((9, 2), 5)), ValueError, r"class ids in 0..1 or -1"),
        (dict(copy_labels=np.zeros(8, int)), ValueError, r"shape \(N,\) with N = 9"),
    ],
)
def test_evidence_validation(kw, exc, match):
    labels, probs = _one_confident_model_error()
    with pytest.raises(exc, match=match):
        find_label_issues(labels, probs, **kw)


def test_neighbour_agreement_known_values():
    from analysis.data_issues.label_issues import neighbour_agreement

    got = neighbour_agreement([0, 1, 2], [[0, 0, 1], [-1, -1, -1], [2, -1, 0]])
    np.testing.assert_allclose(got, [2 / 3, np.nan, 0.5])


# ----------------------------------------------------------------------------- expected precision


def _toy_table():
    # accuracy, ece, flagged, real (probabilities), flagged, real (with neighbours)
    rows = [[0.6, 0.05, 10, 2, 5, 2]] * 30 + [[0.95, 0.05, 10, 9, 10, 10]] * 30
    return {"rows": rows}


def test_expected_precision_pools_the_nearest_problems():
    from analysis.data_issues.label_issues import NEAREST_PROBLEMS, expected_precision

    low = expected_precision(0.62, 0.04, table=_toy_table())
    assert low.pooled == pytest.approx(0.2) and low.n_problems == NEAREST_PROBLEMS
    assert low.accuracy == (0.6, 0.6)
    high = expected_precision(0.97, 0.05, table=_toy_table(), evidence=True)
    assert high.pooled == pytest.approx(1.0) and high.evidence
    assert expected_precision(float("nan"), 0.1, table=_toy_table()) is None


def test_the_stored_table_is_the_benchmark_family_and_says_weak_models_mislead():
    """The stored table (written by bench/bench_label_issues.py) covers weak to strong models,
    and on it a weak model's flags are mostly its own mistakes while a strong model's are
    mostly real: the reason the dashboard quotes it."""
    import json

    from analysis.data_issues.label_issues import (
        DEFAULT_METHOD,
        DEFAULT_SCORE,
        PRECISION_TABLE_PATH,
        expected_precision,
    )

    table = json.loads(PRECISION_TABLE_PATH.read_text())
    assert (table["method"], table["score"]) == (DEFAULT_METHOD, DEFAULT_SCORE)
    rows = np.asarray(table["rows"])
    assert rows.shape[1] == 6 and len(rows) >= 100
    assert rows[:, 0].min() < 0.7 and rows[:, 0].max() > 0.95
    assert np.all(rows[:, 3] <= rows[:, 2]) and np.all(rows[:, 5] <= rows[:, 4])
    weak, strong = expected_precision(0.7, 0.05), expected_precision(0.96, 0.03)
    assert weak.pooled < 0.5 < strong.pooled


# ----------------------------------------------------------------------------- thin thresholds


def test_shrunk_thresholds_follow_the_empirical_bayes_formula():
    rng = np.random.default_rng(3)
    sizes = np.array([3, 8, 400, 60])
    labels = np.repeat(np.arange(4), sizes)
    probs = rng.dirichlet(np.ones(4), size=labels.size)
    probs[np.arange(labels.size), labels] += rng.uniform(0, 2, labels.size)
    probs /= probs.sum(axis=1, keepdims=True)
    own = probs[np.arange(labels.size), labels]
    means = np.array([own[labels == j].mean() for j in range(4)])
    within = sum(((own[labels == j] - means[j]) ** 2).sum() for j in range(4)) / (labels.size - 4)
    se2 = within / sizes
    tau2 = max(means.var() - se2.mean(), 1e-4)
    pull = se2 / (se2 + tau2)
    expected = pull * own.mean() + (1 - pull) * means
    est = estimate_noise(labels, probs)
    np.testing.assert_allclose(est.thresholds, expected, rtol=1e-10)
    # the 400-image class keeps (nearly) its own threshold, the 3-image one moves most
    assert abs(est.thresholds[2] - means[2]) < 0.01 < abs(est.thresholds[0] - means[0])
    np.testing.assert_allclose(
        estimate_noise(labels, probs, shrink_thresholds=False).thresholds, means
    )


def test_shrinking_thin_thresholds_cuts_false_flags_at_many_classes():
    # 600 classes of 5 images, a calibrated model and no label noise: every flag is false
    from tests.synthetic_classes import many_class_world

    world = many_class_world(600, 5, seed=21)
    paper = find_label_issues(world.given, world.probs, shrink_thresholds=False)
    shrunk = find_label_issues(world.given, world.probs)
    n_paper = int(paper[schema.IS_LABEL_ISSUE].sum())
    n_shrunk = int(shrunk[schema.IS_LABEL_ISSUE].sum())
    assert not world.flipped.any() and n_paper > 0.15 * len(world.given)
    assert n_shrunk < 0.5 * n_paper, (n_paper, n_shrunk)


def test_a_given_estimate_is_reused_and_checked():
    labels, probs, _, _ = noisy_problem()
    est = estimate_noise(labels, probs)
    a = find_label_issues(labels, probs)
    b = find_label_issues(labels, probs, estimate=est)
    pd.testing.assert_frame_equal(a, b)
    with pytest.raises(ValueError, match="estimate is of"):
        find_label_issues(labels[:-1], probs[:-1], estimate=est)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_blocked_scan_equals_the_definitions(monkeypatch, dtype):
    """The single pass over the probabilities (cache-sized blocks of rows; float32 thresholds
    rounded up) gives exactly the definitions: the guess is the most probable class at or above
    its threshold (lowest index on ties), the best other class the argmax with the given label
    masked. Blocks of 16 rows, ties, and probabilities exactly at a threshold included."""
    from analysis.data_issues import label_issues as li

    monkeypatch.setattr(li, "_SCAN_BYTES", 1)  # 16-row blocks: many blocks and a ragged last
    rng = np.random.default_rng(4)
    n, c = 203, 7
    probs = rng.dirichlet(np.full(c, 0.6), size=n).astype(dtype)
    probs[::9, :2] = probs[::9, :2].mean(axis=1, keepdims=True)  # exact ties
    labels = np.where(rng.random(n) < 0.8, probs.argmax(axis=1), rng.integers(0, c, n))
    # row 5 passes no threshold but class 3's, where it sits one step below or exactly at it
    # (a threshold rounded to float32 the wrong way would count the first as above)
    labels[5:7] = 0
    t = li._thresholds(labels, probs)
    probs[5:7] = (1 - t[3]) / (c - 1)
    t = li._thresholds(labels, probs)  # t[3] does not depend on rows labelled 0
    at = np.asarray(t[3], dtype=dtype)
    below = at if at < t[3] else np.nextafter(at, dtype(-1))
    probs[5, 3], probs[6, 3] = below, (at if at >= t[3] else np.nextafter(at, dtype(2)))
    others = np.delete(np.arange(c), 3)
    assert probs[5, 3] < t[3] <= probs[6, 3] and (probs[5:7, others] < t[others]).all()
    sc = li._scan(labels, probs, t, check=True)
    assert sc.guess[5] == -1 and sc.guess[6] == 3
    above = probs.astype(np.float64) >= t[None, :]
    want = np.where(above, probs, -np.inf).argmax(axis=1)
    np.testing.assert_array_equal(sc.guess, np.where(above.any(axis=1), want, -1))
    other = probs.astype(np.float64).copy()
    other[np.arange(n), labels] = -np.inf
    np.testing.assert_array_equal(sc.best_other, other.argmax(axis=1))
    np.testing.assert_array_equal(sc.best_other_prob, other.max(axis=1))
    # the values are checked in every block: a bad row far from the first block is named
    bad = probs.copy()
    bad[150] *= 2
    with pytest.raises(ValueError, match="row 150 sums to 2"):
        li._scan(labels, bad, t, check=True)


def test_the_estimate_is_sparse_and_its_dense_views_agree():
    """The estimate holds the confident joint's non-zero cells; the C x C matrices are built
    only when asked for (finding the issues and the noise table never build one: 800 MB each at
    10,000 classes), and the noise table read from the cells equals the one of the matrix."""
    from analysis.data_issues.label_checks import noise_entries
    from tests.synthetic_classes import many_class_world

    w = many_class_world(200, 8, seed=3, noise=0.1, group_size=5)
    est = estimate_noise(w.given, w.probs)
    table = find_label_issues(w.given, w.probs, estimate=est)
    entries = noise_entries(est)
    dense = {"confident_joint", "joint", "prune_counts", "noise_matrix", "inverse_noise_matrix"}
    assert not dense & set(vars(est)), dense & set(vars(est))  # none built so far
    assert len(est.cells) <= len(w.given) and table[schema.IS_LABEL_ISSUE].sum() > 0
    pd.testing.assert_frame_equal(entries, noise_entries(est.noise_matrix))
    cj = est.confident_joint
    assert cj.sum() == est.cell_counts.sum() and np.count_nonzero(cj) == len(est.cells)
    np.testing.assert_allclose(np.nansum(est.joint), 1.0)
    off = est.prune_counts - np.diag(np.diag(est.prune_counts))
    assert off.sum() == est.num_label_issues
    cols = ~np.isnan(est.noise_matrix).all(axis=0)
    np.testing.assert_allclose(est.noise_matrix[:, cols].sum(axis=0), 1.0)
