"""The bundled sample (sample_data/): files, planted failures and checkpoint are as documented.

Fast checks only: nothing here trains or regenerates the whole set.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from analysis.schema import LABEL, PATH

ROOT = Path(__file__).resolve().parents[2] / "sample_data"
METADATA = ["camera", "lighting", "background", "capture_hour"]
GEOMETRY = ["shape_cx", "shape_cy", "shape_r"]
FILES = [
    "generate.py",
    "train.py",
    "README.md",
    "planted.json",
    "eval.csv",
    "reference.csv",
    "classes.txt",
    "model.safetensors",
    "model.json",
]


@pytest.fixture(scope="module")
def planted() -> dict:
    return json.loads((ROOT / "planted.json").read_text())


@pytest.fixture(scope="module")
def ref() -> pd.DataFrame:
    return pd.read_csv(ROOT / "reference.csv")


@pytest.fixture(scope="module")
def ev() -> pd.DataFrame:
    return pd.read_csv(ROOT / "eval.csv")


@pytest.fixture(scope="module")
def classes() -> list[str]:
    return (ROOT / "classes.txt").read_text().split()


@pytest.fixture(scope="module")
def generate_module():
    spec = importlib.util.spec_from_file_location("sample_generate", ROOT / "generate.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up here
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        sys.modules.pop(spec.name, None)


def _share(mask) -> float:
    return float(np.mean(mask))


def test_files_exist():
    missing = [f for f in FILES if not (ROOT / f).is_file()]
    assert missing == []


def test_sample_is_under_20_mb():
    total = sum(
        p.stat().st_size for p in ROOT.rglob("*") if p.is_file() and "__pycache__" not in p.parts
    )
    assert total < 20 * 1024 * 1024, f"sample_data is {total / 2**20:.1f} MiB"


def test_manifests_have_documented_columns_and_files(ref, ev, classes):
    for df, n_range in ((ref, (1700, 1900)), (ev, (1100, 1300))):
        assert list(df.columns[:2]) == [PATH, LABEL]
        assert set(METADATA + GEOMETRY) <= set(df.columns)
        assert n_range[0] <= len(df) <= n_range[1]
        assert set(df[LABEL]) == set(classes)
        assert df[PATH].is_unique
        assert all((ROOT / p).is_file() for p in df[PATH])
        assert set(df["camera"]) == {"cam_a", "cam_b", "cam_c"}
        assert set(df["lighting"]) == {"day", "overcast", "night"}
        assert set(df["background"]) == {"plain", "gradient", "dots", "noise", "stripes"}
        assert df["capture_hour"].between(0, 23).all()
        assert pd.api.types.is_integer_dtype(df["capture_hour"])
    assert all(p.startswith("images/reference/") for p in ref[PATH])
    assert all(p.startswith("images/eval/") for p in ev[PATH])
    assert classes == ["circle", "square", "triangle", "star", "cross", "hexagon"]


def test_images_are_112_rgb_jpeg(ev):
    for p in ev[PATH].iloc[::200]:
        with Image.open(ROOT / p) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (112, 112))


def test_planted_specs(planted, ev):
    assert planted["weak_slices"][0]["column"] == "lighting"
    specs = {(s["column"], s["value"]) for s in planted["weak_slices"]}
    assert specs == {("lighting", "night"), ("camera", "cam_c")}
    for col, val in specs:
        assert val in set(ev[col])
    assert planted["spurious"]["class"] == "triangle"
    assert (planted["spurious"]["column"], planted["spurious"]["value"]) == (
        "background",
        "stripes",
    )
    assert planted["rare_class"] == "hexagon"
    assert isinstance(planted["seed"], int)


def test_flipped_labels(planted, ev, classes):
    flipped = planted["flipped_labels"]
    assert 0.03 <= len(flipped) / len(ev) <= 0.05
    given = ev.set_index(PATH)[LABEL]
    for f in flipped:
        assert given[f["path"]] == f["given_label"]
        assert f["true_label"] != f["given_label"]
        assert {f["true_label"], f["given_label"]} <= set(classes)
    assert len({f["path"] for f in flipped}) == len(flipped)
    leaked = {p["eval_path"] for p in planted["leaked_pairs"]}
    assert leaked.isdisjoint(f["path"] for f in flipped)
    assert planted["counts"]["eval"]["flipped"] == len(flipped)


def _gray(path: Path) -> np.ndarray:
    """Luma [112, 112] float, lightly blurred so JPEG re-encoding of sensor noise does not count."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L").filter(ImageFilter.GaussianBlur(1.5)), dtype=np.float64)


def _shifted_corr(a: np.ndarray, b: np.ndarray, max_shift: int = 2) -> float:
    """Best Pearson correlation of two [H, W] images over shifts of up to max_shift pixels."""
    m, best = max_shift, -1.0
    core = a[m:-m, m:-m].ravel()
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            other = b[m + dy : b.shape[0] - m + dy, m + dx : b.shape[1] - m + dx].ravel()
            best = max(best, float(np.corrcoef(core, other)[0, 1]))
    return best


def test_leaked_pairs_are_near_copies(planted, ref, ev):
    pairs = planted["leaked_pairs"]
    assert 0.02 <= len(pairs) / len(ev) <= 0.04
    ref_label = ref.set_index(PATH)[LABEL]
    ev_label = ev.set_index(PATH)[LABEL]
    ev_meta = ev.set_index(PATH)
    corr, unrelated = [], []
    for i, p in enumerate(pairs):
        assert ev_label[p["eval_path"]] == ref_label[p["reference_path"]]
        assert ev_meta.loc[p["eval_path"], "background"] != "stripes"
        a = _gray(ROOT / p["eval_path"])
        corr.append(_shifted_corr(a, _gray(ROOT / p["reference_path"])))
        other = pairs[(i + 1) % len(pairs)]["reference_path"]
        unrelated.append(_shifted_corr(a, _gray(ROOT / other)))
    assert min(corr) > 0.9 and np.median(corr) > 0.99
    # The check can fail: another pair's reference image is not a near-copy.
    assert np.median(unrelated) < 0.5
    assert all(c > u for c, u in zip(corr, unrelated, strict=True))
    assert len({p["reference_path"] for p in pairs}) == len(pairs)
    assert planted["counts"]["eval"]["leaked"] == len(pairs)


def test_weak_slice_and_rare_class_shares(ref, ev, planted):
    assert 0.02 <= _share(ref["lighting"] == "night") <= 0.04
    assert 0.08 <= _share(ev["lighting"] == "night") <= 0.12
    assert 0.12 <= _share(ref["camera"] == "cam_c") <= 0.18
    assert 0.28 <= _share(ev["camera"] == "cam_c") <= 0.38
    assert 0.02 <= _share(ref[LABEL] == "hexagon") <= 0.04
    true_hex = planted["counts"]["eval"]["true_label"]["hexagon"]["share"]
    assert 0.03 <= true_hex <= 0.05
    assert 0.025 <= _share(ev[LABEL] == "hexagon") <= 0.055
    for c, v in planted["counts"]["reference"]["label"].items():
        if c != "hexagon":
            assert v["share"] > 3 * planted["counts"]["reference"]["label"]["hexagon"]["share"]


def test_spurious_background_in_reference_only(ref, ev, planted):
    def stripes_share(df, triangle: bool) -> float:
        sel = df[(df[LABEL] == "triangle") == triangle]
        return _share(sel["background"] == "stripes")

    assert stripes_share(ref, True) >= 0.8
    assert stripes_share(ref, False) <= 0.05
    # In eval the background does not depend on the class (flipped labels barely move it).
    assert abs(stripes_share(ev, True) - stripes_share(ev, False)) < 0.08
    assert 0.12 <= stripes_share(ev, False) <= 0.28
    assert planted["spurious"]["reference_share_of_class_on_value"] >= 0.8


def test_geometry_columns_locate_the_shape(ev):
    """The shape centre has a flat fill that differs from the ring just outside the shape."""
    clean = ev[(ev["camera"] != "cam_c") & (ev["lighting"] == "day")].iloc[:80]
    yy, xx = np.mgrid[0:112, 0:112] + 0.5
    hits = 0
    for _, row in clean.iterrows():
        with Image.open(ROOT / row[PATH]) as im:
            x = np.asarray(im.convert("RGB"), dtype=np.float64)
        d = np.hypot(xx - row["shape_cx"], yy - row["shape_cy"])
        inner = x[d <= 0.25 * row["shape_r"]]
        ring = x[(d >= 1.15 * row["shape_r"]) & (d <= 1.4 * row["shape_r"])]
        flat = inner.std(axis=0).max() < 12
        differs = np.abs(inner.mean(axis=0) - np.median(ring, axis=0)).max() > 25
        hits += bool(flat and differs)
    assert hits >= 0.9 * len(clean)


def test_generator_is_deterministic(generate_module, ref):
    """Re-rendering the first reference images gives the committed JPEG bytes."""
    g = generate_module
    specs = g.sample_specs("reference", g.N_REFERENCE, np.random.default_rng([g.SEED, 0]))
    assert [s.label for s in specs[:50]] == ref[LABEL].iloc[:50].tolist()
    for s in specs[:3]:
        rng = np.random.default_rng([g.SEED, 0, s.index])
        arr = g.render(s, rng, rot=float(rng.uniform(0, 2 * np.pi)))
        buf = io.BytesIO()
        Image.fromarray(arr, mode="RGB").save(buf, format="JPEG", quality=g.JPEG_QUALITY)
        assert buf.getvalue() == (ROOT / g.image_relpath("reference", s.index)).read_bytes()


def test_model_json_matches_classes(classes):
    meta = json.loads((ROOT / "model.json").read_text())
    assert meta["arch"] == "mobilenet_v3_small"
    assert meta["classes"] == classes
    assert meta["num_classes"] == len(classes) == 6
    assert meta["input_size"] == meta["resize"] == 112
    assert meta["crop"] is None
    assert len(meta["mean"]) == len(meta["std"]) == 3
    assert meta["trained_on"] == "reference.csv"
    assert isinstance(meta["epochs"], int) and isinstance(meta["seed"], int)


def test_checkpoint_loads_and_predicts(ev, classes):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    from safetensors.torch import load_file

    meta = json.loads((ROOT / "model.json").read_text())
    state = load_file(str(ROOT / "model.safetensors"))
    assert any(v.dtype == torch.float16 for v in state.values())
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model = torchvision.models.mobilenet_v3_small(num_classes=6)
    model.load_state_dict(state, strict=True)
    model.eval()
    clean = ev[(ev["camera"] == "cam_a") & (ev["lighting"] == "day")].iloc[:48]
    x = np.stack([np.asarray(Image.open(ROOT / p).convert("RGB")) for p in clean[PATH]])
    x = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255.0
    x = (x - torch.tensor(meta["mean"]).view(1, 3, 1, 1)) / torch.tensor(meta["std"]).view(
        1, 3, 1, 1
    )
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (len(clean), 6)
    pred = [classes[i] for i in logits.argmax(1).tolist()]
    # Clean, well-lit images: the trained model gets most of them right (a random one gets ~1/6).
    assert np.mean(np.array(pred) == clean[LABEL].to_numpy()) >= 0.7
