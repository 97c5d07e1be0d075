"""Input checks shared by every layer: one message for one mistake, wherever it is made.

Public functions validate once at their boundary with these, then call an unchecked core. Wrong
types raise ``TypeError``, wrong values ``ValueError``; both name the argument, what was given and
what was expected. Nothing here imports more than numpy.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

__all__ = [
    "check_bootstrap",
    "check_confidence",
    "check_embeddings",
    "check_int",
    "check_seed",
]

#: Rows checked for NaN/inf at a time: a 1M x 512 float16 array is never copied whole to check it.
_FINITE_CHUNK = 1 << 14


def check_confidence(confidence: Any) -> float:
    """``confidence`` as a float in (0, 1), e.g. 0.95 for a 95% interval."""
    if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real):
        raise TypeError(f"confidence must be a float in (0, 1), got {type(confidence).__name__}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1) (e.g. 0.95), got {confidence!r}")
    return float(confidence)


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """``value`` as an int within ``minimum..maximum`` (either bound optional); None if allowed."""
    if value is None and allow_none:
        return None
    if minimum is not None and maximum is not None:
        bound = f"in {minimum}..{maximum}"
    elif minimum is not None:
        bound = f">= {minimum}"
    elif maximum is not None:
        bound = f"<= {maximum}"
    else:
        bound = ""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        expected = " ".join(x for x in ("an int", bound, "or None" if allow_none else "") if x)
        raise TypeError(f"{name} must be {expected}, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def check_seed(seed: Any, *, allow_none: bool = True) -> int | None:
    """A random seed: a non-negative int (or None, for fresh entropy, where allowed)."""
    return check_int(seed, "seed", minimum=0, allow_none=allow_none)


def check_bootstrap(n_boot: Any, seed: Any) -> tuple[int, int | None]:
    """``(n_boot, seed)`` of a bootstrap: at least one resample; a seed or None."""
    return check_int(n_boot, "n_boot", minimum=1), check_seed(seed)


def check_embeddings(x: Any, name: str = "embeddings", *, dtype: Any = np.float32) -> np.ndarray:
    """``x`` as a finite real array [N, D].

    Parameters
    ----------
    x : array-like, shape (N, D)
        One feature vector per row. An empty 1-D input becomes shape (0, 0).
    name : str
        The argument's name, for messages.
    dtype : numpy dtype or None, keyword-only
        Convert to this dtype (no copy when it already is); None keeps the input's dtype, so a
        large float16 array is not doubled just to be checked.

    Raises
    ------
    TypeError
        Not a real (integer or floating) array.
    ValueError
        Not 2-D, no feature column, or a NaN/inf (the message counts the rows).
    """
    arr = x if isinstance(x, np.ndarray) else np.asarray(x)
    if arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must be a real array [N, D], got dtype {arr.dtype}")
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, 0)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D [N, D], got shape {arr.shape}")
    if arr.shape[0] and arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one feature column, got shape {arr.shape}")
    if arr.size and np.issubdtype(arr.dtype, np.floating):
        bad = 0
        for s in range(0, arr.shape[0], _FINITE_CHUNK):
            ok = np.isfinite(arr[s : s + _FINITE_CHUNK]).all(axis=1)
            bad += int(ok.size - np.count_nonzero(ok))
        if bad:
            raise ValueError(f"{name} must be finite, got NaN or inf in {bad} row(s)")
    return arr if dtype is None else np.asarray(arr, dtype=dtype)
