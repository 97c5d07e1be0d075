"""Nearest neighbours: the one vector-search path of the package.

Every nearest-neighbour question errorscope asks goes through :func:`knn`: near-duplicates and
leakage on model embeddings and near copies on appearance signatures
(:mod:`analysis.data_issues.duplicates`), the neighbours of an image on its detail page and UMAP's
k-nearest-neighbour graph (:mod:`analysis.explain.embeddings`). One function, one tie rule (equal
scores go to the lower row), one memory bound, one place to make it faster.

Why faiss
---------
faiss (``faiss-cpu`` on PyPI; Johnson, Douze & Jégou, *Billion-scale similarity search with
GPUs*, 2019) is the reference library for dense vector search and has both halves we need in
one package with NumPy in and out and no server: exact search as blocked matrix products (BLAS),
and compressed approximate indexes (inverted files with product-quantised codes) that hold a
million 512-d vectors in ~40 MB. The alternatives fall short on one side: scikit-learn's
``NearestNeighbors`` is exact only (1M x 1M at 512-d is ~10^15 multiply-adds, about a day on two
cores); hnswlib and pynndescent are approximate only, keep every vector in float32 (2 GB per
million at 512-d) and take long to build on two cores; pynndescent also compiles numba code in
every new process. faiss is what the large labs run at billions of vectors, so the same code
path scales from the bundled sample to a cluster's output.

Exact and approximate
---------------------
``method="exact"`` compares every query with every base row, a block of queries against a chunk
of base rows at a time (:func:`faiss.knn`), keeping a running top-k; memory is bounded by the
block sizes, never ``N x M``. Inputs may be float16 memory-maps (a run's ``embeddings.npy``):
blocks are converted to float32 one at a time. ``method="ivf"`` builds an inverted file over the
base set: rows (L2-normalised for cosine) are rotated and reduced by PCA to at most
:data:`IVF_DIMS` dimensions, grouped into ``nlist ~ 4 sqrt(M)`` cells by k-means, and stored as
4-bit fast-scan product-quantisation codes (:data:`IVF_DIMS` / 4 bytes per vector); each query
visits its ``nprobe`` nearest cells and its best ``rerank * k`` candidates are re-scored from a
float16 copy of the (normalised) rows, the precision a run stores embeddings in: returned scores
are exact to float16 rounding (~1e-3), and *which* rows are returned can differ from exact
search. Memory: ``2 * D`` bytes per base row for the copy plus ~40 for the codes (1.5 GB for a
million 768-d signatures), the queries streamed in blocks. ``method="auto"`` (the default) searches exactly while
``queries x base x dims`` stays under :data:`EXACT_MAX_WORK` multiply-adds (about a minute on the
2-core development machine) and with the index beyond. Its recall against exact search is
measured in ``bench/bench_duplicates.py`` (results in ``bench/results/duplicates.json``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..checks import check_embeddings

__all__ = [
    "EXACT_MAX_WORK",
    "IVF_DIMS",
    "KNN",
    "METHODS",
    "METRICS",
    "knn",
]

#: ``queries x base rows x dimensions`` above which ``method="auto"`` uses the approximate index.
#: 10^12 multiply-adds is 20-60 s of BLAS on the 2-core development machine (exact search of
#: 1M x 1M at 512-d would be ~5 * 10^14: hours).
EXACT_MAX_WORK = 1e12
#: Dimensions the approximate index works in (PCA with a random rotation first when D is larger).
IVF_DIMS = 128
#: Cells an approximate query visits, and how many candidates per wanted neighbour are re-scored
#: from the float16 copy. Chosen on synthetic clustered embeddings with planted copies (bench/bench_duplicates.py,
#: not the tests' data): recall of the pairs above 0.95 cosine >= 0.99 there.
DEFAULT_NPROBE = 16
DEFAULT_RERANK = 4
#: Query rows per block, and the most bytes a converted float32 base chunk may take.
DEFAULT_BLOCK_ROWS = 8192
BASE_CHUNK_BYTES = 256 << 20

METRICS = ("cosine", "euclidean")
METHODS = ("auto", "exact", "ivf")

Progress = Callable[[str], Any]


@dataclass(frozen=True)
class KNN:
    """The k nearest base rows of each query row.

    Attributes
    ----------
    indices : np.ndarray
        int64 [n, k]: base rows, nearest first; equal scores go to the lower row. -1 where fewer
        than k rows were available.
    scores : np.ndarray
        float32 [n, k]: cosine similarity in [-1, 1] (``metric="cosine"``, higher is nearer) or
        Euclidean distance (``metric="euclidean"``, lower is nearer); NaN where ``indices`` is -1.
    metric : str
    method : str
        ``"exact"`` or ``"ivf"``: what was actually run (``"auto"`` resolved).
    """

    indices: np.ndarray
    scores: np.ndarray
    metric: str
    method: str


# ----------------------------------------------------------------------------- validation


def _check_vectors(x: Any, name: str) -> np.ndarray:
    # no float32 copy: a million float16 rows are checked and read block by block
    return check_embeddings(x, name, dtype=None)


def _check_positive(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def knn(
    queries: Any,
    base: Any = None,
    *,
    k: int,
    metric: str = "cosine",
    exclude: Any = None,
    method: str = "auto",
    nprobe: int = DEFAULT_NPROBE,
    rerank: int = DEFAULT_RERANK,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    seed: int = 0,
    progress: Progress | None = None,
) -> KNN:
    """The ``k`` nearest rows of ``base`` for every row of ``queries``.

    Parameters
    ----------
    queries : array-like of real, shape (n, D)
        float16 or float32; memory-maps are read block by block. Must be finite.
    base : array-like of real, shape (m, D), optional
        The searched set. None searches ``queries`` against itself, each row's own match
        excluded.
    k : int >= 1, keyword-only
    metric : {"cosine", "euclidean"}, keyword-only
        ``"cosine"`` compares directions (rows are L2-normalised; an all-zero row has
        similarity 0 with everything); ``"euclidean"`` compares raw rows.
    exclude : array-like of int, shape (n,), optional, keyword-only
        Per query, one base row to leave out (-1: none), e.g. the query's own row.
    method : {"auto", "exact", "ivf"}, keyword-only
        See the module docstring. ``"auto"`` is exact up to :data:`EXACT_MAX_WORK`.
    nprobe, rerank : int, keyword-only
        Approximate search only: cells visited per query; candidates re-scored exactly per
        wanted neighbour.
    block_rows : int, keyword-only
        Query rows per block (memory ~ ``block_rows * (D + k) * 4`` bytes plus a base chunk of
        at most 256 MB). The result does not depend on it.
    seed : int, keyword-only
        Seed of the approximate index's training sample and k-means.
    progress : callable(str), optional, keyword-only
        Called with a short message per stage.

    Returns
    -------
    KNN
    """
    q = _check_vectors(queries, "queries")
    same = base is None
    b = q if same else _check_vectors(base, "base")
    if q.shape[0] and b.shape[0] and q.shape[1] != b.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features but base has {b.shape[1]}")
    k = _check_positive(k, "k")
    block_rows = _check_positive(block_rows, "block_rows")
    nprobe = _check_positive(nprobe, "nprobe")
    rerank = _check_positive(rerank, "rerank")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    n, m = q.shape[0], b.shape[0]
    ex = None
    if exclude is not None:
        ex = np.asarray(exclude)
        if not np.issubdtype(ex.dtype, np.integer) or ex.shape != (n,):
            raise ValueError(f"exclude must be ints of shape ({n},), got {ex.dtype} {ex.shape}")
        if ex.size and (ex.min() < -1 or ex.max() >= m):
            raise ValueError(f"exclude must hold base rows in -1..{m - 1}")
        ex = ex.astype(np.int64)
    elif same:
        ex = np.arange(n, dtype=np.int64)
    if method == "auto":
        method = "exact" if float(n) * m * max(1, q.shape[1]) <= EXACT_MAX_WORK else "ivf"
    indices = np.full((n, k), -1, dtype=np.int64)
    scores = np.full((n, k), np.nan, dtype=np.float32)
    if n == 0 or m == 0:
        return KNN(indices, scores, metric, method)
    if method == "ivf" and m < _MIN_IVF_BASE:
        method = "exact"  # too few rows to train an index on: exact is instant anyway
    core = _exact if method == "exact" else _ivf
    core(
        q,
        b,
        k=k,
        metric=metric,
        exclude=ex,
        out=(indices, scores),
        block_rows=block_rows,
        nprobe=nprobe,
        rerank=rerank,
        seed=seed,
        progress=progress,
    )
    return KNN(indices, scores, metric, method)


# ----------------------------------------------------------------------------- shared core


def _rows(x: np.ndarray, rows, metric: str) -> np.ndarray:
    """``x[rows]`` as C-contiguous float32, L2-normalised for cosine (zero rows stay zero)."""
    part = x[rows]
    if metric == "cosine" and part.dtype == np.float32 and part.flags.c_contiguous and part.size:
        norms = np.sqrt(np.einsum("ij,ij->i", part, part))
        if (np.abs(norms - 1.0) <= 1e-6).all():  # already unit rows (a cached index): no copy
            return part
    # a copy whenever the block could be the caller's memory: it is normalised in place
    out = np.ascontiguousarray(part.astype(np.float32, copy=np.may_share_memory(part, x)))
    if metric == "cosine" and out.size:
        norms = np.sqrt(np.einsum("ij,ij->i", out, out))
        out /= np.where(norms > 0, norms, 1.0)[:, None]
    return out


def _key(scores: np.ndarray, metric: str) -> np.ndarray:
    """Ascending sort key: nearest first."""
    return -scores if metric == "cosine" else scores


def _select(idx: np.ndarray, sc: np.ndarray, k: int, metric: str, exclude) -> tuple:
    """Per row the k nearest of the candidates (ties: lower index), ``exclude`` dropped."""
    key = _key(sc.astype(np.float64), metric)
    key[idx < 0] = np.inf
    if exclude is not None:
        key[idx == exclude[:, None]] = np.inf
    order = np.lexsort((idx, key), axis=1)[:, :k]
    idx = np.take_along_axis(idx, order, axis=1)
    sc = np.take_along_axis(sc, order, axis=1)
    bad = ~np.isfinite(np.take_along_axis(key, order, axis=1))
    idx[bad] = -1
    sc[bad] = np.nan
    return idx, sc


def _write(out, start: int, idx: np.ndarray, sc: np.ndarray) -> None:
    indices, scores = out
    w = idx.shape[1]
    indices[start : start + idx.shape[0], :w] = idx
    scores[start : start + idx.shape[0], :w] = sc


def _faiss():
    # Threads that sleep while they wait: OpenMP's default spinning made an index build 9x
    # slower on two cores shared with other work (80 s instead of 9 s at 50,000 rows).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("nearest-neighbour search needs faiss: pip install faiss-cpu") from exc
    return faiss


# ----------------------------------------------------------------------------- exact


def _exact(q, b, *, k, metric, exclude, out, block_rows, progress, **_) -> None:
    faiss = _faiss()
    fmetric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    n, m, d = q.shape[0], b.shape[0], q.shape[1]
    want = min(m, k + (1 if exclude is not None else 0))
    chunk = max(1, min(m, BASE_CHUNK_BYTES // (4 * max(1, d))))
    chunks = [(s, min(m, s + chunk)) for s in range(0, m, chunk)]
    cached = _rows(b, slice(0, m), metric) if len(chunks) == 1 else None
    if progress is not None:
        progress(f"exact search: {n:,} x {m:,} rows of {d} dims")
    for q0 in range(0, n, block_rows):
        qb = _rows(q, slice(q0, min(n, q0 + block_rows)), metric)
        best_i = np.full((qb.shape[0], 0), -1, dtype=np.int64)
        best_s = np.zeros((qb.shape[0], 0), dtype=np.float32)
        for s0, s1 in chunks:
            bb = cached if cached is not None else _rows(b, slice(s0, s1), metric)
            kc = min(want, s1 - s0)
            dist, ids = faiss.knn(qb, bb, kc, metric=fmetric)
            ids = ids.astype(np.int64)
            ids[ids >= 0] += s0
            if metric == "euclidean":
                dist = np.sqrt(np.maximum(dist, 0.0))
            best_i, best_s = _select(
                np.concatenate([best_i, ids], axis=1),
                np.concatenate([best_s, dist.astype(np.float32)], axis=1),
                want,
                metric,
                None,
            )
        ex = exclude[q0 : q0 + qb.shape[0]] if exclude is not None else None
        idx, sc = _select(best_i, best_s, k, metric, ex)
        _write(out, q0, idx, sc)


# ----------------------------------------------------------------------------- approximate

#: Fewer base rows than this are always searched exactly.
_MIN_IVF_BASE = 2_000
#: Training points per cell (faiss warns below 39) and the cap on the training sample.
_TRAIN_PER_CELL = 40
_TRAIN_MAX = 200_000


def _nlist(m: int) -> int:
    return int(max(1, min(round(4 * math.sqrt(m)), m // _TRAIN_PER_CELL, 65_536)))


def build_index(
    b: np.ndarray, *, metric: str, seed: int, block_rows: int, rerank: int, progress=None
):
    """An approximate index over ``b`` (see the module docstring): PCA to :data:`IVF_DIMS`
    when D is larger, an inverted file of ``nlist ~ 4 sqrt(M)`` cells, 4-bit fast-scan PQ codes,
    and a float16 copy of the rows that re-scores ``rerank`` candidates per wanted neighbour."""
    faiss = _faiss()
    m, d = b.shape
    dims = min(d, IVF_DIMS)
    dims -= dims % 2  # two dimensions per 4-bit sub-quantiser
    nlist = _nlist(m)
    pre = f"PCAR{dims}," if dims != d else ""
    spec = f"{pre}IVF{nlist},PQ{max(1, dims // 2)}x4fs" if dims else f"IVF{nlist},Flat"
    coarse = faiss.index_factory(d, spec, faiss.METRIC_L2)  # L2 on unit rows ranks as cosine
    ivf = faiss.extract_index_ivf(coarse)
    ivf.cp.seed = int(seed) % (2**31)
    exact = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    index = faiss.IndexRefine(coarse, exact)
    index.k_factor = float(rerank)
    rng = np.random.default_rng(seed)
    n_train = min(m, max(_TRAIN_PER_CELL * nlist, 20_000), _TRAIN_MAX)
    rows = np.sort(rng.choice(m, n_train, replace=False)) if n_train < m else slice(0, m)
    if progress is not None:
        progress(f"training an index of {nlist:,} cells on {n_train:,} of {m:,} rows ({spec})")
    index.train(_rows(b, rows, metric))
    step = block_rows * 4
    for s in range(0, m, step):
        index.add(_rows(b, slice(s, min(m, s + step)), metric))
        if progress is not None:
            progress(f"indexed {min(m, s + step):,} of {m:,} rows")
    return index


def _ivf(q, b, *, k, metric, exclude, out, block_rows, nprobe, rerank, seed, progress) -> None:
    faiss = _faiss()
    index = build_index(
        b, metric=metric, seed=seed, block_rows=block_rows, rerank=rerank, progress=progress
    )
    ivf = faiss.extract_index_ivf(index.base_index)
    ivf.nprobe = int(min(nprobe, ivf.nlist))
    n, m = q.shape[0], b.shape[0]
    want = min(m, k + (1 if exclude is not None else 0))
    for q0 in range(0, n, block_rows):
        qb = _rows(q, slice(q0, min(n, q0 + block_rows)), metric)
        dist, cand = index.search(qb, want)
        # squared L2 from the float16 copy: unit rows -> cosine = 1 - d / 2
        sc = 1.0 - dist / 2.0 if metric == "cosine" else np.sqrt(np.maximum(dist, 0.0))
        ex = None if exclude is None else exclude[q0 : q0 + qb.shape[0]]
        idx, s = _select(cand.astype(np.int64), sc.astype(np.float32), k, metric, ex)
        _write(out, q0, idx, s)
        if progress is not None:
            progress(f"searched {min(n, q0 + block_rows):,} of {n:,} queries")
