"""Exact and near-duplicates within an evaluation set, and leakage from a reference set.

Three kinds of evidence, each a plain function:

- **Exact duplicates**: identical content hashes (``schema.CONTENT_HASH``, sha256 of the file
  bytes). :func:`exact_duplicate_groups` returns the groups, :func:`exact_duplicates` the pairs.
- **Near-duplicates**: cosine similarity of embeddings (``embeddings.npy``, penultimate-layer
  features). :func:`near_duplicates` searches one set against itself (pairs ``i < j``),
  :func:`find_leakage` an evaluation set against a reference (training) set. Both keep, for each
  query image, its ``top_k`` most similar images whose similarity is ``>= threshold``.
- **Perceptual hashes** (:func:`dhash`, :func:`phash`, :func:`confirm_pairs`): a second, pixel-based
  opinion on candidate pairs, for when the embedding model is invariant to things that matter
  (a flipped or recoloured copy has a near-identical embedding but a different picture).

Default threshold 0.95 on L2-normalised embeddings. Re-encoded, resized or slightly cropped copies
of a photo land at cosine ~0.97-1.0 in the penultimate layer of ImageNet-style CNNs, while distinct
photos of the same class rarely pass ~0.9; 0.95 sits between, errs towards precision, and is the
value most near-duplicate tools start from. It was not tuned on this project's sample; lower it
(0.90) to catch heavier edits at the price of more same-scene pairs, and check candidates with
:func:`confirm_pairs` when precision matters.

Blockwise search
----------------
Similarities are computed ``block_size`` query rows against ``block_size`` reference rows at a
time with one float32 matrix product; each block keeps only the entries that can still be in a
row's top-k above the threshold, and a running top-k per row is merged from those. Nothing of size
``N x M`` is ever materialised. Peak extra memory is about ``6 * 4 * block_size**2`` bytes for a
block's similarities and masks (~100 MiB at the default 2048), plus ``4 * block_size * D`` bytes
for the normalised blocks and ``O((N + M) * top_k)`` for the kept candidates; the inputs themselves
are read, not copied (float16 embeddings are converted block by block). Within one set, only
blocks on and above the diagonal are computed and each block updates both its rows and its
columns, which halves the work. The result does not depend on ``block_size``: ties in similarity
go to the lower index everywhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..checks import check_confidence, check_embeddings
from ..loading.fingerprints import (  # noqa: F401 - part of this module's public API
    PERCEPTUAL_HASHES,
    SIGNATURE_SIDE,
    _check_hash_size,
    _check_method,
    appearance_signature,
    dhash,
    hamming_distance,
    perceptual_distance,
    phash,
)
from ..stats.intervals import Estimate, wilson_interval

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_THRESHOLD",
    "DEFAULT_TOP_K",
    "PAIR_COLUMNS",
    "PERCEPTUAL_HASHES",
    "LeakageImpact",
    "confirm_pairs",
    "dhash",
    "exact_duplicate_groups",
    "exact_duplicates",
    "find_duplicates",
    "find_leakage",
    "hamming_distance",
    "leakage_impact",
    "near_duplicates",
    "partner_columns",
    "perceptual_distance",
    "phash",
]

DEFAULT_THRESHOLD = 0.95
DEFAULT_TOP_K = 10
DEFAULT_BLOCK_SIZE = 2048
DEFAULT_MAX_HASH_DISTANCE = 10  # of 64 bits: ~15 % of the bits may differ

# Columns of the pair table.
PAIR_I = "i"  # row in the evaluation set
PAIR_J = "j"  # row in the evaluation set (scope "within", i < j) or in the reference set ("leak")
SIMILARITY = "similarity"  # cosine in [-1, 1]; 1.0 for exact duplicates
KIND = "kind"  # "exact" | "near"
SCOPE = "scope"  # "within" | "leak"
PAIR_COLUMNS = [PAIR_I, PAIR_J, SIMILARITY, KIND, SCOPE]
HASH_DISTANCE = "hash_distance"  # added by confirm_pairs
CONFIRMED = "confirmed"


def _empty_pairs() -> pd.DataFrame:
    return pd.DataFrame(
        {
            PAIR_I: pd.Series(dtype=np.int64),
            PAIR_J: pd.Series(dtype=np.int64),
            SIMILARITY: pd.Series(dtype=np.float64),
            KIND: pd.Series(dtype=object),
            SCOPE: pd.Series(dtype=object),
        }
    )


def _pairs(i, j, sim, kind: str, scope: str) -> pd.DataFrame:
    if len(i) == 0:
        return _empty_pairs()
    return pd.DataFrame(
        {
            PAIR_I: np.asarray(i, dtype=np.int64),
            PAIR_J: np.asarray(j, dtype=np.int64),
            SIMILARITY: np.clip(np.asarray(sim, dtype=np.float64), -1.0, 1.0),
            KIND: kind,
            SCOPE: scope,
        },
        columns=PAIR_COLUMNS,
    )


# ----------------------------------------------------------------------------- exact


def _check_hashes(hashes: Any, name: str) -> list:
    if isinstance(hashes, str | bytes) or not isinstance(hashes, Sequence | np.ndarray | pd.Series):
        raise TypeError(f"{name} must be a sequence of strings, got {type(hashes).__name__}")
    out = list(hashes)
    for k, h in enumerate(out):
        if h is None or (isinstance(h, float) and math.isnan(h)):
            continue
        if not isinstance(h, str):
            raise TypeError(f"{name}[{k}] must be a string (or None), got {type(h).__name__}")
    return out


def _first_index(hashes: list) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for k, h in enumerate(hashes):
        if isinstance(h, str) and h:
            groups.setdefault(h, []).append(k)
    return groups


def exact_duplicate_groups(hashes: Sequence[str | None]) -> list[np.ndarray]:
    """Groups of rows whose content hash is identical.

    Parameters
    ----------
    hashes : sequence of str, length N
        One hash per image (e.g. ``schema.CONTENT_HASH``); ``None``/NaN/"" (unreadable) are ignored.

    Returns
    -------
    list of np.ndarray
        int64 index arrays, each sorted and of length >= 2, ordered by their first index.
    """
    hashes = _check_hashes(hashes, "hashes")
    groups = [np.asarray(g, dtype=np.int64) for g in _first_index(hashes).values() if len(g) > 1]
    return sorted(groups, key=lambda g: int(g[0]))


def exact_duplicates(
    hashes: Sequence[str | None], *, reference_hashes: Sequence[str | None] | None = None
) -> pd.DataFrame:
    """Exact-duplicate pairs by content hash, within a set and (optionally) leaking from another.

    A group of ``m`` identical images gives ``m - 1`` "within" pairs ``(first, other)`` (a star,
    not all ``m (m - 1) / 2`` pairs); every evaluation row whose hash occurs in the reference set
    gives one "leak" pair with the first such reference row.

    Returns
    -------
    pd.DataFrame
        Columns :data:`PAIR_COLUMNS`; ``similarity`` is 1.0 and ``kind`` is ``"exact"``.
    """
    hashes = _check_hashes(hashes, "hashes")
    ii, jj = [], []
    for g in _first_index(hashes).values():
        ii.extend([g[0]] * (len(g) - 1))
        jj.extend(g[1:])
    out = [_pairs(ii, jj, np.ones(len(ii)), "exact", "within")]
    if reference_hashes is not None:
        ref = _first_index(_check_hashes(reference_hashes, "reference_hashes"))
        li = [k for k, h in enumerate(hashes) if isinstance(h, str) and h in ref]
        lj = [ref[hashes[k]][0] for k in li]
        out.append(_pairs(li, lj, np.ones(len(li)), "exact", "leak"))
    return _sort_pairs(pd.concat(out, ignore_index=True) if len(out) > 1 else out[0])


def _sort_pairs(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return _empty_pairs()
    return df.sort_values([SIMILARITY, PAIR_I, PAIR_J], ascending=[False, True, True]).reset_index(
        drop=True
    )


# ----------------------------------------------------------------------------- near


def _check_search_options(threshold: Any, top_k: Any, block_size: Any) -> None:
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.floating):
        raise TypeError(f"threshold must be a float in [-1, 1], got {type(threshold).__name__}")
    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold must be a cosine similarity in [-1, 1], got {threshold!r}")
    for name, v in (("top_k", top_k), ("block_size", block_size)):
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise TypeError(f"{name} must be a positive int, got {type(v).__name__}")
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")


def _row_norms(x: np.ndarray, block: int) -> np.ndarray:
    out = np.empty(x.shape[0], dtype=np.float32)
    for s in range(0, x.shape[0], block):
        b = x[s : s + block].astype(np.float32, copy=False)
        out[s : s + block] = np.sqrt(np.einsum("ij,ij->i", b, b))
    return out


def _unit_block(x: np.ndarray, norms: np.ndarray, start: int, block: int) -> np.ndarray:
    """Rows ``start:start+block`` as float32, L2-normalised; zero rows stay zero."""
    b = x[start : start + block].astype(np.float32)
    n = norms[start : start + block]
    b /= np.where(n > 0, n, 1.0)[:, None]
    return b


def _block_candidates(s: np.ndarray, k: int, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of entries that can be in a row's top-k at or above ``threshold``.

    Per row: every entry ``>= threshold`` when there are at most ``k``; otherwise exactly the k
    largest, ties at the k-th value going to the lower column.
    """
    hit = np.flatnonzero(s.max(axis=1) >= threshold)  # the common case: no row has a hit
    if hit.size == 0:
        return hit, hit
    sub = s[hit]
    mask = sub >= threshold
    heavy = np.flatnonzero(mask.sum(axis=1) > k)
    if heavy.size:
        rows = sub[heavy]
        width = rows.shape[1]
        kth = np.partition(rows, width - k, axis=1)[:, width - k][:, None]
        gt = rows > kth
        eq = rows == kth
        need = k - gt.sum(axis=1, keepdims=True)
        mask[heavy] = gt | (eq & (np.cumsum(eq, axis=1, dtype=np.int32) <= need))
    r, c = np.nonzero(mask)
    return hit[r], c


def _reduce_topk(rows, cols, vals, k):
    """Keep each row's k best (highest similarity, then lowest column)."""
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    if rows.size == 0:
        return rows, cols, vals
    new = np.r_[True, rows[1:] != rows[:-1]]
    starts = np.flatnonzero(new)
    rank = np.arange(rows.size) - np.repeat(starts, np.diff(np.r_[starts, rows.size]))
    keep = rank < k
    return rows[keep], cols[keep], vals[keep]


def _blockwise_topk(
    q: np.ndarray,
    r: np.ndarray | None,
    *,
    k: int,
    threshold: float,
    block_size: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Top-k neighbours at or above ``threshold`` of each row of ``q`` among the rows of ``r``.

    ``r is None`` searches ``q`` against itself, excluding each row itself. Returns int64 query
    rows, int64 reference rows and float32 similarities, sorted by row, then similarity desc.
    """
    same = r is None
    ref = q if same else r
    nq, nr = q.shape[0], ref.shape[0]
    qn = _row_norms(q, block_size)
    rn = qn if same else _row_norms(ref, block_size)
    pend_r: list[np.ndarray] = []
    pend_c: list[np.ndarray] = []
    pend_v: list[np.ndarray] = []
    pending = 0
    limit = max(4 * (nq + nr) * k, 1 << 20)

    def add(s: np.ndarray, r0: int, c0: int) -> None:
        nonlocal pending
        rr, cc = _block_candidates(s, k, threshold)
        if rr.size:
            pend_r.append(rr.astype(np.int64) + r0)
            pend_c.append(cc.astype(np.int64) + c0)
            pend_v.append(s[rr, cc])
            pending += rr.size

    kept = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32))
    for a0 in range(0, nq, block_size):
        qa = _unit_block(q, qn, a0, block_size)
        for b0 in range(a0 if same else 0, nr, block_size):
            if same and b0 == a0:
                s = qa @ qa.T
                np.fill_diagonal(s, -np.inf)
                add(s, a0, b0)
                continue
            s = qa @ _unit_block(ref, rn, b0, block_size).T
            add(s, a0, b0)
            if same:
                add(np.ascontiguousarray(s.T), b0, a0)
        if pending > limit:
            kept = _reduce_topk(*_concat(kept, pend_r, pend_c, pend_v), k)
            pend_r, pend_c, pend_v, pending = [], [], [], 0
    return _reduce_topk(*_concat(kept, pend_r, pend_c, pend_v), k)


def _concat(kept, pr, pc, pv):
    return (
        np.concatenate([kept[0], *pr]),
        np.concatenate([kept[1], *pc]),
        np.concatenate([kept[2], *pv]).astype(np.float32, copy=False),
    )


def near_duplicates(
    embeddings: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> pd.DataFrame:
    """Near-duplicate pairs within one set by cosine similarity of embeddings.

    Parameters
    ----------
    embeddings : array-like of float, shape (N, D)
        float16 or float32 features; they are L2-normalised here (zero rows have similarity 0
        with everything).
    threshold : float, keyword-only
        Minimum cosine similarity in [-1, 1] (default 0.95, see the module docstring).
    top_k : int, keyword-only
        Each image keeps at most its ``top_k`` most similar other images; a pair is reported when
        either of its two images keeps the other. Bounds the output for large groups of copies.
    block_size : int, keyword-only
        Rows per block of the blockwise search; memory ~ ``24 * block_size**2`` bytes.

    Returns
    -------
    pd.DataFrame
        Columns :data:`PAIR_COLUMNS`, ``i < j``, ``kind="near"``, ``scope="within"``, sorted by
        decreasing similarity (then ``i``, ``j``).
    """
    x = check_embeddings(embeddings, dtype=None)
    _check_search_options(threshold, top_k, block_size)
    return _near_core(x, threshold=float(threshold), top_k=int(top_k), block_size=int(block_size))


def _near_core(x: np.ndarray, *, threshold: float, top_k: int, block_size: int) -> pd.DataFrame:
    if x.shape[0] < 2:
        return _empty_pairs()
    rows, cols, vals = _blockwise_topk(x, None, k=top_k, threshold=threshold, block_size=block_size)
    i, j = np.minimum(rows, cols), np.maximum(rows, cols)
    order = np.lexsort((-vals, j, i))
    i, j, vals = i[order], j[order], vals[order]
    first = np.r_[True, (i[1:] != i[:-1]) | (j[1:] != j[:-1])] if i.size else np.zeros(0, bool)
    return _sort_pairs(_pairs(i[first], j[first], vals[first], "near", "within"))


def find_leakage(
    embeddings: Any,
    reference_embeddings: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> pd.DataFrame:
    """Evaluation images with a near-copy in a reference (training) set.

    Parameters
    ----------
    embeddings : array-like of float, shape (N, D)
        Evaluation-set features.
    reference_embeddings : array-like of float, shape (M, D)
        Reference-set features from the same model.
    threshold, top_k, block_size
        As in :func:`near_duplicates`; ``top_k`` is per evaluation image.

    Returns
    -------
    pd.DataFrame
        Columns :data:`PAIR_COLUMNS`; ``i`` indexes the evaluation set, ``j`` the reference set,
        ``kind="near"``, ``scope="leak"``, sorted by decreasing similarity.
    """
    x = check_embeddings(embeddings, dtype=None)
    r = check_embeddings(reference_embeddings, "reference_embeddings", dtype=None)
    if x.shape[1] != r.shape[1]:
        raise ValueError(
            f"embeddings have {x.shape[1]} features but reference_embeddings have {r.shape[1]}"
        )
    _check_search_options(threshold, top_k, block_size)
    return _leak_core(x, r, threshold=float(threshold), top_k=int(top_k), block_size=block_size)


def _leak_core(x, r, *, threshold: float, top_k: int, block_size: int) -> pd.DataFrame:
    if x.shape[0] == 0 or r.shape[0] == 0:
        return _empty_pairs()
    rows, cols, vals = _blockwise_topk(x, r, k=top_k, threshold=threshold, block_size=block_size)
    return _sort_pairs(_pairs(rows, cols, vals, "near", "leak"))


def find_duplicates(
    embeddings: Any | None = None,
    *,
    reference_embeddings: Any | None = None,
    hashes: Sequence[str | None] | None = None,
    reference_hashes: Sequence[str | None] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    top_k: int = DEFAULT_TOP_K,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> pd.DataFrame:
    """Every duplicate and leak pair the given inputs allow, in one table.

    Exact pairs come from ``hashes`` (and ``reference_hashes``), near pairs from ``embeddings``
    (and ``reference_embeddings``). A near pair that is also an exact pair is reported once, as
    exact. Returns columns :data:`PAIR_COLUMNS`, sorted by decreasing similarity.
    """
    parts = []
    if hashes is not None:
        parts.append(exact_duplicates(hashes, reference_hashes=reference_hashes))
    elif reference_hashes is not None:
        raise ValueError("reference_hashes needs hashes (the evaluation set's) as well")
    if embeddings is not None:
        parts.append(
            near_duplicates(embeddings, threshold=threshold, top_k=top_k, block_size=block_size)
        )
        if reference_embeddings is not None:
            parts.append(
                find_leakage(
                    embeddings,
                    reference_embeddings,
                    threshold=threshold,
                    top_k=top_k,
                    block_size=block_size,
                )
            )
    elif reference_embeddings is not None:
        raise ValueError("reference_embeddings needs embeddings (the evaluation set's) as well")
    parts = [p for p in parts if not p.empty]
    if not parts:
        return _empty_pairs()
    df = pd.concat(parts, ignore_index=True)
    df = df.assign(_exact=df[KIND] == "exact").sort_values("_exact", ascending=False, kind="stable")
    df = df.drop_duplicates([PAIR_I, PAIR_J, SCOPE], keep="first").drop(columns="_exact")
    return _sort_pairs(df)


def partner_columns(
    pairs: pd.DataFrame,
    sample_ids: Sequence[str],
    reference_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-image columns of ``samples.parquet`` from a pair table.

    Parameters
    ----------
    pairs : pd.DataFrame
        A pair table (:data:`PAIR_COLUMNS`), e.g. from :func:`find_duplicates`.
    sample_ids : sequence of str, length N
        ``schema.SAMPLE_ID`` of the evaluation rows (``i`` and "within" ``j`` index it).
    reference_names : sequence of str, optional
        How to name a reference row (e.g. its ``schema.RELPATH``); needed when there are "leak"
        rows.

    Returns
    -------
    pd.DataFrame
        N rows in ``sample_ids`` order: ``schema.DUPLICATE_OF`` (sample id of the most similar
        within-set partner, else None), ``schema.LEAK_OF`` (name of the most similar reference
        image, else None) and ``schema.LEAK_SIMILARITY`` (float, NaN when not leaked). Ties go to
        the lower partner index.
    """
    from .. import schema

    missing = [c for c in (PAIR_I, PAIR_J, SIMILARITY, SCOPE) if c not in pairs.columns]
    if missing:
        raise ValueError(f"pairs must have columns {PAIR_COLUMNS}, missing {missing}")
    n = len(sample_ids)
    within = pairs[pairs[SCOPE] == "within"]
    leak = pairs[pairs[SCOPE] == "leak"]
    if len(leak) and reference_names is None:
        raise ValueError("pairs has 'leak' rows: pass reference_names")
    for name, col, size in (("i", pairs[PAIR_I], n), ("within j", within[PAIR_J], n)):
        if len(col) and (col.min() < 0 or col.max() >= size):
            raise ValueError(f"pairs {name} out of range for {size} sample_ids")
    if len(leak) and leak[PAIR_J].max() >= len(reference_names):
        raise ValueError(f"pairs leak j out of range for {len(reference_names)} reference_names")

    def best(rows: np.ndarray, partners: np.ndarray, sims: np.ndarray):
        order = np.lexsort((partners, -sims, rows))
        rows, partners, sims = rows[order], partners[order], sims[order]
        first = np.r_[True, rows[1:] != rows[:-1]] if rows.size else np.zeros(0, bool)
        return rows[first], partners[first], sims[first]

    ids = np.asarray(list(sample_ids), dtype=object)
    dup = np.full(n, None, dtype=object)
    wi, wj = within[PAIR_I].to_numpy(np.int64), within[PAIR_J].to_numpy(np.int64)
    ws = within[SIMILARITY].to_numpy(np.float64)
    r, p, _ = best(np.r_[wi, wj], np.r_[wj, wi], np.r_[ws, ws])
    dup[r] = ids[p]
    leak_of = np.full(n, None, dtype=object)
    leak_sim = np.full(n, np.nan)
    if len(leak):
        names = np.asarray(list(reference_names), dtype=object)
        r, p, sim = best(
            leak[PAIR_I].to_numpy(np.int64),
            leak[PAIR_J].to_numpy(np.int64),
            leak[SIMILARITY].to_numpy(np.float64),
        )
        leak_of[r] = names[p]
        leak_sim[r] = sim
    return pd.DataFrame(
        {schema.DUPLICATE_OF: dup, schema.LEAK_OF: leak_of, schema.LEAK_SIMILARITY: leak_sim}
    )


# ----------------------------------------------------------------------------- leakage impact


@dataclass(frozen=True)
class LeakageImpact:
    """Accuracy with and without the evaluation images that leak from the reference set.

    Attributes
    ----------
    n, n_leaked : int
        Evaluation images, and those flagged as leaked.
    accuracy : Estimate
        On all ``n`` images (Wilson interval).
    accuracy_clean : Estimate
        On the ``n - n_leaked`` images that are not leaked: the honest number.
    accuracy_leaked : Estimate
        On the leaked images only (NaN when there are none).
    inflation : float
        ``accuracy - accuracy_clean``: how much leakage flatters the headline (NaN if undefined).
    """

    n: int
    n_leaked: int
    accuracy: Estimate
    accuracy_clean: Estimate
    accuracy_leaked: Estimate
    inflation: float

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("accuracy", "accuracy_clean", "accuracy_leaked"):
            d[key] = getattr(self, key).to_dict()
        d["inflation"] = None if math.isnan(self.inflation) else self.inflation
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeakageImpact:
        return cls(
            n=int(d["n"]),
            n_leaked=int(d["n_leaked"]),
            accuracy=Estimate.from_dict(d["accuracy"]),
            accuracy_clean=Estimate.from_dict(d["accuracy_clean"]),
            accuracy_leaked=Estimate.from_dict(d["accuracy_leaked"]),
            inflation=math.nan if d["inflation"] is None else float(d["inflation"]),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LeakageImpact):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]


def _check_bool(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D [N], got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.size and not (np.issubdtype(arr.dtype, np.integer) and np.isin(arr, (0, 1)).all()):
            raise TypeError(f"{name} must be boolean (or 0/1), got dtype {arr.dtype}")
        arr = arr.astype(bool)
    return arr


def leakage_impact(correct: Any, leaked: Any, *, confidence: float = 0.95) -> LeakageImpact:
    """Accuracy on all images, on the non-leaked ones and on the leaked ones, with intervals.

    Parameters
    ----------
    correct : array-like of bool, shape (N,)
        Whether each evaluation image was classified correctly.
    leaked : array-like of bool, shape (N,)
        Whether each evaluation image has a (near-)copy in the reference set.
    confidence : float, keyword-only
        Two-sided level of the Wilson intervals.
    """
    c = _check_bool(correct, "correct")
    lk = _check_bool(leaked, "leaked")
    if c.shape != lk.shape:
        raise ValueError(f"correct has {c.size} rows but leaked has {lk.size}")
    return _impact_core(c, lk, check_confidence(confidence))


def _estimate(successes: int, trials: int, confidence: float) -> Estimate:
    low, high = wilson_interval(successes, trials, confidence=confidence)
    value = successes / trials if trials else math.nan
    return Estimate(value, low, high, "wilson", trials, confidence)


def _impact_core(c: np.ndarray, lk: np.ndarray, confidence: float) -> LeakageImpact:
    n, nl = int(c.size), int(lk.sum())
    acc = _estimate(int(c.sum()), n, confidence)
    clean = _estimate(int(c[~lk].sum()), n - nl, confidence)
    leak = _estimate(int(c[lk].sum()), nl, confidence)
    return LeakageImpact(n, nl, acc, clean, leak, acc.value - clean.value)


# ----------------------------------------------------------------------------- perceptual


def confirm_pairs(
    pairs: pd.DataFrame,
    paths: Sequence[str],
    reference_paths: Sequence[str] | None = None,
    *,
    method: str = "phash",
    max_distance: int = DEFAULT_MAX_HASH_DISTANCE,
    hash_size: int = 8,
) -> pd.DataFrame:
    """Add a perceptual-hash opinion to candidate pairs.

    Parameters
    ----------
    pairs : pd.DataFrame
        A pair table (:data:`PAIR_COLUMNS`); "leak" rows look ``j`` up in ``reference_paths``.
    paths, reference_paths : sequence of str
        Image paths of the evaluation and reference sets, indexed by ``i`` / ``j``.
    method : {"phash", "dhash"}, keyword-only
    max_distance : int, keyword-only
        Largest Hamming distance (of ``hash_size**2`` bits) that confirms a pair.

    Returns
    -------
    pd.DataFrame
        A copy of ``pairs`` with ``hash_distance`` (float, NaN when an image cannot be read) and
        ``confirmed`` (bool).
    """
    _check_method(method)
    _check_hash_size(hash_size)
    missing = [c for c in (PAIR_I, PAIR_J, SCOPE) if c not in getattr(pairs, "columns", ())]
    if missing:
        raise ValueError(f"pairs must have columns {[PAIR_I, PAIR_J, SCOPE]}, missing {missing}")
    if (pairs[SCOPE] == "leak").any() and reference_paths is None:
        raise ValueError("pairs has 'leak' rows: pass reference_paths")
    if isinstance(max_distance, bool) or not isinstance(max_distance, int) or max_distance < 0:
        raise ValueError(f"max_distance must be an int >= 0, got {max_distance!r}")
    from ..loading.images import ImageReadError

    fn = PERCEPTUAL_HASHES[method]
    cache: dict[str, np.ndarray | None] = {}

    def get(path: str) -> np.ndarray | None:
        if path not in cache:
            try:
                cache[path] = fn(path, hash_size=hash_size)
            except ImageReadError:
                cache[path] = None
        return cache[path]

    dist = []
    for i, j, scope in zip(pairs[PAIR_I], pairs[PAIR_J], pairs[SCOPE], strict=True):
        ha = get(paths[int(i)])
        hb = get((reference_paths if scope == "leak" else paths)[int(j)])
        dist.append(math.nan if ha is None or hb is None else float(hamming_distance(ha, hb)))
    d = np.asarray(dist, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        confirmed = d <= max_distance
    return pairs.assign(**{HASH_DISTANCE: d, CONFIRMED: confirmed})


# ----------------------------------------------------------------------------- near copies

#: A near copy must be at least this similar (cosine of the mean-centred tiny images) ...
COPY_SIMILARITY = 0.95
#: ... and this many times closer (in 1 - cosine) than the query's (k+1)-th neighbour.
COPY_DISTINCTIVENESS = 4.0
#: Copies of one image allowed before the neighbourhood test stops seeing them as distinct.
COPY_MAX_GROUP = 4


def find_near_copies(
    signatures: Any,
    reference_signatures: Any | None = None,
    *,
    similarity: float = COPY_SIMILARITY,
    distinctiveness: float = COPY_DISTINCTIVENESS,
    max_group: int = COPY_MAX_GROUP,
    block_size: int = DEFAULT_BLOCK_SIZE,
) -> pd.DataFrame:
    """Near copies (re-encoded, resized, shifted, re-lit versions of one picture), within the
    set and against a reference set.

    A pair (query q, candidate c) is a copy when ``cos(q, c) >= similarity`` **and** c stands out
    from q's neighbourhood: ``(1 - cos(q, n_k)) / (1 - cos(q, c)) >= distinctiveness`` where
    ``n_k`` is q's (``max_group`` + 1)-th nearest neighbour. The second test adapts to the data:
    in a region of look-alikes (plain backgrounds, one product photographed many times) every
    neighbour is close and nothing stands out, while a real copy is far closer than the rest.

    Returns the pair table (:data:`PAIR_COLUMNS`, kind "near") plus ``distinctiveness``.
    Blockwise top-k search: memory bounded by ``block_size`` as in :func:`near_duplicates`.
    """
    # Kept in their stored dtype (float16 in a run): blocks are upcast one at a time.
    sig = check_embeddings(signatures, "signatures", dtype=None)
    k = int(max_group) + 1
    parts = []
    for scope, ref in (("within", sig), ("leak", reference_signatures)):
        if ref is None or len(sig) == 0:
            continue
        ref = check_embeddings(ref, "reference_signatures", dtype=None)
        extra = 1 if scope == "within" else 0  # the query finds itself first
        cand = find_leakage(
            sig, ref, threshold=-1.0, top_k=min(k + extra, len(ref)), block_size=block_size
        )
        if scope == "within":
            cand = cand[cand[PAIR_I] != cand[PAIR_J]]
        if cand.empty:
            continue
        cand = cand.sort_values([PAIR_I, SIMILARITY], ascending=[True, False])
        radius = cand.groupby(PAIR_I)[SIMILARITY].transform("min").to_numpy()
        full = cand.groupby(PAIR_I)[SIMILARITY].transform("size").to_numpy() >= min(
            k, len(ref) - extra
        )
        sim = cand[SIMILARITY].to_numpy()
        ratio = (1.0 - radius) / np.maximum(1.0 - sim, 1e-6)
        keep = (sim >= similarity) & (ratio >= distinctiveness) & full
        hit = cand[keep].assign(distinctiveness=ratio[keep], **{KIND: "near", SCOPE: scope})
        if scope == "within":  # report each unordered pair once
            a = np.minimum(hit[PAIR_I], hit[PAIR_J])
            b = np.maximum(hit[PAIR_I], hit[PAIR_J])
            hit = hit.assign(**{PAIR_I: a, PAIR_J: b}).drop_duplicates([PAIR_I, PAIR_J])
        parts.append(hit)
    if not parts:
        return _empty_pairs().assign(distinctiveness=pd.Series(dtype=np.float64))
    out = pd.concat(parts, ignore_index=True)
    return out.sort_values(SIMILARITY, ascending=False).reset_index(drop=True)
