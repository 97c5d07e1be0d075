import numpy as np
import pytest
from PIL import Image

from analysis.images import ImageReadError, decode_image


def _save(path, arr, mode=None, **kw):
    Image.fromarray(arr, mode=mode).save(path, **kw)
    return path


def test_missing_and_empty(tmp_path):
    with pytest.raises(ImageReadError, match="missing file"):
        decode_image(tmp_path / "nope.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"empty file \(0 bytes\)"):
        decode_image(tmp_path / "zero.png")


def test_corrupt_and_truncated(tmp_path):
    (tmp_path / "junk.jpg").write_bytes(b"this is not an image" * 20)
    with pytest.raises(ImageReadError, match="not a readable image"):
        decode_image(tmp_path / "junk.jpg")
    good = _save(
        tmp_path / "ok.png", np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    )
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="truncated|corrupt"):
        decode_image(tmp_path / "trunc.png")


def test_decompression_bomb_is_refused(tmp_path):
    _save(tmp_path / "big.png", np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageReadError, match="too large: 100x100"):
        decode_image(tmp_path / "big.png", max_pixels=5000)


def test_odd_modes_become_rgb(tmp_path):
    gray = _save(tmp_path / "g.png", np.full((10, 12), 128, np.uint8))
    img = decode_image(gray)
    assert img.rgb.shape == (10, 12, 3) and img.rgb.dtype == np.uint8
    assert (img.rgb == 128).all() and img.mode == "L" and (img.width, img.height) == (12, 10)

    arr16 = np.full((8, 8), 65535 // 2, np.uint16)
    Image.fromarray(arr16).save(tmp_path / "g16.png")
    img16 = decode_image(tmp_path / "g16.png")
    assert img16.mode.startswith("I")
    assert abs(int(img16.rgb[0, 0, 0]) - 127) <= 1  # relative brightness kept, not clipped

    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    img_a = decode_image(_save(tmp_path / "a.png", rgba, mode="RGBA"))
    assert img_a.rgb.shape == (6, 6, 3) and abs(int(img_a.rgb[0, 0, 0]) - 128) <= 1

    pal = Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8)).convert("P")
    pal.save(tmp_path / "p.png")
    assert decode_image(tmp_path / "p.png").rgb.shape == (8, 8, 3)


def test_hash_and_size(tmp_path):
    p = _save(tmp_path / "x.png", np.zeros((4, 4, 3), np.uint8))
    import hashlib

    img = decode_image(p)
    assert img.content_hash == hashlib.sha256(p.read_bytes()).hexdigest()
    assert img.file_size == p.stat().st_size
