"""Embeddings: a 2-D map (UMAP), clusters, a cluster table and nearest neighbours.

Every function takes the penultimate-layer embeddings ``[N, D]`` (``embeddings.npy``, float16 on
disk; any real dtype is accepted) and treats them by *direction*: rows are L2-normalised first, so
Euclidean distance between rows is a monotone function of their cosine similarity. Before UMAP,
t-SNE and clustering the normalised rows are reduced to ``pca_dims`` (50) dimensions by PCA, which
keeps the neighbourhoods that matter and makes the nearest-neighbour graph several times cheaper.

Projections are a registry, :data:`PROJECTIONS` (``"umap"``, ``"pca"``, ``"tsne"``), and so are
clusterings, :data:`CLUSTERINGS` (``"kmeans"``, ``"hdbscan"``).

Numba compilation is paid once per machine
------------------------------------------
umap-learn and pynndescent are numba code. Compiling it costs about a minute of CPU the first time,
and by default much of it is compiled again in every new process, for three reasons that
:func:`_import_umap` removes:

1. Only some of pynndescent's functions ask numba to cache their machine code, and none of
   umap's own do. We turn caching on for every module-level jitted function of both packages.
2. Numba's cache cannot find a function again in a new process when it takes another jitted
   function as an argument (pynndescent passes its distance functions around): the argument's type
   includes a random per-process id of the passed function (numba issue #6264). We give those
   functions stable ids, so the cache key is the same in every process.
3. The cache must live somewhere writable and shared by every run: we point ``NUMBA_CACHE_DIR`` at
   ``$ERRORSCOPE_CACHE/numba`` (default ``~/.cache/errorscope/numba``) before numba is imported,
   unless ``NUMBA_CACHE_DIR`` is already set. If the folder cannot be created numba falls back to
   its own default locations.

Two of pynndescent's functions (``nn_descent`` and ``nn_descent_internal``) embed a
process-specific pointer and can never be cached; they cost 10-20 s in each new process that runs
NN-descent. To avoid that whenever it is cheap, the k-nearest-neighbour graph of up to
:data:`EXACT_KNN_MAX` points is computed exactly by scikit-learn (a blocked matrix product) and
handed to UMAP, and NN-descent only runs for larger sets.

Measured on 2 shared cores (bench/bench_umap.py, 512-d, bench/results/umap.json): with an empty
cache, importing umap took 42 s and the first 10k map 32 s; with the machine's cache, 5.5 s and
26 s. 100k points, map + clusters: 141 s in a new process, 126 s in a warm one.
"""

from __future__ import annotations

import importlib
import math
import numbers
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..checks import check_embeddings, check_int, check_seed
from ..stats.intervals import wilson_interval

__all__ = [
    "CLUSTERINGS",
    "CLUSTER_TABLE_COLUMNS",
    "EXACT_KNN_MAX",
    "NeighbourIndex",
    "Neighbours",
    "PROJECTIONS",
    "cluster_embeddings",
    "cluster_table",
    "neighbours_for",
    "project_2d",
]

Progress = Callable[[str], Any]

#: Sets up to this many points get an exact k-NN graph (scikit-learn); larger ones NN-descent.
EXACT_KNN_MAX = 20_000
#: Below this many points UMAP and t-SNE are meaningless; PCA is used instead, with a warning.
MIN_POINTS_NONLINEAR = 20
#: t-SNE (scikit-learn, Barnes-Hut) takes minutes beyond this; use UMAP.
TSNE_MAX_POINTS = 10_000
#: Above this many points k-means runs as MiniBatchKMeans.
MINIBATCH_KMEANS_MIN = 50_000
#: Automatic k: largest k tried, and the subsample size the silhouette is computed on.
AUTO_K_MAX = 30
AUTO_K_SUBSAMPLE = 3_000

_CACHE_ENV = "ERRORSCOPE_CACHE"
_NUMBA_MODULES = (
    "umap.umap_",
    "umap.layouts",
    "umap.spectral",
    "umap.utils",
    "umap.distances",
    "pynndescent.pynndescent_",
    "pynndescent.rp_trees",
    "pynndescent.utils",
    "pynndescent.distances",
    "pynndescent.graph_utils",
    "pynndescent.hybrid_forest",
    "pynndescent.kernels",
)
_STABLE_ID_PREFIX = "errorscope-stable:"
_numba_patched = False

# Columns of the cluster table (schema.CLUSTERS).
CLUSTER = schema.CLUSTER  # int cluster id; -1 = unclustered (HDBSCAN noise)
SIZE = "size"  # images in the cluster
ERRORS = "errors"  # images with correct == False
ERROR_RATE = "error_rate"  # errors / size
ERROR_RATE_LOW = "error_rate_low"  # 95% Wilson interval of error_rate
ERROR_RATE_HIGH = "error_rate_high"
DOMINANT_LABEL = "dominant_label"  # most frequent true class (int)
DOMINANT_LABEL_NAME = "dominant_label_name"
DOMINANT_LABEL_SHARE = "dominant_label_share"  # its share of the cluster, [0, 1]
DOMINANT_PRED = "dominant_pred"  # most frequent predicted class (int)
DOMINANT_PRED_NAME = "dominant_pred_name"
DOMINANT_PRED_SHARE = "dominant_pred_share"
TOP_ERROR_PRED = "top_error_pred"  # most frequent prediction among the errors; -1 if none
TOP_ERROR_PRED_NAME = "top_error_pred_name"  # "" if no errors
TOP_ERROR_PRED_SHARE = "top_error_pred_share"  # its share of the whole cluster, [0, 1]
DESCRIPTION = "description"  # e.g. "mostly cross (90%), 41% predicted star"

CLUSTER_TABLE_COLUMNS = [
    CLUSTER,
    SIZE,
    ERRORS,
    ERROR_RATE,
    ERROR_RATE_LOW,
    ERROR_RATE_HIGH,
    DOMINANT_LABEL,
    DOMINANT_LABEL_NAME,
    DOMINANT_LABEL_SHARE,
    DOMINANT_PRED,
    DOMINANT_PRED_NAME,
    DOMINANT_PRED_SHARE,
    TOP_ERROR_PRED,
    TOP_ERROR_PRED_NAME,
    TOP_ERROR_PRED_SHARE,
    DESCRIPTION,
]


# ----------------------------------------------------------------------------- validation


def _check_method(method: Any, registry: dict[str, Any], what: str) -> str:
    if not isinstance(method, str) or method not in registry:
        raise ValueError(f"unknown {what} method {method!r}; valid: {', '.join(sorted(registry))}")
    return method


# ----------------------------------------------------------------------------- shared core


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32, a new array); all-zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x, dtype=np.float32), where=norms > 0)


def _reduce(x: np.ndarray, pca_dims: int | None, seed: int) -> np.ndarray:
    """PCA of the (normalised) rows to ``pca_dims`` dims; unchanged when D is already small."""
    n, d = x.shape
    if pca_dims is None or d <= pca_dims or n < 2:
        return x
    dims = min(pca_dims, n)
    from sklearn.decomposition import PCA

    return PCA(n_components=dims, random_state=seed).fit_transform(x).astype(np.float32)


def _say(progress: Progress | None, message: str) -> None:
    if progress is not None:
        progress(message)


# ----------------------------------------------------------------------------- numba + umap


def _numba_cache_dir() -> Path:
    """``$ERRORSCOPE_CACHE/numba``, default ``~/.cache/errorscope/numba``."""
    root = os.environ.get(_CACHE_ENV) or os.path.join("~", ".cache", "errorscope")
    return Path(root).expanduser() / "numba"


def _configure_numba_cache() -> str | None:
    """Point numba's cache at :func:`_numba_cache_dir` unless ``NUMBA_CACHE_DIR`` is set.

    Must run before numba is imported to take effect through the environment; if numba is
    already imported, its live config is updated too (functions decorated after that point use
    it). Returns the cache folder in use, or None when numba keeps its default.
    """
    if os.environ.get("NUMBA_CACHE_DIR"):
        return os.environ["NUMBA_CACHE_DIR"]
    path = _numba_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):
            return None
    except OSError:
        return None
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    config = sys.modules.get("numba.core.config")
    if config is not None and not getattr(config, "CACHE_DIR", ""):
        config.CACHE_DIR = str(path)
    return str(path)


def _make_numba_cacheable(module_names: Sequence[str] = _NUMBA_MODULES) -> int:
    """Turn on disk caching, with stable ids, for the jitted functions of ``module_names``.

    Best effort: a numba version without these internals only loses the caching. Returns how
    many functions were changed.
    """
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        return 0
    changed = 0
    for module_name in module_names:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        for attr, obj in list(vars(module).items()):
            if not isinstance(obj, Dispatcher):
                continue
            func = getattr(obj, "py_func", None)
            if func is None or getattr(func, "__module__", None) != module_name:
                continue  # imported from elsewhere; handled in its own module
            try:
                if type(getattr(obj, "_cache", None)).__name__ == "NullCache":
                    obj.enable_caching()
                    changed += 1
                if getattr(obj, "_MemoMixin__uuid", "set") is None:
                    # the attribute name, not __qualname__: umap jits one function twice
                    obj._set_uuid(f"{_STABLE_ID_PREFIX}{module_name}.{attr}")
            except Exception:  # numba internals changed: skip this one, never fail
                continue
    return changed


def _import_umap(progress: Progress | None = None):
    """Import umap-learn with a machine-wide numba cache (see the module docstring)."""
    global _numba_patched
    if "umap" not in sys.modules:
        cache = _configure_numba_cache()
        where = f"cached in {cache}" if cache else "numba's default cache"
        _say(progress, f"loading umap-learn (the first use on a machine compiles code, {where})")
    try:
        import umap
    except ImportError as exc:  # pragma: no cover - umap-learn is a dependency
        raise ImportError(
            "method='umap' needs umap-learn: pip install umap-learn (or use method='pca')"
        ) from exc
    if not _numba_patched:
        _make_numba_cacheable()
        _numba_patched = True
    return umap


def _knn_graph(
    z: np.ndarray, k: int, *, seed: int | None, n_jobs: int, progress: Progress | None
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest neighbours of every row, the row itself included: (int32 [N,k], float32 [N,k])."""
    n = z.shape[0]
    if n <= EXACT_KNN_MAX:
        _say(progress, f"finding {k} nearest neighbours of {n:,} points (exact)")
        from sklearn.neighbors import NearestNeighbors

        dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(z).kneighbors(z)
    else:
        _say(progress, f"finding {k} nearest neighbours of {n:,} points (NN-descent)")
        from sklearn.utils import check_random_state
        from umap.umap_ import nearest_neighbors

        idx, dist, _ = nearest_neighbors(
            z,
            k,
            "euclidean",
            {},
            False,
            check_random_state(seed),
            low_memory=True,
            use_pynndescent=True,
            n_jobs=n_jobs,
            verbose=False,
        )
    return (
        np.ascontiguousarray(idx, dtype=np.int32),
        np.ascontiguousarray(dist, dtype=np.float32),
    )


# ----------------------------------------------------------------------------- projections


def _project_pca(z: np.ndarray, **_: Any) -> np.ndarray:
    n, d = z.shape
    out = np.zeros((n, 2), dtype=np.float32)
    dims = min(2, n, d)
    if dims:
        from sklearn.decomposition import PCA

        out[:, :dims] = PCA(n_components=dims, svd_solver="full").fit_transform(z)
    return out


def _project_umap(
    z: np.ndarray,
    *,
    seed: int | None,
    n_neighbors: int,
    min_dist: float,
    n_epochs: int | None,
    progress: Progress | None,
) -> np.ndarray:
    umap = _import_umap(progress)
    n = z.shape[0]
    k = min(n_neighbors, n - 1)
    # A seed makes umap single-threaded (its parallel SGD is racy); seed=None uses every core.
    n_jobs = 1 if seed is not None else -1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Cannot cache compiled function")
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]")
        warnings.filterwarnings("ignore", message=r"n_jobs value .* overridden")
        idx, dist = _knn_graph(z, k, seed=seed, n_jobs=n_jobs, progress=progress)
        _say(progress, f"optimising the 2-D layout of {n:,} points (UMAP)")
        reducer = umap.UMAP(
            n_neighbors=k,
            n_components=2,
            min_dist=min_dist,
            n_epochs=n_epochs,
            metric="euclidean",
            random_state=seed,
            n_jobs=n_jobs,
            precomputed_knn=(idx, dist),
            low_memory=True,
            verbose=False,
        )
        return reducer.fit_transform(z)


def _project_tsne(
    z: np.ndarray, *, seed: int | None, n_neighbors: int, progress: Progress | None, **_: Any
) -> np.ndarray:
    from sklearn.manifold import TSNE

    n = z.shape[0]
    perplexity = float(min(2 * n_neighbors, (n - 1) / 3))
    _say(progress, f"optimising the 2-D layout of {n:,} points (t-SNE, perplexity {perplexity:g})")
    # float64: scikit-learn's Barnes-Hut t-SNE is several times slower on float32 input
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(
        z.astype(np.float64)
    )


#: name -> function(z [N, d] reduced, *, seed, n_neighbors, min_dist, n_epochs, progress)
#: -> [N, 2]; options a method does not use are ignored.
PROJECTIONS: dict[str, Callable[..., np.ndarray]] = {
    "umap": _project_umap,
    "pca": _project_pca,
    "tsne": _project_tsne,
}


def project_2d(
    embeddings: Any,
    *,
    method: str = "umap",
    seed: int | None = 0,
    pca_dims: int | None = 50,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    n_epochs: int | None = None,
    progress: Progress | None = None,
) -> np.ndarray:
    """2-D map of the embeddings, for the scatter plot of the Embeddings page.

    Rows are L2-normalised, reduced to ``pca_dims`` dimensions by PCA, then projected.

    Parameters
    ----------
    embeddings : array-like of real, shape (N, D)
        One row per image (``embeddings.npy``). Must be finite.
    method : {"umap", "pca", "tsne"}, keyword-only
        A key of :data:`PROJECTIONS`. ``"umap"`` (umap-learn) keeps local neighbourhoods and
        scales to 10^5 points; ``"pca"`` is linear and instant; ``"tsne"`` (scikit-learn) is
        limited to :data:`TSNE_MAX_POINTS` points, its perplexity is ``2 * n_neighbors``.
        UMAP and t-SNE need :data:`MIN_POINTS_NONLINEAR` points: fewer fall back to PCA with a
        warning.
    seed : int or None, keyword-only
        Same seed, same input, same machine -> identical coordinates; UMAP then optimises on
        one thread (its parallel optimiser updates points racily). ``None`` lets UMAP use every
        core, at the price of coordinates that change from run to run. On 2 shared cores that
        was barely faster (UMAP layout of 50k points: 31.8 s vs 35.7 s seeded; whole map of 10k:
        18.9 s vs 18.5 s), hence the reproducible default.
    pca_dims : int >= 2 or None, keyword-only
        Dimensions kept by PCA before the projection; None, or D <= pca_dims, skips PCA.
    n_neighbors : int >= 2, keyword-only
        UMAP's neighbourhood size (capped at N - 1).
    min_dist : float in [0, 1], keyword-only
        UMAP's minimum distance between points in the map.
    n_epochs : int >= 1 or None, keyword-only
        UMAP's optimisation epochs; None = umap-learn's default (500 up to 10,000 points, 200
        above). The layout takes most of the time at 10^5 points and scales with it (halving
        the epochs took a 50k layout from 36 s to 15 s).
    progress : callable(str) or None, keyword-only
        Called with a short message at each stage.

    Returns
    -------
    np.ndarray of float32, shape (N, 2)
        Coordinates in arbitrary units; row i is row i of ``embeddings``.

    Notes
    -----
    The first UMAP call on a machine compiles numba code (about a minute on 2 cores); later
    processes load it from the cache described in the module docstring.
    """
    x = check_embeddings(embeddings)
    method = _check_method(method, PROJECTIONS, "projection")
    seed = check_seed(seed)
    pca_dims = check_int(pca_dims, "pca_dims", minimum=2, allow_none=True)
    n_neighbors = check_int(n_neighbors, "n_neighbors", minimum=2)
    if isinstance(min_dist, bool) or not isinstance(min_dist, numbers.Real):
        raise TypeError(f"min_dist must be a float in [0, 1], got {min_dist!r}")
    if not 0.0 <= float(min_dist) <= 1.0:
        raise ValueError(f"min_dist must be in [0, 1], got {min_dist}")
    n_epochs = check_int(n_epochs, "n_epochs", minimum=1, allow_none=True)
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be a callable(str) or None, got {type(progress).__name__}")
    if method == "tsne" and x.shape[0] > TSNE_MAX_POINTS:
        raise ValueError(
            f"method='tsne' is limited to {TSNE_MAX_POINTS:,} points, got {x.shape[0]:,}; "
            "use method='umap'"
        )
    return _project_core(
        x,
        method=method,
        seed=seed,
        pca_dims=pca_dims,
        n_neighbors=n_neighbors,
        min_dist=float(min_dist),
        n_epochs=n_epochs,
        progress=progress,
    )


def _project_core(
    x: np.ndarray,
    *,
    method: str,
    seed: int | None,
    pca_dims: int | None,
    n_neighbors: int,
    min_dist: float,
    n_epochs: int | None,
    progress: Progress | None,
) -> np.ndarray:
    n, d = x.shape
    if n <= 1:
        return np.zeros((n, 2), dtype=np.float32)
    start = time.perf_counter()
    if method in ("umap", "tsne") and n < MIN_POINTS_NONLINEAR:
        warnings.warn(
            f"{method} needs at least {MIN_POINTS_NONLINEAR} points, got {n}; using PCA instead",
            UserWarning,
            stacklevel=3,
        )
        method = "pca"
    if pca_dims is not None and d > pca_dims:
        _say(progress, f"normalising and reducing {n:,} x {d} embeddings to {pca_dims} dims (PCA)")
    z = _reduce(_l2_normalise(x), pca_dims, 0 if seed is None else seed)
    xy = PROJECTIONS[method](
        z,
        seed=seed,
        n_neighbors=n_neighbors,
        min_dist=min_dist,
        n_epochs=n_epochs,
        progress=progress,
    )
    _say(progress, f"2-D map of {n:,} points done in {time.perf_counter() - start:.1f} s")
    return np.ascontiguousarray(xy, dtype=np.float32)


# ----------------------------------------------------------------------------- clustering


def _auto_k(z: np.ndarray, *, seed: int) -> int:
    """The k in 2..min(AUTO_K_MAX, sqrt(N/2)) with the best silhouette on a subsample."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import pairwise_distances, silhouette_score

    n = z.shape[0]
    k_max = min(AUTO_K_MAX, int(math.sqrt(n / 2)))
    if k_max < 2:
        return 1
    rng = np.random.default_rng(seed)
    sub = z if n <= AUTO_K_SUBSAMPLE else z[np.sort(rng.choice(n, AUTO_K_SUBSAMPLE, replace=False))]
    dist = pairwise_distances(sub)
    candidates = np.unique(np.round(np.geomspace(2, k_max, num=min(k_max - 1, 12))).astype(int))
    best_k, best_score = 1, -np.inf
    for k in candidates:
        labels = KMeans(n_clusters=int(k), n_init=3, random_state=seed).fit_predict(sub)
        if np.unique(labels).size < 2:
            continue
        score = silhouette_score(dist, labels, metric="precomputed")
        if score > best_score + 1e-9:
            best_k, best_score = int(k), score
    return best_k


def _cluster_kmeans(z: np.ndarray, *, n_clusters: int | None, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    n = z.shape[0]
    k = _auto_k(z, seed=seed) if n_clusters is None else n_clusters
    if k <= 1:
        return np.zeros(n, dtype=np.int64)
    if n > MINIBATCH_KMEANS_MIN:
        model = MiniBatchKMeans(n_clusters=k, batch_size=4096, n_init=3, random_state=seed)
    else:
        model = KMeans(n_clusters=k, n_init=3, random_state=seed)
    return model.fit_predict(z).astype(np.int64)


def _cluster_hdbscan(z: np.ndarray, *, n_clusters: int | None, seed: int) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    n = z.shape[0]
    min_size = max(5, round(math.sqrt(n)))
    if n < min_size:
        return np.full(n, -1, dtype=np.int64)
    return HDBSCAN(min_cluster_size=min_size, copy=False).fit_predict(z).astype(np.int64)


#: name -> function(z [N, d] reduced, *, n_clusters, seed) -> int64 [N] (-1 = unclustered)
CLUSTERINGS: dict[str, Callable[..., np.ndarray]] = {
    "kmeans": _cluster_kmeans,
    "hdbscan": _cluster_hdbscan,
}


def _relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... from largest to smallest (ties: first appearance); keep -1."""
    valid = labels >= 0
    if not valid.any():
        return labels
    ids, first, counts = np.unique(labels[valid], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    mapping = np.empty(ids.max() + 1, dtype=np.int64)
    mapping[ids[order]] = np.arange(ids.size)
    out = labels.copy()
    out[valid] = mapping[labels[valid]]
    return out


def cluster_embeddings(
    embeddings: Any,
    *,
    method: str = "kmeans",
    n_clusters: int | None = None,
    seed: int = 0,
    pca_dims: int | None = 50,
) -> np.ndarray:
    """Cluster images by embedding, for the cluster slices and the cluster table.

    Rows are L2-normalised and reduced to ``pca_dims`` dims by PCA (Euclidean distance on unit
    vectors is a monotone function of cosine similarity), then clustered.

    Why k-means by default: an error-analysis cluster is a *slice* for people to review, not a
    claim about the true density structure. k-means puts every image in some cluster, has one
    knob, runs in seconds at 10^5 images (MiniBatchKMeans above :data:`MINIBATCH_KMEANS_MIN`) and
    is reproducible with a seed. HDBSCAN (``method="hdbscan"``) finds clusters of any shape and
    density and needs no k, but in 50 dimensions it labels a large share of the images as noise
    (``-1``, in no cluster), gets slow beyond ~20k images, and its ``min_cluster_size`` (here
    ``max(5, sqrt(N))``) is a second knob; use it when the clusters are clearly separated.

    Parameters
    ----------
    embeddings : array-like of real, shape (N, D)
    method : {"kmeans", "hdbscan"}, keyword-only
        A key of :data:`CLUSTERINGS`.
    n_clusters : int >= 1 or None, keyword-only
        k for k-means. None picks k automatically: the k in a geometric grid of up to 12 values
        over ``2 .. min(30, floor(sqrt(N / 2)))`` with the best silhouette, computed with k-means
        fits on a random subsample of at most 3,000 images; sets of fewer than 8 images form one
        cluster. On classifier embeddings this tends to find the class-level structure; ask for
        more clusters to split it further. Must be None for ``"hdbscan"``.
    seed : int >= 0, keyword-only
        Seed of the subsample, k-means initialisation and PCA.
    pca_dims : int >= 2 or None, keyword-only
        Dimensions kept by PCA; None skips PCA.

    Returns
    -------
    np.ndarray of int64, shape (N,)
        Cluster ids ``0 .. K-1`` numbered from the largest cluster down; ``-1`` = unclustered
        (HDBSCAN noise).
    """
    x = check_embeddings(embeddings)
    method = _check_method(method, CLUSTERINGS, "clustering")
    n_clusters = check_int(n_clusters, "n_clusters", minimum=1, allow_none=True)
    seed = check_seed(seed, allow_none=False)
    pca_dims = check_int(pca_dims, "pca_dims", minimum=2, allow_none=True)
    if method == "hdbscan" and n_clusters is not None:
        raise ValueError(f"n_clusters must be None for method='hdbscan', got {n_clusters}")
    if n_clusters is not None and x.shape[0] and n_clusters > x.shape[0]:
        raise ValueError(f"n_clusters={n_clusters} exceeds the number of images N={x.shape[0]}")
    return _cluster_core(x, method=method, n_clusters=n_clusters, seed=seed, pca_dims=pca_dims)


def _cluster_core(
    x: np.ndarray, *, method: str, n_clusters: int | None, seed: int, pca_dims: int | None
) -> np.ndarray:
    n = x.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    z = _reduce(_l2_normalise(x), pca_dims, seed)
    with warnings.catch_warnings():
        # duplicate rows: "Number of distinct clusters found smaller than n_clusters"
        warnings.filterwarnings("ignore", message=r"Number of distinct clusters")
        labels = CLUSTERINGS[method](z, n_clusters=n_clusters, seed=seed)
    return _relabel_by_size(np.asarray(labels, dtype=np.int64))


# ----------------------------------------------------------------------------- cluster table


def _bool_column(samples: pd.DataFrame, name: str) -> np.ndarray:
    col = samples[name]
    if col.isna().any():
        raise ValueError(f"column {name!r} must not contain missing values")
    if not (pd.api.types.is_bool_dtype(col) or pd.api.types.is_integer_dtype(col)):
        raise ValueError(f"column {name!r} must be bool, got dtype {col.dtype}")
    return col.to_numpy().astype(bool)


def _int_column(samples: pd.DataFrame, name: str) -> np.ndarray:
    col = samples[name]
    if col.isna().any():
        raise ValueError(f"column {name!r} must not contain missing values")
    if not pd.api.types.is_integer_dtype(col):
        raise ValueError(f"column {name!r} must hold integers, got dtype {col.dtype}")
    return col.to_numpy().astype(np.int64)


def _empty_cluster_table() -> pd.DataFrame:
    dtypes = {
        CLUSTER: "int64",
        SIZE: "int64",
        ERRORS: "int64",
        DOMINANT_LABEL: "int64",
        DOMINANT_PRED: "int64",
        TOP_ERROR_PRED: "int64",
        DOMINANT_LABEL_NAME: "object",
        DOMINANT_PRED_NAME: "object",
        TOP_ERROR_PRED_NAME: "object",
        DESCRIPTION: "object",
    }
    return pd.DataFrame(
        {c: pd.Series([], dtype=dtypes.get(c, "float64")) for c in CLUSTER_TABLE_COLUMNS}
    )


def cluster_table(
    samples: pd.DataFrame,
    *,
    class_names: Sequence[str],
    cluster_column: str = schema.CLUSTER,
) -> pd.DataFrame:
    """One row per embedding cluster: size, error rate with interval, what is in it.

    Parameters
    ----------
    samples : pd.DataFrame
        The samples table with integer columns ``label``, ``pred`` (``0 .. C-1``), a bool column
        ``correct`` and an integer cluster column (``-1`` = unclustered).
    class_names : sequence of str, keyword-only
        Name of class i at position i.
    cluster_column : str, keyword-only
        Name of the cluster column (``schema.CLUSTER``).

    Returns
    -------
    pd.DataFrame
        Columns :data:`CLUSTER_TABLE_COLUMNS`. Shares are fractions of the cluster's size;
        ``error_rate_low/high`` is the 95% Wilson interval. The most frequent true / predicted
        class breaks ties by the lower class index; ``top_error_pred`` is the most frequent
        prediction among the cluster's errors (-1 and "" when it has none). ``description`` says
        it in words: ``"mostly cross (90%), 41% predicted star"``. Rows are sorted worst first
        by the interval's *lower* bound, so that a cluster of 2 images with 2 errors does not top
        a cluster of 200 with 120; then by error rate, then size. Cluster ``-1`` (unclustered)
        comes last whatever its numbers.
    """
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names must be a sequence of str, got {type(class_names).__name__}")
    names = [str(c) for c in class_names]
    if not isinstance(cluster_column, str):
        raise TypeError(f"cluster_column must be a str, got {type(cluster_column).__name__}")
    needed = [schema.LABEL, schema.PRED, schema.CORRECT, cluster_column]
    missing = [c for c in needed if c not in samples.columns]
    if missing:
        raise ValueError(f"samples is missing column(s) {missing}; needs {needed}")
    labels = _int_column(samples, schema.LABEL)
    preds = _int_column(samples, schema.PRED)
    clusters = _int_column(samples, cluster_column)
    correct = _bool_column(samples, schema.CORRECT)
    for name, arr in ((schema.LABEL, labels), (schema.PRED, preds)):
        if arr.size and (arr.min() < 0 or arr.max() >= len(names)):
            raise ValueError(
                f"column {name!r} must hold class indices 0..{len(names) - 1} "
                f"(len(class_names) = {len(names)}), got values in [{arr.min()}, {arr.max()}]"
            )
    if clusters.size and clusters.min() < -1:
        raise ValueError(f"column {cluster_column!r} must be >= -1, got {clusters.min()}")
    return _cluster_table_core(labels, preds, correct, clusters, names)


def _describe_cluster(
    label_name: str, label_share: float, error_name: str, error_share: float, errors: int
) -> str:
    if label_share >= 0.5:
        what = f"mostly {label_name} ({label_share:.0%})"
    else:
        what = f"mixed, largest {label_name} ({label_share:.0%})"
    if errors == 0:
        return f"{what}, no errors"
    return f"{what}, {error_share:.0%} predicted {error_name}"


def _cluster_table_core(
    labels: np.ndarray,
    preds: np.ndarray,
    correct: np.ndarray,
    clusters: np.ndarray,
    names: list[str],
) -> pd.DataFrame:
    if clusters.size == 0:
        return _empty_cluster_table()
    n_classes = len(names)
    rows = []
    for c in np.unique(clusters):
        m = clusters == c
        size = int(m.sum())
        label_counts = np.bincount(labels[m], minlength=n_classes)
        pred_counts = np.bincount(preds[m], minlength=n_classes)
        wrong = m & ~correct
        errors = int(wrong.sum())
        error_counts = np.bincount(preds[wrong], minlength=n_classes)
        dom_label, dom_pred = int(label_counts.argmax()), int(pred_counts.argmax())
        top_err = int(error_counts.argmax()) if errors else -1
        row = {
            CLUSTER: int(c),
            SIZE: size,
            ERRORS: errors,
            DOMINANT_LABEL: dom_label,
            DOMINANT_LABEL_NAME: names[dom_label],
            DOMINANT_LABEL_SHARE: label_counts[dom_label] / size,
            DOMINANT_PRED: dom_pred,
            DOMINANT_PRED_NAME: names[dom_pred],
            DOMINANT_PRED_SHARE: pred_counts[dom_pred] / size,
            TOP_ERROR_PRED: top_err,
            TOP_ERROR_PRED_NAME: names[top_err] if errors else "",
            TOP_ERROR_PRED_SHARE: error_counts[top_err] / size if errors else 0.0,
        }
        row[DESCRIPTION] = _describe_cluster(
            row[DOMINANT_LABEL_NAME],
            row[DOMINANT_LABEL_SHARE],
            row[TOP_ERROR_PRED_NAME],
            row[TOP_ERROR_PRED_SHARE],
            errors,
        )
        if c == -1:
            row[DESCRIPTION] = f"unclustered: {row[DESCRIPTION]}"
        rows.append(row)
    table = pd.DataFrame(rows)
    table[ERROR_RATE] = table[ERRORS] / table[SIZE]
    low, high = wilson_interval(table[ERRORS].to_numpy(), table[SIZE].to_numpy())
    table[ERROR_RATE_LOW] = np.asarray(low, dtype=np.float64)
    table[ERROR_RATE_HIGH] = np.asarray(high, dtype=np.float64)
    table["_noise"] = table[CLUSTER] == -1
    table = table.sort_values(
        ["_noise", ERROR_RATE_LOW, ERROR_RATE, SIZE, CLUSTER],
        ascending=[True, False, False, False, True],
        kind="mergesort",
    )
    return table[CLUSTER_TABLE_COLUMNS].reset_index(drop=True)


# ----------------------------------------------------------------------------- neighbours


class NeighbourIndex:
    """Exact cosine nearest neighbours over a fixed set of embeddings.

    scikit-learn's brute-force :class:`~sklearn.neighbors.NearestNeighbors` (cosine metric) on
    L2-normalised float32 rows: exact and deterministic, and one query of one image against 10^5
    references takes a fraction of a second. Build it once per set (the dashboard caches it) and
    query many times. For all-pairs searches over very large sets, see :mod:`analysis.data_issues.duplicates`.

    Parameters
    ----------
    embeddings : array-like of real, shape (N, D)
        The indexed set. Zero rows have similarity 0 to everything.
    """

    #: Queries per block: queries x N <= this many distances (64 MB), on top of scikit-learn's
    #: own chunking.
    block_elements = 1 << 24

    def __init__(self, embeddings: Any) -> None:
        from sklearn.neighbors import NearestNeighbors

        self._source = embeddings
        self._x = _l2_normalise(check_embeddings(embeddings))
        self._nn = (
            NearestNeighbors(metric="cosine", algorithm="brute").fit(self._x)
            if self._x.shape[0]
            else None
        )

    def __len__(self) -> int:
        return self._x.shape[0]

    @property
    def dim(self) -> int:
        """D, the number of features."""
        return self._x.shape[1]

    def vector(self, i: int) -> np.ndarray:
        """The normalised row ``i`` of the indexed set, float32 [D]."""
        i = check_int(i, "i", minimum=0)
        if i >= len(self):
            raise ValueError(f"i must be < {len(self)} (the indexed set's size), got {i}")
        return self._x[i].copy()

    def query(
        self, vectors: Any, k: int = 10, *, exclude: Any = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most similar indexed rows for each query vector.

        Parameters
        ----------
        vectors : array-like of real, shape (n, D) or (D,)
            Query embeddings (normalised here). Passing the very array the index was built from
            queries the set against itself and excludes each row's self-match.
        k : int >= 1
        exclude : array-like of int, shape (n,), or None, keyword-only
            Per query, an indexed row to leave out (-1 = none), e.g. the query's own row.

        Returns
        -------
        indices : np.ndarray of int64, shape (n, k)
            Rows of the indexed set, most similar first (ties: lower index first).
        similarities : np.ndarray of float32, shape (n, k)
            Cosine similarities in [-1, 1]. When fewer than k rows are available the row is
            padded with index -1 and similarity NaN.
        """
        same_set = vectors is self._source
        q = check_embeddings(vectors if np.ndim(vectors) != 1 else np.reshape(vectors, (1, -1)))
        if q.shape[0] and q.shape[1] != self.dim:
            raise ValueError(f"vectors must have {self.dim} features like the index, got {q.shape}")
        k = check_int(k, "k", minimum=1)
        if exclude is None and same_set:
            exclude = np.arange(q.shape[0])
        if exclude is not None:
            ex = np.asarray(exclude)
            if not np.issubdtype(ex.dtype, np.integer) or ex.shape != (q.shape[0],):
                raise ValueError(
                    f"exclude must be ints of shape ({q.shape[0]},), got {ex.dtype} {ex.shape}"
                )
            if ex.size and (ex.min() < -1 or ex.max() >= len(self)):
                raise ValueError(f"exclude must hold rows in -1..{len(self) - 1}")
            exclude = ex.astype(np.int64)
        return self._query_core(_l2_normalise(q), k, exclude)

    def neighbours_of(self, rows: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of indexed rows, each row's self-match excluded; see :meth:`query`."""
        r = np.atleast_1d(np.asarray(rows))
        if not np.issubdtype(r.dtype, np.integer) or r.ndim != 1:
            raise ValueError(f"rows must be a 1-D array of ints, got {r.dtype} {r.shape}")
        if r.size and (r.min() < 0 or r.max() >= len(self)):
            raise ValueError(f"rows must be in 0..{len(self) - 1}, got [{r.min()}, {r.max()}]")
        k = check_int(k, "k", minimum=1)
        return self._query_core(self._x[r], k, r.astype(np.int64))

    def _query_core(
        self, q: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        n, size = q.shape[0], len(self)
        indices = np.full((n, k), -1, dtype=np.int64)
        sims = np.full((n, k), np.nan, dtype=np.float32)
        if n == 0 or size == 0:
            return indices, sims
        # one extra neighbour when a row may be excluded, so k remain after dropping it
        m = min(size, k + (1 if exclude is not None else 0))
        block = max(1, self.block_elements // size)
        for start in range(0, n, block):
            stop = min(n, start + block)
            dist, idx = self._nn.kneighbors(q[start:stop], n_neighbors=m)
            sim = (1.0 - dist).astype(np.float32)
            if exclude is not None:
                sim[idx == exclude[start:stop, None]] = -np.inf
            # most similar first; ties (among the returned rows) to the lower index
            order = np.lexsort((idx, -sim), axis=1)
            idx = np.take_along_axis(idx, order, axis=1)
            sim = np.take_along_axis(sim, order, axis=1)
            valid = np.isfinite(sim)
            rank = np.cumsum(valid, axis=1) - 1
            keep = valid & (rank < k)
            rows = np.nonzero(keep)[0]
            indices[start + rows, rank[keep]] = idx[keep]
            sims[start + rows, rank[keep]] = sim[keep]
        return indices, sims


@dataclass(frozen=True)
class Neighbours:
    """Nearest neighbours of one evaluation image (see :func:`neighbours_for`).

    Attributes
    ----------
    index : int
        The query row of the evaluation set.
    eval_indices, eval_similarities : np.ndarray, int64 [k] and float32 [k]
        Most similar other evaluation images (the query itself excluded), -1 / NaN padded.
    reference_indices, reference_similarities : np.ndarray, int64 [k] and float32 [k]
        Most similar reference (training) images; empty arrays when there is no reference set.
    """

    index: int
    eval_indices: np.ndarray
    eval_similarities: np.ndarray
    reference_indices: np.ndarray
    reference_similarities: np.ndarray


def neighbours_for(
    embeddings: Any,
    i: int,
    *,
    k: int = 8,
    reference_embeddings: Any = None,
) -> Neighbours:
    """Nearest evaluation and reference images of evaluation image ``i`` (image detail page).

    Parameters
    ----------
    embeddings : array-like of real (N, D), or NeighbourIndex
        The evaluation set's embeddings, or an index built from them (cache one to avoid
        re-normalising the set on every call).
    i : int
        Row of the query image, ``0 <= i < N``.
    k : int >= 1, keyword-only
    reference_embeddings : array-like of real (M, D), NeighbourIndex or None, keyword-only
        The reference (training) set, when the run has one.

    Returns
    -------
    Neighbours
    """
    index = embeddings if isinstance(embeddings, NeighbourIndex) else NeighbourIndex(embeddings)
    i = check_int(i, "i", minimum=0)
    if i >= len(index):
        raise ValueError(f"i must be < {len(index)} (the number of evaluation images), got {i}")
    k = check_int(k, "k", minimum=1)
    ref = reference_embeddings
    if ref is not None and not isinstance(ref, NeighbourIndex):
        ref = NeighbourIndex(ref)
    if ref is not None and len(ref) and ref.dim != index.dim:
        raise ValueError(
            f"reference_embeddings have {ref.dim} features but embeddings have {index.dim}"
        )
    e_idx, e_sim = index.neighbours_of(np.array([i]), k)
    if ref is None:
        r_idx, r_sim = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    else:
        r_idx, r_sim = ref._query_core(index._x[i : i + 1], k, None)
        r_idx, r_sim = r_idx[0], r_sim[0]
    return Neighbours(i, e_idx[0], e_sim[0], r_idx, r_sim)
