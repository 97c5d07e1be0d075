"""Slices of the samples table: specs, error rates with intervals, and honest significance.

A slice is data, not code. A :class:`Predicate` is ``(column, op, value)`` with one of the ops in
:data:`OPS`; a :class:`SliceSpec` is a tuple of predicates joined by AND. :func:`apply_slice` is the
one pure function that turns a spec into a boolean row mask, :func:`describe` says it in words
and :func:`spec_to_json` / :func:`spec_from_json` carry it through files and URLs.

:func:`compute_slices` builds one single-predicate slice per

- value of every categorical metadata column (and of a numeric one with at most ``n_bins``
  distinct values),
- quantile bin of every other numeric metadata column (``n_bins`` bins, edges rounded to three
  significant digits so that what the description says is exactly what the spec selects),
- quantile bin of every image property, plus its two extreme tails (darkest / brightest 10%,
  blurriest / sharpest 10%, ...),
- true class, predicted class and embedding cluster (cluster ``-1`` means "none" and is skipped),

and tests each one against the rest of the rows (see :func:`compute_slices` for the statistics).
Rare categorical values are *not* pooled into an "other" slice: "other" would be a made-up mix of
unrelated values that nobody can act on, and a value too rare to test is simply not reported
(``min_support``); :func:`error_rate_by_value` still shows every value.

A row whose value is missing (NaN / None) satisfies no predicate, not even ``!=``: "camera is not
cam_c" does not include images with no camera recorded.

Slices that say nothing are not slices. A slice is a comparison of its rows with the rest, so
both sides need ``min_support`` rows, and a slice holding more than :data:`MAX_SHARE` (90%) of the
images is not tested or reported: "width is 100" on 618 of 619 images says only that one image
is different (:func:`is_testable_size`). Slices defined by the model's own output (the predicted
class, the embedding cluster) are marked ``model_output``: "predicted class is 9" restates that
class's precision and an error cluster is worse partly by construction, so they are shown apart
from conditions on the inputs and never raised as a weak slice.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..checks import check_int
from .intervals import wilson_interval

__all__ = [
    "MAX_SHARE",
    "OPS",
    "SLICE_COLUMNS",
    "Partition",
    "Predicate",
    "SliceSpec",
    "apply_slice",
    "bh_adjust",
    "compute_slices",
    "describe",
    "error_rate_by_value",
    "fisher_worse_p",
    "is_model_output",
    "is_testable_size",
    "slice_partitions",
    "spec_from_json",
    "spec_to_json",
]

OPS = ("==", "!=", "in", "<", ">=", "between")
_NUMERIC_OPS = ("<", ">=", "between")

# Where a slice comes from (the ``source`` column).
SOURCE_METADATA = "metadata"
SOURCE_PROPERTY = "property"
SOURCE_LABEL = "label"
SOURCE_PRED = "pred"
SOURCE_CLUSTER = "cluster"

# Columns of the slices table (schema.SLICES); discovery adds DEPTH and SCORE.
SOURCE = "source"  # one of the SOURCE_* names ("+"-joined for conjunctions)
COLUMN = "column"  # the samples column(s) the slice is defined on (" & "-joined)
SPEC = "spec"  # spec_to_json(spec)
DESCRIPTION = "description"  # describe(spec, class_names)
N = "n"  # rows in the slice
SHARE = "share"  # n / rows in the table
ERRORS = "errors"  # rows in the slice with correct == False
ERROR_RATE = "error_rate"  # errors / n
ERROR_RATE_LOW = "error_rate_low"  # 95% Wilson interval of error_rate
ERROR_RATE_HIGH = "error_rate_high"
REST_ERROR_RATE = "rest_error_rate"  # error rate of the rows outside the slice
GAP = "gap"  # error_rate - rest_error_rate
P_VALUE = "p_value"  # one-sided Fisher exact test "slice worse than the rest"
P_ADJ = "p_adj"  # Benjamini-Hochberg adjusted over every slice tested
SIGNIFICANT = "significant"  # p_adj < alpha
ACCURACY = "accuracy"  # 1 - error_rate
MACRO_F1 = "macro_f1"  # macro F1 over the classes present in the slice (true or predicted)
TOP_CONFUSION = "top_confusion"  # most frequent "true -> predicted (count)"; missing if none
MODEL_OUTPUT = "model_output"  # defined by the model's own output (predicted class, cluster)
VALUE = "value"  # error_rate_by_value: the value or bin, in words

SLICE_COLUMNS = [
    SOURCE,
    COLUMN,
    SPEC,
    DESCRIPTION,
    N,
    SHARE,
    ERRORS,
    ERROR_RATE,
    ERROR_RATE_LOW,
    ERROR_RATE_HIGH,
    REST_ERROR_RATE,
    GAP,
    P_VALUE,
    P_ADJ,
    SIGNIFICANT,
    ACCURACY,
    MACRO_F1,
    TOP_CONFUSION,
    MODEL_OUTPUT,
]
VALUE_COLUMNS = [
    VALUE,
    SPEC,
    N,
    SHARE,
    ERRORS,
    ERROR_RATE,
    ERROR_RATE_LOW,
    ERROR_RATE_HIGH,
    REST_ERROR_RATE,
    GAP,
]

CONFIDENCE = 0.95  # of the error-rate intervals
_URL_SAFE = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
TAIL_SHARE = 0.10  # extreme tails of image properties: lowest / highest 10%
#: A slice holding more than this share of the rows is not a slice (see the module docstring).
MAX_SHARE = 0.9
#: Sources defined by the model's own output, not by a condition on the inputs.
MODEL_OUTPUT_SOURCES = (SOURCE_PRED, SOURCE_CLUSTER)
_MIN_DIGITS = 3  # significant digits of bin edges (more only where 3 would merge edges)

# Words for the low and high end of a numeric column, for readable bin names.
_TAIL_WORDS = {
    schema.BRIGHTNESS: ("darkest", "brightest"),
    schema.CONTRAST: ("lowest-contrast", "highest-contrast"),
    schema.SHARPNESS: ("blurriest", "sharpest"),
    schema.SATURATION: ("least saturated", "most saturated"),
    schema.WIDTH: ("narrowest", "widest"),
    schema.HEIGHT: ("shortest", "tallest"),
    schema.ASPECT_RATIO: ("most portrait", "most landscape"),
    schema.FILE_SIZE: ("smallest", "largest"),
}
_COLUMN_WORDS = {schema.LABEL: "true class", schema.PRED: "predicted class"}


# --------------------------------------------------------------------------------------------
# specs


def _scalar(value: Any, what: str) -> str | bool | int | float:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{what} must be finite, got {value!r}")
        return value
    raise TypeError(f"{what} must be a str, bool, int or float, got {type(value).__name__}")


def _number(value: Any, what: str) -> int | float:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    return _scalar(value, what)  # type: ignore[return-value]


def _sort_key(value: Any) -> tuple:
    if isinstance(value, bool):
        return (0, value)
    if isinstance(value, (int, float)):
        return (1, value)
    return (2, value)


def _normalise_value(column: str, op: str, value: Any) -> Any:
    what = f"value of predicate {column!r} {op}"
    if op in ("==", "!="):
        return _scalar(value, what)
    if op in ("<", ">="):
        return _number(value, what)
    if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
        expected = "a list of values" if op == "in" else "a pair [low, high]"
        raise TypeError(f"{what} must be {expected}, got {value!r}")
    items = list(value)
    if op == "in":
        if not items:
            raise ValueError(f"{what} must list at least one value, got []")
        unique = dict.fromkeys(_scalar(v, what) for v in items)
        return tuple(sorted(unique, key=_sort_key))
    if len(items) != 2:
        raise ValueError(f"{what} must be a pair [low, high], got {items!r}")
    low, high = (_number(v, what) for v in items)
    if not low < high:
        raise ValueError(f"{what} must have low < high (half-open [low, high)), got {items!r}")
    return (low, high)


@dataclass(frozen=True)
class Predicate:
    """One condition on one column of the samples table.

    Attributes
    ----------
    column : str
        Column of the samples table.
    op : str
        One of :data:`OPS`: ``"=="``, ``"!="`` (scalar value), ``"in"`` (list of values),
        ``"<"``, ``">="`` (number), ``"between"`` (``[low, high]``, half-open ``low <= x < high``).
    value : str, bool, int, float or tuple
        Lists are stored as sorted tuples, NumPy scalars as Python scalars, so predicates hash.
    name : str
        Optional display name of the range ("darkest 10%", "20-40th percentile"), used by
        :func:`describe`. Not part of equality or hashing.

    A row whose value is missing satisfies no predicate.
    """

    column: str
    op: str
    value: Any
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise TypeError(f"predicate column must be a non-empty str, got {self.column!r}")
        if self.op not in OPS:
            raise ValueError(f"unknown predicate op {self.op!r}; expected one of {', '.join(OPS)}")
        if not isinstance(self.name, str):
            raise TypeError(f"predicate name must be a str, got {type(self.name).__name__}")
        object.__setattr__(self, "value", _normalise_value(self.column, self.op, self.value))


def _predicate_key(p: Predicate) -> tuple:
    return (p.column, OPS.index(p.op), json.dumps(p.value))


@dataclass(frozen=True)
class SliceSpec:
    """A conjunction (AND) of predicates; the empty spec selects every row.

    Predicates are kept in a canonical order (by column, op, value), so two specs with the same
    predicates are equal and hash alike whatever order they were given in.
    """

    predicates: tuple[Predicate, ...] = ()

    def __post_init__(self) -> None:
        preds = self.predicates
        if isinstance(preds, Predicate):
            preds = (preds,)
        if not isinstance(preds, Iterable):
            raise TypeError(f"SliceSpec takes a tuple of Predicate, got {type(preds).__name__}")
        preds = tuple(preds)
        for p in preds:
            if not isinstance(p, Predicate):
                raise TypeError(f"SliceSpec takes Predicate items, got {type(p).__name__}")
        object.__setattr__(self, "predicates", tuple(sorted(preds, key=_predicate_key)))

    @property
    def columns(self) -> tuple[str, ...]:
        """The distinct columns the spec reads, in predicate order."""
        return tuple(dict.fromkeys(p.column for p in self.predicates))

    @property
    def depth(self) -> int:
        """Number of predicates."""
        return len(self.predicates)


def spec_to_json(spec: SliceSpec, *, url_safe: bool = False) -> str:
    """Serialise a spec to a compact string.

    Parameters
    ----------
    spec : SliceSpec
    url_safe : bool, keyword-only
        False (default): compact ASCII JSON, ``[["camera","==","cam_c"],["brightness","<",0.21,
        "darkest 10%"]]`` (a predicate is ``[column, op, value]`` plus its name if it has one).
        True: the same JSON in unpadded base64url, made only of ``A-Z a-z 0-9 - _``, for a URL
        query parameter that must not need escaping.

    Returns
    -------
    str
        Read back by :func:`spec_from_json` (either form).
    """
    if not isinstance(spec, SliceSpec):
        raise TypeError(f"spec must be a SliceSpec, got {type(spec).__name__}")
    payload = []
    for p in spec.predicates:
        value = list(p.value) if isinstance(p.value, tuple) else p.value
        payload.append([p.column, p.op, value] + ([p.name] if p.name else []))
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    if url_safe:
        return base64.urlsafe_b64encode(text.encode("ascii")).decode("ascii").rstrip("=")
    return text


def spec_from_json(text: str) -> SliceSpec:
    """Inverse of :func:`spec_to_json`; accepts the JSON and the base64url form."""
    if not isinstance(text, str):
        raise TypeError(f"slice spec text must be a str, got {type(text).__name__}")
    raw = text.strip()
    if not raw.startswith("["):
        try:
            if not raw or raw.strip(_URL_SAFE):
                raise ValueError("characters outside base64url")
            raw = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
            raise ValueError(
                f"not a slice spec: {text[:80]!r} is neither JSON nor base64url JSON"
            ) from exc
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a slice spec: {text[:80]!r} is not valid JSON ({exc})") from exc
    if not isinstance(payload, list):
        raise ValueError(f"not a slice spec: expected a JSON list of predicates, got {payload!r}")
    preds = []
    for item in payload:
        if not isinstance(item, list) or len(item) not in (3, 4):
            raise ValueError(
                f"not a slice spec: each predicate must be [column, op, value] or "
                f"[column, op, value, name], got {item!r}"
            )
        preds.append(Predicate(item[0], item[1], item[2], item[3] if len(item) == 4 else ""))
    return SliceSpec(tuple(preds))


# --------------------------------------------------------------------------------------------
# applying and describing


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _predicate_mask(series: pd.Series, p: Predicate) -> np.ndarray:
    present = series.notna().to_numpy(dtype=bool)
    if p.op in ("==", "!="):
        equal = (series == p.value).to_numpy(dtype=bool, na_value=False)
        return (equal if p.op == "==" else ~equal) & present
    if p.op == "in":
        return series.isin(list(p.value)).to_numpy(dtype=bool, na_value=False) & present
    if not _is_numeric(series):
        raise TypeError(
            f"predicate {p.column!r} {p.op} needs a numeric column, got dtype {series.dtype}"
        )
    x = series.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(invalid="ignore"):
        if p.op == "<":
            return x < p.value
        if p.op == ">=":
            return x >= p.value
        low, high = p.value
        return (x >= low) & (x < high)


def apply_slice(samples: pd.DataFrame, spec: SliceSpec) -> np.ndarray:
    """Rows of ``samples`` that satisfy every predicate of ``spec``.

    Parameters
    ----------
    samples : DataFrame, N rows
    spec : SliceSpec

    Returns
    -------
    ndarray of bool, shape (N,)
        Missing values (NaN / None) never satisfy a predicate. The empty spec selects every row.

    Raises
    ------
    ValueError
        A predicate names a column that ``samples`` does not have.
    TypeError
        ``<``, ``>=`` or ``between`` on a non-numeric column.
    """
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    if not isinstance(spec, SliceSpec):
        raise TypeError(f"spec must be a SliceSpec, got {type(spec).__name__}")
    missing = [c for c in spec.columns if c not in samples.columns]
    if missing:
        raise ValueError(
            f"slice spec uses column(s) {missing} that samples does not have; "
            f"available: {list(samples.columns)[:20]}"
        )
    mask = np.ones(len(samples), dtype=bool)
    for p in spec.predicates:
        mask &= _predicate_mask(samples[p.column], p)
    return mask


def _fmt_number(v: float | int) -> str:
    if isinstance(v, bool):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return f"{int(v):,}" if abs(v) >= 10_000 else str(int(v))
    if abs(v) >= 10_000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _fmt_value(value: Any, column: str, class_names: Sequence[str] | None) -> str:
    if (
        class_names is not None
        and column in _COLUMN_WORDS
        and isinstance(value, numbers.Integral)
        and not isinstance(value, bool)
        and 0 <= value < len(class_names)
    ):
        return str(class_names[value])
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _fmt_number(value)
    return str(value)


def _range_text(p: Predicate) -> str:
    if p.op == "<":
        return f"< {_fmt_number(p.value)}"
    if p.op == ">=":
        return f">= {_fmt_number(p.value)}"
    return f"[{_fmt_number(p.value[0])}, {_fmt_number(p.value[1])})"


def _value_text(p: Predicate, class_names: Sequence[str] | None) -> str:
    """The predicate without its column: "cam_c", "darkest 10% (< 0.21)"."""
    if p.op in _NUMERIC_OPS:
        if not p.name:
            return _range_text(p)
        if p.op == "between":
            return f"{p.name} {_range_text(p)}"
        return f"{p.name} ({_range_text(p)})"
    if p.op == "in":
        return ", ".join(_fmt_value(v, p.column, class_names) for v in p.value)
    return _fmt_value(p.value, p.column, class_names)


def _describe_predicate(p: Predicate, class_names: Sequence[str] | None) -> str:
    col = _COLUMN_WORDS.get(p.column, p.column)
    if p.op == "==":
        return f"{col} is {_value_text(p, class_names)}"
    if p.op == "!=":
        return f"{col} is not {_value_text(p, class_names)}"
    if p.op == "in":
        return f"{col} is one of {_value_text(p, class_names)}"
    if p.name:
        return f"{col} in the {_value_text(p, class_names)}"
    if p.op == "between":
        return f"{col} in {_range_text(p)}"
    return f"{col} {_range_text(p)}"


def describe(spec: SliceSpec, class_names: Sequence[str] | None = None) -> str:
    """The spec in plain words.

    ``"camera is cam_c and brightness in the darkest 10% (< 0.21)"``; ``label`` / ``pred`` read
    "true class" / "predicted class" and show class names when ``class_names`` is given. The
    empty spec is ``"all samples"``.
    """
    if not isinstance(spec, SliceSpec):
        raise TypeError(f"spec must be a SliceSpec, got {type(spec).__name__}")
    if not spec.predicates:
        return "all samples"
    return " and ".join(_describe_predicate(p, class_names) for p in spec.predicates)


# --------------------------------------------------------------------------------------------
# statistics


def fisher_worse_p(errors: Any, n: Any, total_errors: Any, total: Any) -> np.ndarray:
    """One-sided Fisher exact p-value that a subset of rows has more errors than chance.

    ``P(X >= errors)`` with ``X ~ Hypergeometric(total, total_errors, n)``: the probability that
    ``n`` rows drawn at random from ``total`` rows of which ``total_errors`` are errors contain at
    least ``errors`` errors. This is ``scipy.stats.fisher_exact(table, alternative="greater")``
    of the 2x2 table [[errors, n - errors], [rest errors, rest correct]].

    Parameters
    ----------
    errors, n, total_errors, total : int or array-like of ints, broadcastable
        ``0 <= errors <= n <= total``, ``errors <= total_errors <= total``.

    Returns
    -------
    ndarray of float64 in [0, 1], broadcast shape

    Notes
    -----
    Vectorised, and fast where ``scipy.stats.hypergeom.sf`` is not (it takes ~0.5 ms per element
    at 100,000 rows): the tail is summed from ``errors`` outwards with the pmf recurrence, stopping
    when terms fall below 1e-17 of the sum; which tail is summed depends on the side of the mean,
    so the loop is at most a few standard deviations long.
    """
    arrays = [np.asarray(a) for a in (errors, n, total_errors, total)]
    for name, a in zip(("errors", "n", "total_errors", "total"), arrays, strict=True):
        if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"{name} must be integer counts, got dtype {a.dtype}")
        if np.any(a != np.round(a)):
            raise ValueError(f"{name} must be integer counts, got {a[a != np.round(a)][:3]}")
    e, n_, big_e, big_n = (a.astype(np.int64) for a in arrays)
    e, n_, big_e, big_n = np.broadcast_arrays(e, n_, big_e, big_n)
    shape = e.shape
    e, n_, big_e, big_n = (a.ravel() for a in (e, n_, big_e, big_n))
    bad = (
        (e < 0) | (e > n_) | (n_ > big_n) | (e > big_e) | (big_e > big_n) | (n_ - e > big_n - big_e)
    )
    if np.any(bad):
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"inconsistent counts: errors={e[i]}, n={n_[i]}, total_errors={big_e[i]}, "
            f"total={big_n[i]}; expected 0 <= errors <= n <= total, errors <= total_errors "
            f"and n - errors <= total - total_errors"
        )
    return _fisher_core(e, n_, big_e, big_n).reshape(shape)


def _fisher_core(
    e: np.ndarray, n: np.ndarray, big_e: np.ndarray, big_n: np.ndarray, *, upper_only: bool = False
) -> np.ndarray:
    """Unchecked :func:`fisher_worse_p`.

    ``upper_only``: leave p = 1 where ``errors`` is at or below its expected value (the exact p
    is then about 0.5 or more), which saves the slow sums near the mean when only small p-values
    matter. Raising a p-value never makes a test anti-conservative.
    """
    from scipy.special import gammaln

    e, n, big_e, big_n = (a.astype(np.float64) for a in (e, n, big_e, big_n))
    p = np.ones(e.shape)
    lo = np.maximum(0.0, n - (big_n - big_e))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(big_n > 0, n * big_e / np.maximum(big_n, 1), 0.0)
    inside = e > lo
    upper = np.flatnonzero(inside & (e > mean))
    lower = np.flatnonzero(inside & (e <= mean))

    def lchoose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    def tail(idx: np.ndarray, start: np.ndarray, step: int) -> np.ndarray:
        ee, nn, bn = big_e[idx], n[idx], big_n[idx]
        stop = np.minimum(nn, ee) if step > 0 else lo[idx]
        x = start.copy()
        term = np.exp(lchoose(ee, x) + lchoose(bn - ee, nn - x) - lchoose(bn, nn))
        total = term.copy()
        active = np.flatnonzero((x != stop) & (term > 0))
        while active.size:
            xa, ea, na, ba = x[active], ee[active], nn[active], bn[active]
            if step > 0:
                ratio = (ea - xa) * (na - xa) / ((xa + 1) * (ba - ea - na + xa + 1))
            else:
                ratio = xa * (ba - ea - na + xa) / ((ea - xa + 1) * (na - xa + 1))
            term[active] *= ratio
            x[active] += step
            total[active] += term[active]
            keep = (x[active] != stop[active]) & (term[active] > total[active] * 1e-17)
            active = active[keep]
        return total

    if upper.size:
        p[upper] = tail(upper, e[upper], +1)
    if lower.size and not upper_only:
        p[lower] = 1.0 - tail(lower, e[lower] - 1, -1)
    return np.clip(p, 0.0, 1.0)


def is_testable_size(
    n: Any, total: int, *, min_support: int, max_share: float = MAX_SHARE
) -> np.ndarray:
    """Which slice sizes make a slice: ``n`` and the rest ``total - n`` both hold at least
    ``min_support`` rows, and ``n <= max_share * total``.

    Parameters
    ----------
    n : int or array-like of int
        Rows of each slice.
    total : int
        Rows of the table.
    min_support : int, keyword-only
    max_share : float, keyword-only
        Largest share of the rows a slice may hold (default :data:`MAX_SHARE`).

    Returns
    -------
    ndarray of bool, the shape of ``n``
    """
    n = np.asarray(n)
    return (n >= min_support) & (total - n >= min_support) & (n <= max_share * total)


def bh_adjust(p_values: Any, *, n_tests: int | None = None) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up false-discovery-rate control).

    Parameters
    ----------
    p_values : array-like of float, shape (k,)
        Values in [0, 1]; NaN entries are "not tested" and stay NaN.
    n_tests : int, keyword-only, optional
        Size of the whole family, ``>= k``; the ``n_tests - k`` hypotheses not listed count as
        ``p = 1`` (candidates that were scored but not given a p-value). Default: k.

    Returns
    -------
    ndarray of float64, shape (k,)
        ``p_adj[i] = min(1, min_{j: p_j >= p_i} p_j * m / rank_j)``; rejecting ``p_adj < alpha``
        controls the FDR at ``alpha`` (independent or positively dependent tests). Matches
        ``scipy.stats.false_discovery_control(p, method="bh")``.
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p_values must be 1-D, got shape {p.shape}")
    tested = ~np.isnan(p)
    if np.any((p[tested] < 0) | (p[tested] > 1)):
        raise ValueError(f"p_values must be in [0, 1], got {p[tested & ((p < 0) | (p > 1))][:3]}")
    k = int(tested.sum())
    if n_tests is None:
        m = k
    else:
        if isinstance(n_tests, bool) or not isinstance(n_tests, numbers.Integral):
            raise TypeError(f"n_tests must be an int, got {type(n_tests).__name__}")
        if n_tests < k:
            raise ValueError(f"n_tests must be >= the {k} p-values given, got {n_tests}")
        m = int(n_tests)
    out = np.full(p.shape, np.nan)
    if k == 0:
        return out
    idx = np.flatnonzero(tested)
    order = np.argsort(p[idx], kind="mergesort")
    ranked = p[idx][order] * m / np.arange(1, k + 1)
    adjusted = np.minimum(np.minimum.accumulate(ranked[::-1])[::-1], 1.0)
    out[idx[order]] = adjusted
    return out


def _stats(n: np.ndarray, e: np.ndarray, total: int, total_errors: int) -> dict[str, np.ndarray]:
    """Per-slice counts, error rate with Wilson interval, rest rate, gap, accuracy (vectorised)."""
    n = np.asarray(n, dtype=np.int64)
    e = np.asarray(e, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, e / np.maximum(n, 1), np.nan)
        rest_n = total - n
        rest = np.where(rest_n > 0, (total_errors - e) / np.maximum(rest_n, 1), np.nan)
    low, high = wilson_interval(e, n, confidence=CONFIDENCE)
    return {
        N: n,
        SHARE: n / total if total else np.full(n.shape, np.nan),
        ERRORS: e,
        ERROR_RATE: rate,
        ERROR_RATE_LOW: np.asarray(low, dtype=np.float64),
        ERROR_RATE_HIGH: np.asarray(high, dtype=np.float64),
        REST_ERROR_RATE: rest,
        GAP: rate - rest,
        ACCURACY: 1.0 - rate,
    }


# --------------------------------------------------------------------------------------------
# inputs and the predicate vocabulary


@dataclass(frozen=True, eq=False)
class _Inputs:
    """Validated arrays of the samples table."""

    label: np.ndarray  # int64 [N]
    pred: np.ndarray  # int64 [N]
    error: np.ndarray  # bool [N], not correct
    n_classes: int
    class_names: tuple[str, ...] | None


def _column_list(value: Any, what: str, samples: pd.DataFrame) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a list of column names, got {value!r}")
    cols = tuple(value)
    for c in cols:
        if not isinstance(c, str):
            raise TypeError(f"{what} must hold column names (str), got {c!r}")
    missing = [c for c in cols if c not in samples.columns]
    if missing:
        raise ValueError(f"{what} names column(s) {missing} that samples does not have")
    return cols


def _int_column(samples: pd.DataFrame, name: str) -> np.ndarray:
    s = samples[name]
    if not _is_numeric(s):
        raise TypeError(f"column {name!r} must hold integer class ids, got dtype {s.dtype}")
    x = s.to_numpy(dtype=np.float64, na_value=np.nan)
    if np.any(~np.isfinite(x)) or np.any(x != np.round(x)) or np.any(x < 0):
        raise ValueError(f"column {name!r} must hold integer class ids >= 0 without missing values")
    return x.astype(np.int64)


def _check_inputs(
    samples: Any,
    *,
    metadata_columns: Any,
    property_columns: Any,
    cluster_column: Any,
    class_names: Any,
    min_support: Any,
    alpha: Any,
    n_bins: Any,
    max_share: Any = MAX_SHARE,
) -> tuple[_Inputs, tuple[str, ...], tuple[str, ...]]:
    """Validate the arguments shared by compute_slices and discover_slices."""
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    core = [schema.LABEL, schema.PRED, schema.CORRECT]
    missing = [c for c in core if c not in samples.columns]
    if missing:
        raise ValueError(f"samples is missing column(s) {missing}; expected at least {core}")
    meta = _column_list(metadata_columns, "metadata_columns", samples)
    props = _column_list(property_columns, "property_columns", samples)
    if cluster_column is not None:
        if not isinstance(cluster_column, str):
            raise TypeError(f"cluster_column must be a column name or None, got {cluster_column!r}")
        if cluster_column not in samples.columns:
            raise ValueError(f"cluster_column {cluster_column!r} is not a column of samples")
    named = list(meta) + list(props) + ([cluster_column] if cluster_column else [])
    dupes = sorted({c for c in named if named.count(c) > 1})
    if dupes:
        raise ValueError(f"column(s) {dupes} named more than once across the column arguments")
    reserved = [c for c in named if c in core]
    if reserved:
        raise ValueError(
            f"{reserved} are sliced automatically (true / predicted class); remove them from the "
            f"column arguments"
        )
    for c in props:
        if not _is_numeric(samples[c]):
            raise TypeError(f"property column {c!r} must be numeric, got dtype {samples[c].dtype}")
    for c in meta:
        if pd.api.types.is_datetime64_any_dtype(samples[c]) or isinstance(
            samples[c].dtype, pd.PeriodDtype
        ):
            raise TypeError(
                f"metadata column {c!r} has dtype {samples[c].dtype}; convert it to numbers "
                f"(e.g. hour of day) or strings first"
            )
    check_int(min_support, "min_support", minimum=1)
    check_int(n_bins, "n_bins", minimum=2)
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real):
        raise TypeError(f"alpha must be a float in (0, 1), got {type(alpha).__name__}")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must be in (0, 1) (e.g. 0.05), got {alpha!r}")
    if isinstance(max_share, bool) or not isinstance(max_share, numbers.Real):
        raise TypeError(f"max_share must be a float in (0, 1], got {type(max_share).__name__}")
    if not 0.0 < float(max_share) <= 1.0:
        raise ValueError(f"max_share must be in (0, 1] (e.g. {MAX_SHARE}), got {max_share!r}")
    names: tuple[str, ...] | None = None
    if class_names is not None:
        if isinstance(class_names, str) or not isinstance(class_names, Iterable):
            raise TypeError(f"class_names must be a list of str or None, got {class_names!r}")
        names = tuple(str(c) for c in class_names)
    label = _int_column(samples, schema.LABEL)
    pred = _int_column(samples, schema.PRED)
    top = int(max(label.max(initial=-1), pred.max(initial=-1)))
    if names is not None and top >= len(names):
        raise ValueError(
            f"label / pred hold class id {top} but class_names has only {len(names)} names"
        )
    correct = samples[schema.CORRECT]
    if correct.isna().any():
        raise ValueError(f"column {schema.CORRECT!r} must not have missing values")
    if pd.api.types.is_bool_dtype(correct):
        ok = correct.to_numpy(dtype=bool)
    elif _is_numeric(correct) and correct.isin([0, 1]).all():
        ok = correct.to_numpy(dtype=np.float64) == 1
    else:
        raise TypeError(f"column {schema.CORRECT!r} must be bool (or 0/1), got {correct.dtype}")
    n_classes = len(names) if names is not None else top + 1
    return _Inputs(label, pred, ~ok, n_classes, names), meta, props


@dataclass(frozen=True, eq=False)
class Partition:
    """Mutually exclusive single-predicate slices of one column.

    Attributes
    ----------
    source : str
        ``"metadata"``, ``"property"``, ``"label"``, ``"pred"`` or ``"cluster"``.
    column : str
    codes : ndarray of int64, shape (N,)
        ``codes[i] == k`` when row ``i`` satisfies ``predicates[k]``; ``-1`` when it satisfies
        none (missing value, cluster -1, the middle of a tails partition).
    predicates : tuple of Predicate
        ``apply_slice(samples, SliceSpec((predicates[k],)))`` equals ``codes == k``.
    """

    source: str
    column: str
    codes: np.ndarray
    predicates: tuple[Predicate, ...]


def _categorical(
    series: pd.Series, column: str, source: str, *, skip: tuple = ()
) -> list[Partition]:
    try:
        codes, uniques = pd.factorize(series, sort=True)
    except TypeError:  # mixed types that do not sort
        codes, uniques = pd.factorize(series, sort=False)
    preds: list[Predicate] = []
    remap = np.full(len(uniques) + 1, -1, dtype=np.int64)  # last entry: code -1 stays -1
    for k, value in enumerate(uniques):
        if value in skip:
            continue
        try:
            pred = Predicate(column, "==", value)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"column {column!r}: cannot slice on value {value!r} ({exc})") from exc
        remap[k] = len(preds)
        preds.append(pred)
    if not preds:
        return []
    return [Partition(source, column, remap[np.asarray(codes, dtype=np.int64)], tuple(preds))]


def _round_edges(raw: np.ndarray, low: float, high: float) -> list[float]:
    """Distinct edges in (low, high], rounded to the fewest digits (>= 3) that keep them apart."""
    raw = np.asarray(raw, dtype=np.float64)
    target = np.unique(raw[(raw > low) & (raw <= high)])
    for digits in range(_MIN_DIGITS, 17):
        rounded = np.unique([float(f"{v:.{digits}g}") for v in target])
        rounded = rounded[(rounded > low) & (rounded <= high)]
        if len(rounded) == len(target):
            return [float(v) for v in rounded]
    return [float(v) for v in target]


def _pct(share: float) -> str:
    v = 100.0 * share
    return f"{v:.0f}" if v >= 1 or v == 0 else f"{v:.1f}"


def _ordinal(text: str) -> str:
    if not text.isdigit():
        return f"{text}th"
    n = int(text)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{text}{suffix}"


def _range_partition(
    x: np.ndarray, column: str, source: str, edges: list[float], words: tuple[str, str]
) -> Partition | None:
    """Bins (-inf, e0), [e0, e1), ..., [e_last, inf) of x, with readable names."""
    present = ~np.isnan(x)
    edges = list(edges)
    while edges:  # drop edges that would leave a bin empty (gaps in the data)
        codes = np.searchsorted(np.asarray(edges), x[present], side="right")
        counts = np.bincount(codes, minlength=len(edges) + 1)
        empty = np.flatnonzero(counts == 0)
        if not empty.size:
            break
        del edges[max(int(empty[0]) - 1, 0)]
    if not edges:
        return None
    values = x[present]
    below = [float(np.mean(values < e)) for e in edges]
    preds = [Predicate(column, "<", edges[0], f"{words[0]} {_pct(below[0])}%")]
    for i in range(1, len(edges)):
        lo, hi = _pct(below[i - 1]), _pct(below[i])
        preds.append(
            Predicate(
                column, "between", (edges[i - 1], edges[i]), f"{lo}-{_ordinal(hi)} percentile"
            )
        )
    preds.append(Predicate(column, ">=", edges[-1], f"{words[1]} {_pct(1.0 - below[-1])}%"))
    codes = np.full(len(x), -1, dtype=np.int64)
    codes[present] = np.searchsorted(np.asarray(edges), values, side="right")
    return Partition(source, column, codes, tuple(preds))


def _tails_partition(
    x: np.ndarray, column: str, source: str, bins: Partition | None, words: tuple[str, str]
) -> Partition | None:
    """Lowest and highest TAIL_SHARE of x (where they are tails, and not already a bin)."""
    present = ~np.isnan(x)
    values = x[present]
    finite = values[np.isfinite(values)]
    if not finite.size:
        return None
    low_edge, high_edge = np.quantile(finite, [TAIL_SHARE, 1.0 - TAIL_SHARE])
    lo, hi = float(values.min()), float(values.max())
    existing = set(bins.predicates) if bins is not None else set()
    preds, masks = [], []
    for op, raw in (("<", low_edge), (">=", high_edge)):
        edge = _round_edges(np.array([raw]), lo, hi)
        if not edge:
            continue
        mask = present & ((x < edge[0]) if op == "<" else (x >= edge[0]))
        share = float(mask.sum()) / len(values)
        if share == 0 or share > 2 * TAIL_SHARE:  # ties at the quantile: not a tail
            continue
        word = words[0] if op == "<" else words[1]
        pred = Predicate(column, op, edge[0], f"{word} {_pct(share)}%")
        if pred in existing:
            continue
        preds.append(pred)
        masks.append(mask)
    if not preds:
        return None
    codes = np.full(len(x), -1, dtype=np.int64)
    for k, mask in enumerate(masks):
        codes[mask] = k
    return Partition(source, column, codes, tuple(preds))


def _column_partitions(
    series: pd.Series, column: str, source: str, *, n_bins: int, tails: bool
) -> list[Partition]:
    if not _is_numeric(series):
        return _categorical(series, column, source)
    x = series.to_numpy(dtype=np.float64, na_value=np.nan)
    present = ~np.isnan(x)
    if not present.any():
        return []
    if len(np.unique(x[present])) <= n_bins:
        return _categorical(series, column, source)
    values = x[present]
    words = _TAIL_WORDS.get(column, ("lowest", "highest"))
    finite = values[np.isfinite(values)]
    levels = np.arange(1, n_bins) / n_bins
    lo, hi = float(values.min()), float(values.max())
    edges = _round_edges(np.quantile(finite, levels), lo, hi) if finite.size else []
    if not edges and finite.size:  # one value holds most rows: split the distinct values
        edges = _round_edges(np.quantile(np.unique(finite), levels), lo, hi)
    bins = _range_partition(x, column, source, edges, words)
    out = [bins] if bins is not None else []
    if tails:
        tail = _tails_partition(x, column, source, bins, words)
        if tail is not None:
            out.append(tail)
    return out


def _class_partition(values: np.ndarray, column: str, source: str) -> list[Partition]:
    present = np.unique(values)
    if not present.size:
        return []
    codes = np.searchsorted(present, values).astype(np.int64)
    return [
        Partition(source, column, codes, tuple(Predicate(column, "==", int(v)) for v in present))
    ]


def _partitions(
    samples: pd.DataFrame,
    inputs: _Inputs,
    *,
    metadata_columns: Sequence[str],
    property_columns: Sequence[str],
    cluster_column: str | None,
    n_bins: int,
) -> list[Partition]:
    parts: list[Partition] = []
    for c in metadata_columns:
        parts += _column_partitions(samples[c], c, SOURCE_METADATA, n_bins=n_bins, tails=False)
    for c in property_columns:
        parts += _column_partitions(samples[c], c, SOURCE_PROPERTY, n_bins=n_bins, tails=True)
    parts += _class_partition(inputs.label, schema.LABEL, SOURCE_LABEL)
    parts += _class_partition(inputs.pred, schema.PRED, SOURCE_PRED)
    if cluster_column is not None:
        parts += _categorical(samples[cluster_column], cluster_column, SOURCE_CLUSTER, skip=(-1,))
    return parts


def slice_partitions(
    samples: pd.DataFrame,
    *,
    metadata_columns: Sequence[str],
    property_columns: Sequence[str],
    cluster_column: str | None = None,
    n_bins: int = 5,
) -> list[Partition]:
    """The predicate vocabulary of :func:`compute_slices` and discovery, grouped by column.

    Parameters
    ----------
    samples : DataFrame with ``label``, ``pred``, ``correct`` and the named columns
    metadata_columns, property_columns : list of str, keyword-only
    cluster_column : str, optional
    n_bins : int, keyword-only
        Quantile bins per numeric column (fewer where ties merge edges).

    Returns
    -------
    list of Partition
        Per metadata column one partition (values or bins); per property the bins and, as a
        second partition, the two tails; then true class, predicted class and cluster.
    """
    inputs, meta, props = _check_inputs(
        samples,
        metadata_columns=metadata_columns,
        property_columns=property_columns,
        cluster_column=cluster_column,
        class_names=None,
        min_support=1,
        alpha=0.05,
        n_bins=n_bins,
    )
    return _partitions(
        samples,
        inputs,
        metadata_columns=meta,
        property_columns=props,
        cluster_column=cluster_column,
        n_bins=n_bins,
    )


# --------------------------------------------------------------------------------------------
# the slices table


def _class_name(k: int, class_names: Sequence[str] | None) -> str:
    return str(class_names[k]) if class_names is not None else str(k)


def _quality(mask: np.ndarray, inputs: _Inputs) -> tuple[float, str | None]:
    """Macro F1 (sklearn's, zero_division=0) and the top confusion of the rows in ``mask`` (a
    boolean mask or row indices)."""
    label, pred = inputs.label[mask], inputs.pred[mask]
    if label.size == 0:
        return math.nan, None
    c = inputs.n_classes
    truth = np.bincount(label, minlength=c)
    guessed = np.bincount(pred, minlength=c)
    hit = np.bincount(label[label == pred], minlength=c)
    present = (truth + guessed) > 0
    macro_f1 = float(np.mean(2.0 * hit[present] / (truth[present] + guessed[present])))
    wrong = label != pred
    if not wrong.any():
        return macro_f1, None
    pairs, counts = np.unique(label[wrong] * c + pred[wrong], return_counts=True)
    j = int(np.argmax(counts))
    t, p = divmod(int(pairs[j]), c)
    names = inputs.class_names
    return macro_f1, f"{_class_name(t, names)} -> {_class_name(p, names)} ({int(counts[j])})"


#: (part, class) cells up to which :func:`_partition_quality` counts in dense arrays (one
#: bincount); beyond, over the sorted keys present (at 10,000 classes, 10,000 class slices).
_DENSE_CELLS = 1 << 22
#: Tested parts of a partition from which their quality is computed all at once (fewer: each
#: part on its own rows, cheaper for a few large parts; measured at 100,000 images).
_PARTS_AT_ONCE = 32


def _counts(cells: int, groups: list[np.ndarray]) -> tuple[np.ndarray, list]:
    """(the cells present, counts of each array of ``groups`` per present cell)."""
    if cells <= _DENSE_CELLS:
        counts = [np.bincount(g, minlength=cells) for g in groups]
        present = np.flatnonzero(sum(counts) > 0) if counts else np.empty(0, np.int64)
        return present, [x[present] for x in counts]
    present = np.unique(np.concatenate(groups))
    return present, [
        np.bincount(np.searchsorted(present, g), minlength=present.size) for g in groups
    ]


def _partition_quality(
    codes: np.ndarray, k: int, inputs: _Inputs
) -> list[tuple[float, str | None]]:
    """:func:`_quality` of every part ``0..k-1`` of a partition at once (``codes[i]`` is row i's
    part, -1 none): counts per (part, class) in one pass instead of three ``n_classes``-long
    bincounts per part (at 1,000 classes, 2,000 class slices paid those). Same values: macro F1
    over the classes present in the part, the most frequent confusion with ties to the lower
    (true, predicted) pair."""
    valid = codes >= 0
    code, label, pred = codes[valid], inputs.label[valid], inputs.pred[valid]
    c = inputs.n_classes
    kt, kg = code * c + label, code * c + pred
    right = label == pred
    cells, (truth, guessed, hit) = _counts(k * c, [kt, kg, kt[right]])
    part = cells // c
    f1 = np.bincount(part, weights=2.0 * hit / (truth + guessed), minlength=k)
    present = np.bincount(part, minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        macro = f1 / present  # NaN for an empty part
    top: list[str | None] = [None] * k
    wrong = ~right
    if wrong.any():
        pair_keys = code[wrong] * (c * c) + label[wrong] * c + pred[wrong]
        pairs, (counts,) = _counts(k * c * c, [pair_keys])
        part_of = pairs // (c * c)
        order = np.lexsort((pairs, -counts, part_of))  # per part: most frequent, lower pair
        first = order[np.r_[True, part_of[order][1:] != part_of[order][:-1]]]
        names = inputs.class_names
        for j in first:
            t, p = divmod(int(pairs[j] % (c * c)), c)
            top[int(part_of[j])] = (
                f"{_class_name(t, names)} -> {_class_name(p, names)} ({int(counts[j])})"
            )
    return [(float(m), t) for m, t in zip(macro, top, strict=True)]


def _empty_table(columns: list[str]) -> pd.DataFrame:
    ints = {N, ERRORS, "depth"}
    text = {SOURCE, COLUMN, SPEC, DESCRIPTION, TOP_CONFUSION, VALUE}
    data = {
        c: np.array(
            [],
            dtype="int64" if c in ints else bool if c in (SIGNIFICANT, MODEL_OUTPUT) else "float64",
        )
        for c in columns
    }
    return pd.DataFrame(data).astype({c: "str" for c in columns if c in text})


def _table(
    specs: list[SliceSpec],
    sources: list[str],
    n: np.ndarray,
    e: np.ndarray,
    quality: list[tuple[float, str | None]],
    inputs: _Inputs,
    *,
    p_value: np.ndarray,
    p_adj: np.ndarray,
    alpha: float,
) -> pd.DataFrame:
    """The slices table (SLICE_COLUMNS) from per-slice counts, tests and each slice's
    (macro F1, top confusion) (:func:`_quality`, :func:`_partition_quality`)."""
    total = len(inputs.error)
    stats = _stats(n, e, total, int(inputs.error.sum()))
    data = {
        SOURCE: sources,
        COLUMN: [" & ".join(s.columns) for s in specs],
        SPEC: [spec_to_json(s) for s in specs],
        DESCRIPTION: [describe(s, inputs.class_names) for s in specs],
        **stats,
        P_VALUE: np.asarray(p_value, dtype=np.float64),
        P_ADJ: np.asarray(p_adj, dtype=np.float64),
        SIGNIFICANT: np.asarray(p_adj, dtype=np.float64) < alpha,
        MACRO_F1: [q[0] for q in quality],
        TOP_CONFUSION: [q[1] for q in quality],
        MODEL_OUTPUT: np.array([is_model_output(src) for src in sources], dtype=bool),
    }
    return pd.DataFrame(data)[SLICE_COLUMNS]


def is_model_output(source: str) -> bool:
    """Whether a slice's ``source`` ("+"-joined for conjunctions) uses the model's own output."""
    return any(part in MODEL_OUTPUT_SOURCES for part in str(source).split("+"))


def compute_slices(
    samples: pd.DataFrame,
    *,
    metadata_columns: Sequence[str],
    property_columns: Sequence[str],
    cluster_column: str | None = None,
    class_names: Sequence[str] | None,
    min_support: int = 20,
    alpha: float = 0.05,
    n_bins: int = 5,
    max_share: float = MAX_SHARE,
) -> pd.DataFrame:
    """Every single-predicate slice, its error rate with interval, and whether it is worse.

    Parameters
    ----------
    samples : DataFrame, N rows
        Needs ``label`` and ``pred`` (int class ids), ``correct`` (bool) and the named columns.
    metadata_columns : list of str, keyword-only
        Categorical (one slice per value) or numeric (``n_bins`` quantile bins) columns.
    property_columns : list of str, keyword-only
        Numeric image properties (``schema.PROPERTY_COLUMNS``): quantile bins plus the lowest and
        highest 10% tails.
    cluster_column : str, optional
        Embedding cluster ids; one slice per cluster, ``-1`` ("none") skipped.
    class_names : list of str or None, keyword-only
        Names of classes ``0..C-1`` for descriptions and ``top_confusion``.
    min_support : int
        Slices with fewer rows, or whose rest has fewer rows, are neither tested nor reported.
    alpha : float
        False-discovery rate for ``significant``.
    n_bins : int
        Quantile bins per numeric column.
    max_share : float
        Slices holding more than this share of the rows are neither tested nor reported (a
        slice of nearly every image says nothing; see :func:`is_testable_size`).

    Returns
    -------
    DataFrame, one row per slice, columns :data:`SLICE_COLUMNS`
        ``model_output`` marks slices on the predicted class or the cluster. Sorted significant first, then by ``gap`` (largest first), then ``p_value``.
        ``attrs["n_tested"]`` is the number of slices tested. An empty table (no rows, or no
        slice with ``min_support`` rows) has the same columns and no rows.

    Notes
    -----
    ``p_value`` is a one-sided Fisher exact test of "the slice has a higher error rate than the
    rest": ``P(X >= errors)`` for ``X`` hypergeometric, i.e. conditional on the total number of
    errors, how surprising is it that this many of them fall in a slice of this size. It is
    chosen over a two-proportion z-test because it is exact at every size (the z-test's normal
    approximation is poor for the small slices and low error rates this page is about, and
    anti-conservative there) and, computed by :func:`fisher_worse_p`, costs no more. It is
    conservative (a discrete test), never anti-conservative.

    ``p_adj`` is Benjamini-Hochberg over the slices on the inputs (metadata, properties, true
    class), and separately over those on the model's own output (predicted class, cluster), so
    ``significant`` controls the expected share of false alarms among each family's flagged
    slices at ``alpha``; when errors depend on no input column, the chance that any input slice
    is flagged is at most about ``alpha``. One family for both would break that: the
    model-output slices are worse by construction whenever errors go to some classes more than
    others, and their discoveries would loosen Benjamini-Hochberg's threshold for the inputs
    (measured on random null worlds, ``bench/bench_discovery.py``: an input slice flagged in
    9.3% of them with one family). Which slices are tested depends only on their sizes, never on their
    errors, so the family is fixed before the errors are looked at.
    """
    inputs, meta, props = _check_inputs(
        samples,
        metadata_columns=metadata_columns,
        property_columns=property_columns,
        cluster_column=cluster_column,
        class_names=class_names,
        min_support=min_support,
        alpha=alpha,
        n_bins=n_bins,
        max_share=max_share,
    )
    return _compute_slices_core(
        samples,
        inputs,
        metadata_columns=meta,
        property_columns=props,
        cluster_column=cluster_column,
        min_support=int(min_support),
        alpha=float(alpha),
        n_bins=int(n_bins),
        max_share=float(max_share),
    )


def _compute_slices_core(
    samples: pd.DataFrame,
    inputs: _Inputs,
    *,
    metadata_columns: Sequence[str],
    property_columns: Sequence[str],
    cluster_column: str | None,
    min_support: int,
    alpha: float,
    n_bins: int,
    max_share: float = MAX_SHARE,
) -> pd.DataFrame:
    total = len(samples)
    if total == 0:
        out = _empty_table(SLICE_COLUMNS)
        out.attrs["n_tested"] = 0
        return out
    parts = _partitions(
        samples,
        inputs,
        metadata_columns=metadata_columns,
        property_columns=property_columns,
        cluster_column=cluster_column,
        n_bins=n_bins,
    )
    error = inputs.error
    specs, sources, ns, es, quality = [], [], [], [], []
    for part in parts:
        k = len(part.predicates)
        valid = part.codes >= 0
        n_k = np.bincount(part.codes[valid], minlength=k)
        e_k = np.bincount(part.codes[valid & error], minlength=k)
        sized = is_testable_size(n_k, total, min_support=min_support, max_share=max_share)
        tested = np.flatnonzero(sized)
        if tested.size > _PARTS_AT_ONCE:  # many parts (a class per slice): all at once
            q = _partition_quality(part.codes, k, inputs)
            quality += [q[j] for j in tested]
        else:  # a few large parts: each on its own rows
            quality += [_quality(part.codes == j, inputs) for j in tested]
        for j in tested:
            specs.append(SliceSpec((part.predicates[j],)))
            sources.append(part.source)
            ns.append(int(n_k[j]))
            es.append(int(e_k[j]))
    if not specs:
        out = _empty_table(SLICE_COLUMNS)
        out.attrs["n_tested"] = 0
        return out
    n = np.asarray(ns, dtype=np.int64)
    e = np.asarray(es, dtype=np.int64)
    p_value = _fisher_core(e, n, np.full_like(n, error.sum()), np.full_like(n, total))
    # two families: conditions on the inputs, and slices on the model's own output. Those are
    # worse by construction when errors go to some classes more than others, and in one family
    # their (real) discoveries would loosen the threshold for the inputs' slices.
    own = np.array([s in MODEL_OUTPUT_SOURCES for s in sources], dtype=bool)
    p_adj = np.empty_like(p_value)
    for family in (own, ~own):
        if family.any():
            p_adj[family] = bh_adjust(p_value[family])
    out = _table(specs, sources, n, e, quality, inputs, p_value=p_value, p_adj=p_adj, alpha=alpha)
    out = out.sort_values(
        [SIGNIFICANT, GAP, P_VALUE, N], ascending=[False, False, True, False], kind="mergesort"
    ).reset_index(drop=True)
    out.attrs["n_tested"] = len(specs)
    return out


def error_rate_by_value(
    samples: pd.DataFrame,
    column: str,
    *,
    n_bins: int = 5,
    class_names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Error rate per value (or quantile bin) of one column, for a per-value chart.

    Parameters
    ----------
    samples : DataFrame with ``correct`` and ``column``
    column : str
        A metadata or property column, ``label`` / ``pred`` (one row per class present) or
        ``schema.CLUSTER`` (one row per cluster, ``-1`` = none skipped).
    n_bins : int, keyword-only
        Quantile bins of a numeric column with more than ``n_bins`` distinct values.
    class_names : list of str, optional
        Shown for ``label`` / ``pred`` values.

    Returns
    -------
    DataFrame, columns :data:`VALUE_COLUMNS`
        One row per value in natural order (sorted values, bins low to high), every value shown
        whatever its size (read ``n``), then a ``"(missing)"`` row (``spec`` missing: no spec
        selects missing values) when some rows have no value. No significance here: a chart of one column is not a test of it.
    """
    if not isinstance(samples, pd.DataFrame):
        raise TypeError(f"samples must be a pandas DataFrame, got {type(samples).__name__}")
    if not isinstance(column, str):
        raise TypeError(f"column must be a column name (str), got {column!r}")
    for c in (schema.CORRECT, column):
        if c not in samples.columns:
            raise ValueError(f"samples has no column {c!r}")
    check_int(n_bins, "n_bins", minimum=2)
    correct = samples[schema.CORRECT]
    if correct.isna().any() or not (
        pd.api.types.is_bool_dtype(correct) or (_is_numeric(correct) and correct.isin([0, 1]).all())
    ):
        raise TypeError(f"column {schema.CORRECT!r} must be bool (or 0/1) without missing values")
    names = tuple(str(c) for c in class_names) if class_names is not None else None
    if len(samples) == 0:
        return _empty_table(VALUE_COLUMNS)
    series = samples[column]
    if column == schema.CLUSTER:
        parts = _categorical(series, column, SOURCE_CLUSTER, skip=(-1,))
    elif column in (schema.LABEL, schema.PRED):
        parts = _categorical(series, column, SOURCE_LABEL)
    else:
        parts = _column_partitions(series, column, SOURCE_METADATA, n_bins=n_bins, tails=False)
    error = ~correct.to_numpy(dtype=np.float64).astype(bool)
    total, total_errors = len(samples), int(error.sum())
    values, specs, ns, es = [], [], [], []
    if parts:
        part = parts[0]
        for k, pred in enumerate(part.predicates):
            mask = part.codes == k
            values.append(_value_text(pred, names))
            specs.append(spec_to_json(SliceSpec((pred,))))
            ns.append(int(mask.sum()))
            es.append(int(error[mask].sum()))
    missing = series.isna().to_numpy(dtype=bool)
    if missing.any():
        values.append("(missing)")
        specs.append(None)
        ns.append(int(missing.sum()))
        es.append(int(error[missing].sum()))
    if not values:
        return _empty_table(VALUE_COLUMNS)
    stats = _stats(np.asarray(ns), np.asarray(es), total, total_errors)
    data = {VALUE: values, SPEC: specs, **stats}
    return pd.DataFrame(data)[VALUE_COLUMNS]
