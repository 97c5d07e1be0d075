"""EXIF orientation (issue 11 §1): decode as torchvision's default loader does, apply the tag only
with --exif-transpose, record it per image, make it a finding, and show every image as the model
saw it. The JPEGs here are real files written by PIL with an orientation tag."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageOps
from scipy.stats import binomtest, fisher_exact

from analysis import schema
from analysis.loading.images import decode_image
from analysis.pipeline.engine import AnalysisConfig, analyze
from tests.conftest import CLASSES

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


def _photo(h: int = 30, w: int = 48, seed: int = 0) -> np.ndarray:
    """A landscape picture whose top-left corner is marked, so any turn shows."""
    arr = np.random.default_rng(seed).integers(0, 60, (h, w, 3), dtype=np.uint8)
    arr[:8, :12] = (250, 250, 20)
    return arr


def save_jpeg(path: Path, arr: np.ndarray, orientation: int | None) -> Path:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    Image.fromarray(arr).save(path, format="JPEG", quality=95, exif=exif)
    return path


def test_decoding_is_torchvisions_default_loader_unless_asked(tmp_path):
    from torchvision.datasets.folder import default_loader

    path = save_jpeg(tmp_path / "rot.jpg", _photo(), 6)  # "rotate 90° clockwise to view"
    stored = np.asarray(Image.open(path).convert("RGB"))
    img = decode_image(path)
    assert img.orientation == 6 and (img.width, img.height) == (48, 30)
    np.testing.assert_array_equal(img.rgb, np.asarray(default_loader(str(path))))
    np.testing.assert_array_equal(img.rgb, stored)
    upright = decode_image(path, exif_transpose=True)
    assert (upright.width, upright.height) == (30, 48) and upright.orientation == 6
    np.testing.assert_array_equal(
        upright.rgb, np.asarray(ImageOps.exif_transpose(Image.open(path)))
    )
    assert decode_image(save_jpeg(tmp_path / "plain.jpg", _photo(), None)).orientation == 0
    assert decode_image(save_jpeg(tmp_path / "one.jpg", _photo(), 1)).orientation == 1


def _folder_with_rotations(root: Path, rotated: dict[str, int]) -> Path:
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(5):
            rel = f"{name}/{name}_{i}.jpg"
            save_jpeg(root / rel, _photo(seed=10 * c + i), rotated.get(rel))
    return root


def _cfg(data, **kw):
    return AnalysisConfig(
        data=str(data), resize=32, no_crop=True, num_workers=0, umap=False, batch_size=8, **kw
    )


ROTATED = {"ant/ant_0.jpg": 6, "ant/ant_1.jpg": 8, "bee/bee_0.jpg": 3, "cat/cat_0.jpg": 6}


@pytest.fixture
def rotated_run_inputs(tmp_path, tiny_resnet):
    return _folder_with_rotations(tmp_path / "data", ROTATED), tiny_resnet


def test_the_run_records_the_tag_and_the_model_sees_the_stored_pixels(rotated_run_inputs, tmp_path):
    from analysis.explain.cam_views import model_input
    from analysis.loading.inference import to_model_tensor
    from analysis.loading.models import Preprocessing

    data, model = rotated_run_inputs
    run = analyze(_cfg(data, model=str(model), arch="resnet18"), runs_dir=tmp_path / "runs")
    s = run.samples.set_index(schema.RELPATH)
    tags = s[schema.EXIF_ORIENTATION]
    assert {k: int(v) for k, v in tags[tags > 1].items()} == ROTATED
    assert (tags[~tags.index.isin(list(ROTATED))] == 0).all()
    assert (s[schema.WIDTH] == 48).all() and (s[schema.HEIGHT] == 30).all()  # as stored
    prep = Preprocessing.from_dict(run.manifest["preprocessing"])
    assert prep.exif_transpose is False and run.manifest["preprocessing"]["exif_transpose"] is False
    # thumbnails (gallery, report) are the stored pixels too: landscape, like the model input
    sid = s.loc["ant/ant_0.jpg", schema.SAMPLE_ID]
    with Image.open(io.BytesIO(run.thumbnail(sid))) as thumb:
        assert thumb.width > thumb.height
    # the CAM panel's "model input" is what the pass fed the model
    image, _ = model_input(s.loc["ant/ant_0.jpg", schema.PATH], prep)
    stored = np.asarray(Image.open(data / "ant" / "ant_0.jpg").convert("RGB"))
    expected = to_model_tensor(stored, prep).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(image, expected)

    rotated = analyze(
        _cfg(data, model=str(model), arch="resnet18", exif_transpose=True),
        runs_dir=tmp_path / "runs",
    )
    assert rotated.path != run.path  # part of the run's fingerprint
    assert rotated.manifest["preprocessing"]["exif_transpose"] is True
    r = rotated.samples.set_index(schema.RELPATH)
    assert (r.loc["ant/ant_0.jpg", schema.WIDTH], r.loc["ant/ant_0.jpg", schema.HEIGHT]) == (30, 48)
    assert (r.loc["bee/bee_0.jpg", schema.WIDTH], r.loc["ant/ant_2.jpg", schema.WIDTH]) == (48, 48)
    prep_t = Preprocessing.from_dict(rotated.manifest["preprocessing"])
    image_t, _ = model_input(r.loc["ant/ant_0.jpg", schema.PATH], prep_t)
    upright = np.asarray(ImageOps.exif_transpose(Image.open(data / "ant" / "ant_0.jpg")))
    np.testing.assert_array_equal(image_t, to_model_tensor(upright, prep_t).permute(1, 2, 0))


def test_cli_exif_transpose_option_and_sidecar(rotated_run_inputs, tmp_path):
    import json

    from analysis.cli import main

    data, model = rotated_run_inputs
    base = ["analyze", "--data", str(data), "--model", str(model), "--arch", "resnet18"]
    base += ["--resize", "32", "--no-crop", "--workers", "0", "--no-umap"]
    assert main([*base, "--exif-transpose", "--out", str(tmp_path / "a")]) == 0
    (run_dir,) = [d for d in (tmp_path / "a").iterdir() if not d.name.startswith(".")]
    m = json.loads((run_dir / schema.MANIFEST).read_text())
    assert m["preprocessing"]["exif_transpose"] is True and m["config"]["exif_transpose"] is True
    side = tmp_path / "net.pt"
    side.write_bytes(Path(model).read_bytes())
    (tmp_path / "net.json").write_text(json.dumps({"exif_transpose": True}))
    base[4] = str(side)
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    (run_dir,) = [d for d in (tmp_path / "b").iterdir() if not d.name.startswith(".")]
    assert json.loads((run_dir / schema.MANIFEST).read_text())["preprocessing"]["exif_transpose"]
    assert main([*base, "--no-exif-transpose", "--out", str(tmp_path / "c")]) == 0
    (run_dir,) = [d for d in (tmp_path / "c").iterdir() if not d.name.startswith(".")]
    m = json.loads((run_dir / schema.MANIFEST).read_text())
    assert m["preprocessing"]["exif_transpose"] is False  # the option wins over the sidecar


def _predictions_run(data: Path, tmp_path: Path, wrong: set[str], **kw):
    """A run whose predictions file makes exactly the images in ``wrong`` errors."""
    from analysis.loading.datasets import load_image_set

    table = load_image_set(data).table
    p = np.full((len(table), 3), 0.05)
    for i, (rel, lab) in enumerate(zip(table[schema.RELPATH], table[schema.LABEL], strict=True)):
        p[i, (lab + (1 if rel in wrong else 0)) % 3] = 0.9
    preds = pd.DataFrame(p, columns=CLASSES).assign(path=table[schema.RELPATH])
    tmp_path.mkdir(parents=True, exist_ok=True)
    preds.to_csv(tmp_path / "preds.csv", index=False)
    cfg = AnalysisConfig(
        data=str(data), predictions=str(tmp_path / "preds.csv"), num_workers=0, umap=False, **kw
    )
    return analyze(cfg, runs_dir=tmp_path / "runs")


def test_the_rotation_finding_compares_error_rates_as_the_slices_do(tmp_path):
    from analysis.present.findings import findings
    from analysis.present.query import ImageQuery, apply_query

    data = _folder_with_rotations(tmp_path / "data", ROTATED)
    wrong = set(list(ROTATED)[:3]) | {"cat/cat_4.jpg"}  # 3 of 4 rotated wrong, 1 of 11 others
    run = _predictions_run(data, tmp_path, wrong)
    (f,) = [f for f in findings(run) if f.kind == "exif_rotation"]
    table = [[3, 1], [1, 10]]
    p = fisher_exact(table, alternative="greater")[1]
    ci = binomtest(3, 4).proportion_ci(method="wilson")
    ci_rest = binomtest(1, 11).proportion_ci(method="wilson")
    assert f.message.startswith(
        "4 images carry an EXIF rotation: people see them upright, the model sees them rotated."
        f" Their error rate is 75% (95% CI {ci.low:.0%}–{ci.high:.0%}) against 9% (95% CI"
        f" {ci_rest.low:.0%}–{ci_rest.high:.0%}) for the other 11 images (one-sided Fisher"
        f" p = {p:.2g})"
    ), f.message
    assert f.severity == ("high" if p < 0.05 else "medium")
    rows = apply_query(run.samples, f.query)
    assert sorted(run.samples[schema.RELPATH].iloc[rows]) == sorted(ROTATED)
    assert f.query == ImageQuery(issue="exif")

    plain = _folder_with_rotations(tmp_path / "plain", {})
    assert not [
        f for f in findings(_predictions_run(plain, tmp_path / "p", set())) if "EXIF" in f.message
    ]
    applied = _predictions_run(data, tmp_path / "t", wrong, exif_transpose=True)
    (f,) = [f for f in findings(applied) if f.kind == "exif_rotation"]
    assert f.severity == "info" and "turned them upright before the model saw them" in f.message


def test_pages_show_the_image_as_the_model_saw_it(tmp_path, monkeypatch):
    """The detail page's main image and the review queue's image are the decoded stored pixels
    (never the raw file, which a browser would turn upright), with a note saying so."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from analysis.present.image_view import model_view

    data = _folder_with_rotations(tmp_path / "data", ROTATED)
    run = _predictions_run(data, tmp_path, set())
    row = int(np.flatnonzero(run.samples[schema.RELPATH] == "ant/ant_0.jpg")[0])
    view = model_view(run, row)
    stored = np.asarray(Image.open(data / "ant" / "ant_0.jpg").convert("RGB"))
    np.testing.assert_array_equal(view.rgb, stored)
    assert view.orientation == 6 and "rotated 90° clockwise" in view.note
    assert view.note.startswith("Shown as the model saw it: the pixels as stored in the file.")
    plain_row = int(np.flatnonzero(run.samples[schema.RELPATH] == "ant/ant_3.jpg")[0])
    assert model_view(run, plain_row).note is None

    shown = []
    real_image = st.image

    def spy(image, *a, **k):
        shown.append(image)
        return real_image(image, *a, **k)

    monkeypatch.setattr(st, "image", spy)
    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(run.path.parent))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = run.run_id
    at.query_params["sample"] = run.samples[schema.SAMPLE_ID].iloc[row]
    from tests.dashboard.conftest import assert_on_page, open_page

    at.run()
    shown.clear()
    open_page(at, "detail").run()
    assert_on_page(at, "detail")
    assert not at.exception
    arrays = [x for x in shown if isinstance(x, np.ndarray)]
    assert arrays and not [x for x in shown if isinstance(x, str) and x.endswith("ant_0.jpg")]
    np.testing.assert_array_equal(arrays[0], stored)  # landscape, as stored: not turned upright
    notes = [_read(c.value) for c in at.caption if "EXIF orientation tag (6)" in _read(c.value)]
    assert notes and "a photo viewer shows it rotated 90° clockwise" in notes[0]

    # the review queue shows the same pixels, with the same note
    from analysis.store.review import ReviewStore

    monkeypatch.setenv("ERRORSCOPE_REVIEW_DB", str(tmp_path / "review.sqlite"))
    r = run.samples.iloc[row]
    queue = ReviewStore(tmp_path / "review.sqlite").create_queue(
        run.run_id, "rotated", [r[schema.SAMPLE_ID]], [r[schema.CONTENT_HASH]], reviewer="Ana"
    )
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["run"] = run.run_id
    at.run()
    shown.clear()
    at.query_params["queue"] = queue.id
    at.query_params["pos"] = "0"
    open_page(at, "review").run()
    assert_on_page(at, "review")
    assert not at.exception
    full = [x for x in shown if isinstance(x, np.ndarray) and x.shape == stored.shape]
    assert full and not [x for x in shown if isinstance(x, str) and x.endswith("ant_0.jpg")]
    np.testing.assert_array_equal(full[0], stored)
    assert [c for c in at.caption if "EXIF orientation tag (6)" in _read(c.value)]


def _read(markdown: str) -> str:
    """A caption as people read it: data text is Markdown-escaped (dashboard.components.safe)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")
