"""Confidence intervals: Wilson score intervals for proportions and percentile bootstraps.

Every number shown with an interval is an :class:`Estimate`. Two ways to get one:

- :func:`wilson_interval` / :func:`wilson_estimate` for a proportion ``successes / trials``
  (accuracy, precision, recall, error rate of a slice). Closed form, vectorised.
- :func:`bootstrap_interval` for any statistic of per-row arrays (percentile bootstrap over rows;
  ``vectorized=True`` draws the resamples as index matrices), :func:`bootstrap_intervals` for
  several statistics on the same resamples, and :func:`multinomial_bootstrap_interval` for
  statistics of a count table (a confusion matrix): resampling rows with replacement makes the
  cell counts ``Multinomial(n, counts / n)``, so the bootstrap is drawn on the table directly,
  in O(n_boot * cells) instead of O(n_boot * rows).
- :func:`percentile_interval` turns bootstrap replicates computed elsewhere into an Estimate.

Ill-defined results (no trials, empty input) are NaN with an :class:`UndefinedMetricWarning`,
never an exception. Invalid input raises ``ValueError`` / ``TypeError``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from ..checks import check_bootstrap, check_confidence

__all__ = [
    "Estimate",
    "UndefinedMetricWarning",
    "bootstrap_interval",
    "bootstrap_intervals",
    "multinomial_bootstrap_interval",
    "percentile_interval",
    "wilson_estimate",
    "wilson_interval",
]

# Largest number of (resample x row) index cells materialised at once by the row bootstrap.
_CHUNK_CELLS = 1 << 22


class UndefinedMetricWarning(UserWarning):
    """A metric or interval is ill-defined on this input (zero division, empty input): NaN."""


@dataclass(frozen=True, eq=False)
class Estimate:
    """A point estimate with a two-sided confidence interval.

    Attributes
    ----------
    value : float
        The point estimate on the full data; NaN when ill-defined.
    low, high : float
        Interval bounds at ``confidence``; NaN when not computable.
    method : str
        How the interval was computed: ``"wilson"``, ``"bootstrap"``, ``"none"``.
    n : int
        Number of rows (or trials) the estimate is based on.
    confidence : float
        Two-sided confidence level in (0, 1).

    Equality treats NaN as equal to NaN, so a value survives a JSON round trip unchanged.
    """

    value: float
    low: float
    high: float
    method: str
    n: int
    confidence: float = 0.95

    def __post_init__(self) -> None:
        for name in ("value", "low", "high", "confidence"):
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "method", str(self.method))

    def _key(self) -> tuple:
        def f(x: float) -> float | None:
            return None if math.isnan(x) else x

        return (f(self.value), f(self.low), f(self.high), self.method, self.n, self.confidence)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Estimate):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; NaN becomes ``None`` so strict JSON readers accept it."""
        value, low, high, method, n, confidence = self._key()
        return {
            "value": value,
            "low": low,
            "high": high,
            "method": method,
            "n": n,
            "confidence": confidence,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Estimate:
        """Inverse of :meth:`to_dict` (``None`` -> NaN)."""

        def f(x: Any) -> float:
            return math.nan if x is None else float(x)

        return cls(
            value=f(d["value"]),
            low=f(d["low"]),
            high=f(d["high"]),
            method=d["method"],
            n=int(d["n"]),
            confidence=f(d.get("confidence", 0.95)),
        )


# --------------------------------------------------------------------------------------------
# validation helpers


def _z(confidence: float) -> float:
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _as_counts(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise TypeError(f"{name} must be numeric counts, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr)][:3].tolist()}")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0, got {arr[arr < 0][:3].tolist()}")
    return arr


# --------------------------------------------------------------------------------------------
# Wilson


def wilson_interval(successes: Any, trials: Any, *, confidence: float = 0.95) -> tuple[Any, Any]:
    """Wilson score interval for a binomial proportion, vectorised.

    Parameters
    ----------
    successes : int or array-like of shape (...)
        Number of successes, ``0 <= successes <= trials``. Fractional (weighted) counts allowed.
    trials : int or array-like, broadcastable with ``successes``
        Number of trials, ``>= 0``.
    confidence : float, keyword-only
        Two-sided confidence level in (0, 1).

    Returns
    -------
    (low, high) : tuple of floats (scalar input) or float64 arrays of the broadcast shape
        Bounds in [0, 1]; NaN where ``trials == 0``.

    Raises
    ------
    TypeError, ValueError
        Non-numeric, negative, non-finite counts, ``successes > trials``, or a bad confidence.
    """
    confidence = check_confidence(confidence)
    s = _as_counts(successes, "successes")
    t = _as_counts(trials, "trials")
    try:
        s, t = np.broadcast_arrays(s, t)
    except ValueError as exc:
        raise ValueError(
            f"successes and trials must broadcast, got shapes {np.shape(successes)} and "
            f"{np.shape(trials)}"
        ) from exc
    bad = s > t * (1 + 1e-12)
    if np.any(bad):
        raise ValueError(
            f"successes must be <= trials, got successes={s[bad][:3].tolist()} "
            f"with trials={t[bad][:3].tolist()}"
        )
    low, high = _wilson_core(s, t, _z(confidence))
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


def _wilson_core(s: np.ndarray, t: np.ndarray, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Unchecked Wilson bounds; NaN where ``t == 0``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        p = np.minimum(s / t, 1.0)
        z2 = z * z
        denom = 1.0 + z2 / t
        centre = (p + z2 / (2.0 * t)) / denom
        half = (z / denom) * np.sqrt(np.maximum(p * (1.0 - p) / t + z2 / (4.0 * t * t), 0.0))
        low = np.clip(centre - half, 0.0, 1.0)
        high = np.clip(centre + half, 0.0, 1.0)
    # exact endpoints at p = 0 and p = 1 (avoid 1e-17 rounding residue)
    low = np.where(s == 0, 0.0, low)
    high = np.where(s >= t, 1.0, high)
    empty = t == 0
    low = np.where(empty, np.nan, low)
    high = np.where(empty, np.nan, high)
    return low, high


def wilson_estimate(successes: float, trials: float, *, confidence: float = 0.95) -> Estimate:
    """Proportion ``successes / trials`` with its Wilson interval, as an :class:`Estimate`.

    Scalars only. ``trials == 0`` gives an all-NaN estimate and an :class:`UndefinedMetricWarning`.
    """
    if np.ndim(successes) != 0 or np.ndim(trials) != 0:
        raise ValueError(
            f"wilson_estimate takes scalars, got shapes {np.shape(successes)} and "
            f"{np.shape(trials)}; use wilson_interval for arrays"
        )
    low, high = wilson_interval(successes, trials, confidence=confidence)
    if float(trials) == 0:
        warnings.warn(
            "proportion of 0 trials is undefined: NaN", UndefinedMetricWarning, stacklevel=2
        )
        value = math.nan
    else:
        value = float(successes) / float(trials)
    return Estimate(value, low, high, "wilson", int(round(float(trials))), confidence)


# --------------------------------------------------------------------------------------------
# Bootstrap


def percentile_interval(
    value: float,
    replicates: Any,
    *,
    n: int,
    confidence: float = 0.95,
    method: str = "bootstrap",
) -> Estimate:
    """Percentile interval from bootstrap replicates, as an :class:`Estimate`.

    Parameters
    ----------
    value : float
        The statistic on the full data.
    replicates : array-like of shape (n_boot,)
        The statistic on each resample. Non-finite replicates (a statistic undefined on that
        resample) are dropped with an :class:`UndefinedMetricWarning`; all non-finite gives NaN.
    n : int, keyword-only
        Rows behind the estimate. ``confidence``, ``method`` as in :class:`Estimate`.
    """
    confidence = check_confidence(confidence)
    return _percentile_estimate(
        float(value), np.asarray(replicates), confidence=confidence, n=int(n), method=method
    )


def _percentile_estimate(
    value: float, boot: np.ndarray, *, confidence: float, n: int, method: str
) -> Estimate:
    """Unchecked core of :func:`percentile_interval`."""
    boot = np.asarray(boot, dtype=np.float64).reshape(-1)
    finite = np.isfinite(boot)
    if not np.any(finite):
        warnings.warn(
            "every bootstrap resample gave an undefined statistic: interval is NaN",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return Estimate(value, math.nan, math.nan, method, n, confidence)
    if not np.all(finite):
        warnings.warn(
            f"{int((~finite).sum())} of {boot.size} bootstrap resamples gave an undefined "
            "statistic; the interval uses the others",
            UndefinedMetricWarning,
            stacklevel=3,
        )
    alpha = 1.0 - confidence
    low, high = np.quantile(boot[finite], [alpha / 2.0, 1.0 - alpha / 2.0])
    return Estimate(value, float(low), float(high), method, n, confidence)


def bootstrap_interval(
    statistic: Callable[..., Any],
    *arrays: Any,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    vectorized: bool = False,
) -> Estimate:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling rows with replacement.

    Parameters
    ----------
    statistic : callable
        ``vectorized=False``: ``statistic(*arrays) -> float``, called once per resample.
        ``vectorized=True``: receives every array with a leading resample axis,
        ``(b, n, ...)``, and returns ``(b,)`` floats. The full data is passed as ``b = 1``.
        Prefer this: resamples are drawn as index matrices in chunks of ~4M cells, so
        1000 resamples of 100k rows cost a few array passes, not 1000 Python calls.
    *arrays : array-like, each of shape (n, ...)
        Row-aligned arrays; row ``i`` of each is resampled together.
    n_boot : int, keyword-only
        Number of resamples (>= 1).
    confidence : float, keyword-only
        Two-sided level in (0, 1).
    seed : int or None, keyword-only
        Seed of the ``numpy.random.default_rng`` that draws the resamples.
    vectorized : bool, keyword-only
        See ``statistic``.

    Returns
    -------
    Estimate
        ``value = statistic(*arrays)``, the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
        quantiles of the resampled statistics, ``method="bootstrap"``, ``n`` rows.
        Empty input gives all-NaN and an :class:`UndefinedMetricWarning`.
    """
    if not callable(statistic):
        raise TypeError(f"statistic must be callable, got {type(statistic).__name__}")
    return bootstrap_intervals(
        {"statistic": statistic},
        *arrays,
        n_boot=n_boot,
        confidence=confidence,
        seed=seed,
        vectorized=vectorized,
    )["statistic"]


def bootstrap_intervals(
    statistics: dict[str, Callable[..., Any]],
    *arrays: Any,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
    vectorized: bool = False,
) -> dict[str, Estimate]:
    """Several statistics bootstrapped on the same resamples (drawn once, shared).

    Same contract as :func:`bootstrap_interval`, with ``statistics`` a dict name -> callable;
    returns a dict name -> :class:`Estimate` in the same order. Sharing the resamples keeps
    the intervals of related statistics consistent and pays for the index draws once.
    """
    if not isinstance(statistics, dict) or not statistics:
        raise TypeError(
            f"statistics must be a non-empty dict name -> callable, got {statistics!r:.80}"
        )
    for name, fn in statistics.items():
        if not callable(fn):
            raise TypeError(f"statistic must be callable, got {type(fn).__name__} for {name!r}")
    if not arrays:
        raise ValueError("bootstrap_interval needs at least one array, got none")
    confidence = check_confidence(confidence)
    n_boot, seed = check_bootstrap(n_boot, seed)
    arrs = [np.asarray(a) for a in arrays]
    if any(a.ndim == 0 for a in arrs):
        raise ValueError(f"arrays must have a row axis, got shapes {[a.shape for a in arrs]}")
    lengths = {a.shape[0] for a in arrs}
    if len(lengths) != 1:
        raise ValueError(
            f"arrays must have the same number of rows, got shapes {[a.shape for a in arrs]}"
        )
    n = lengths.pop()
    if n == 0:
        warnings.warn(
            "bootstrap of empty input is undefined: NaN", UndefinedMetricWarning, stacklevel=2
        )
        nan = Estimate(math.nan, math.nan, math.nan, "bootstrap", 0, confidence)
        return dict.fromkeys(statistics, nan)
    return _bootstrap_core(
        statistics,
        arrs,
        n=n,
        n_boot=int(n_boot),
        confidence=confidence,
        seed=seed,
        vectorized=vectorized,
    )


def _bootstrap_core(
    statistics: dict[str, Callable[..., Any]],
    arrs: list[np.ndarray],
    *,
    n: int,
    n_boot: int,
    confidence: float,
    seed: int | None,
    vectorized: bool,
) -> dict[str, Estimate]:
    rng = np.random.default_rng(seed)
    index_dtype = np.int32 if n < 2**31 else np.int64
    boot = {name: np.empty(n_boot) for name in statistics}
    if vectorized:
        full = [a[None] for a in arrs]
        values = {k: float(np.asarray(f(*full)).reshape(-1)[0]) for k, f in statistics.items()}
        chunk = max(1, _CHUNK_CELLS // n)
        for start in range(0, n_boot, chunk):
            b = min(chunk, n_boot - start)
            idx = rng.integers(0, n, size=(b, n), dtype=index_dtype)
            taken = [a[idx] for a in arrs]
            for name, fn in statistics.items():
                out = np.asarray(fn(*taken), dtype=np.float64).reshape(-1)
                if out.shape != (b,):
                    raise ValueError(
                        f"a vectorized statistic must return shape ({b},) for {b} resamples, "
                        f"got {out.shape} from {name!r}"
                    )
                boot[name][start : start + b] = out
    else:
        values = {k: float(f(*arrs)) for k, f in statistics.items()}
        for i in range(n_boot):
            idx = rng.integers(0, n, size=n, dtype=index_dtype)
            taken = [a[idx] for a in arrs]
            for name, fn in statistics.items():
                boot[name][i] = float(fn(*taken))
    return {
        name: _percentile_estimate(
            values[name], boot[name], confidence=confidence, n=n, method="bootstrap"
        )
        for name in statistics
    }


def multinomial_bootstrap_interval(
    statistic: Callable[[np.ndarray], Any],
    counts: Any,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> Estimate:
    """Row bootstrap of a statistic that depends on the rows only through a count table.

    Resampling ``n`` rows with replacement gives cell counts ``Multinomial(n, counts / n)``,
    so this is the same bootstrap as :func:`bootstrap_interval` on the rows, drawn on the
    table: cost O(n_boot * cells), independent of ``n``.

    Parameters
    ----------
    statistic : callable
        ``statistic(tables) -> (b,)`` where ``tables`` has shape ``(b, *counts.shape)``
        (integer counts). Called once on the observed table (``b = 1``) and once on all
        resamples.
    counts : array-like of non-negative ints, any shape (e.g. a (K, K) confusion matrix)
    n_boot, confidence, seed : keyword-only
        As in :func:`bootstrap_interval`.

    Returns
    -------
    Estimate
        ``method="bootstrap"``, ``n = counts.sum()``. Zero total gives all-NaN and a warning.
    """
    if not callable(statistic):
        raise TypeError(f"statistic must be callable, got {type(statistic).__name__}")
    confidence = check_confidence(confidence)
    n_boot, seed = check_bootstrap(n_boot, seed)
    table = np.asarray(counts)
    if not np.issubdtype(table.dtype, np.integer) or table.dtype == bool:
        raise TypeError(f"counts must be an integer array, got dtype {table.dtype}")
    if np.any(table < 0):
        raise ValueError(f"counts must be >= 0, got min {table.min()}")
    n = int(table.sum())
    if n == 0:
        warnings.warn(
            "bootstrap of an empty count table is undefined: NaN",
            UndefinedMetricWarning,
            stacklevel=2,
        )
        return Estimate(math.nan, math.nan, math.nan, "bootstrap", 0, confidence)
    return _multinomial_core(
        statistic,
        table.astype(np.int64),
        n=n,
        n_boot=int(n_boot),
        confidence=confidence,
        seed=seed,
    )


def _multinomial_core(
    statistic: Callable[[np.ndarray], Any],
    table: np.ndarray,
    *,
    n: int,
    n_boot: int,
    confidence: float,
    seed: int | None,
) -> Estimate:
    rng = np.random.default_rng(seed)
    value = float(np.asarray(statistic(table[None])).reshape(-1)[0])
    p = table.reshape(-1) / n
    draws = rng.multinomial(n, p, size=n_boot).reshape((n_boot, *table.shape))
    boot = np.asarray(statistic(draws), dtype=np.float64).reshape(-1)
    if boot.shape != (n_boot,):
        raise ValueError(
            f"statistic must return shape ({n_boot},) for {n_boot} tables, got {boot.shape}"
        )
    return _percentile_estimate(value, boot, confidence=confidence, n=n, method="bootstrap")
