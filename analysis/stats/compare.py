"""Model A vs model B on the same images: paired accuracy deltas, flips, per-class and per-slice
regressions.

The two runs' samples are aligned by image content (``content_hash``, else ``relpath``); only the
matched images are compared, and how many matched is reported. Because both models see the same
images, every comparison is *paired*: with the 2x2 table

================  ==============  ==============
                  B right         B wrong
================  ==============  ==============
A right           both_right      regressions
A wrong           fixes           both_wrong
================  ==============  ==============

``delta = accuracy_B - accuracy_A = (fixes - regressions) / n``. Its significance is McNemar's
test on the discordant pairs (:data:`MCNEMAR_METHODS`: ``"exact"`` binomial, the default;
``"midp"``, less conservative; ``"chi2"`` with continuity correction), and its interval is
Newcombe's square-and-add interval for paired proportions (Wilson intervals of both accuracies
combined with the correlation of the pairs; Newcombe 1998, method 10), which stays inside
[-1, 1] and behaves at 0 and 100%. The same statistics are computed per true class (recall) and
per slice; slice p-values are Benjamini-Hochberg adjusted, and slices are ranked with the most
significant accuracy drops first.

Every cell of the flip table keeps its sample ids (``ModelComparison.pairs``), so a page can
open the images B broke.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..checks import check_confidence
from .intervals import Estimate, wilson_interval

__all__ = [
    "CELLS",
    "MCNEMAR_METHODS",
    "Alignment",
    "ModelComparison",
    "align_samples",
    "compare_models",
    "compare_runs",
    "mcnemar_p_value",
    "paired_difference_interval",
]

_VERSION = 1

# flip table cells
BOTH_RIGHT = "both_right"
REGRESSION = "a_right_b_wrong"
FIX = "a_wrong_b_right"
BOTH_WRONG = "both_wrong"
CELLS = (BOTH_RIGHT, REGRESSION, FIX, BOTH_WRONG)

# columns of the pairs / per-class / slices tables
SAMPLE_ID_B = "sample_id_b"
PRED_A = "pred_a"
PRED_B = "pred_b"
CORRECT_A = "correct_a"
CORRECT_B = "correct_b"
CELL = "cell"
CLASS = "class"
CLASS_NAME = "class_name"
N = "n"
ACCURACY_A = "accuracy_a"
ACCURACY_B = "accuracy_b"
RECALL_A = "recall_a"  # per class: accuracy on the images of the class
RECALL_B = "recall_b"
DELTA = "delta"  # B - A
DELTA_LOW = "delta_low"  # paired (Newcombe) interval of delta
DELTA_HIGH = "delta_high"
REGRESSIONS = "regressions"  # A right, B wrong
FIXES = "fixes"  # A wrong, B right
P_VALUE = "p_value"  # McNemar
P_ADJ = "p_adj"  # Benjamini-Hochberg over the table's rows
SIGNIFICANT = "significant"  # p_adj < alpha
SOURCE = "source"
COLUMN = "column"
SPEC = "spec"
DESCRIPTION = "description"
SOURCE_GIVEN = "given"

_STATS = [N, ACCURACY_A, ACCURACY_B, DELTA, DELTA_LOW, DELTA_HIGH, REGRESSIONS, FIXES, P_VALUE]
PER_CLASS_COLUMNS = [CLASS, CLASS_NAME, N, RECALL_A, RECALL_B] + _STATS[3:] + [P_ADJ, SIGNIFICANT]
SLICE_COLUMNS = [SOURCE, COLUMN, SPEC, DESCRIPTION] + _STATS + [P_ADJ, SIGNIFICANT]


# --------------------------------------------------------------------------------------------
# paired statistics


def _mcnemar_exact(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    from scipy.stats import binom

    m = np.minimum(b, c)
    return np.minimum(1.0, 2.0 * binom.cdf(m, b + c, 0.5))


def _mcnemar_midp(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    from scipy.stats import binom

    m = np.minimum(b, c)
    return np.minimum(1.0, 2.0 * (binom.cdf(m, b + c, 0.5) - 0.5 * binom.pmf(m, b + c, 0.5)))


def _mcnemar_chi2(b: np.ndarray, c: np.ndarray) -> np.ndarray:
    from scipy.stats import chi2

    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.maximum(np.abs(b - c) - 1.0, 0.0) ** 2 / (b + c)
    return chi2.sf(stat, 1)


MCNEMAR_METHODS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "exact": _mcnemar_exact,
    "midp": _mcnemar_midp,
    "chi2": _mcnemar_chi2,
}


def _check_method(method: Any) -> str:
    if method not in MCNEMAR_METHODS:
        raise ValueError(
            f"unknown McNemar method {method!r}; expected one of {', '.join(MCNEMAR_METHODS)}"
        )
    return method


def _counts(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be integer counts, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if np.any(~np.isfinite(arr)) or np.any(arr < 0) or np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must be integer counts >= 0, got {arr.reshape(-1)[:3].tolist()}")
    return arr


def _mcnemar_core(b: np.ndarray, c: np.ndarray, method: str) -> np.ndarray:
    """Two-sided p-values; 1.0 where there are no discordant pairs (no evidence either way)."""
    p = np.asarray(MCNEMAR_METHODS[method](b, c), dtype=np.float64)
    return np.where((b + c) == 0, 1.0, p)


def mcnemar_p_value(regressions: Any, fixes: Any, *, method: str = "exact") -> Any:
    """McNemar's test of "A and B have the same accuracy" from the discordant pair counts.

    Parameters
    ----------
    regressions, fixes : int or array-like of int, broadcastable
        Images A got right and B wrong, and the reverse.
    method : str, keyword-only
        ``"exact"``: two-sided binomial test of ``regressions ~ Binomial(b + c, 1/2)``
        (``scipy.stats.binomtest``), the exact McNemar test. ``"midp"``: its mid-p version.
        ``"chi2"``: ``(|b - c| - 1)^2 / (b + c)`` against chi-square with 1 df (the
        continuity correction floored at 0).

    Returns
    -------
    float or ndarray of float64
        Two-sided p-values; 1.0 where ``b + c == 0``.
    """
    method = _check_method(method)
    b = _counts(regressions, "regressions")
    c = _counts(fixes, "fixes")
    try:
        b, c = np.broadcast_arrays(b, c)
    except ValueError as exc:
        raise ValueError(
            f"regressions and fixes must broadcast, got shapes {b.shape} and {c.shape}"
        ) from exc
    p = _mcnemar_core(b, c, method)
    return float(p) if p.ndim == 0 else p


def _newcombe_core(
    n11: np.ndarray, n10: np.ndarray, n01: np.ndarray, n00: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's square-and-add interval of ``p_B - p_A`` (unchecked, vectorised)."""
    n = n11 + n10 + n01 + n00
    b_right, a_right = n11 + n01, n11 + n10
    with np.errstate(invalid="ignore", divide="ignore"):
        p1, p2 = b_right / n, a_right / n
        l1, u1 = wilson_interval(b_right, n, confidence=confidence)
        l2, u2 = wilson_interval(a_right, n, confidence=confidence)
        a = n11 * n00 - n01 * n10
        denom = np.sqrt(b_right * (n - b_right) * a_right * (n - a_right))
        phi = np.where(a > n / 2.0, (a - n / 2.0) / denom, np.where(a < 0, a / denom, 0.0))
        phi = np.where(denom > 0, phi, 0.0)
        d = p1 - p2
        low = d - np.sqrt(
            np.maximum((p1 - l1) ** 2 + (u2 - p2) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2), 0.0)
        )
        high = d + np.sqrt(
            np.maximum((p2 - l2) ** 2 + (u1 - p1) ** 2 - 2 * phi * (p2 - l2) * (u1 - p1), 0.0)
        )
    empty = n == 0
    return np.where(empty, np.nan, np.clip(low, -1, 1)), np.where(
        empty, np.nan, np.clip(high, -1, 1)
    )


def paired_difference_interval(
    both_right: Any, regressions: Any, fixes: Any, both_wrong: Any, *, confidence: float = 0.95
) -> tuple[Any, Any]:
    """Interval of ``accuracy_B - accuracy_A`` from the paired 2x2 table (Newcombe, method 10).

    Parameters
    ----------
    both_right, regressions, fixes, both_wrong : int or array-like of int, broadcastable
        The four cells (see the module docstring).
    confidence : float, keyword-only

    Returns
    -------
    (low, high) : floats or float64 arrays, in [-1, 1]; NaN where the table is empty.
    """
    confidence = check_confidence(confidence)
    cells = [
        _counts(v, name)
        for v, name in (
            (both_right, "both_right"),
            (regressions, "regressions"),
            (fixes, "fixes"),
            (both_wrong, "both_wrong"),
        )
    ]
    try:
        cells = np.broadcast_arrays(*cells)
    except ValueError as exc:
        raise ValueError(
            f"the four cells must broadcast, got shapes {[c.shape for c in cells]}"
        ) from exc
    low, high = _newcombe_core(*cells, confidence)
    if np.ndim(low) == 0:
        return float(low), float(high)
    return low, high


def _paired_stats(
    ca: np.ndarray, cb: np.ndarray, masks: np.ndarray, method: str, confidence: float
) -> dict[str, np.ndarray]:
    """Statistics of the paired correctness ``ca``, ``cb`` [n] within each row of ``masks``
    [k, n] (vectorised over masks)."""
    masks = np.asarray(masks, dtype=bool).reshape(-1, ca.size)
    n11 = (masks & ca & cb).sum(axis=1).astype(np.float64)
    n10 = (masks & ca & ~cb).sum(axis=1).astype(np.float64)
    n01 = (masks & ~ca & cb).sum(axis=1).astype(np.float64)
    n00 = (masks & ~ca & ~cb).sum(axis=1).astype(np.float64)
    n = n11 + n10 + n01 + n00
    with np.errstate(invalid="ignore", divide="ignore"):
        acc_a = np.where(n > 0, (n11 + n10) / n, np.nan)
        acc_b = np.where(n > 0, (n11 + n01) / n, np.nan)
    low, high = _newcombe_core(n11, n10, n01, n00, confidence)
    p = np.where(n > 0, _mcnemar_core(n10, n01, method), np.nan)
    return {
        N: n.astype(np.int64),
        ACCURACY_A: acc_a,
        ACCURACY_B: acc_b,
        DELTA: acc_b - acc_a,
        DELTA_LOW: np.asarray(low, dtype=np.float64),
        DELTA_HIGH: np.asarray(high, dtype=np.float64),
        REGRESSIONS: n10.astype(np.int64),
        FIXES: n01.astype(np.int64),
        P_VALUE: p,
    }


# --------------------------------------------------------------------------------------------
# alignment


@dataclass(frozen=True, eq=False)
class Alignment:
    """Matched rows of two samples tables.

    Attributes
    ----------
    index_a, index_b : ndarray of int64, shape (m,)
        Row positions in A and B of the same images, in A's row order.
    on : str
        ``"content_hash"`` or ``"relpath"``.
    n_a, n_b : int
        Rows of each table.
    """

    index_a: np.ndarray
    index_b: np.ndarray
    on: str
    n_a: int
    n_b: int

    @property
    def n_matched(self) -> int:
        return int(self.index_a.size)


_ALIGN_ON = ("auto", schema.CONTENT_HASH, schema.RELPATH)


def _keys(samples: pd.DataFrame, on: str) -> pd.DataFrame:
    """(key, occurrence) per row: exact duplicates within one set pair up in relpath order."""
    order = samples[schema.RELPATH].astype(str) if schema.RELPATH in samples else None
    df = pd.DataFrame({"key": samples[on].astype(str).to_numpy(), "pos": np.arange(len(samples))})
    if order is not None:
        df["order"] = order.to_numpy()
        df = df.sort_values(["key", "order", "pos"], kind="mergesort")
    df["occ"] = df.groupby("key", sort=False).cumcount()
    present = samples[on].notna().to_numpy()[df["pos"].to_numpy()]
    return df[present][["key", "occ", "pos"]]


def _align_core(a: pd.DataFrame, b: pd.DataFrame, on: str) -> Alignment:
    m = _keys(a, on).merge(_keys(b, on), on=["key", "occ"], suffixes=("_a", "_b"))
    m = m.sort_values("pos_a", kind="mergesort")
    return Alignment(
        m["pos_a"].to_numpy(np.int64), m["pos_b"].to_numpy(np.int64), on, len(a), len(b)
    )


def align_samples(samples_a: Any, samples_b: Any, *, on: str = "auto") -> Alignment:
    """Match the images of two samples tables.

    Parameters
    ----------
    samples_a, samples_b : DataFrame
        ``samples.parquet`` tables (need the ``on`` column).
    on : str, keyword-only
        ``"content_hash"`` (same bytes), ``"relpath"`` (same path under the data root) or
        ``"auto"``: content hashes when they match any image, else relpaths.

    Raises
    ------
    ValueError
        No image in common.
    """
    for name, s in (("samples_a", samples_a), ("samples_b", samples_b)):
        if not isinstance(s, pd.DataFrame):
            raise TypeError(f"{name} must be a pandas DataFrame, got {type(s).__name__}")
    if on not in _ALIGN_ON:
        raise ValueError(f"unknown alignment {on!r}; expected one of {', '.join(_ALIGN_ON)}")
    candidates = [schema.CONTENT_HASH, schema.RELPATH] if on == "auto" else [on]
    usable = [c for c in candidates if c in samples_a.columns and c in samples_b.columns]
    if not usable:
        raise ValueError(
            f"cannot align: both tables need a {' or '.join(repr(c) for c in candidates)} column"
        )
    tried = []
    for col in usable:
        al = _align_core(samples_a, samples_b, col)
        if al.n_matched:
            return al
        tried.append(f"0 shared {col} values")
    raise ValueError(
        f"the two runs have no image in common ({', '.join(tried)} among {len(samples_a)} and "
        f"{len(samples_b)} images); a model comparison needs the same images in both runs"
    )


# --------------------------------------------------------------------------------------------
# the result


@dataclass(frozen=True, eq=False)
class ModelComparison:
    """Model A vs model B on the images both runs share.

    Attributes
    ----------
    n_a, n_b, n_matched : int
        Images in each run, and matched between them (the ``n`` of every statistic).
    aligned_on : str
        ``"content_hash"`` or ``"relpath"``.
    method : str
        McNemar variant of every p-value (:data:`MCNEMAR_METHODS`).
    confidence : float
    accuracy_a, accuracy_b : Estimate
        On the matched images (Wilson intervals).
    delta : Estimate
        ``accuracy_b - accuracy_a`` with Newcombe's paired interval (``method="newcombe"``).
    p_value : float
        McNemar's test of ``delta == 0``.
    pairs : DataFrame, one row per matched image
        ``sample_id`` (A's), ``sample_id_b``, ``relpath``, ``content_hash`` (when present),
        ``label``, ``pred_a``, ``pred_b``, ``correct_a``, ``correct_b``, ``cell`` (:data:`CELLS`).
    per_class : DataFrame, one row per class, columns :data:`PER_CLASS_COLUMNS`
        Recall of each class for A and B, its paired delta, interval and McNemar test (BH over
        classes).
    slices : DataFrame, columns :data:`SLICE_COLUMNS`
        Per-slice paired deltas; accuracy drops first, most significant first.
    class_names : tuple of str or None
    warnings : tuple of str
        E.g. images whose labels differ between the runs (A's labels are used).
    """

    n_a: int
    n_b: int
    n_matched: int
    aligned_on: str
    method: str
    confidence: float
    accuracy_a: Estimate
    accuracy_b: Estimate
    delta: Estimate
    p_value: float
    pairs: pd.DataFrame
    per_class: pd.DataFrame
    slices: pd.DataFrame
    class_names: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = ()

    __hash__ = None  # type: ignore[assignment]
    _SCALARS = ("n_a", "n_b", "n_matched", "aligned_on", "method", "confidence")
    _ESTIMATES = ("accuracy_a", "accuracy_b", "delta")
    _FRAMES = ("pairs", "per_class", "slices")

    @property
    def counts(self) -> dict[str, int]:
        """Images per flip-table cell."""
        vc = self.pairs[CELL].value_counts()
        return {c: int(vc.get(c, 0)) for c in CELLS}

    @property
    def flips(self) -> dict[str, tuple[str, ...]]:
        """Sample ids (A's) per flip-table cell, in A's row order."""
        ids = self.pairs[schema.SAMPLE_ID].to_numpy()
        cells = self.pairs[CELL].to_numpy()
        return {c: tuple(str(s) for s in ids[cells == c]) for c in CELLS}

    def flip_table(self) -> pd.DataFrame:
        """``cell, a_correct, b_correct, count, share`` for the four cells."""
        counts = self.counts
        n = max(self.n_matched, 1)
        return pd.DataFrame(
            {
                CELL: list(CELLS),
                "a_correct": [True, True, False, False],
                "b_correct": [True, False, True, False],
                "count": [counts[c] for c in CELLS],
                "share": [counts[c] / n if self.n_matched else math.nan for c in CELLS],
            }
        )

    def changed_images(
        self,
        *,
        cls: int | None = None,
        among: Iterable[str] | None = None,
        cells: Sequence[str] = (REGRESSION,),
    ) -> list[str]:
        """A's sample ids of the matched images in ``cells`` (default: right in A, wrong in B),
        optionally only those of true class ``cls`` and/or among the sample ids ``among`` (e.g.
        a slice's images in A). This is what a click on a per-class or per-slice delta opens.
        """
        bad = [c for c in cells if c not in CELLS]
        if bad:
            raise ValueError(f"unknown cell(s) {bad}; valid: {list(CELLS)}")
        p = self.pairs
        keep = p[CELL].isin(list(cells)).to_numpy().copy()  # pandas hands out read-only views
        if cls is not None:
            keep &= p[schema.LABEL].to_numpy() == int(cls)
        ids = p[schema.SAMPLE_ID].astype(str).to_numpy()
        if among is not None:
            inside = set(map(str, among))
            keep &= np.fromiter((i in inside for i in ids), bool, len(ids))
        return ids[keep].tolist()

    def regressions(self, *, alpha: float = 0.05) -> pd.DataFrame:
        """The slices where B is significantly worse (``p_adj < alpha`` and ``delta < 0``)."""
        s = self.slices
        return s[(s[P_ADJ] < alpha) & (s[DELTA] < 0)].reset_index(drop=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelComparison):
            return NotImplemented
        return (
            all(getattr(self, f) == getattr(other, f) for f in self._SCALARS + self._ESTIMATES)
            and _same_float(self.p_value, other.p_value)
            and all(getattr(self, f).equals(getattr(other, f)) for f in self._FRAMES)
            and self.class_names == other.class_names
            and tuple(self.warnings) == tuple(other.warnings)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None); :meth:`from_dict` reads it back equal."""
        d: dict[str, Any] = {"kind": "model_comparison", "version": _VERSION}
        d.update({f: getattr(self, f) for f in self._SCALARS})
        d.update({f: getattr(self, f).to_dict() for f in self._ESTIMATES})
        d["p_value"] = None if math.isnan(self.p_value) else float(self.p_value)
        d.update({f: frame_to_dict(getattr(self, f)) for f in self._FRAMES})
        d["class_names"] = None if self.class_names is None else list(self.class_names)
        d["warnings"] = list(self.warnings)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelComparison:
        if d.get("kind") != "model_comparison" or d.get("version") != _VERSION:
            raise ValueError(
                f"expected a model_comparison dict of version {_VERSION}, got "
                f"kind={d.get('kind')!r} version={d.get('version')!r}"
            )
        return cls(
            **{f: d[f] for f in cls._SCALARS},
            **{f: Estimate.from_dict(d[f]) for f in cls._ESTIMATES},
            p_value=math.nan if d["p_value"] is None else float(d["p_value"]),
            **{f: frame_from_dict(d[f]) for f in cls._FRAMES},
            class_names=None if d["class_names"] is None else tuple(d["class_names"]),
            warnings=tuple(d["warnings"]),
        )


def _same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def frame_to_dict(df: pd.DataFrame) -> dict[str, Any]:
    """A DataFrame as JSON-ready columns with dtypes (NaN / missing -> None)."""
    columns = {}
    for name in df.columns:
        values = df[name].to_numpy()
        if np.issubdtype(values.dtype, np.floating):
            columns[name] = [None if math.isnan(v) else float(v) for v in values]
        elif values.dtype == object:
            columns[name] = [
                None
                if v is None or (isinstance(v, float) and math.isnan(v))
                else (v.item() if isinstance(v, np.generic) else v)
                for v in values
            ]
        else:
            columns[name] = values.tolist()
    return {"dtypes": {c: str(df[c].dtype) for c in df.columns}, "columns": columns}


def frame_from_dict(d: dict[str, Any]) -> pd.DataFrame:
    """Inverse of :func:`frame_to_dict` (same columns, dtypes and values)."""
    data = {name: pd.Series(d["columns"][name], dtype=dtype) for name, dtype in d["dtypes"].items()}
    return pd.DataFrame(data, columns=list(d["dtypes"]))


# --------------------------------------------------------------------------------------------
# the comparison


def _int_labels(samples: pd.DataFrame, col: str, name: str) -> np.ndarray:
    if col not in samples.columns:
        raise ValueError(f"{name} is missing column {col!r}; expected label and pred columns")
    s = samples[col]
    if not pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s):
        raise TypeError(f"{name}[{col!r}] must hold integer class ids, got dtype {s.dtype}")
    x = s.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.any(~np.isfinite(x)) or np.any(x != np.round(x)) or np.any(x < 0):
        raise ValueError(f"{name}[{col!r}] must hold integer class ids >= 0 without missing values")
    return x.astype(np.int64)


def _check_specs(specs: Any) -> list | None:
    from .slices import SliceSpec, spec_from_json

    if specs is None:
        return None
    if isinstance(specs, SliceSpec | str) or not isinstance(specs, Iterable):
        raise TypeError(f"specs must be a list of SliceSpec (or their JSON), got {specs!r:.80}")
    out = []
    for s in specs:
        if isinstance(s, str):
            s = spec_from_json(s)
        if not isinstance(s, SliceSpec):
            raise TypeError(f"specs must hold SliceSpec items, got {type(s).__name__}")
        out.append(s)
    return out


def _default_slices(
    aligned: pd.DataFrame,
    *,
    metadata_columns: Sequence[str],
    property_columns: Sequence[str],
    cluster_column: str | None,
    n_bins: int,
    min_support: int,
) -> tuple[list, list[str]]:
    """The single-predicate slices of :func:`analysis.stats.slices.compute_slices` (predicted class
    left out: A's predictions would favour A), with at least ``min_support`` images."""
    from .slices import SOURCE_PRED, SliceSpec, slice_partitions

    parts = slice_partitions(
        aligned,
        metadata_columns=metadata_columns,
        property_columns=property_columns,
        cluster_column=cluster_column,
        n_bins=n_bins,
    )
    total = len(aligned)
    specs, sources = [], []
    for part in parts:
        if part.source == SOURCE_PRED:
            continue
        sizes = np.bincount(part.codes[part.codes >= 0], minlength=len(part.predicates))
        for j in np.flatnonzero((sizes >= min_support) & (sizes < total)):
            specs.append(SliceSpec((part.predicates[j],)))
            sources.append(part.source)
    return specs, sources


def _slice_table(
    aligned: pd.DataFrame,
    ca: np.ndarray,
    cb: np.ndarray,
    specs: list,
    sources: list[str],
    *,
    class_names: Sequence[str] | None,
    method: str,
    confidence: float,
    alpha: float,
) -> pd.DataFrame:
    from .slices import apply_slice, bh_adjust, describe, spec_to_json

    if not specs:
        empty = {c: pd.Series(dtype="float64") for c in SLICE_COLUMNS}
        for c in (SOURCE, COLUMN, SPEC, DESCRIPTION):
            empty[c] = pd.Series(dtype=object)
        for c in (N, REGRESSIONS, FIXES):
            empty[c] = pd.Series(dtype="int64")
        empty[SIGNIFICANT] = pd.Series(dtype=bool)
        return pd.DataFrame(empty)[SLICE_COLUMNS]
    masks = np.stack([apply_slice(aligned, s) for s in specs])
    stats = _paired_stats(ca, cb, masks, method, confidence)
    p_adj = bh_adjust(stats[P_VALUE])
    table = pd.DataFrame(
        {
            SOURCE: np.asarray(sources, dtype=object),
            COLUMN: np.asarray([" & ".join(s.columns) for s in specs], dtype=object),
            SPEC: np.asarray([spec_to_json(s) for s in specs], dtype=object),
            DESCRIPTION: np.asarray([describe(s, class_names) for s in specs], dtype=object),
            **stats,
            P_ADJ: p_adj,
            SIGNIFICANT: p_adj < alpha,
        }
    )
    drop = table[DELTA].to_numpy() < 0
    order = np.lexsort(
        (table[DELTA].fillna(np.inf).to_numpy(), table[P_VALUE].fillna(2.0).to_numpy(), ~drop)
    )
    return table.iloc[order].reset_index(drop=True)[SLICE_COLUMNS]


def compare_models(
    samples_a: pd.DataFrame,
    samples_b: pd.DataFrame,
    *,
    class_names: Sequence[str] | None = None,
    specs: Sequence[Any] | None = None,
    metadata_columns: Sequence[str] = (),
    property_columns: Sequence[str] = (),
    cluster_column: str | None = None,
    align_on: str = "auto",
    method: str = "exact",
    min_support: int = 20,
    n_bins: int = 5,
    confidence: float = 0.95,
    alpha: float = 0.05,
) -> ModelComparison:
    """Compare two models' predictions on the same images.

    Parameters
    ----------
    samples_a, samples_b : DataFrame
        The two runs' ``samples.parquet``: ``sample_id``, ``label``, ``pred`` and
        ``content_hash`` or ``relpath``; A also the slice columns.
    class_names : list of str, optional
        Names of classes ``0..C-1`` (per-class table and descriptions).
    specs : list of SliceSpec, optional
        Slices to compare on (evaluated on A's columns). Default: the single-predicate slices of
        ``metadata_columns``, ``property_columns``, true class and ``cluster_column`` (as
        :func:`analysis.stats.slices.compute_slices` builds them) with at least ``min_support`` images.
    align_on : str
        See :func:`align_samples`.
    method : str
        McNemar variant, a key of :data:`MCNEMAR_METHODS`.
    min_support, n_bins : int
        For the default slices.
    confidence, alpha : float
        Interval level; false-discovery rate of ``significant``.

    Returns
    -------
    ModelComparison
        Computed on the matched images with A's labels (images labelled differently in B are
        counted in ``warnings``).
    """
    from .slices import _check_inputs

    alignment = align_samples(samples_a, samples_b, on=align_on)
    method = _check_method(method)
    confidence = check_confidence(confidence)
    spec_list = _check_specs(specs)
    for name, s in (("samples_a", samples_a), ("samples_b", samples_b)):
        if schema.SAMPLE_ID not in s.columns:
            raise ValueError(f"{name} is missing column {schema.SAMPLE_ID!r}")
    label_a = _int_labels(samples_a, schema.LABEL, "samples_a")[alignment.index_a]
    label_b = _int_labels(samples_b, schema.LABEL, "samples_b")[alignment.index_b]
    pred_a = _int_labels(samples_a, schema.PRED, "samples_a")[alignment.index_a]
    pred_b = _int_labels(samples_b, schema.PRED, "samples_b")[alignment.index_b]
    names = None if class_names is None else tuple(str(c) for c in class_names)
    top = int(max(label_a.max(), pred_a.max(), pred_b.max()))
    if names is not None and top >= len(names):
        raise ValueError(f"labels / preds hold class id {top} but class_names has {len(names)}")
    n_classes = len(names) if names is not None else top + 1
    notes: list[str] = []
    mismatch = int((label_a != label_b).sum())
    if mismatch:
        notes.append(
            f"{mismatch} matched image(s) have different labels in the two runs; A's labels are "
            "used for both models"
        )
        warnings.warn(notes[-1], UserWarning, stacklevel=2)

    aligned = samples_a.iloc[alignment.index_a].reset_index(drop=True)
    aligned[schema.LABEL] = label_a
    aligned[schema.PRED] = pred_a
    ca, cb = pred_a == label_a, pred_b == label_a
    aligned[schema.CORRECT] = ca
    _, meta, props = _check_inputs(
        aligned,
        metadata_columns=metadata_columns,
        property_columns=property_columns,
        cluster_column=cluster_column,
        class_names=names,
        min_support=min_support,
        alpha=alpha,
        n_bins=n_bins,
    )
    if spec_list is None:
        spec_list, sources = _default_slices(
            aligned,
            metadata_columns=meta,
            property_columns=props,
            cluster_column=cluster_column,
            n_bins=int(n_bins),
            min_support=int(min_support),
        )
    else:
        sources = [SOURCE_GIVEN] * len(spec_list)

    m = alignment.n_matched
    overall = _paired_stats(ca, cb, np.ones((1, m), dtype=bool), method, confidence)
    acc_a = _wilson(int(ca.sum()), m, confidence)
    acc_b = _wilson(int(cb.sum()), m, confidence)
    delta = Estimate(
        float(overall[DELTA][0]),
        float(overall[DELTA_LOW][0]),
        float(overall[DELTA_HIGH][0]),
        "newcombe",
        m,
        confidence,
    )

    class_masks = label_a[None, :] == np.arange(n_classes)[:, None]
    pc = _paired_stats(ca, cb, class_masks, method, confidence)
    p_adj = _bh(pc[P_VALUE])
    per_class = pd.DataFrame(
        {
            CLASS: np.arange(n_classes, dtype=np.int64),
            CLASS_NAME: np.asarray(
                names if names is not None else [str(k) for k in range(n_classes)], dtype=object
            ),
            **pc,
            P_ADJ: p_adj,
            SIGNIFICANT: p_adj < alpha,
        }
    ).rename(columns={ACCURACY_A: RECALL_A, ACCURACY_B: RECALL_B})[PER_CLASS_COLUMNS]

    cell = np.where(ca, np.where(cb, BOTH_RIGHT, REGRESSION), np.where(cb, FIX, BOTH_WRONG))
    pairs = pd.DataFrame(
        {
            schema.SAMPLE_ID: samples_a[schema.SAMPLE_ID].to_numpy(dtype=object)[alignment.index_a],
            SAMPLE_ID_B: samples_b[schema.SAMPLE_ID].to_numpy(dtype=object)[alignment.index_b],
        }
    )
    for col in (schema.RELPATH, schema.CONTENT_HASH):
        if col in samples_a.columns:
            pairs[col] = samples_a[col].to_numpy(dtype=object)[alignment.index_a]
    pairs[schema.LABEL] = label_a
    pairs[PRED_A] = pred_a
    pairs[PRED_B] = pred_b
    pairs[CORRECT_A] = ca
    pairs[CORRECT_B] = cb
    pairs[CELL] = cell.astype(object)

    slices = _slice_table(
        aligned,
        ca,
        cb,
        spec_list,
        sources,
        class_names=names,
        method=method,
        confidence=confidence,
        alpha=float(alpha),
    )
    return ModelComparison(
        n_a=alignment.n_a,
        n_b=alignment.n_b,
        n_matched=m,
        aligned_on=alignment.on,
        method=method,
        confidence=confidence,
        accuracy_a=acc_a,
        accuracy_b=acc_b,
        delta=delta,
        p_value=float(overall[P_VALUE][0]),
        pairs=pairs,
        per_class=per_class,
        slices=slices,
        class_names=names,
        warnings=tuple(notes),
    )


def _wilson(successes: int, n: int, confidence: float) -> Estimate:
    low, high = wilson_interval(successes, n, confidence=confidence)
    return Estimate(successes / n if n else math.nan, low, high, "wilson", n, confidence)


def _bh(p: np.ndarray) -> np.ndarray:
    from .slices import bh_adjust

    return bh_adjust(p)


def compare_runs(run_a: Any, run_b: Any, **kwargs: Any) -> ModelComparison:
    """:func:`compare_models` on two runs: class names, metadata columns, image properties and
    embedding clusters are taken from the runs (A's, where both have them).

    ``kwargs`` are passed on (``specs``, ``method``, ``align_on``, ``min_support``, ...).
    """
    from ..store.runstore import as_run

    a, b = as_run(run_a, name="run_a"), as_run(run_b, name="run_b")
    if a.class_names != b.class_names:
        raise ValueError(
            f"the runs have different classes ({a.class_names[:10]} vs {b.class_names[:10]}); "
            "models can only be compared on the same classes"
        )
    sa = a.samples
    defaults = {
        "class_names": a.class_names,
        "metadata_columns": [c for c in a.metadata_columns if c in sa.columns],
        "property_columns": [c for c in schema.PROPERTY_COLUMNS if c in sa.columns],
        "cluster_column": schema.CLUSTER if schema.CLUSTER in sa.columns else None,
    }
    return compare_models(sa, b.samples, **{**defaults, **kwargs})
