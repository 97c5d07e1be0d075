"""Image-property outliers (dark, overexposed, low-contrast, blurry, noisy, odd size, ...) and
their cost.

Each outlier type (registry :data:`OUTLIER_TYPES`) reads one property of ``samples.parquet``
(``schema.PROPERTY_COLUMNS``) and flags the images that are unusual **for this data set** and
unusual **in absolute terms**, both at once:

- *Adaptive*: a robust z-score ``(t(x) - median) / scale`` on a transformed scale ``t`` where the
  property is roughly symmetric, with ``scale = 1.4826 * MAD`` (the normal-consistent median
  absolute deviation; ``1.2533 * mean absolute deviation`` when more than half the values are
  equal, e.g. identical image sizes). An image is flagged beyond ``z_threshold`` (default 3.5,
  the Iglewicz-Hoaglin cut-off for modified z-scores). A uniformly dark data set therefore does
  not flag half of itself: only the images much darker than its own typical image.
- *Absolute guard*: the value must also be bad on its own (brightness below 0.2 to be "dark", at
  least 4x fewer pixels than the median to be "small", ...), so a clean data set whose spread is
  narrow flags almost nothing.

Brightness uses ``log(x + 0.01)`` for "dark" and ``-log(1.01 - x)`` for "overexposed" (the bounded
[0, 1] scale stretched at the end that matters, so a black frame stands out of a varied photo
collection), contrast, sharpness and noise use logs (they are scale quantities; "noisy" also
needs a noise sigma of at least 5 grey levels), size and aspect ratio use
``log`` two-sided with a ratio guard. "near_constant" is absolute only: a luma standard deviation
below 0.02 (about 5 grey levels) is a blank frame on any data set. NaN properties are never
flagged. The guards are documented in each :class:`OutlierType` and were set from what the
properties mean, not from any sample's planted failures.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..stats.intervals import wilson_interval

__all__ = [
    "OUTLIER_COLUMNS",
    "OUTLIER_TYPES",
    "SUMMARY_COLUMNS",
    "OutlierType",
    "find_outliers",
    "outlier_summary",
    "outlier_thresholds",
]

DEFAULT_Z = 3.5
_MAD_TO_SD = 1.4826  # 1 / Phi^-1(3/4)
_MEANAD_TO_SD = 1.2533  # sqrt(pi / 2)

# Columns of the long outlier table and of the summary.
INDEX = "index"  # the row's label in the input table (its position for a RangeIndex)
TYPE = "type"
VALUE = "value"
THRESHOLD = "threshold"
REASON = "reason"
OUTLIER_COLUMNS = [INDEX, TYPE, VALUE, THRESHOLD, REASON]
SUMMARY_COLUMNS = [
    TYPE,
    "n",
    "n_errors",
    "error_rate",
    "error_low",
    "error_high",
    "rest_n",
    "rest_error_rate",
    "rest_low",
    "rest_high",
    "p_value",
    "p_adj",
    "significant",
]


@dataclass(frozen=True)
class OutlierType:
    """One kind of property outlier.

    Attributes
    ----------
    name : str
    columns : tuple of str
        Property columns of the samples table it needs.
    value : callable
        ``table -> float64 [N]`` the property value (in its own units) the rule looks at.
    tail : {"low", "high", "both"}
        Which side of the distribution is bad.
    forward, inverse : callable or None
        The transform ``t`` for the robust z-score and its inverse; ``None`` = absolute rule only.
    guard : float or None
        Absolute guard in value units: "low" needs ``value < guard``, "high" ``value > guard``.
    ratio : float or None
        Guard relative to the median, for scale quantities: "low" needs ``value < median /
        ratio``, "high" ``value > median * ratio`` ("both" either).
    label : str
        Property name in the reason text; ``fmt`` formats its values.
    """

    name: str
    columns: tuple[str, ...]
    value: Callable[[pd.DataFrame], np.ndarray]
    tail: str
    forward: Callable[[np.ndarray], np.ndarray] | None
    inverse: Callable[[np.ndarray], np.ndarray] | None
    guard: float | None
    ratio: float | None
    label: str
    fmt: str = "{:.3g}"


def _col(name: str) -> Callable[[pd.DataFrame], np.ndarray]:
    return lambda t: pd.to_numeric(t[name], errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def _pixels(t: pd.DataFrame) -> np.ndarray:
    return _col(schema.WIDTH)(t) * _col(schema.HEIGHT)(t)


def _log_eps(eps: float):
    return (lambda x: np.log(np.maximum(x, 0.0) + eps)), (lambda y: np.exp(y) - eps)


def _log_one_minus(eps: float):
    """Increasing transform ``-log(1 + eps - x)``: stretches the bright end of [0, 1]."""
    return (lambda x: -np.log(np.maximum(1.0 + eps - x, eps))), (lambda y: 1.0 + eps - np.exp(-y))


def _log_pos():
    tiny = 1e-12
    return (lambda x: np.log(np.maximum(x, tiny))), np.exp


_DARK = _log_eps(0.01)
_BRIGHT = _log_one_minus(0.01)
_CONTRAST = _log_eps(0.005)
_LOG = _log_pos()

#: name -> OutlierType. Order is the order of the output.
OUTLIER_TYPES: dict[str, OutlierType] = {
    t.name: t
    for t in (
        OutlierType(
            "dark",
            (schema.BRIGHTNESS,),
            _col(schema.BRIGHTNESS),
            "low",
            *_DARK,
            guard=0.2,
            ratio=None,
            label="brightness",
            fmt="{:.2f}",
        ),
        OutlierType(
            "overexposed",
            (schema.BRIGHTNESS,),
            _col(schema.BRIGHTNESS),
            "high",
            *_BRIGHT,
            guard=0.8,
            ratio=None,
            label="brightness",
            fmt="{:.2f}",
        ),
        OutlierType(
            "low_contrast",
            (schema.CONTRAST,),
            _col(schema.CONTRAST),
            "low",
            *_CONTRAST,
            guard=0.1,
            ratio=None,
            label="contrast",
            fmt="{:.3f}",
        ),
        OutlierType(
            "near_constant",
            (schema.CONTRAST,),
            _col(schema.CONTRAST),
            "low",
            None,
            None,
            guard=0.02,
            ratio=None,
            label="contrast",
            fmt="{:.3f}",
        ),
        OutlierType(
            "blurry",
            (schema.SHARPNESS,),
            _col(schema.SHARPNESS),
            "low",
            *_LOG,
            guard=None,
            ratio=4.0,
            label="sharpness",
            fmt="{:.3g}",
        ),
        OutlierType(
            # grainy (high ISO, low light, a bad sensor): far noisier than this data set's
            # typical image and at least 5 grey levels of noise sigma (clean photos: ~1-3)
            "noisy",
            (schema.NOISE,),
            _col(schema.NOISE),
            "high",
            *_LOG,
            guard=5.0,
            ratio=None,
            label="noise sigma",
            fmt="{:.1f}",
        ),
        OutlierType(
            "odd_size",
            (schema.WIDTH, schema.HEIGHT),
            _pixels,
            "both",
            *_LOG,
            guard=None,
            ratio=4.0,
            label="pixels",
            fmt="{:,.0f}",
        ),
        OutlierType(
            "odd_aspect_ratio",
            (schema.ASPECT_RATIO,),
            _col(schema.ASPECT_RATIO),
            "both",
            *_LOG,
            guard=None,
            ratio=1.5,
            label="aspect ratio",
            fmt="{:.2f}",
        ),
    )
}


# ----------------------------------------------------------------------------- validation


def _check_types(types: Any) -> list[str]:
    names = list(OUTLIER_TYPES) if types is None else types
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"types must be a sequence of names, got {type(types).__name__}")
    unknown = [n for n in names if n not in OUTLIER_TYPES]
    if unknown:
        raise ValueError(f"unknown outlier types {unknown}; valid: {list(OUTLIER_TYPES)}")
    return list(dict.fromkeys(names))


def _check_table(table: Any, types: Any, z_threshold: Any) -> list[OutlierType]:
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    if not table.index.is_unique:
        raise ValueError("table index must be unique (rows are reported by index label)")
    if isinstance(z_threshold, bool) or not isinstance(z_threshold, int | float | np.floating):
        raise TypeError(f"z_threshold must be a positive float, got {type(z_threshold).__name__}")
    if not (math.isfinite(z_threshold) and z_threshold > 0):
        raise ValueError(f"z_threshold must be a positive finite float, got {z_threshold!r}")
    chosen = [OUTLIER_TYPES[n] for n in _check_types(types)]
    missing = sorted({c for t in chosen for c in t.columns} - set(table.columns))
    if missing:
        raise ValueError(
            f"table is missing property columns {missing} needed by types "
            f"{[t.name for t in chosen if set(t.columns) & set(missing)]}"
        )
    return chosen


# ----------------------------------------------------------------------------- core


def _robust_location_scale(y: np.ndarray) -> tuple[float, float]:
    """(median, normal-consistent scale) of the finite values; NaN, NaN when there are none."""
    y = y[np.isfinite(y)]
    if y.size == 0:
        return math.nan, math.nan
    med = float(np.median(y))
    dev = np.abs(y - med)
    mad = float(np.median(dev))
    if mad > 0:
        return med, _MAD_TO_SD * mad
    return med, _MEANAD_TO_SD * float(dev.mean())


def _bounds(t: OutlierType, x: np.ndarray, z: float):
    """Flags and limits of one type on values ``x``.

    Returns ``(low_mask, high_mask, median, low, high, loc, scale)``: flagged = ``low_mask |
    high_mask``; ``low``/``high`` are the same limits in value units (for display), ``loc`` and
    ``scale`` the robust location and scale on the transformed axis (NaN for absolute rules).
    The adaptive test is done on the transformed axis (strict inequality), so a data set whose
    values are all equal never flags anything through rounding.
    """
    finite = x[np.isfinite(x)]
    median = float(np.median(finite)) if finite.size else math.nan
    low_mask = np.zeros(x.shape, dtype=bool)
    high_mask = np.zeros(x.shape, dtype=bool)
    low, high = -math.inf, math.inf
    loc = scale = math.nan
    if finite.size == 0:
        return low_mask, high_mask, median, low, high, loc, scale
    want_low, want_high = t.tail in ("low", "both"), t.tail in ("high", "both")
    with np.errstate(invalid="ignore", over="ignore"):
        if t.forward is None:  # absolute rule only
            if want_low:
                low, low_mask = t.guard, x < t.guard
            if want_high:
                high, high_mask = t.guard, x > t.guard
            return low_mask, high_mask, median, low, high, loc, scale
        y = t.forward(x)
        loc, scale = _robust_location_scale(y)
        if want_low:
            low_mask = y < loc - z * scale
            low = float(t.inverse(np.float64(loc - z * scale)))
            if t.guard is not None:
                low_mask &= x < t.guard
                low = min(low, t.guard)
            if t.ratio is not None:
                low_mask &= x < median / t.ratio
                low = min(low, median / t.ratio)
        if want_high:
            high_mask = y > loc + z * scale
            high = float(t.inverse(np.float64(loc + z * scale)))
            if t.guard is not None:
                high_mask &= x > t.guard
                high = max(high, t.guard)
            if t.ratio is not None:
                high_mask &= x > median * t.ratio
                high = max(high, median * t.ratio)
    return low_mask, high_mask, median, low, high, loc, scale


def _reason(t: OutlierType, table: pd.DataFrame, pos: int, v: float, thr: float, med: float):
    f = t.fmt.format
    side = "below" if v < thr else "above"
    what = f"{t.label} {f(v)}"
    if t.name == "odd_size":
        w, h = table[schema.WIDTH].iloc[pos], table[schema.HEIGHT].iloc[pos]
        what = f"{w:.0f}x{h:.0f} px ({f(v)} pixels)"
    if t.forward is None:
        return f"{what}, {side} {f(thr)} (fixed limit)"
    return f"{what}, {side} {f(thr)} (data set median {f(med)})"


def _find_core(table: pd.DataFrame, chosen: list[OutlierType], z: float) -> pd.DataFrame:
    parts = []
    for t in chosen:
        x = t.value(table)
        hit_low, hit_high, med, low, high, loc, _ = _bounds(t, x, z)
        hit = np.flatnonzero(hit_low | hit_high)
        if hit.size == 0:
            continue
        thr = np.where(hit_low[hit], low, high)
        if t.forward is not None:
            far = np.abs(t.forward(x[hit]) - loc)
        else:
            far = -x[hit] if t.tail == "low" else x[hit]
        order = np.lexsort((hit, -far))
        hit, thr = hit[order], thr[order]
        parts.append(
            pd.DataFrame(
                {
                    INDEX: table.index[hit],
                    TYPE: t.name,
                    VALUE: x[hit],
                    THRESHOLD: thr,
                    REASON: [
                        _reason(t, table, int(p), float(x[p]), float(th), med)
                        for p, th in zip(hit, thr, strict=True)
                    ],
                },
                columns=OUTLIER_COLUMNS,
            )
        )
    if not parts:
        parts.append(
            pd.DataFrame(
                {
                    INDEX: pd.Series(dtype=table.index.dtype),
                    TYPE: pd.Series(dtype=object),
                    VALUE: pd.Series(dtype=np.float64),
                    THRESHOLD: pd.Series(dtype=np.float64),
                    REASON: pd.Series(dtype=object),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    if schema.SAMPLE_ID in table.columns:
        out.insert(1, schema.SAMPLE_ID, table.loc[out[INDEX], schema.SAMPLE_ID].to_numpy())
    return out


# ----------------------------------------------------------------------------- public


def find_outliers(
    table: pd.DataFrame,
    *,
    types: Sequence[str] | None = None,
    z_threshold: float = DEFAULT_Z,
) -> pd.DataFrame:
    """Flag images whose properties are outliers for this data set and bad in absolute terms.

    Parameters
    ----------
    table : pd.DataFrame
        One row per image with the property columns of ``schema.PROPERTY_COLUMNS`` that the
        chosen types need (brightness and contrast in [0, 1] luma units, sharpness as variance of
        the Laplacian, width/height in pixels, aspect ratio = width / height). Index unique.
    types : sequence of str, optional, keyword-only
        Names from :data:`OUTLIER_TYPES`; default all.
    z_threshold : float, keyword-only
        Robust z-score beyond which a value is unusual for the data set (default 3.5).

    Returns
    -------
    pd.DataFrame
        Long format, one row per (image, type): ``index`` (the table's index label),
        ``sample_id`` (when the table has it), ``type``, ``value`` (property value; pixels for
        "odd_size"), ``threshold`` (the limit it crossed, same units), ``reason`` (plain words).
        Ordered by type (registry order), then most extreme first.
    """
    chosen = _check_table(table, types, z_threshold)
    return _find_core(table, chosen, float(z_threshold))


def outlier_thresholds(
    table: pd.DataFrame,
    *,
    types: Sequence[str] | None = None,
    z_threshold: float = DEFAULT_Z,
) -> pd.DataFrame:
    """The limits :func:`find_outliers` uses on this table, for plotting threshold lines.

    Returns a DataFrame with one row per type: ``type``, ``label`` (the property), ``median``,
    ``low`` and ``high`` (values below ``low`` or above ``high`` are flagged; -inf / inf = no
    limit on that side), all in the property's units (pixels for "odd_size").
    """
    chosen = _check_table(table, types, z_threshold)
    rows = []
    for t in chosen:
        _, _, med, low, high, _, _ = _bounds(t, t.value(table), float(z_threshold))
        rows.append({TYPE: t.name, "label": t.label, "median": med, "low": low, "high": high})
    return pd.DataFrame(rows, columns=[TYPE, "label", "median", "low", "high"])


def outlier_summary(
    table: pd.DataFrame,
    outliers: pd.DataFrame,
    *,
    types: Sequence[str] | None = None,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Error rate of each outlier type against the rest of the data set.

    Parameters
    ----------
    table : pd.DataFrame
        The table given to :func:`find_outliers`, with a boolean ``correct`` column.
    outliers : pd.DataFrame
        The output of :func:`find_outliers` on ``table``.
    types : sequence of str, optional, keyword-only
        Types to report (default: all of :data:`OUTLIER_TYPES`, so a type with no image shows 0).
    confidence : float, keyword-only
        Level of the Wilson intervals.

    Returns
    -------
    pd.DataFrame
        One row per type, columns :data:`SUMMARY_COLUMNS`: ``n`` flagged images, ``n_errors``,
        ``error_rate`` with its Wilson interval (``error_low``, ``error_high``), the same for the
        other images (``rest_*``), the one-sided Fisher exact p-value of "this type's images are
        misclassified more often than the others" (the slices' test), ``p_adj``
        Benjamini-Hochberg over the types that have images and a rest, and ``significant``
        (``p_adj < 0.05``). Undefined rates and p-values are NaN.
    """
    if not isinstance(table, pd.DataFrame) or not isinstance(outliers, pd.DataFrame):
        raise TypeError(
            f"table and outliers must be DataFrames, got {type(table).__name__} and "
            f"{type(outliers).__name__}"
        )
    if schema.CORRECT not in table.columns:
        raise ValueError(f"table needs a boolean {schema.CORRECT!r} column for the error rates")
    correct = table[schema.CORRECT]
    if correct.dtype != bool:
        if not (pd.api.types.is_integer_dtype(correct) and correct.isin((0, 1)).all()):
            raise TypeError(f"{schema.CORRECT!r} must be boolean, got dtype {correct.dtype}")
    for col in (INDEX, TYPE):
        if col not in outliers.columns:
            raise ValueError(f"outliers must be find_outliers' output, missing column {col!r}")
    names = _check_types(types)
    wilson_interval(0, 1, confidence=confidence)  # validates confidence
    unknown = set(outliers[INDEX]) - set(table.index)
    if unknown:
        raise ValueError(f"outliers refer to rows not in table: {sorted(unknown)[:5]}")
    return _summary_core(table, outliers, names, float(confidence))


def _summary_core(table, outliers, names: list[str], confidence: float) -> pd.DataFrame:
    from ..stats.class_flags import worse_than_rest

    error = ~table[schema.CORRECT].to_numpy(dtype=bool)
    rows, counts = [], []
    for name in names:
        flagged = table.index.isin(outliers.loc[outliers[TYPE] == name, INDEX])
        n, e = int(flagged.sum()), int(error[flagged].sum())
        rn, re = int((~flagged).sum()), int(error[~flagged].sum())
        lo, hi = wilson_interval(np.array([e, re]), np.array([n, rn]), confidence=confidence)
        counts.append((n, e, rn))
        rows.append(
            [
                name,
                n,
                e,
                e / n if n else math.nan,
                lo[0],
                hi[0],
                rn,
                re / rn if rn else math.nan,
                lo[1],
                hi[1],
                math.nan,
                math.nan,
                False,
            ]
        )
    tested = [i for i, (n, _, rn) in enumerate(counts) if n and rn]
    if tested:
        test = worse_than_rest(
            [counts[i][0] for i in tested],
            [counts[i][1] for i in tested],
            total=len(error),
            total_errors=int(error.sum()),
        )
        for k, i in enumerate(tested):
            rows[i][-3:] = [float(test.p_value[k]), float(test.p_adj[k]), bool(test.significant[k])]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
