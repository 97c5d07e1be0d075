"""Tests of analysis.explain.embeddings: projections, clusters, the cluster table, nearest neighbours.

UMAP tests use ~300 points. The first UMAP call in a process pays numba compilation when the
machine-wide cache is cold (a minute or more on 2 cores); later processes load it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.explain import embeddings as E

# ----------------------------------------------------------------------------- fixtures


def _blobs(n=300, k=4, d=64, spread=0.25, seed=0):
    """k well-separated Gaussian blobs in d dims: (X float32 [n, d], y int [n])."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = np.arange(n) % k
    x = centres[y] + spread / np.sqrt(d) * rng.normal(size=(n, d))
    return x.astype(np.float32), y


def _knn_accuracy(xy, y, k=5):
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    return cross_val_score(KNeighborsClassifier(k), xy, y, cv=5).mean()


@pytest.fixture(scope="module")
def blobs():
    return _blobs()


@pytest.fixture(scope="module")
def umap_xy(blobs):
    x, _ = blobs
    return E.project_2d(x, seed=0)


# ----------------------------------------------------------------------------- project_2d


@pytest.mark.parametrize("method", sorted(E.PROJECTIONS))
def test_project_empty_and_single(method):
    out = E.project_2d(np.zeros((0, 8)), method=method)
    assert out.shape == (0, 2) and out.dtype == np.float32
    assert E.project_2d([], method=method).shape == (0, 2)
    one = E.project_2d(np.ones((1, 8)), method=method)
    assert one.shape == (1, 2) and np.all(one == 0)


@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_project_tiny_falls_back_to_pca_with_warning(method):
    x, _ = _blobs(n=10, k=2, d=8)
    with pytest.warns(UserWarning, match=f"{method} needs at least 20 points, got 10; using PCA"):
        out = E.project_2d(x, method=method)
    expected = E.project_2d(x, method="pca")
    np.testing.assert_allclose(out, expected, atol=1e-5)
    assert out.shape == (10, 2) and out.dtype == np.float32


def test_project_pca_of_two_points_and_one_feature():
    out = E.project_2d(np.array([[1.0, 0.0], [0.0, 1.0]]), method="pca")
    assert out.shape == (2, 2)
    assert abs(out[0, 0] - out[1, 0]) == pytest.approx(np.sqrt(2), abs=1e-5)
    flat = E.project_2d(np.array([[1.0], [2.0], [-1.0]]), method="pca")  # 1 feature: y = 0
    assert flat.shape == (3, 2) and np.all(flat[:, 1] == 0)


def test_project_umap_shape_dtype_and_separation(blobs, umap_xy):
    x, y = blobs
    assert umap_xy.shape == (len(x), 2) and umap_xy.dtype == np.float32
    assert np.isfinite(umap_xy).all()
    assert _knn_accuracy(umap_xy, y) > 0.95


def test_project_umap_is_deterministic_for_a_seed(blobs, umap_xy):
    x, _ = blobs
    again = E.project_2d(x, seed=0)
    assert np.array_equal(again, umap_xy)
    other = E.project_2d(x, seed=1)
    assert not np.array_equal(other, umap_xy)


def test_project_umap_n_epochs_changes_the_layout(blobs, umap_xy):
    x, y = blobs
    short = E.project_2d(x, seed=0, n_epochs=50)
    assert not np.array_equal(short, umap_xy)
    assert _knn_accuracy(short, y) > 0.95


def test_project_umap_reports_progress(blobs):
    x, _ = blobs
    messages = []
    E.project_2d(x[:60], seed=0, progress=messages.append)
    text = "\n".join(messages)
    assert "PCA" in text and "nearest neighbours" in text and "UMAP" in text
    assert "done in" in messages[-1]


def test_project_pca_separates_blobs(blobs):
    x, y = blobs
    xy = E.project_2d(x, method="pca", seed=0)
    assert xy.shape == (len(x), 2) and xy.dtype == np.float32
    assert _knn_accuracy(xy, y) > 0.95


def test_project_tsne_separates_blobs_and_is_deterministic():
    x, y = _blobs(n=120, k=3)
    xy = E.project_2d(x, method="tsne", seed=0)
    assert xy.shape == (120, 2) and xy.dtype == np.float32
    assert _knn_accuracy(xy, y) > 0.95
    assert np.array_equal(xy, E.project_2d(x, method="tsne", seed=0))


def test_project_uses_direction_not_length(blobs):
    x, _ = blobs
    scaled = x * np.linspace(0.5, 3.0, len(x), dtype=np.float32)[:, None]
    np.testing.assert_allclose(
        E.project_2d(scaled, method="pca"), E.project_2d(x, method="pca"), atol=1e-4
    )


def test_project_accepts_float16(blobs):
    x, y = blobs
    xy = E.project_2d(x.astype(np.float16), method="pca")
    assert xy.dtype == np.float32 and _knn_accuracy(xy, y) > 0.95


def test_project_validation():
    x = np.zeros((30, 4))
    with pytest.raises(ValueError, match="unknown projection method 'mds'; valid: pca, tsne, umap"):
        E.project_2d(x, method="mds")
    with pytest.raises(ValueError, match=r"embeddings must be 2-D \[N, D\], got shape \(3,\)"):
        E.project_2d(np.zeros(3))
    with pytest.raises(TypeError, match="embeddings must be a real array"):
        E.project_2d(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match=r"must be finite, got NaN or inf in 1 row\(s\)"):
        E.project_2d(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match="at least one feature column"):
        E.project_2d(np.zeros((3, 0)))
    with pytest.raises(TypeError, match="seed must be an int >= 0 or None"):
        E.project_2d(x, seed=1.5)
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        E.project_2d(x, seed=-1)
    with pytest.raises(ValueError, match="pca_dims must be >= 2, got 1"):
        E.project_2d(x, pca_dims=1)
    with pytest.raises(ValueError, match="n_neighbors must be >= 2, got 1"):
        E.project_2d(x, n_neighbors=1)
    with pytest.raises(ValueError, match=r"min_dist must be in \[0, 1\], got 2"):
        E.project_2d(x, min_dist=2)
    with pytest.raises(TypeError, match="min_dist must be a float"):
        E.project_2d(x, min_dist="0.1")
    with pytest.raises(ValueError, match="n_epochs must be >= 1, got 0"):
        E.project_2d(x, n_epochs=0)
    with pytest.raises(TypeError, match="progress must be a callable"):
        E.project_2d(x, progress="print")
    with pytest.raises(ValueError, match="method='tsne' is limited to 10,000 points"):
        E.project_2d(np.zeros((E.TSNE_MAX_POINTS + 1, 2)), method="tsne")


# ----------------------------------------------------------------------------- numba cache


def test_numba_cache_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("ERRORSCOPE_CACHE", raising=False)
    assert E._numba_cache_dir() == Path.home() / ".cache" / "errorscope" / "numba"
    monkeypatch.setenv("ERRORSCOPE_CACHE", str(tmp_path))
    assert E._numba_cache_dir() == tmp_path / "numba"


def test_configure_numba_cache_sets_env_and_respects_user_setting(monkeypatch, tmp_path):
    monkeypatch.setenv("ERRORSCOPE_CACHE", str(tmp_path / "c"))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert E._configure_numba_cache() == str(tmp_path / "c" / "numba")
    assert os.environ["NUMBA_CACHE_DIR"] == str(tmp_path / "c" / "numba")
    assert (tmp_path / "c" / "numba").is_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert E._configure_numba_cache() == str(tmp_path / "mine")


def test_configure_numba_cache_unwritable_keeps_numba_default(monkeypatch, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ERRORSCOPE_CACHE", str(blocker))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    assert E._configure_numba_cache() is None
    assert "NUMBA_CACHE_DIR" not in os.environ


def _fresh_process(code: str) -> str:
    env = dict(os.environ)
    env.pop("NUMBA_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_import_umap_sets_cache_before_numba_loads():
    """In a fresh process: NUMBA_CACHE_DIR is in place when numba reads its config, and every
    jitted function of umap and pynndescent has a disk cache and a stable id (the private numba
    internals this relies on still work: a numba upgrade that breaks them fails here).

    Uses the machine's own cache folder (an empty one would recompile for a minute).
    """
    code = (
        "import sys; from analysis.explain import embeddings as E\n"
        "assert 'numba' not in sys.modules and 'umap' not in sys.modules\n"
        "E._import_umap()\n"
        "import importlib, numba.core.config as c\n"
        "from numba.core.dispatcher import Dispatcher\n"
        "print(c.CACHE_DIR == str(E._numba_cache_dir()))\n"
        "print(len(E.NUMBA_CACHE_FAILURES))\n"
        "bad = [f'{m}.{a}' for m in E._NUMBA_MODULES\n"
        "       for a, d in vars(importlib.import_module(m)).items()\n"
        "       if isinstance(d, Dispatcher) and d.py_func.__module__ == m\n"
        "       and (type(d._cache).__name__ != 'FunctionCache'\n"
        "            or not str(d._uuid).startswith(E._STABLE_ID_PREFIX))]\n"
        "print(len(bad), bad[:3])\n"
        "import pynndescent.pynndescent_ as p\n"
        "print(p.process_candidates._uuid)\n"
    )
    lines = _fresh_process(code).splitlines()
    assert lines[0] == "True"
    assert lines[1] == "0"  # nothing failed
    assert lines[2] == "0 []", lines[2]  # every jitted function: cached, stable id
    assert lines[3] == "errorscope-stable:pynndescent.pynndescent_.process_candidates"


def test_a_new_process_compiles_nothing_for_the_embedding_map():
    """Two fresh processes draw an embedding map; the second finds all of umap's compiled code
    in the cache (hits, no miss). Without the stable ids and caching above it compiles again."""
    code = (
        "import numpy as np; from analysis.explain import embeddings as E\n"
        "umap = E._import_umap()\n"
        "import importlib; from numba.core.dispatcher import Dispatcher\n"
        "ds = [d for m in E._NUMBA_MODULES for d in vars(importlib.import_module(m)).values()\n"
        "      if isinstance(d, Dispatcher)]\n"
        "def count(): return (sum(sum(d.stats.cache_hits.values()) for d in ds),\n"
        "                     sum(sum(d.stats.cache_misses.values()) for d in ds))\n"
        "h0, m0 = count()  # functions jitted with a signature compile at import, before caching\n"
        "E.project_2d(np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32), seed=0)\n"
        "h1, m1 = count()\n"
        "print(h1 - h0, m1 - m0)\n"
    )
    _fresh_process(code)  # fills the cache if this machine's is cold
    hits, misses = (int(x) for x in _fresh_process(code).split())
    assert hits > 0 and misses == 0, (hits, misses)


# ----------------------------------------------------------------------------- clusters


@pytest.mark.parametrize("method", sorted(E.CLUSTERINGS))
def test_cluster_empty_and_single(method):
    out = E.cluster_embeddings(np.zeros((0, 8)), method=method)
    assert out.shape == (0,) and out.dtype == np.int64
    assert E.cluster_embeddings(np.ones((1, 8)), method=method).tolist() == [0]


def test_cluster_tiny_sets_form_one_cluster():
    x, _ = _blobs(n=7, k=2, d=8)
    assert E.cluster_embeddings(x).tolist() == [0] * 7


def test_cluster_kmeans_auto_k_recovers_blobs(blobs):
    from sklearn.metrics import adjusted_rand_score

    x, y = blobs
    labels = E.cluster_embeddings(x, seed=0)
    assert labels.dtype == np.int64 and labels.shape == y.shape
    assert np.unique(labels).size == 4
    assert adjusted_rand_score(y, labels) > 0.9
    assert np.array_equal(labels, E.cluster_embeddings(x, seed=0))


def test_cluster_kmeans_given_k_and_numbered_by_size():
    from sklearn.metrics import adjusted_rand_score

    x, y = _blobs(n=300, k=3, d=32)
    keep = (y != 2) | (np.arange(len(y)) % 2 == 0)  # blob 2 is the smallest, blob 0/1 tie
    labels = E.cluster_embeddings(x[keep], n_clusters=3)
    assert adjusted_rand_score(y[keep], labels) > 0.9
    sizes = np.bincount(labels)
    assert list(sizes) == sorted(sizes, reverse=True)
    assert labels[y[keep] == 2][0] == 2  # the smallest blob is cluster 2


def test_cluster_hdbscan_recovers_blobs(blobs):
    from sklearn.metrics import adjusted_rand_score

    x, y = blobs
    labels = E.cluster_embeddings(x, method="hdbscan")
    clustered = labels >= 0
    assert clustered.mean() > 0.8
    assert adjusted_rand_score(y[clustered], labels[clustered]) > 0.9


def test_relabel_by_size_keeps_noise():
    out = E._relabel_by_size(np.array([5, 5, -1, 2, 2, 2, 9]))
    assert out.tolist() == [1, 1, -1, 0, 0, 0, 2]


def test_cluster_validation():
    x = np.zeros((10, 4))
    with pytest.raises(
        ValueError, match="unknown clustering method 'dbscan'; valid: hdbscan, kmeans"
    ):
        E.cluster_embeddings(x, method="dbscan")
    with pytest.raises(ValueError, match="n_clusters must be >= 1, got 0"):
        E.cluster_embeddings(x, n_clusters=0)
    with pytest.raises(TypeError, match="n_clusters must be an int >= 1 or None"):
        E.cluster_embeddings(x, n_clusters=2.0)
    with pytest.raises(ValueError, match="n_clusters=11 exceeds the number of images N=10"):
        E.cluster_embeddings(x, n_clusters=11)
    with pytest.raises(ValueError, match="n_clusters must be None for method='hdbscan', got 3"):
        E.cluster_embeddings(x, method="hdbscan", n_clusters=3)
    with pytest.raises(TypeError, match="seed must be an int >= 0, got None"):
        E.cluster_embeddings(x, seed=None)


# ----------------------------------------------------------------------------- cluster table

NAMES = ["cross", "star", "circle"]


def _samples(rows):
    """rows: (cluster, label, pred) triples."""
    c, lab, pred = (np.array(v) for v in zip(*rows, strict=True)) if rows else ([], [], [])
    return pd.DataFrame(
        {
            schema.CLUSTER: np.asarray(c, dtype=np.int64),
            schema.LABEL: np.asarray(lab, dtype=np.int64),
            schema.PRED: np.asarray(pred, dtype=np.int64),
            schema.CORRECT: np.asarray(lab, dtype=np.int64) == np.asarray(pred, dtype=np.int64),
        }
    )


def test_cluster_table_empty():
    table = E.cluster_table(_samples([]), class_names=NAMES)
    assert list(table.columns) == E.CLUSTER_TABLE_COLUMNS and len(table) == 0
    assert table[E.SIZE].dtype == np.int64 and table[E.ERROR_RATE].dtype == np.float64


def test_cluster_table_numbers_on_a_hand_made_table():
    rows = (
        # cluster 0: 30 images, 27 cross + 3 star; 20 crosses predicted star, the stars correct
        [(0, 0, 0)] * 7
        + [(0, 0, 1)] * 20
        + [(0, 1, 1)] * 3
        # cluster 1: 2 images, both wrong (2/2): a higher rate, but tiny: must not top the list
        + [(1, 2, 0)] * 2
        # cluster 2: 20 circles, all correct
        + [(2, 2, 2)] * 20
        # unclustered: 3 wrong
        + [(-1, 1, 2)] * 3
    )
    table = E.cluster_table(_samples(rows), class_names=NAMES)
    assert table[E.CLUSTER].tolist() == [0, 1, 2, -1]  # by lower bound; -1 last
    first = table.iloc[0]
    assert (first[E.SIZE], first[E.ERRORS]) == (30, 20)
    assert first[E.ERROR_RATE] == pytest.approx(2 / 3)
    # Wilson 95% for 20/30, by hand: centre 0.64775, half-width 0.15995
    assert first[E.ERROR_RATE_LOW] == pytest.approx(0.4878, abs=1e-4)
    assert first[E.ERROR_RATE_HIGH] == pytest.approx(0.8077, abs=1e-4)
    assert (first[E.DOMINANT_LABEL], first[E.DOMINANT_LABEL_NAME]) == (0, "cross")
    assert first[E.DOMINANT_LABEL_SHARE] == pytest.approx(0.9)
    assert (first[E.DOMINANT_PRED], first[E.DOMINANT_PRED_NAME]) == (1, "star")
    assert first[E.DOMINANT_PRED_SHARE] == pytest.approx(23 / 30)
    assert (first[E.TOP_ERROR_PRED], first[E.TOP_ERROR_PRED_NAME]) == (1, "star")
    assert first[E.TOP_ERROR_PRED_SHARE] == pytest.approx(20 / 30)
    assert first[E.DESCRIPTION] == "mostly cross (90%); 67% wrong, most often predicted as star"
    tiny = table.iloc[1]
    assert tiny[E.ERROR_RATE] == 1.0 and tiny[E.ERROR_RATE_LOW] == pytest.approx(0.3424, abs=1e-4)
    assert tiny[E.DESCRIPTION] == "mostly circle (100%); 100% wrong, most often predicted as cross"
    clean = table.iloc[2]
    assert clean[E.ERRORS] == 0 and clean[E.ERROR_RATE_LOW] == pytest.approx(0.0)
    assert (clean[E.TOP_ERROR_PRED], clean[E.TOP_ERROR_PRED_NAME]) == (-1, "")
    assert clean[E.DESCRIPTION] == "mostly circle (100%), no errors"
    assert table.iloc[3][E.DESCRIPTION] == (
        "unclustered: mostly star (100%); 100% wrong, most often predicted as circle"
    )


def test_cluster_table_mixed_cluster_and_ties():
    rows = [(0, 0, 0), (0, 1, 1), (0, 2, 2), (0, 2, 0)]  # labels 0,1,2,2: circle 50%
    table = E.cluster_table(_samples(rows), class_names=NAMES)
    assert (
        table.iloc[0][E.DESCRIPTION]
        == "mostly circle (50%); 25% wrong, most often predicted as cross"
    )
    rows = [(0, 0, 0), (0, 1, 1), (0, 2, 2)]  # a three-way tie: lowest class index
    table = E.cluster_table(_samples(rows), class_names=NAMES)
    assert table.iloc[0][E.DESCRIPTION] == "mixed, largest cross (33%), no errors"


def test_cluster_description_when_errors_are_predicted_as_its_own_class():
    """19 crosses and one star predicted cross: 'mostly cross (95%), 5% predicted cross' read as
    a contradiction; the wrong ones are the other classes."""
    rows = [(0, 0, 0)] * 19 + [(0, 1, 0)]
    table = E.cluster_table(_samples(rows), class_names=NAMES)
    assert table.iloc[0][E.DESCRIPTION] == (
        "mostly cross (95%); 5% wrong, mostly other classes predicted as cross"
    )


def test_cluster_table_round_trips_through_parquet(tmp_path):
    rows = [(0, 0, 1), (0, 0, 0), (1, 2, 2)]
    table = E.cluster_table(_samples(rows), class_names=NAMES)
    table.to_parquet(tmp_path / schema.CLUSTERS)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / schema.CLUSTERS), table)


def test_cluster_table_validation():
    good = _samples([(0, 0, 1)])
    with pytest.raises(TypeError, match="samples must be a pandas DataFrame, got dict"):
        E.cluster_table({}, class_names=NAMES)
    with pytest.raises(TypeError, match="class_names must be a sequence of str, got str"):
        E.cluster_table(good, class_names="cross")
    with pytest.raises(ValueError, match=r"samples is missing column\(s\) \['cluster'\]"):
        E.cluster_table(good.drop(columns=[schema.CLUSTER]), class_names=NAMES)
    with pytest.raises(ValueError, match=r"column 'pred' must hold class indices 0..0"):
        E.cluster_table(good, class_names=["cross"])
    bad = good.assign(**{schema.CLUSTER: [0.5]})
    with pytest.raises(ValueError, match="column 'cluster' must hold integers, got dtype float64"):
        E.cluster_table(bad, class_names=NAMES)
    bad = good.assign(**{schema.CORRECT: ["yes"]})
    with pytest.raises(ValueError, match="column 'correct' must be bool"):
        E.cluster_table(bad, class_names=NAMES)
    bad = good.assign(**{schema.CLUSTER: [-2]})
    with pytest.raises(ValueError, match="column 'cluster' must be >= -1, got -2"):
        E.cluster_table(bad, class_names=NAMES)
    bad = good.assign(**{schema.LABEL: pd.array([None], dtype="Int64")})
    with pytest.raises(ValueError, match="column 'label' must not contain missing values"):
        E.cluster_table(bad, class_names=NAMES)
    bad = good.assign(**{schema.CORRECT: pd.array([None], dtype="boolean")})
    with pytest.raises(ValueError, match="column 'correct' must not contain missing values"):
        E.cluster_table(bad, class_names=NAMES)
    with pytest.raises(TypeError, match="cluster_column must be a str, got int"):
        E.cluster_table(good, class_names=NAMES, cluster_column=3)
    renamed = good.rename(columns={schema.CLUSTER: "kmeans_cluster"})
    table = E.cluster_table(renamed, class_names=NAMES, cluster_column="kmeans_cluster")
    assert table[E.CLUSTER].tolist() == [0]


# ----------------------------------------------------------------------------- neighbours


def test_neighbour_index_empty():
    index = E.NeighbourIndex(np.zeros((0, 3)))
    idx, sim = index.query(np.ones((2, 3)), k=2)
    assert idx.tolist() == [[-1, -1], [-1, -1]] and np.isnan(sim).all()
    idx, sim = E.NeighbourIndex(np.ones((4, 3))).query(np.zeros((0, 3)), k=2)
    assert idx.shape == (0, 2) and sim.shape == (0, 2)


def test_neighbour_query_finds_planted_point_and_excludes_self():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 16)).astype(np.float32)
    x[17] = 3.0 * x[4] + 0.01 * rng.normal(size=16)  # 17 is 4's planted neighbour (any length)
    index = E.NeighbourIndex(x)
    idx, sim = index.query(x, k=3)  # the same array: self-matches excluded
    assert idx.shape == (50, 3) and idx.dtype == np.int64 and sim.dtype == np.float32
    assert idx[4, 0] == 17 and idx[17, 0] == 4
    assert sim[4, 0] > 0.99
    assert not (idx == np.arange(50)[:, None]).any()
    assert (np.diff(sim, axis=1) <= 0).all()  # most similar first
    # a copy is another set of vectors: each row finds itself first, similarity 1
    idx_copy, sim_copy = index.query(x.copy(), k=1)
    assert idx_copy[:, 0].tolist() == list(range(50))
    np.testing.assert_allclose(sim_copy[:, 0], 1.0, atol=1e-5)
    # agrees with brute-force cosine
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    full = xn @ xn.T
    np.fill_diagonal(full, -np.inf)
    np.testing.assert_array_equal(idx[:, 0], full.argmax(axis=1))


def test_neighbour_query_pads_when_k_exceeds_the_set_and_breaks_ties_by_index():
    x = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    index = E.NeighbourIndex(x)
    idx, sim = index.neighbours_of([0], k=5)
    assert idx[0].tolist() == [1, 2, -1, -1, -1]
    np.testing.assert_allclose(sim[0, :2], [1.0, 0.0], atol=1e-6)
    assert np.isnan(sim[0, 2:]).all()
    idx, _ = index.query(np.array([1.0, 0.0]), k=2)  # one vector, 1-D: ties -> lower index first
    assert idx.tolist() == [[0, 1]]
    idx, _ = index.query(np.array([[1.0, 0.0]]), k=2, exclude=[0])
    assert idx.tolist() == [[1, 2]]


def test_neighbour_index_vector_is_the_normalised_row():
    index = E.NeighbourIndex(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(index.vector(0), [0.6, 0.8])
    assert index.vector(1).tolist() == [0.0, 0.0] and len(index) == 2 and index.dim == 2


def test_neighbour_query_blocks_give_the_same_answer():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8))
    index = E.NeighbourIndex(x)
    expected = index.query(x, k=4)
    index.block_elements = 7  # one query per block
    got = index.query(x, k=4)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_allclose(got[1], expected[1], atol=1e-6)


def test_neighbours_for_eval_and_reference():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 8))
    ref = rng.normal(size=(20, 8))
    ref[11] = x[5] * 2.0  # the planted reference neighbour of image 5
    x[9] = x[5] + 1e-3  # the planted evaluation neighbour of image 5
    out = E.neighbours_for(x, 5, k=3, reference_embeddings=ref)
    assert out.index == 5
    assert out.eval_indices[0] == 9 and 5 not in out.eval_indices
    assert out.reference_indices[0] == 11
    assert out.reference_similarities[0] == pytest.approx(1.0, abs=1e-5)
    assert out.eval_indices.shape == out.reference_indices.shape == (3,)
    # prebuilt indexes give the same answer
    again = E.neighbours_for(
        E.NeighbourIndex(x), 5, k=3, reference_embeddings=E.NeighbourIndex(ref)
    )
    np.testing.assert_array_equal(again.eval_indices, out.eval_indices)
    np.testing.assert_array_equal(again.reference_indices, out.reference_indices)
    alone = E.neighbours_for(x, 5, k=3)
    assert alone.reference_indices.shape == (0,) and alone.reference_similarities.shape == (0,)


def test_neighbour_validation():
    x = np.ones((5, 3))
    index = E.NeighbourIndex(x)
    with pytest.raises(
        ValueError, match=r"vectors must have 3 features like the index, got \(1, 4\)"
    ):
        index.query(np.ones((1, 4)))
    with pytest.raises(ValueError, match="k must be >= 1, got 0"):
        index.query(x, k=0)
    with pytest.raises(ValueError, match=r"exclude must be ints of shape \(5,\)"):
        index.query(x, exclude=[0])
    with pytest.raises(ValueError, match=r"exclude must hold rows in -1..4"):
        index.query(x, exclude=[0, 1, 2, 3, 9])
    with pytest.raises(ValueError, match=r"rows must be in 0..4, got \[0, 5\]"):
        index.neighbours_of([0, 5])
    with pytest.raises(ValueError, match="rows must be a 1-D array of ints, got float64"):
        index.neighbours_of([0.5])
    with pytest.raises(ValueError, match=r"i must be < 5 \(the indexed set's size\), got 5"):
        index.vector(5)
    with pytest.raises(ValueError, match="i must be < 5 .the number of evaluation images., got 5"):
        E.neighbours_for(x, 5)
    with pytest.raises(
        ValueError, match="reference_embeddings have 2 features but embeddings have 3"
    ):
        E.neighbours_for(x, 0, reference_embeddings=np.ones((2, 2)))
    with pytest.raises(TypeError, match="i must be an int >= 0"):
        E.neighbours_for(x, "0")


# ----------------------------------------------------------------------------- import hygiene


def test_import_is_light():
    code = (
        "import sys, analysis.explain.embeddings\n"
        "heavy = [m for m in ('umap', 'numba', 'torch', 'sklearn', 'streamlit', 'plotly')"
        " if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_no_warnings_from_a_plain_umap_run(blobs):
    x, _ = blobs
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        out = E.project_2d(x[:100], seed=3)
    assert out.shape == (100, 2)


# ----------------------------------------------------------------------------- embedding_map


def test_embedding_map_below_the_fit_limit_is_project_2d_and_cluster_embeddings(blobs, umap_xy):
    x, _ = blobs
    m = E.embedding_map(x, seed=0)
    assert not m.sampled and m.fitted.tolist() == list(range(len(x)))
    np.testing.assert_array_equal(m.xy, umap_xy)
    np.testing.assert_array_equal(m.clusters, E.cluster_embeddings(x, seed=0))
    assert m.to_dict()["how"].startswith("UMAP and k-means fitted on all 300 images")
    assert E.embedding_map(x, umap=False).xy is None


def test_embedding_map_above_the_fit_limit_fits_a_stratified_sample_and_places_the_rest():
    x, y = _blobs(n=1200, k=4, seed=3)
    strata = y * 2 + (np.arange(1200) % 10 == 0)  # a rare "wrong" stratum per class
    m = E.embedding_map(x.astype(np.float16), strata=strata, fit_max=240, seed=0)
    assert m.sampled and m.xy.shape == (1200, 2) and np.isfinite(m.xy).all()
    assert 240 <= len(m.fitted) <= 240 + 8 * E.STRATUM_FLOOR
    # every stratum is in the sample, the rare ones with at least min(size, floor) rows
    for st, count in zip(*np.unique(strata, return_counts=True), strict=True):
        assert (strata[m.fitted] == st).sum() >= min(count, E.STRATUM_FLOOR) or count > 200
    # placed points land among their own blob; clusters follow the blobs
    assert _knn_accuracy(m.xy, y) > 0.95
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(y, m.clusters) > 0.95
    d = m.to_dict()
    assert d["n"] == 1200 and d["n_fitted"] == len(m.fitted) and "stratified sample" in d["how"]


def test_stratified_sample_is_proportional_with_a_floor():
    strata = np.r_[np.zeros(10_000, int), np.ones(100, int), np.full(5, 2)]
    rows = E.stratified_sample(strata, 1000, seed=1)
    assert (np.diff(rows) > 0).all()
    counts = np.bincount(strata[rows], minlength=3)
    assert counts[0] == 989  # floor(10,000 * 1,000 / 10,105): its proportional share
    assert counts[1] == E.STRATUM_FLOOR and counts[2] == 5  # the floor; all of a tiny one
    np.testing.assert_array_equal(rows, E.stratified_sample(strata, 1000, seed=1))
    assert len(E.stratified_sample(strata, 20_000)) == len(strata)


def test_nearest_rows_are_the_neighbour_index_answers():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(60, 8)).astype(np.float16)
    ref = rng.normal(size=(40, 8)).astype(np.float16)
    own, r = E.nearest_rows(x, ref, k=4)
    assert own.dtype == np.int32 and own.shape == (60, 4) and r.shape == (60, 4)
    np.testing.assert_array_equal(own, E.NeighbourIndex(x).neighbours_of(np.arange(60), 4)[0])
    np.testing.assert_array_equal(r, E.NeighbourIndex(ref).query(x, 4)[0])
    assert E.nearest_rows(x, k=2)[1] is None
    sims = E.cosine_to(x, 3, own[3], None)
    want = E.NeighbourIndex(x).neighbours_of([3], 4)[1][0]
    np.testing.assert_allclose(sims, want, atol=1e-3)
    assert np.isnan(E.cosine_to(x, 3, np.array([-1, own[3, 0]]))[0])
