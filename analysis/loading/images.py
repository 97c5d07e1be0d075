"""Decoding image files safely: every failure becomes a reason, every odd mode becomes RGB.

A corrupt, missing, empty, truncated or gigantic file must never stop an analysis: it raises
:class:`ImageReadError` with a short human reason that the run lists in its manifest. Only regular
files are read, and only up to a size limit: a device (``/dev/zero``), a named pipe or a socket
under an image's name, or a symlink to one, is refused before a byte is read, so it can neither
fill the memory nor hang the pass. Grayscale, palette, RGBA, CMYK and 16-bit images are converted
to 8-bit RGB instead of rejected.

EXIF orientation: by default the pixels are taken as stored, as torchvision's default loader
(``PIL.Image.open(f).convert("RGB")``) and most training code take them; a phone photo whose tag
says "rotate 90°" is then seen sideways by the model while every photo viewer shows it upright.
``exif_transpose=True`` applies the tag, for pipelines that call ``ImageOps.exif_transpose``.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
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

#: Files above this many bytes are not read (256 MiB): far above any camera JPEG or PNG photo
#: (a 50-megapixel JPEG is about 25 MB), below what a device or a runaway file could feed a
#: worker. A 100-megapixel 16-bit TIFF scan is about 600 MB: raise ``--max-file-bytes`` for those.
DEFAULT_MAX_FILE_BYTES = 256 * 1024 * 1024

#: EXIF tag number of "Orientation" (values 1-8; 1 = as stored, 6 = rotate 90° clockwise, ...).
EXIF_ORIENTATION_TAG = 0x0112

#: What each EXIF orientation value asks a viewer to do with the stored pixels.
ORIENTATION_WORDS = {
    1: "as stored",
    2: "mirrored left-right",
    3: "rotated 180°",
    4: "mirrored top-bottom",
    5: "mirrored and rotated 90° counter-clockwise",
    6: "rotated 90° clockwise",
    7: "mirrored and rotated 90° clockwise",
    8: "rotated 90° counter-clockwise",
}

_PILLOW_LIMIT_LOCK = threading.Lock()


class ImageReadError(Exception):
    """An image file that cannot be analysed; ``str(err)`` is the reason shown to users."""


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded to 8-bit RGB.

    Attributes
    ----------
    rgb : np.ndarray
        uint8 [H, W, 3], as the model is given it (EXIF orientation applied only when asked).
    width, height : int
        Size of ``rgb`` in pixels.
    file_size : int
        Bytes on disk.
    content_hash : str
        sha256 hex digest of the file bytes.
    mode : str
        The PIL mode the file was stored in (``"RGB"``, ``"L"``, ``"I;16"``, ...).
    orientation : int
        The file's EXIF orientation tag (1-8), 0 when it has none. 2-8 mean a photo viewer shows
        the image flipped or rotated compared with the stored pixels.
    """

    rgb: np.ndarray
    width: int
    height: int
    file_size: int
    content_hash: str
    mode: str
    orientation: int = 0


def _file_kind(mode: int) -> str:
    for test, word in (
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return word
    return "not a regular file"


def _link_note(path: str) -> str:
    try:
        if os.path.islink(path):
            return f" (a symlink to {os.path.realpath(path)})"
    except (OSError, ValueError):
        pass
    return ""


def _refuse_irregular(path: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ImageReadError(
            f"not a regular file: {_file_kind(st.st_mode)}{_link_note(path)}; only regular"
            " files are read"
        )


def read_bytes(path: str, *, max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    """Read a regular file of at most ``max_bytes``, turning every failure into
    :class:`ImageReadError`.

    Devices, named pipes, sockets and directories (also behind a symlink) are refused before
    they are opened; the file is then opened without blocking and checked again on the open
    descriptor (it may have been swapped in between), and never more than ``max_bytes + 1``
    bytes are read, even from a file that grows while it is read.
    """
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive number of bytes, got {max_bytes!r}")
    try:
        _refuse_irregular(path, os.stat(path))
        # O_NONBLOCK: opening a FIFO that was swapped in after the stat must not wait for a writer
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        fd = os.open(path, flags | getattr(os, "O_BINARY", 0))
    except ImageReadError:
        raise
    except FileNotFoundError:
        if os.path.islink(path):
            raise ImageReadError(f"broken symlink{_link_note(path)}") from None
        raise ImageReadError("missing file") from None
    except PermissionError:
        raise ImageReadError("permission denied") from None
    except UnicodeError:
        raise ImageReadError("the file name cannot be encoded for this file system") from None
    except OSError as e:
        raise ImageReadError(f"cannot read file: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        _refuse_irregular(path, st)
        if st.st_size > max_bytes:
            raise ImageReadError(_too_big(st.st_size, max_bytes))
        chunks, total = [], 0
        while total <= max_bytes:
            block = os.read(fd, min(1 << 22, max_bytes + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
    except ImageReadError:
        raise
    except OSError as e:
        raise ImageReadError(f"cannot read file: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if total > max_bytes:  # it grew after the fstat
        raise ImageReadError(_too_big(total, max_bytes, more=True))
    data = b"".join(chunks)
    if not data:
        raise ImageReadError("empty file (0 bytes)")
    return data


def _too_big(size: int, max_bytes: int, *, more: bool = False) -> str:
    return (
        f"file too large: {'more than ' if more else ''}{size:,} bytes exceeds the limit of"
        f" {max_bytes:,} (raise --max-file-bytes / max_file_bytes to analyse it)"
    )


def exif_orientation(img) -> int:
    """The EXIF orientation tag (1-8) of an open PIL image, 0 when it has none or it is bogus."""
    try:
        value = img.getexif().get(EXIF_ORIENTATION_TAG)
    except Exception:  # a broken EXIF block must not cost the image
        return 0
    try:
        value = int(value)
    except (TypeError, ValueError):
        return 0
    return value if 1 <= value <= 8 else 0


def decode_image(
    path: str | os.PathLike,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    exif_transpose: bool = False,
) -> DecodedImage:
    """Decode ``path`` to RGB or raise :class:`ImageReadError` with the reason.

    16-bit and 32-bit grayscale are rescaled to 8 bit by their dtype range (a 16-bit image keeps
    its relative brightness); RGBA and LA are composited on black (what a model sees when alpha is
    dropped), palette and CMYK go through PIL's conversion.

    Parameters
    ----------
    max_pixels : int
        Larger images are refused as possible decompression bombs.
    max_file_bytes : int
        Larger files are not read (:func:`read_bytes`).
    exif_transpose : bool
        Apply the EXIF orientation tag (``ImageOps.exif_transpose``). Off by default, like
        torchvision's default loader: the pixels as stored. The tag is reported either way
        (:attr:`DecodedImage.orientation`).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if max_pixels < 1:
        raise ValueError(f"max_pixels must be a positive number of pixels, got {max_pixels!r}")
    _raise_pillow_limit(max_pixels)
    data = read_bytes(os.fspath(path), max_bytes=max_file_bytes)
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
        orientation = exif_orientation(img)
        if exif_transpose and orientation > 1:
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
        orientation=orientation,
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
