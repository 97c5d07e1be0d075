"""Tests for analysis.stats.neighbours: the one nearest-neighbour path (faiss), exact and IVF."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import pairwise_distances

from analysis.stats import neighbours as N
from analysis.stats.neighbours import knn


def brute(q, b, k, *, metric="cosine", exclude=None):
    """Reference top-k with scikit-learn distances; ties to the lower index."""
    q = np.asarray(q, np.float64)
    b = np.asarray(b, np.float64)
    if metric == "cosine":
        key = pairwise_distances(q, b, metric="cosine")  # 1 - cosine
    else:
        key = pairwise_distances(q, b)
    if exclude is not None:
        for r, e in enumerate(exclude):
            if e >= 0:
                key[r, e] = np.inf
    cols = np.arange(b.shape[0])
    idx = np.array([np.lexsort((cols, row))[:k] for row in key])
    return idx


def clustered(n, d=32, seed=0, centres=20, latent=6):
    """Rows around a few centres on a low-dimensional manifold (like classifier embeddings:
    high nominal, low intrinsic dimension), not isotropic noise in d dimensions."""
    rng = np.random.default_rng(0)  # one world for every seed: shared centres and directions
    c = rng.standard_normal((centres, d)) * 3
    w = rng.standard_normal((latent, d))
    r = np.random.default_rng(seed)
    z = r.standard_normal((n, latent))
    x = c[r.integers(0, centres, n)] + z @ w + 0.05 * r.standard_normal((n, d))
    return x.astype(np.float32)


def test_empty_inputs():
    res = knn(np.zeros((0, 3)), np.ones((4, 3)), k=2)
    assert res.indices.shape == (0, 2) and res.scores.shape == (0, 2)
    res = knn(np.ones((2, 3)), np.zeros((0, 3)), k=2)
    assert res.indices.tolist() == [[-1, -1], [-1, -1]] and np.isnan(res.scores).all()
    assert knn(np.ones((1, 3)), k=1).indices.tolist() == [[-1]]  # nothing but itself


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("block_rows", [1, 7, 4096])
def test_exact_matches_scikit_learn_whatever_the_blocks(metric, block_rows):
    rng = np.random.default_rng(1)
    q = rng.standard_normal((60, 8)).astype(np.float32)
    b = rng.standard_normal((90, 8)).astype(np.float16)  # a run stores float16
    res = knn(q, b, k=5, metric=metric, block_rows=block_rows, method="exact")
    assert res.method == "exact" and res.metric == metric
    assert res.indices.dtype == np.int64 and res.scores.dtype == np.float32
    np.testing.assert_array_equal(res.indices, brute(q, b.astype(np.float32), 5, metric=metric))
    bf = b.astype(np.float64)
    if metric == "cosine":
        want = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (
            bf / np.linalg.norm(bf, axis=1, keepdims=True)
        ).T
    else:
        want = pairwise_distances(q, bf)
    got = np.take_along_axis(want, res.indices, axis=1)
    np.testing.assert_allclose(res.scores, got, atol=2e-5)


def test_small_base_chunks_give_the_same_answer(monkeypatch):
    rng = np.random.default_rng(2)
    q, b = rng.standard_normal((40, 6)), rng.standard_normal((70, 6))
    whole = knn(q, b, k=4)
    monkeypatch.setattr(N, "BASE_CHUNK_BYTES", 4 * 6 * 9)  # 9 base rows per chunk
    np.testing.assert_array_equal(knn(q, b, k=4).indices, whole.indices)


def test_self_search_excludes_each_row_and_ties_go_to_the_lower_row():
    x = np.zeros((15, 4), np.float32)
    x[:12, 0] = 1.0  # 12 identical rows: similarity 1.0 everywhere, a tie
    x[12:, 1:] = np.eye(3)
    for block_rows in (1, 5, 100):
        res = knn(x, k=2, block_rows=block_rows)
        assert res.indices[:4].tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]
        assert res.indices[11].tolist() == [0, 1]
    np.testing.assert_allclose(res.scores[:12], 1.0, atol=1e-6)


def test_exclude_and_padding_when_k_exceeds_the_base():
    b = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    res = knn(np.array([[1.0, 0.0]]), b, k=5, exclude=[0])
    assert res.indices[0].tolist() == [1, 2, -1, -1, -1]
    np.testing.assert_allclose(res.scores[0, :2], [1.0, 0.0], atol=1e-6)
    assert np.isnan(res.scores[0, 2:]).all()


def test_zero_rows_are_similar_to_nothing():
    x = np.zeros((3, 4), np.float32)
    x[0] = [1, 0, 0, 0]
    res = knn(x, k=2)
    np.testing.assert_allclose(res.scores, 0.0)


def test_inputs_are_not_modified_and_float16_memmaps_work(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 5)).astype(np.float32)
    before = x.copy()
    knn(x, x, k=3)
    np.testing.assert_array_equal(x, before)
    np.save(tmp_path / "e.npy", x.astype(np.float16))
    mm = np.load(tmp_path / "e.npy", mmap_mode="r")
    np.testing.assert_array_equal(knn(mm, k=3).indices, knn(x.astype(np.float16), k=3).indices)


def test_ivf_finds_planted_copies_and_its_scores_are_exact():
    """The approximate index on clustered data: every planted copy is found, and what is
    returned is re-scored from float16 rows (exact to ~1e-3; which rows are found may differ
    from exact search)."""
    rng = np.random.default_rng(4)
    base = clustered(6000, d=48, seed=5)
    q = clustered(800, d=48, seed=6)
    src = rng.choice(6000, 100, replace=False)
    q[:100] = base[src] + 0.05 * rng.standard_normal((100, 48)).astype(np.float32)
    res = knn(q, base, k=5, method="ivf")
    assert res.method == "ivf"
    assert (res.indices[:100, 0] == src).all()
    bn = base / np.linalg.norm(base, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    exact_scores = np.einsum("qd,qkd->qk", qn, bn[res.indices])
    np.testing.assert_allclose(res.scores, exact_scores, atol=2e-3)
    assert (np.diff(res.scores, axis=1) <= 0).all()  # nearest first
    exact = knn(q, base, k=5, method="exact")
    recall = np.mean(
        [len(set(a) & set(b)) / 5 for a, b in zip(res.indices, exact.indices, strict=True)]
    )
    assert recall > 0.9


def test_ivf_self_search_never_returns_the_query():
    x = clustered(5000, d=16, seed=7)
    res = knn(x, k=3, method="ivf")
    assert not (res.indices == np.arange(5000)[:, None]).any()
    assert (res.indices >= 0).all()


def test_auto_switches_to_the_index_above_the_work_limit(monkeypatch):
    x = clustered(3000, d=8, seed=8)
    assert knn(x, k=2).method == "exact"
    monkeypatch.setattr(N, "EXACT_MAX_WORK", 1000.0)
    assert knn(x, k=2).method == "ivf"
    assert knn(x[:100], k=2).method == "exact"  # too small a base to train an index on


def test_validation():
    x = np.ones((4, 3))
    with pytest.raises(ValueError, match=r"queries have 3 features but base has 2"):
        knn(x, np.ones((2, 2)), k=1)
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        knn(x, k=0)
    with pytest.raises(TypeError, match="k must be a positive int, got float"):
        knn(x, k=1.5)
    with pytest.raises(ValueError, match="unknown metric 'l1'; valid: cosine, euclidean"):
        knn(x, k=1, metric="l1")
    with pytest.raises(ValueError, match="unknown method 'hnsw'; valid: auto, exact, ivf"):
        knn(x, k=1, method="hnsw")
    with pytest.raises(ValueError, match=r"exclude must be ints of shape \(4,\)"):
        knn(x, x, k=1, exclude=[0])
    with pytest.raises(ValueError, match=r"exclude must hold base rows in -1..3"):
        knn(x, x, k=1, exclude=[0, 1, 2, 9])
    with pytest.raises(ValueError, match="queries must be finite"):
        knn(np.array([[np.nan, 1.0]]), k=1)
    with pytest.raises(ValueError, match=r"queries must be 2-D \[N, D\], got shape \(3,\)"):
        knn(np.ones(3), k=1)
    with pytest.raises(TypeError, match="base must be a real array"):
        knn(x, np.array([["a", "b", "c"]]), k=1)
