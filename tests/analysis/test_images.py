import numpy as np
import pytest
from PIL import Image

from analysis.loading.images import DEFAULT_MAX_PIXELS, ImageReadError, decode_image


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


PILLOW_DEFAULT_LIMIT = 1024 * 1024 * 1024 // 4 // 3  # Image.MAX_IMAGE_PIXELS as Pillow ships it


@pytest.fixture(scope="module")
def photo_96mp(tmp_path_factory):
    """A 10000 x 9500 image (95 M pixels, above Pillow's default limit of ~89.5 M): 1-bit, so
    the PNG is a few kB; decoding it to RGB peaks around 1 GB of memory."""
    path = tmp_path_factory.mktemp("huge") / "photo.png"
    im = Image.new("1", (10_000, 9_500))
    im.paste(1, (0, 0, 5_000, 9_500))  # left half white, so the decoded content can be checked
    im.save(path)
    return path


@pytest.fixture
def pillow_limit(monkeypatch):
    """Pillow's process-wide limit as it ships, restored after the test (decoding raises it)."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", PILLOW_DEFAULT_LIMIT)
    return Image


def test_image_above_pillows_limit_but_within_max_pixels_decodes(photo_96mp, pillow_limit):
    assert 10_000 * 9_500 > PILLOW_DEFAULT_LIMIT
    img = decode_image(photo_96mp, max_pixels=100_000_000)
    assert (img.width, img.height) == (10_000, 9_500) and img.rgb.shape == (9_500, 10_000, 3)
    assert img.rgb[0, 0].tolist() == [255, 255, 255] and img.rgb[-1, -1].tolist() == [0, 0, 0]
    assert pillow_limit.MAX_IMAGE_PIXELS >= 100_000_000
    assert DEFAULT_MAX_PIXELS > 10_000 * 9_500  # so the default analyses it as well


# Pillow warns at its own limit (now max_pixels) before errorscope refuses the file
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_image_above_max_pixels_is_skipped_naming_both_numbers(photo_96mp, pillow_limit):
    with pytest.raises(ImageReadError) as err:
        decode_image(photo_96mp, max_pixels=90_000_000)
    assert "10000x9500 = 95,000,000 pixels" in str(err.value)
    assert "limit of 90,000,000" in str(err.value)


def test_pillows_limit_is_only_ever_raised(tmp_path, monkeypatch):
    small = _save(tmp_path / "s.png", np.zeros((100, 100, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10**9)
    decode_image(small, max_pixels=20_000)
    assert Image.MAX_IMAGE_PIXELS == 10**9  # an application's higher limit is kept
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    decode_image(small, max_pixels=20_000)
    assert Image.MAX_IMAGE_PIXELS is None  # "no limit" is kept
    with pytest.raises(ValueError, match="max_pixels must be a positive number of pixels, got 0"):
        decode_image(small, max_pixels=0)


def test_concurrent_decodes_with_different_limits(tmp_path, pillow_limit):
    from concurrent.futures import ThreadPoolExecutor

    small = _save(tmp_path / "s.png", np.zeros((100, 100, 3), np.uint8))
    limits = [5_000, 300_000_000] * 40

    def decode(limit):
        try:
            return decode_image(small, max_pixels=limit).width
        except ImageReadError as e:
            return str(e)

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(decode, limits))
    for limit, res in zip(limits, results, strict=True):
        if limit == 5_000:
            assert "exceeds the limit of 5,000" in res
        else:
            assert res == 100
    assert pillow_limit.MAX_IMAGE_PIXELS == 300_000_000
