"""Tests for the run's bulk files: thumbnail packs (analysis.store.thumbs) and streamed .npy
arrays (analysis.store.npy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.store.npy import NpyRowWriter
from analysis.store.thumbs import INDEX, ThumbnailReader, ThumbnailWriter, pack_name


def test_thumbnail_packs_round_trip_and_split(tmp_path):
    blobs = {f"s{k:012d}": bytes([k % 251]) * (100 + k) for k in range(40)}
    with ThumbnailWriter(tmp_path / "thumbs", pack_bytes=1000) as w:
        for key, data in blobs.items():
            w.add(key, data)
        w.add("ref-s000000000001", b"reference")
        w.add("s000000000003", b"again")  # a later thumbnail for the same key wins
    files = sorted(p.name for p in (tmp_path / "thumbs").iterdir())
    assert INDEX in files and pack_name(0) in files and len(files) > 3  # split into packs
    r = ThumbnailReader(tmp_path / "thumbs")
    assert r.packed
    for key, data in blobs.items():
        assert r.get(key) == (b"again" if key == "s000000000003" else data)
    assert r.get("ref-s000000000001") == b"reference"
    assert r.get("missing") is None and "missing" not in r and "s000000000000" in r
    # readable with pandas and plain file reads alone, as the module docstring shows
    idx = pd.read_parquet(tmp_path / "thumbs" / INDEX).set_index("key")
    pack, offset, size = idx.loc["s000000000007", ["pack", "offset", "size"]]
    with open(tmp_path / "thumbs" / pack_name(pack), "rb") as f:
        f.seek(offset)
        assert f.read(size) == blobs["s000000000007"]


def test_runs_with_one_file_per_thumbnail_still_read(tmp_path):
    d = tmp_path / "thumbs"
    d.mkdir()
    (d / "s1.jpg").write_bytes(b"jpeg")
    r = ThumbnailReader(d)
    assert not r.packed and r.get("s1") == b"jpeg" and r.get("s2") is None
    assert r.get("../s1") is None  # a key never names a path outside the folder
    assert ThumbnailReader(tmp_path / "none").get("s1") is None  # no thumbnails at all


def test_npy_rows_stream_to_a_normal_npy_file(tmp_path):
    w = NpyRowWriter(tmp_path / "a.npy", (3,), np.float16)
    blocks = [np.arange(12, dtype=np.float32).reshape(4, 3) + k for k in range(3)]
    for b in blocks:
        w.append(b)
    got = w.close()
    assert isinstance(got, np.memmap) and got.dtype == np.float16 and got.shape == (12, 3)
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.concatenate(blocks))
    empty = NpyRowWriter(tmp_path / "b.npy", (5,), np.float32).close()
    assert empty.shape == (0, 5) and np.load(tmp_path / "b.npy").shape == (0, 5)
    w = NpyRowWriter(tmp_path / "c.npy", (3,), np.float32)
    with pytest.raises(ValueError, match=r"rows of shape \(3,\) expected, got \(4,\)"):
        w.append(np.zeros((2, 4)))
    w.abort()
    assert not (tmp_path / "c.npy").exists()
