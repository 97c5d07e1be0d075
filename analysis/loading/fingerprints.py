"""Fingerprints of an image computed during the pass: perceptual hashes and appearance signatures.

They are cheap (computed on the thumbnail) and stored with the run, so the duplicate and leakage
searches in :mod:`analysis.data_issues.duplicates` never re-read an image.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np


def _gray(image: Any):
    """A PIL grayscale image from a path, a PIL image or a uint8 array."""
    from PIL import Image

    if isinstance(image, str | os.PathLike):
        from ..loading.images import decode_image

        return Image.fromarray(decode_image(image).rgb).convert("L")
    if isinstance(image, Image.Image):
        return image.convert("L")
    if isinstance(image, np.ndarray) and image.ndim in (2, 3):
        return Image.fromarray(np.ascontiguousarray(image).astype(np.uint8)).convert("L")
    raise TypeError(
        f"image must be a path, a PIL image or a uint8 array, got {type(image).__name__}"
    )


def _check_hash_size(hash_size: Any) -> int:
    if isinstance(hash_size, bool) or not isinstance(hash_size, int) or hash_size < 2:
        raise ValueError(f"hash_size must be an int >= 2, got {hash_size!r}")
    return hash_size


def dhash(image: Any, *, hash_size: int = 8) -> np.ndarray:
    """Difference hash: is each pixel brighter than its right neighbour, on a tiny gray image.

    Returns bool [hash_size * hash_size]. Robust to rescaling, re-encoding and global brightness;
    not to flips or crops.
    """
    from PIL import Image

    hash_size = _check_hash_size(hash_size)
    small = _gray(image).resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS)
    px = np.asarray(small, dtype=np.int16)
    return (px[:, 1:] > px[:, :-1]).ravel()


def phash(image: Any, *, hash_size: int = 8, highfreq_factor: int = 4) -> np.ndarray:
    """Perceptual hash: signs of the lowest DCT frequencies of a small gray image vs their median.

    Returns bool [hash_size * hash_size]. More robust than :func:`dhash` to small edits.
    """
    from PIL import Image
    from scipy.fft import dctn

    hash_size = _check_hash_size(hash_size)
    side = hash_size * highfreq_factor
    small = _gray(image).resize((side, side), Image.Resampling.LANCZOS)
    coeffs = dctn(np.asarray(small, dtype=np.float64), type=2)[:hash_size, :hash_size]
    return (coeffs > np.median(coeffs)).ravel()


#: name -> function(image, *, hash_size) -> bool [hash_size**2]
PERCEPTUAL_HASHES: dict[str, Callable[..., np.ndarray]] = {"dhash": dhash, "phash": phash}


def hamming_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Number of differing bits of two equal-length boolean hashes."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"hashes must have the same shape, got {a.shape} and {b.shape}")
    return int(np.count_nonzero(a != b))


def _check_method(method: Any) -> None:
    if method not in PERCEPTUAL_HASHES:
        raise ValueError(f"unknown method {method!r}; valid: {sorted(PERCEPTUAL_HASHES)}")


def perceptual_distance(a: Any, b: Any, *, method: str = "phash", hash_size: int = 8) -> int:
    """Hamming distance between the perceptual hashes of two images (paths, PIL or arrays).

    0 = same hash; with the default 64-bit hashes, <= 10 is a likely copy (resize, re-encode,
    small edit), > 20 a different picture. Unreadable files raise ``analysis.loading.images.ImageReadError``.
    """
    _check_method(method)
    fn = PERCEPTUAL_HASHES[method]
    return hamming_distance(fn(a, hash_size=hash_size), fn(b, hash_size=hash_size))


#: Side of the tiny image behind an appearance signature (16 x 16 x RGB = 768 numbers).
SIGNATURE_SIDE = 16


def appearance_signature(image: Any, *, side: int = SIGNATURE_SIDE) -> np.ndarray:
    """A tiny-image signature for near-copy search: RGB resized to side x side, mean-centred and
    L2-normalised (so brightness and contrast changes cancel), float16 [side * side * 3].

    Classifier embeddings are a poor basis for copies: a trained model maps every image of a class
    to almost the same point, so look-alikes and copies are equally close. Pixels are not."""
    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    a = np.asarray(
        im.convert("RGB").resize((side, side), Image.Resampling.BILINEAR), dtype=np.float32
    ).ravel()
    a = a - a.mean()
    norm = float(np.linalg.norm(a))
    return (a / norm if norm > 1e-6 else a).astype(np.float16)
