"""Run-level evidence the causes share, computed once per triage and independent of the groups.

- **Quality types** (:data:`QUALITY_TYPES`): which images are degraded, per kind of degradation.
  An image is *dark* when its mean luma is below 0.2, *overexposed* above 0.8, *noisy* when its
  estimated noise sigma is at least 5 grey levels: bad on any data set (the absolute guards of
  :mod:`analysis.data_issues.outliers`). Low contrast, blur and odd sizes are judged against the
  data set itself (the outlier detector's flags), because their absolute scale depends on the
  content. *EXIF-rotated*: an orientation tag other than 1 that the model did not see applied.
  Each type names the robustness perturbations that reproduce it.
- **Representation** (:func:`representation_table`): every value of every metadata column, every
  class and every property bin (the slices' vocabulary) with its share of the reference set
  against its *target* share: its share of the evaluation set or, for a categorical value, the
  median share of the column's values in the reference (a class the model saw 54 times where a
  typical class has 349 is rare in training even if it is rare in evaluation too), whichever
  is larger. A value is *under-represented* when a one-sided exact binomial test rejects
  "its reference share is at least ``UNDER_FACTOR`` (1/4) of the target" (Benjamini-Hochberg
  over the vocabulary). The factor makes the claim material: a value with half its target share
  is a distribution shift worth knowing, not a shortage that explains failures; at a quarter or
  less the model has seen too few of it.
- **Shortcut candidates** (:func:`shortcut_candidates`): the reference set's contingency tables
  of class against every categorical metadata value and every property bin (reference quantiles):
  a value ``v`` is a candidate shortcut to class ``k`` when, in the reference, ``k`` is
  significantly more frequent with ``v`` than without it (one-sided Fisher exact, BH over every
  cell), ``P(v | k) >= 2 * P(v | not k)``, ``v`` is on at least a quarter of ``k``'s reference
  images (a value on 4% of a class cannot teach it much) and at least 10 of them.
- **Nearest-reference distance** (:func:`reference_distances`): cosine distance of each
  evaluation image to its nearest reference image in the model's embedding space, and the
  reference images' own k nearest neighbours (for overlapping classes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import schema
from ..stats.slices import (
    Partition,
    Predicate,
    SliceSpec,
    apply_slice,
    bh_adjust,
    describe,
    fisher_worse_p,
    slice_partitions,
)

UNDER_FACTOR = 0.25  # under-represented: reference share below this fraction of its target
SHORTCUT_LIFT = 2.0  # P(v | k) / P(v | not k) in the reference
SHORTCUT_SHARE = 0.25  # P(v | k): the value is on at least a quarter of k's training images
SHORTCUT_MIN = 10  # reference images of k with v
MAX_REFERENCE = 4_000  # reference rows searched for distances (a seeded sample above this)
MAX_DIM = 32  # embedding dimensions kept (PCA) for the distance search
K_MIX = 10  # neighbours per reference image for class mixing
MIX_PER_CLASS = 400  # reference images per class whose neighbours are counted
UNFAMILIAR_QUANTILE = 0.95  # "far": beyond this quantile of correct images' distances
EXIF_COLUMN = getattr(schema, "EXIF_ORIENTATION", "exif_orientation")


# ---------------------------------------------------------------------------------- quality


@dataclass(frozen=True)
class QualityType:
    """One kind of image degradation.

    Attributes
    ----------
    name, words : str
        Registry key and plain words ("dark (mean brightness below 0.2)").
    column : str
        The property it reads (for charts).
    perturbations : tuple of str
        Robustness perturbations that reproduce it (checked in this order).
    level : callable or None
        ``level(group_values, rest_values) -> parameter`` of the first perturbation that matches
        the group's measured degradation, or None when it cannot be measured.
    """

    name: str
    words: str
    column: str
    perturbations: tuple[str, ...]
    level: Callable[[np.ndarray, np.ndarray], float | None] | None = None


def _median_ratio(g: np.ndarray, r: np.ndarray) -> float | None:
    g, r = g[np.isfinite(g)], r[np.isfinite(r)]
    if not g.size or not r.size or np.median(r) <= 0:
        return None
    return float(np.median(g) / np.median(r))


def _noise_level(g: np.ndarray, r: np.ndarray) -> float | None:
    g = g[np.isfinite(g)]
    return float(np.median(g) / 255.0) if g.size else None  # grey levels -> [0, 1] units


QUALITY_TYPES: dict[str, QualityType] = {
    q.name: q
    for q in (
        QualityType(
            "dark", "dark (mean brightness below 0.2)", schema.BRIGHTNESS,
            ("brightness_down",), _median_ratio,
        ),
        QualityType(
            "overexposed", "overexposed (mean brightness above 0.8)", schema.BRIGHTNESS,
            ("brightness_up",), _median_ratio,
        ),
        QualityType(
            "low_contrast", "low contrast (an outlier of this data set)", schema.CONTRAST,
            ("contrast",), _median_ratio,
        ),
        QualityType(
            "blurry", "blurry (an outlier of this data set)", schema.SHARPNESS,
            ("gaussian_blur", "motion_blur"), None,
        ),
        QualityType(
            # sensor noise hides blur from the Laplacian, so a noisy group is checked against
            # blur too: only a perturbation can tell whether it is also blurred
            "noisy", "noisy (noise sigma of 5 grey levels or more)", schema.NOISE,
            ("gaussian_noise", "gaussian_blur"), _noise_level,
        ),
        QualityType(
            "odd_size", "an odd size or aspect ratio (an outlier of this data set)",
            schema.WIDTH, ("downscale",), None,
        ),
        QualityType(
            "exif_rotated", "EXIF-rotated (shown rotated, seen by the model as stored)",
            EXIF_COLUMN, ("rotation",), None,
        ),
    )
}  # fmt: skip


def quality_masks(
    samples: pd.DataFrame, outliers: pd.DataFrame | None, *, exif_transposed: bool = False
) -> dict[str, np.ndarray]:
    """bool [N] per quality type the samples can show (types without their column left out)."""
    n = len(samples)
    flags: dict[str, np.ndarray] = {}
    if outliers is not None and len(outliers):
        idx = outliers["index"].to_numpy()
        types = outliers["type"].to_numpy()
        for t in np.unique(types):
            m = np.zeros(n, dtype=bool)
            rows = idx[types == t].astype(np.int64)
            m[rows[(rows >= 0) & (rows < n)]] = True
            flags[str(t)] = m

    def col(name: str) -> np.ndarray | None:
        if name not in samples.columns:
            return None
        return pd.to_numeric(samples[name], errors="coerce").to_numpy(dtype=np.float64)

    def flag(*names: str) -> np.ndarray:
        out = np.zeros(n, dtype=bool)
        for k in names:
            out |= flags.get(k, np.zeros(n, dtype=bool))
        return out

    out: dict[str, np.ndarray] = {}
    b = col(schema.BRIGHTNESS)
    if b is not None:
        out["dark"] = (b < 0.2) | flag("dark")
        out["overexposed"] = (b > 0.8) | flag("overexposed")
    if schema.CONTRAST in samples.columns:
        out["low_contrast"] = flag("low_contrast", "near_constant")
    if schema.SHARPNESS in samples.columns:
        out["blurry"] = flag("blurry")
    noise = col(schema.NOISE)
    if noise is not None:
        out["noisy"] = (noise >= 5.0) | flag("noisy")
    if schema.WIDTH in samples.columns:
        out["odd_size"] = flag("odd_size", "odd_aspect_ratio")
    ex = col(EXIF_COLUMN)
    if ex is not None and not exif_transposed:
        out["exif_rotated"] = (ex >= 2) & (ex <= 8)
    return out


# --------------------------------------------------------------------------- representation


def _reference_frame(samples: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """The reference with the columns ``apply_slice`` needs (pred/correct are not used)."""
    ref = reference.copy()
    if schema.PRED not in ref.columns:
        ref[schema.PRED] = ref[schema.LABEL]
    if schema.CORRECT not in ref.columns:
        ref[schema.CORRECT] = True
    return ref


def _vocabulary(
    samples: pd.DataFrame, reference: pd.DataFrame, metadata: list[str], properties: list[str]
) -> list[Partition]:
    meta = [c for c in metadata if c in reference.columns]
    props = [c for c in properties if c in reference.columns]
    parts = slice_partitions(samples, metadata_columns=meta, property_columns=props)
    return [p for p in parts if p.source != "pred"]


def _reference_counts(ref: pd.DataFrame, part: Partition) -> list[int]:
    """Reference rows satisfying each predicate of a partition (-1: the reference lacks the
    column). Equality partitions are counted in one pass (string comparisons per value cost
    seconds at 10^5 rows)."""
    col = part.column
    if col not in ref.columns:
        return [-1] * len(part.predicates)
    if all(p.op == "==" for p in part.predicates):
        counts = ref[col].value_counts(dropna=True)
        return [int(counts.get(p.value, 0)) for p in part.predicates]
    out = []
    for p in part.predicates:
        try:
            out.append(int(apply_slice(ref, SliceSpec((p,))).sum()))
        except (ValueError, TypeError):
            out.append(-1)
    return out


def representation_table(
    samples: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    metadata_columns: list[str],
    property_columns: list[str],
    class_names: list[str],
    min_support: int = 20,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Share of the reference against the target share, per value (module docstring).

    Returns
    -------
    DataFrame
        ``spec`` (JSON of one predicate), ``description``, ``column``, ``eval_n``, ``eval_share``,
        ``ref_n``, ``ref_share``, ``typical_share`` (NaN for bins), ``target_share``, ``ratio``
        (ref / target), ``p_value`` (one-sided binomial, H0: ref share >= UNDER_FACTOR *
        target), ``p_adj`` (BH), ``under`` (bool). Values with fewer than ``min_support``
        evaluation images are left out.
    """
    from scipy.stats import binom

    from ..stats.slices import spec_to_json

    cols = [
        "spec", "description", "column", "eval_n", "eval_share", "ref_n", "ref_share",
        "typical_share", "target_share", "ratio", "p_value", "p_adj", "under",
    ]  # fmt: skip
    n, m = len(samples), len(reference)
    if n == 0 or m == 0:
        return pd.DataFrame(columns=cols)
    ref = _reference_frame(samples, reference)
    rows = []
    for part in _vocabulary(samples, ref, metadata_columns, property_columns):
        categorical = part.source in ("metadata", "label") and all(
            p.op == "==" for p in part.predicates
        )
        ref_counts = _reference_counts(ref, part)
        valid = [c for c in ref_counts if c >= 0]
        typical = float(np.median(valid)) / m if (categorical and valid) else math.nan
        eval_counts = np.bincount(part.codes[part.codes >= 0], minlength=len(part.predicates))
        for k, p in enumerate(part.predicates):
            if ref_counts[k] < 0 or eval_counts[k] < min_support:
                continue
            es = eval_counts[k] / n
            target = max(es, typical) if np.isfinite(typical) else es
            rs = ref_counts[k] / m
            pv = float(binom.cdf(ref_counts[k], m, min(1.0, UNDER_FACTOR * target)))
            spec = SliceSpec((p,))
            rows.append(
                {
                    "spec": spec_to_json(spec),
                    "description": describe(spec, class_names),
                    "column": p.column,
                    "eval_n": int(eval_counts[k]),
                    "eval_share": es,
                    "ref_n": ref_counts[k],
                    "ref_share": rs,
                    "typical_share": typical,
                    "target_share": target,
                    "ratio": rs / target if target > 0 else math.nan,
                    "p_value": pv,
                }
            )
    if not rows:
        return pd.DataFrame(columns=cols)
    out = pd.DataFrame(rows)
    out["p_adj"] = bh_adjust(out["p_value"].to_numpy())
    out["under"] = out["p_adj"] < alpha
    return out[cols].sort_values("ratio", kind="mergesort").reset_index(drop=True)


# -------------------------------------------------------------------------------- shortcuts


def shortcut_candidates(
    samples: pd.DataFrame,
    reference: pd.DataFrame,
    *,
    metadata_columns: list[str],
    property_columns: list[str],
    class_names: list[str],
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Values the reference set associates strongly with one class (module docstring).

    Bins of numeric columns are reference quantile bins, so the association is the training
    set's own. Returns ``spec, description, column, cls, cls_name, ref_n_vk, ref_p_v_given_k,
    ref_p_v_given_not_k, lift, p_value, p_adj``; candidates only.
    """
    from ..stats.slices import spec_to_json

    cols = [
        "spec", "description", "column", "cls", "cls_name", "ref_n_vk", "ref_p_v_given_k",
        "ref_p_v_given_not_k", "lift", "p_value", "p_adj",
    ]  # fmt: skip
    m = len(reference)
    if m == 0 or len(samples) == 0:
        return pd.DataFrame(columns=cols)
    ref = _reference_frame(samples, reference)
    meta = [c for c in metadata_columns if c in ref.columns and c in samples.columns]
    props = [c for c in property_columns if c in ref.columns and c in samples.columns]
    if not meta and not props:
        return pd.DataFrame(columns=cols)
    parts = slice_partitions(ref, metadata_columns=meta, property_columns=props)
    parts = [p for p in parts if p.source in ("metadata", "property")]
    label = ref[schema.LABEL].to_numpy(np.int64)
    c = len(class_names)
    n_k = np.bincount(label, minlength=c)
    cells = []  # (partition, value, class, n_vk, n_v)
    for j, part in enumerate(parts):
        valid = part.codes >= 0
        table = np.bincount(
            part.codes[valid] * c + label[valid], minlength=len(part.predicates) * c
        ).reshape(len(part.predicates), c)
        n_v = table.sum(axis=1)
        for v, k in zip(*np.nonzero(table >= SHORTCUT_MIN), strict=True):
            if 0 < n_k[k] < m:
                cells.append((j, int(v), int(k), int(table[v, k]), int(n_v[v])))
    if not cells:
        return pd.DataFrame(columns=cols)
    j_, v_, k_, nvk, nv = (np.array(x) for x in zip(*cells, strict=True))
    # P(k | v) > P(k | not v): the hypergeometric upper tail of each cell, all at once
    pv = fisher_worse_p(nvk, nv, n_k[k_], np.full(len(nvk), m))
    p_vk = nvk / n_k[k_]
    p_vnk = (nv - nvk) / (m - n_k[k_])
    with np.errstate(divide="ignore"):
        lift = np.where(p_vnk > 0, p_vk / np.where(p_vnk > 0, p_vnk, 1), np.inf)
    rows = []
    for i in range(len(nvk)):
        spec = SliceSpec((parts[j_[i]].predicates[v_[i]],))
        rows.append(
            {
                "spec": spec_to_json(spec),
                "description": describe(spec, class_names),
                "column": parts[j_[i]].column,
                "cls": int(k_[i]),
                "cls_name": class_names[k_[i]],
                "ref_n_vk": int(nvk[i]),
                "ref_p_v_given_k": float(p_vk[i]),
                "ref_p_v_given_not_k": float(p_vnk[i]),
                "lift": float(lift[i]),
                "p_value": float(pv[i]),
            }
        )
    out = pd.DataFrame(rows)
    # every cell screened counts towards the correction, strong or not
    out["p_adj"] = bh_adjust(out["p_value"].to_numpy(), n_tests=len(out))
    keep = (
        (out["p_adj"] < alpha)
        & (out["lift"] >= SHORTCUT_LIFT)
        & (out["ref_p_v_given_k"] >= SHORTCUT_SHARE)
    )
    return out.loc[keep, cols].sort_values("lift", ascending=False).reset_index(drop=True)


# -------------------------------------------------------------------------------- distances


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _orthonormal(y: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``y`` (n x k, k small) by Cholesky QR: two matrix products
    and a k x k factorisation, where LAPACK's Householder QR crawls on a busy machine."""
    g = (y.T @ y).astype(np.float64)
    g += np.eye(len(g)) * 1e-9 * max(float(np.trace(g)), 1e-12)
    chol = np.linalg.cholesky(g)
    return (y @ np.linalg.inv(chol).T).astype(np.float32)


def _top_axes(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """float32 [D, k]: the top-k principal axes of centred rows ``x`` by a randomised range
    finder with one power iteration (Halko, Martinsson & Tropp 2011): O(n D k), where a full
    decomposition costs O(D^3)."""
    omega = rng.standard_normal((x.shape[1], k + 10)).astype(np.float32)
    q = _orthonormal(x @ omega)
    q = _orthonormal(x @ (x.T @ q))
    _, _, vt = np.linalg.svd((q.T @ x).astype(np.float64), full_matrices=False)
    return vt[:k].T.astype(np.float32)


@dataclass(frozen=True, eq=False)
class Distances:
    """Nearest-reference distances and reference neighbourhoods.

    Attributes
    ----------
    distance : float32 [N]
        Cosine distance (1 - cosine similarity) of each evaluation image to its nearest
        reference image (searched among ``ref_rows``).
    ref_rows : int64 [M']
        Reference rows searched (all, or a seeded sample of :data:`MAX_REFERENCE`).
    mixing : int64 [C, C]
        ``mixing[a, b]``: of the (at most :data:`MIX_PER_CLASS`) reference images of class
        ``a`` queried, those with at least one class-``b`` image among their :data:`K_MIX`
        nearest reference neighbours (searched among ``ref_rows``).
    ref_class_n : int64 [C]
        Reference images queried per class.
    dims : int
        Dimensions searched (after PCA when the embeddings had more than :data:`MAX_DIM`).
    """

    distance: np.ndarray
    ref_rows: np.ndarray
    mixing: np.ndarray
    ref_class_n: np.ndarray
    dims: int


def reference_distances(
    embeddings: np.ndarray,
    reference_embeddings: np.ndarray,
    reference_labels: np.ndarray,
    n_classes: int,
    *,
    seed: int = 0,
    block: int = 8192,
) -> Distances:
    """Nearest-reference cosine distance per evaluation image, and reference class mixing.

    Exact search by blocked matrix products on L2-normalised rows, after a PCA to at most
    :data:`MAX_DIM` dimensions fitted on the reference (a distance both sets see the same way);
    above :data:`MAX_REFERENCE` reference rows (or 20 per class, when that is more, up to
    20,000) a seeded sample is searched. The caps keep the cost to seconds at 100,000 x
    100,000 (an exact search of every reference row would take minutes); distances are only
    compared with each other (a group's correct images against other correct images of their
    class), so the sample shifts them all alike, and a region the sample misses entirely holds
    too few training images to matter.
    """
    rng = np.random.default_rng(seed)
    m = len(reference_embeddings)
    cap = int(min(max(MAX_REFERENCE, 20 * n_classes), 20_000))
    ref_rows = np.arange(m)
    if m > cap:
        ref_rows = np.sort(rng.choice(m, cap, replace=False))
    r = _unit(np.asarray(reference_embeddings[ref_rows], dtype=np.float32))
    dims = r.shape[1]
    mean = basis = None
    if dims > MAX_DIM and len(r) > MAX_DIM:
        mean = r.mean(axis=0)
        fit = r[rng.choice(len(r), min(len(r), 2000), replace=False)] - mean
        basis = _top_axes(fit, MAX_DIM, rng)
        r = _unit((r - mean) @ basis)
        dims = MAX_DIM
    rt = np.ascontiguousarray(r.T)
    n = len(embeddings)
    dist = np.empty(n, dtype=np.float32)
    for s in range(0, n, block):
        e = _unit(np.asarray(embeddings[s : s + block], dtype=np.float32))
        if basis is not None:
            e = _unit((e - mean) @ basis)
        dist[s : s + block] = 1.0 - (e @ rt).max(axis=1)
    labels = np.asarray(reference_labels, dtype=np.int64)[ref_rows]
    # class mixing from at most MIX_PER_CLASS query images per class (all of a rare class):
    # shares per class need no more, and the k-NN of every reference image would cost O(M^2)
    queries = np.concatenate(
        [rng.permutation(np.flatnonzero(labels == c))[:MIX_PER_CLASS] for c in range(n_classes)]
    ).astype(np.int64)
    mixing = np.zeros((n_classes, n_classes), dtype=np.int64)
    k = min(K_MIX, len(r) - 1)
    if k >= 1 and len(queries):
        step = max(1, (1 << 22) // max(len(r), 1))
        for s in range(0, len(queries), step):
            q = queries[s : s + step]
            sim = r[q] @ rt
            sim[np.arange(len(q)), q] = -np.inf  # not its own neighbour
            nb = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            present = np.zeros((len(q), n_classes), dtype=bool)
            np.put_along_axis(present, labels[nb], True, axis=1)
            np.add.at(mixing, labels[q], present.astype(np.int64))
    return Distances(
        distance=np.clip(dist, 0.0, 2.0),
        ref_rows=ref_rows,
        mixing=mixing,
        ref_class_n=np.bincount(labels[queries], minlength=n_classes),
        dims=int(dims),
    )


def predicate_mask(frame: pd.DataFrame, spec_json: str) -> np.ndarray:
    """Rows of ``frame`` matching a stored one-predicate spec (all False if it cannot apply)."""
    from ..stats.slices import spec_from_json

    try:
        return apply_slice(frame, spec_from_json(spec_json))
    except (ValueError, TypeError):
        return np.zeros(len(frame), dtype=bool)


def single_predicate(spec_json: str) -> Predicate:
    from ..stats.slices import spec_from_json

    return spec_from_json(spec_json).predicates[0]
