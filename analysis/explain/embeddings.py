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
NN-descent. UMAP never runs it here: its k-nearest-neighbour graph comes from the package's one
vector-search path, :func:`analysis.stats.neighbours.knn` (faiss), and is handed to UMAP, as are
the neighbours of the image detail page (:class:`NeighbourIndex`).

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
    "EmbeddingMap",
    "MAP_FIT_MAX",
    "NeighbourIndex",
    "Neighbours",
    "PROJECTIONS",
    "cluster_embeddings",
    "cluster_table",
    "embedding_map",
    "nearest_rows",
    "neighbours_for",
    "project_2d",
    "stratified_sample",
]

Progress = Callable[[str], Any]

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
#: What :func:`_make_numba_cacheable` could not do ("module.function: error"); empty when all went.
NUMBA_CACHE_FAILURES: list[str] = []

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
DESCRIPTION = "description"  # e.g. "mostly cross (90%); 45% wrong, most often predicted as star"

P_VALUE = "p_value"  # one-sided Fisher: the cluster's images err more than the rest
P_ADJ = "p_adj"  # Benjamini-Hochberg over the clusters (not over -1, unclustered)
SIGNIFICANT = "significant"  # p_adj < 0.05: an error cluster

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
    P_VALUE,
    P_ADJ,
    SIGNIFICANT,
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

    Numba has no public way to cache a function another package jitted without ``cache=True``,
    nor to make the cache key of a function that takes a jitted function stable (numba issue
    #6264), so this uses ``Dispatcher.enable_caching`` and the private ``_set_uuid``. Worth it:
    bench/bench_numba_cache.py measures what a new process saves. Best effort for users (a numba
    without these internals only loses the caching; what failed is kept in
    :data:`NUMBA_CACHE_FAILURES`), strict in tests: ``tests/analysis/test_embeddings.py`` checks
    in fresh processes that every function got a cache and a stable id and that the second
    process compiles nothing, so a numba upgrade cannot turn this off silently. Returns how many
    functions were changed.
    """
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:
        NUMBA_CACHE_FAILURES.append("numba.core.dispatcher.Dispatcher: not importable")
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
            except Exception as exc:  # numba internals changed: skip this one, never fail
                NUMBA_CACHE_FAILURES.append(f"{module_name}.{attr}: {type(exc).__name__}: {exc}")
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


def _knn_graph(z: np.ndarray, k: int, *, seed: int | None, progress: Progress | None):
    """k nearest neighbours of every row, the row itself included: (int32 [N,k], float32 [N,k]).

    Through the package's one vector-search path (:func:`analysis.stats.neighbours.knn`, exact
    at the sizes UMAP is fitted on), Euclidean on the PCA-reduced rows as umap-learn would."""
    from ..stats.neighbours import knn

    n = z.shape[0]
    res = knn(
        z,
        z,  # the set against itself, self-matches kept: UMAP counts a point as its own neighbour
        k=k,
        metric="euclidean",
        seed=0 if seed is None else seed,
        progress=progress,
    )
    _say(progress, f"found {k} nearest neighbours of {n:,} points ({res.method})")
    return (
        np.ascontiguousarray(res.indices, dtype=np.int32),
        np.ascontiguousarray(res.scores, dtype=np.float32),
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
        idx, dist = _knn_graph(z, k, seed=seed, progress=progress)
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


def _umap_reduced(z: np.ndarray, *, seed: int, n_neighbors: int, progress) -> np.ndarray:
    """UMAP of rows already normalised and reduced (what :func:`project_2d` does after PCA)."""
    n = z.shape[0]
    method = "umap" if n >= MIN_POINTS_NONLINEAR else "pca"
    xy = PROJECTIONS[method](
        z, seed=seed, n_neighbors=n_neighbors, min_dist=0.1, n_epochs=None, progress=progress
    )
    return np.ascontiguousarray(xy, dtype=np.float32)


# ----------------------------------------------------------------------------- at any size

#: Above this many images the map and the clusters are fitted on a stratified sample of this
#: size and the other images placed by it (:func:`embedding_map`). UMAP of 50,000 points takes
#: about a minute on 2 cores; 10^6 points would take hours and ~10 GB.
MAP_FIT_MAX = 50_000
#: Every stratum (given class x correct/wrong) keeps at least this many images in the sample.
STRATUM_FLOOR = 50
#: Rows per block when a fitted PCA is applied to a large set.
_BLOCK = 65_536


def stratified_sample(strata: Any, size: int, *, seed: int = 0) -> np.ndarray:
    """Sorted rows of a random sample of about ``size`` rows, each stratum represented in
    proportion to its share and by at least ``min(its size, STRATUM_FLOOR)`` rows.

    Parameters
    ----------
    strata : array-like of int, shape (N,)
        Stratum of each row (e.g. ``2 * label + correct``).
    size : int >= 1
    seed : int

    Returns
    -------
    np.ndarray of int64
        All rows when ``size >= N``.
    """
    strata = np.asarray(strata)
    n = strata.shape[0]
    size = check_int(size, "size", minimum=1)
    if size >= n:
        return np.arange(n, dtype=np.int64)
    _, inv, counts = np.unique(strata, return_inverse=True, return_counts=True)
    quota = np.maximum(np.floor(counts * (size / n)), np.minimum(counts, STRATUM_FLOOR))
    quota = quota.astype(np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    rows = perm[np.argsort(inv[perm], kind="stable")]  # grouped by stratum, random within
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    take = np.concatenate([rows[a : a + q] for a, q in zip(starts, quota, strict=True)])
    return np.sort(take).astype(np.int64)


@dataclass(frozen=True)
class EmbeddingMap:
    """The Embeddings page's map and the cluster slices of one set (:func:`embedding_map`).

    Attributes
    ----------
    xy : np.ndarray or None
        float32 [N, 2] map coordinates; None when no map was asked for.
    clusters : np.ndarray
        int64 [N] cluster ids, numbered from the largest cluster down.
    fitted : np.ndarray
        int64 rows the PCA, UMAP and k-means were fitted on: every row up to ``fit_max`` images,
        else a stratified sample.
    n : int
    """

    xy: np.ndarray | None
    clusters: np.ndarray
    fitted: np.ndarray
    n: int

    @property
    def sampled(self) -> bool:
        return len(self.fitted) < self.n

    def to_dict(self) -> dict[str, Any]:
        """What the page says about how the map was made (stored as ``embedding_map.json``)."""
        how = (
            f"UMAP and k-means fitted on all {self.n:,} images"
            if not self.sampled
            else (
                f"UMAP and k-means fitted on a stratified sample of {len(self.fitted):,} of"
                f" {self.n:,} images (every given class, right and wrong, in proportion, at"
                f" least {STRATUM_FLOOR} of each); every other image placed at the"
                " similarity-weighted mean of its 15 nearest sampled images (UMAP's own"
                " initialisation for new points) and given the cluster of the nearest centre"
            )
        )
        return {"n": self.n, "n_fitted": int(len(self.fitted)), "sampled": self.sampled, "how": how}


def _pca_fit_apply(x: np.ndarray, fit: np.ndarray, pca_dims: int | None, seed: int):
    """Normalised rows reduced by a PCA fitted on rows ``fit``, every row block by block:
    float32 [N, dims]. The same as :func:`_reduce` when ``fit`` is every row."""
    n, d = x.shape
    if len(fit) == n:
        return _reduce(_l2_normalise(np.asarray(x, dtype=np.float32)), pca_dims, seed)
    zf = _l2_normalise(np.asarray(x[fit], dtype=np.float32))
    if pca_dims is None or d <= pca_dims:
        pca = None
        dims = d
    else:
        from sklearn.decomposition import PCA

        dims = min(pca_dims, len(fit))
        pca = PCA(n_components=dims, random_state=seed).fit(zf)
    out = np.empty((n, dims), dtype=np.float32)
    for s in range(0, n, _BLOCK):
        b = _l2_normalise(np.asarray(x[s : s + _BLOCK], dtype=np.float32))
        out[s : s + _BLOCK] = b if pca is None else pca.transform(b)
    return out


def _place(z: np.ndarray, fit: np.ndarray, xy_fit: np.ndarray, k: int, seed: int, progress):
    """Map positions of the rows not in ``fit``: the weighted mean of the positions of their k
    nearest fitted rows (weights ``exp(-(d - d_1) / (mean d - d_1))``, as UMAP weighs a point's
    neighbours), through the package's one nearest-neighbour path."""
    from ..stats.neighbours import knn

    rest = np.setdiff1d(np.arange(z.shape[0]), fit, assume_unique=True)
    xy = np.empty((z.shape[0], 2), dtype=np.float32)
    xy[fit] = xy_fit
    if rest.size == 0:
        return xy
    k = min(k, len(fit))
    _say(progress, f"placing {rest.size:,} more points at their {k} nearest fitted neighbours")
    for s in range(0, rest.size, 8 * _BLOCK):
        rows = rest[s : s + 8 * _BLOCK]
        res = knn(z[rows], z[fit], k=k, metric="euclidean", seed=seed)
        d = res.scores.astype(np.float64)
        spread = np.maximum(d.mean(axis=1, keepdims=True) - d[:, :1], 1e-9)
        w = np.exp(-(d - d[:, :1]) / spread)
        w /= w.sum(axis=1, keepdims=True)
        xy[rows] = np.einsum("rk,rkc->rc", w, xy_fit[res.indices]).astype(np.float32)
    return xy


def _nearest_centre(z: np.ndarray, fit: np.ndarray, labels_fit: np.ndarray, seed: int):
    """Cluster of every row: fitted rows keep theirs, the others take the nearest centre's."""
    from ..stats.neighbours import knn

    labels = np.empty(z.shape[0], dtype=np.int64)
    labels[fit] = labels_fit
    rest = np.setdiff1d(np.arange(z.shape[0]), fit, assume_unique=True)
    ids = np.unique(labels_fit[labels_fit >= 0])
    if rest.size == 0:
        return labels
    if ids.size == 0:
        labels[rest] = -1
        return labels
    zf = z[fit]
    centres = np.stack([zf[labels_fit == c].mean(axis=0) for c in ids]).astype(np.float32)
    for s in range(0, rest.size, 8 * _BLOCK):
        rows = rest[s : s + 8 * _BLOCK]
        nearest = knn(z[rows], centres, k=1, metric="euclidean", method="exact", seed=seed)
        labels[rows] = ids[nearest.indices[:, 0]]
    return labels


def embedding_map(
    embeddings: Any,
    *,
    strata: Any = None,
    umap: bool = True,
    seed: int = 0,
    fit_max: int = MAP_FIT_MAX,
    pca_dims: int | None = 50,
    n_neighbors: int = 15,
    progress: Progress | None = None,
) -> EmbeddingMap:
    """The 2-D map (:func:`project_2d`, UMAP) and the clusters (:func:`cluster_embeddings`,
    k-means with automatic k) of a set of any size, with one PCA shared by both.

    Up to ``fit_max`` images this is exactly ``project_2d`` and ``cluster_embeddings``. Beyond,
    PCA, UMAP and k-means are fitted on a stratified sample of ``fit_max`` images
    (:func:`stratified_sample` over ``strata``), and every other image is placed at the
    weighted mean of its nearest sampled images and given its nearest cluster centre, so a
    million images take minutes and a few hundred MB instead of hours: the page says so
    (:meth:`EmbeddingMap.to_dict`).

    Parameters
    ----------
    embeddings : array-like of real, shape (N, D)
        May be a float16 memory-map: it is read block by block, never copied whole.
    strata : array-like of int, shape (N,), optional
        Strata of the sample (e.g. ``2 * label + correct``); None: a plain random sample.
    umap : bool
        False: clusters only (``xy`` is None).
    """
    x = check_embeddings(embeddings, dtype=None)
    seed = check_seed(seed, allow_none=False)
    fit_max = check_int(fit_max, "fit_max", minimum=2)
    n = x.shape[0]
    if strata is None:
        strata = np.zeros(n, dtype=np.int64)
    strata = np.asarray(strata)
    if strata.shape != (n,):
        raise ValueError(f"strata must have one value per row ({n}), got shape {strata.shape}")
    fit = stratified_sample(strata, fit_max, seed=seed) if n > fit_max else np.arange(n)
    if n <= 1:
        return EmbeddingMap(
            np.zeros((n, 2), np.float32) if umap else None, np.zeros(n, np.int64), fit, n
        )
    _say(progress, f"reducing {n:,} embeddings to {pca_dims} dims (PCA on {len(fit):,})")
    z = _pca_fit_apply(x, fit, pca_dims, seed)
    zf = z if len(fit) == n else z[fit]
    xy = None
    if umap:
        xy_f = _umap_reduced(zf, seed=seed, n_neighbors=n_neighbors, progress=progress)
        xy = xy_f if len(fit) == n else _place(z, fit, xy_f, n_neighbors, seed, progress)
    _say(progress, f"clustering {len(fit):,} embeddings (k-means)")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Number of distinct clusters")
        labels_f = np.asarray(CLUSTERINGS["kmeans"](zf, n_clusters=None, seed=seed), np.int64)
    labels = labels_f if len(fit) == n else _nearest_centre(z, fit, labels_f, seed)
    return EmbeddingMap(xy, _relabel_by_size(labels), fit, n)


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
        SIGNIFICANT: "bool",
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
        it in words: ``"mostly cross (90%); 45% wrong, most often predicted as star"``. Rows are sorted worst first
        by the interval's *lower* bound, so that a cluster of 2 images with 2 errors does not top
        a cluster of 200 with 120; then by error rate, then size. Cluster ``-1`` (unclustered)
        comes last whatever its numbers. ``p_value`` is the one-sided Fisher exact test of "this
        cluster's images are misclassified more often than the rest" (the slices' test),
        ``p_adj`` Benjamini-Hochberg over the clusters, ``significant`` ``p_adj < 0.05``; NaN /
        False for ``-1``.
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
    label_name: str, label_share: float, error_name: str, error_rate: float, errors: int
) -> str:
    """'mostly cross (90%); 67% wrong, most often predicted as star'. When the errors are
    predicted as the cluster's own majority class, says so (the images of other classes are the
    wrong ones): '5% predicted 0' after 'mostly 0' read as a contradiction."""
    if label_share >= 0.5:
        what = f"mostly {label_name} ({label_share:.0%})"
    else:
        what = f"mixed, largest {label_name} ({label_share:.0%})"
    if errors == 0:
        return f"{what}, no errors"
    if error_name == label_name:
        return f"{what}; {error_rate:.0%} wrong, mostly other classes predicted as {error_name}"
    return f"{what}; {error_rate:.0%} wrong, most often predicted as {error_name}"


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
            errors / size,
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
    from ..stats.class_flags import worse_than_rest

    real = (table[CLUSTER] != -1).to_numpy()
    table[P_VALUE], table[P_ADJ], table[SIGNIFICANT] = np.nan, np.nan, False
    if real.any():
        test = worse_than_rest(
            table.loc[real, SIZE].to_numpy(),
            table.loc[real, ERRORS].to_numpy(),
            total=int(clusters.size),
            total_errors=int((~correct).sum()),
        )
        table.loc[real, P_VALUE] = test.p_value
        table.loc[real, P_ADJ] = test.p_adj
        table.loc[real, SIGNIFICANT] = test.significant
    table[SIGNIFICANT] = table[SIGNIFICANT].astype(bool)
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

    A thin handle on :func:`analysis.stats.neighbours.knn` (exact, faiss): build it once per set
    (the dashboard caches it) and query many times. Sets up to :data:`CACHE_BYTES` as float32
    are normalised once and kept; larger ones (a memory-mapped ``embeddings.npy`` of a million
    images) stay where they are and are read block by block on each query. For runs analysed
    with the neighbours section the detail page reads stored neighbours instead.

    Parameters
    ----------
    embeddings : array-like of real, shape (N, D)
        The indexed set. Zero rows have similarity 0 to everything.
    """

    #: Queries per block: queries x N <= this many similarities (64 MB).
    block_elements = 1 << 24
    #: Normalised float32 copies up to this size are kept between queries.
    CACHE_BYTES = 512 << 20

    def __init__(self, embeddings: Any) -> None:
        self._source = embeddings
        arr = check_embeddings(embeddings, dtype=None)
        small = arr.shape[0] * arr.shape[1] * 4 <= self.CACHE_BYTES
        self._x = _l2_normalise(np.asarray(arr, dtype=np.float32)) if small else arr

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
        return _l2_normalise(np.asarray(self._x[i : i + 1], dtype=np.float32))[0]

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
        return self._query_core(q, k, exclude)

    def neighbours_of(self, rows: Any, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Neighbours of indexed rows, each row's self-match excluded; see :meth:`query`."""
        r = np.atleast_1d(np.asarray(rows))
        if not np.issubdtype(r.dtype, np.integer) or r.ndim != 1:
            raise ValueError(f"rows must be a 1-D array of ints, got {r.dtype} {r.shape}")
        if r.size and (r.min() < 0 or r.max() >= len(self)):
            raise ValueError(f"rows must be in 0..{len(self) - 1}, got [{r.min()}, {r.max()}]")
        k = check_int(k, "k", minimum=1)
        return self._query_core(np.asarray(self._x[r]), k, r.astype(np.int64))

    def _query_core(
        self, q: np.ndarray, k: int, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        from ..stats.neighbours import knn

        n, size = q.shape[0], len(self)
        if n == 0 or size == 0:
            return np.full((n, k), -1, dtype=np.int64), np.full((n, k), np.nan, dtype=np.float32)
        res = knn(
            q,
            self._x,
            k=k,
            exclude=exclude,
            method="exact",
            block_rows=max(1, self.block_elements // size),
        )
        return res.indices, res.scores


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


#: Neighbours stored per image by the run's neighbours section (the detail page shows 6).
STORED_NEIGHBOURS = 8


def nearest_rows(
    embeddings: Any,
    reference_embeddings: Any = None,
    *,
    k: int = STORED_NEIGHBOURS,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``k`` most similar evaluation images (itself excluded) and reference images of every
    evaluation image, for the image detail page, computed once at analysis time through the
    package's one nearest-neighbour path (exact up to its work limit, an index beyond).

    Returns
    -------
    eval_rows : np.ndarray of int32, shape (N, k)
        -1 where fewer than k other images exist.
    reference_rows : np.ndarray of int32, shape (N, k), or None without a reference set.
    """
    from ..stats.neighbours import knn

    x = check_embeddings(embeddings, dtype=None)
    k = check_int(k, "k", minimum=1)
    say = None if progress is None else (lambda m: progress(f"neighbours in the set: {m}"))
    own = knn(x, k=k, seed=seed, progress=say).indices.astype(np.int32)
    ref = None
    if reference_embeddings is not None:
        r = check_embeddings(reference_embeddings, "reference_embeddings", dtype=None)
        say = (
            None if progress is None else (lambda m: progress(f"neighbours in the reference: {m}"))
        )
        ref = knn(x, r, k=k, seed=seed, progress=say).indices.astype(np.int32)
    return own, ref


def cosine_to(embeddings: Any, i: int, rows: np.ndarray, other: Any = None) -> np.ndarray:
    """float32 cosine similarities of row ``i`` of ``embeddings`` to ``rows`` of ``other``
    (default: the same set); NaN where a row is -1. Reads only those rows."""
    other = embeddings if other is None else other
    rows = np.asarray(rows)
    out = np.full(rows.shape, np.nan, dtype=np.float32)
    ok = rows >= 0
    if not ok.any():
        return out
    q = np.asarray(embeddings[i], dtype=np.float32)
    r = np.asarray(other[rows[ok]], dtype=np.float32)
    den = np.linalg.norm(r, axis=1) * np.linalg.norm(q)
    out[ok] = np.where(den > 0, r @ q / np.where(den > 0, den, 1.0), 0.0)
    return out


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
        r_idx, r_sim = ref._query_core(index.vector(i)[None, :], k, None)
        r_idx, r_sim = r_idx[0], r_sim[0]
    return Neighbours(i, e_idx[0], e_sim[0], r_idx, r_sim)
