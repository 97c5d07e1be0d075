"""``.npy`` files written row block by row block, for arrays too big to hold (a million images).

The pass streams its per-image arrays (probabilities, embeddings, signatures) to disk as it goes;
how many rows there will be is known only at the end (unreadable images are skipped), so the
header is written with room to spare and rewritten, same length, when the file is closed. The
result is an ordinary ``.npy`` file (format version 1.0) that ``np.load(..., mmap_mode="r")``
maps without reading it.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

__all__ = ["NpyRowWriter"]

_MAGIC = b"\x93NUMPY\x01\x00"
_HEADER_BYTES = 128  # magic + length + dict, padded: room for any shape, a multiple of 64


def _header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    text = repr(
        {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    )
    room = _HEADER_BYTES - len(_MAGIC) - 2
    if len(text) + 1 > room:
        raise ValueError(f"shape {shape} does not fit an npy header of {_HEADER_BYTES} bytes")
    body = text.ljust(room - 1) + "\n"
    return _MAGIC + struct.pack("<H", room) + body.encode("latin1")


class NpyRowWriter:
    """Append row blocks ``[b, *row_shape]`` to ``path``; :meth:`close` fixes the header.

    Parameters
    ----------
    path : path-like
        The ``.npy`` file to write (created or truncated).
    row_shape : tuple of int
        Shape of one row, e.g. ``(D,)``.
    dtype : numpy dtype
        Stored dtype; blocks are cast to it (e.g. float32 embeddings stored as float16).
    """

    def __init__(self, path: str | os.PathLike, row_shape: tuple[int, ...], dtype) -> None:
        self.path = Path(path)
        self.row_shape = tuple(int(s) for s in row_shape)
        self.dtype = np.dtype(dtype)
        self.rows = 0
        self._fh = open(self.path, "wb")  # noqa: SIM115
        self._fh.write(_header(self.dtype, (0, *self.row_shape)))

    def append(self, block) -> None:
        a = np.asarray(block)
        if a.shape[1:] != self.row_shape:
            raise ValueError(
                f"{self.path.name}: rows of shape {self.row_shape} expected, got {a.shape[1:]}"
            )
        self._fh.write(np.ascontiguousarray(a, dtype=self.dtype).tobytes())
        self.rows += a.shape[0]

    def close(self) -> np.ndarray:
        """Finish the file and return it memory-mapped (read-only)."""
        if self._fh is not None:
            self._fh.seek(0)
            self._fh.write(_header(self.dtype, (self.rows, *self.row_shape)))
            self._fh.close()
            self._fh = None
        if self.rows == 0:  # np.load cannot memory-map an empty array
            return np.zeros((0, *self.row_shape), dtype=self.dtype)
        return np.load(self.path, mmap_mode="r")

    def abort(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.path.unlink(missing_ok=True)
