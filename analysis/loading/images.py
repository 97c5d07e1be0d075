"""Decoding image files safely: every failure becomes a reason, every odd mode becomes RGB.

A corrupt, missing, empty, truncated or gigantic file must never stop an analysis: it raises
:class:`ImageReadError` with a short human reason that the run lists in its manifest. Grayscale,
palette, RGBA, CMYK and 16-bit images are converted to 8-bit RGB instead of rejected.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
from dataclasses import dataclass

import numpy as np

IMAGE_EXTENSIONS = (
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
)

#: Images above this many pixels are refused as possible decompression bombs (~ 16k x 16k).
DEFAULT_MAX_PIXELS = 256_000_000

_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageReadError(Exception):
    """An image file that cannot be analysed; ``str(err)`` is the reason shown to users."""


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded to 8-bit RGB.

    Attributes
    ----------
    rgb : np.ndarray
        uint8 [H, W, 3].
    width, height : int
        Size of the original file in pixels (after EXIF rotation).
    file_size : int
        Bytes on disk.
    content_hash : str
        sha256 hex digest of the file bytes.
    mode : str
        The PIL mode the file was stored in (``"RGB"``, ``"L"``, ``"I;16"``, ...).
    """

    rgb: np.ndarray
    width: int
    height: int
    file_size: int
    content_hash: str
    mode: str


def read_bytes(path: str) -> bytes:
    """Read a file, turning the usual failures into :class:`ImageReadError`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageReadError("missing file") from None
    except IsADirectoryError:
        raise ImageReadError("is a directory, not an image") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except OSError as e:
        raise ImageReadError(f"cannot read file: {e.strerror or e}") from None
    if not data:
        raise ImageReadError("empty file (0 bytes)")
    return data


def decode_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode ``path`` to RGB or raise :class:`ImageReadError` with the reason.

    16-bit and 32-bit grayscale are rescaled to 8 bit by their dtype range (a 16-bit image keeps
    its relative brightness); RGBA and LA are composited on black (what a model sees when alpha is
    dropped), palette and CMYK go through PIL's conversion.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive number of pixels, got {max_pixels!r}")
    _raise_pillow_limit(max_pixels)
    data = read_bytes(os.fspath(path))
    digest = hashlib.sha256(data).hexdigest()
    try:
        # No warnings.catch_warnings() to turn Pillow's bomb warning into an error: it swaps the
        # process-wide filter list, so concurrent decodes could leave each other's filter behind.
        img = Image.open(io.BytesIO(data))  # reads the header only
        w, h = img.size
        if w * h > max_pixels:
            raise ImageReadError(
                f"too large: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}"
                " (possible decompression bomb; raise max_pixels / --max-pixels to analyse it)"
            )
        img.load()
        img = ImageOps.exif_transpose(img)
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError("not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's limit is >= max_pixels here, so this is an image above errorscope's limit too
        # (the warning only arrives as an exception where warnings are turned into errors)
        raise ImageReadError(
            f"too large (possible decompression bomb): {e} (limit max_pixels = {max_pixels:,})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        msg = str(e)
        if "truncated" in msg.lower():
            raise ImageReadError(f"truncated file: {msg}") from None
        raise ImageReadError(f"corrupt image: {msg}") from None
    mode = img.mode
    try:
        rgb = _to_rgb(img)
    except Exception as e:  # an exotic mode PIL cannot convert
        raise ImageReadError(f"unsupported image mode {mode!r}: {e}") from None
    return DecodedImage(
        rgb=rgb,
        width=int(img.size[0]),
        height=int(img.size[1]),
        file_size=len(data),
        content_hash=digest,
        mode=mode,
    )


def _raise_pillow_limit(max_pixels: int) -> None:
    """Make sure Pillow's own bomb check (a warning above ``Image.MAX_IMAGE_PIXELS``, an error
    above twice that) never fires below ``max_pixels``, so errorscope's limit is the one that
    applies.

    The limit is a process-wide global that decoders in other threads read at the same time, so
    it is only ever raised, never lowered or restored: setting and restoring it around each
    decode would let one thread's restore cut another's decode short. ``None`` (no limit, set by
    the application) is left alone. Pillow keeps guarding what errorscope does not check itself
    (frames and tiles inside the file), at the same ratio as its default.
    """
    from PIL import Image

    current = Image.MAX_IMAGE_PIXELS
    if current is None or current >= max_pixels:
        return
    with _PILLOW_LIMIT_LOCK:
        current = Image.MAX_IMAGE_PIXELS
        if current is not None and current < max_pixels:
            Image.MAX_IMAGE_PIXELS = int(max_pixels)


def _to_rgb(img) -> np.ndarray:
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img)
        if mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            scaled = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        elif mode == "I" and arr.max(initial=0) > 65535:
            scaled = arr.astype(np.float64) / float(2**32 - 1)
        else:
            scaled = arr.astype(np.float64) / 65535.0
        gray = np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return np.array(Image.alpha_composite(black, rgba).convert("RGB"))
    if mode != "RGB":
        img = img.convert("RGB")
    return np.array(img)


def file_fingerprint(path: str) -> tuple[int, int]:
    """(size in bytes, mtime in ns) of ``path``, or (-1, -1) if it cannot be stat'ed."""
    try:
        st = os.stat(path)
    except OSError:
        return (-1, -1)
    return (int(st.st_size), int(st.st_mtime_ns))
