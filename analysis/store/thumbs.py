"""Gallery thumbnails stored as a few packs, not a million files.

A run's thumbnails live in ``thumbs/``: JPEG files concatenated into packs of at most
:data:`PACK_BYTES` (``pack-00000.jpgs``, ...), and ``index.parquet`` with one row per thumbnail:
``key`` (the sample id, ``ref-<sample id>`` for reference images), ``pack``, ``offset`` and
``size`` in bytes. A million thumbnails are ~30 packs and one index, which copies, syncs and lists
like any small folder. Reading one thumbnail is one seek and one read, as fast as opening its own
file; any tool reads them with pyarrow (or pandas) and plain file reads::

    idx = pandas.read_parquet("thumbs/index.parquet").set_index("key")
    pack, offset, size = idx.loc["s0123456789ab", ["pack", "offset", "size"]]
    with open(f"thumbs/pack-{pack:05d}.jpgs", "rb") as f:
        f.seek(offset)
        jpeg = f.read(size)

Runs written before packs (one ``thumbs/<key>.jpg`` per image) are read too.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = ["INDEX", "PACK_BYTES", "ThumbnailReader", "ThumbnailWriter", "pack_name"]

INDEX = "index.parquet"
#: Largest pack; a new one starts beyond (~50,000 thumbnails of 160 px).
PACK_BYTES = 256 << 20
#: Thumbnails bigger than this are not thumbnails: refused on read (a damaged index).
MAX_THUMB_BYTES = 8 << 20


def pack_name(pack: int) -> str:
    return f"pack-{int(pack):05d}.jpgs"


class ThumbnailWriter:
    """Appends thumbnails to packs in ``folder``; :meth:`close` writes the index.

    Written from one process (the pass's main process; workers send the JPEG bytes back).
    """

    def __init__(self, folder: str | os.PathLike, *, pack_bytes: int = PACK_BYTES):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pack_bytes = int(pack_bytes)
        self._keys: list[str] = []
        self._packs: list[int] = []
        self._offsets: list[int] = []
        self._sizes: list[int] = []
        self._pack = -1
        self._fh = None
        self._written = 0

    def _next_pack(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self._pack += 1
        self._fh = open(self.folder / pack_name(self._pack), "wb")  # noqa: SIM115
        self._written = 0

    def add(self, key: str, jpeg: bytes) -> None:
        """Append one thumbnail under ``key`` (a later one with the same key wins)."""
        if self._fh is None or (self._written and self._written + len(jpeg) > self.pack_bytes):
            self._next_pack()
        self._fh.write(jpeg)
        self._keys.append(str(key))
        self._packs.append(self._pack)
        self._offsets.append(self._written)
        self._sizes.append(len(jpeg))
        self._written += len(jpeg)

    def __len__(self) -> int:
        return len(self._keys)

    def close(self) -> None:
        import pandas as pd

        if self._fh is not None:
            self._fh.close()
            self._fh = None
        pd.DataFrame(
            {
                "key": pd.Series(self._keys, dtype=object),
                "pack": np.asarray(self._packs, dtype=np.int32),
                "offset": np.asarray(self._offsets, dtype=np.int64),
                "size": np.asarray(self._sizes, dtype=np.int32),
            }
        ).to_parquet(self.folder / INDEX, index=False)

    def __enter__(self) -> ThumbnailWriter:
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


class ThumbnailReader:
    """Reads thumbnails of one run by key: from packs, or from per-image files of older runs.

    The index is read once (keys sorted as fixed-width bytes, ~14 bytes a thumbnail: 14 MB for
    a million); each :meth:`get` is a binary search, one seek and one read.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        index = self.folder / INDEX
        self.packed = index.is_file()
        if self.packed:
            import pyarrow.parquet as pq

            t = pq.read_table(index, columns=["key", "pack", "offset", "size"])
            keys = np.asarray(t.column("key").to_numpy(zero_copy_only=False), dtype="S")
            order = np.argsort(keys, kind="stable")
            self._keys = keys[order]
            self._pack = t.column("pack").to_numpy()[order]
            self._offset = t.column("offset").to_numpy()[order]
            self._size = t.column("size").to_numpy()[order]

    def __contains__(self, key: str) -> bool:
        return self._locate(key) is not None if self.packed else self._file(key) is not None

    def _locate(self, key: str) -> int | None:
        k = str(key).encode()
        i = int(np.searchsorted(self._keys, k, side="right")) - 1  # the last one written wins
        return i if i >= 0 and self._keys[i] == k else None

    def _file(self, key: str) -> Path | None:
        name = f"{key}.jpg"
        if "/" in name or "\\" in name or name.startswith("."):
            return None
        p = self.folder / name
        return p if p.is_file() else None

    def get(self, key: str) -> bytes | None:
        """The JPEG bytes of ``key``'s thumbnail, or None when the run has none."""
        if not self.packed:
            p = self._file(key)
            if p is None or p.stat().st_size > MAX_THUMB_BYTES:
                return None
            return p.read_bytes()
        i = self._locate(key)
        if i is None or not 0 < self._size[i] <= MAX_THUMB_BYTES:
            return None
        try:
            with open(self.folder / pack_name(self._pack[i]), "rb") as f:
                f.seek(int(self._offset[i]))
                data = f.read(int(self._size[i]))
        except OSError:
            return None
        return data if len(data) == int(self._size[i]) else None
