"""End-to-end analysis on tiny data: run directory contents, bad files, reuse, atomicity."""

import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import schema
from analysis.pipeline.engine import AnalysisConfig, analyze
from analysis.store.runstore import RunError, open_run
from tests.conftest import CLASSES, tiny_config


def test_run_directory_contract(image_folder, tiny_resnet, tmp_path):
    run = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=tmp_path / "runs")
    s = run.samples
    assert len(s) == 18 and run.class_names == CLASSES
    assert run.probs.shape == (18, 3) and run.probs.dtype == np.float32
    np.testing.assert_allclose(run.probs.sum(1), 1, atol=1e-5)
    assert run.embeddings.shape == (18, 512) and run.embeddings.dtype == np.float16
    for col in schema.CORE_COLUMNS + schema.PROPERTY_COLUMNS:
        assert col in s.columns, col
    np.testing.assert_array_equal(s[schema.PRED], run.probs.argmax(1))
    np.testing.assert_array_equal(s[schema.CORRECT], s[schema.PRED] == s[schema.LABEL])
    np.testing.assert_allclose(
        s[schema.LOSS], -np.log(run.probs[np.arange(18), s[schema.LABEL]]), rtol=1e-5
    )
    assert s[schema.SAMPLE_ID].is_unique and (s[schema.WIDTH] == 40).all()
    m = run.manifest
    assert m["schema_version"] == schema.SCHEMA_VERSION and m["n_skipped"] == 0
    assert m["inputs"]["model"]["sha256"] and m["inputs"]["data"]["fingerprint"]
    assert m["preprocessing"]["resize"] == 32 and m["preprocessing"]["crop"] is None
    failed = {k: v for k, v in run.sections.items() if v["status"] != "ok"}
    assert not failed, failed
    assert set(run.sections) >= {"metrics", "slices", "label_issues", "duplicates", "outliers"}
    # thumbnails: a pack and its index, one JPEG per image; signatures stored beside them
    thumbs = sorted(p.name for p in (run.path / "thumbs").iterdir())
    assert thumbs == ["index.parquet", "pack-00000.jpgs"]
    for sid in s[schema.SAMPLE_ID]:
        jpeg = run.thumbnail(sid)
        assert jpeg[:2] == b"\xff\xd8" and Image.open(io.BytesIO(jpeg)).size == (40, 40)
    assert run.thumbnail("nope") is None
    assert run.signatures.shape == (18, 768) and run.signatures.dtype == np.float16
    assert not list(run.path.glob(".*"))  # the pass's scratch files are gone
    # each image's nearest other images, stored for the detail page: the exact answer here
    from analysis.explain.embeddings import NeighbourIndex

    own, ref = run.neighbours
    assert own.shape == (18, 8) and ref is None
    want, _ = NeighbourIndex(run.embeddings).neighbours_of(np.arange(18), 8)
    np.testing.assert_array_equal(own, want)


def test_bad_files_are_skipped_with_reasons(image_folder, tiny_resnet, tmp_path):
    ant = image_folder / "ant"
    (ant / "corrupt.png").write_bytes(b"\x89PNG not really" * 10)
    good = (ant / "ant_00.png").read_bytes()
    (ant / "truncated.png").write_bytes(good[: len(good) // 3])
    (ant / "zero.png").write_bytes(b"")
    Image.fromarray(np.full((40, 40), 30000, np.uint16)).save(ant / "sixteen.png")
    Image.fromarray(np.full((40, 40), 90, np.uint8)).save(ant / "gray.png")
    run = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=tmp_path / "runs")
    skipped = {s["relpath"]: s["reason"] for s in run.manifest["skipped"]}
    assert set(skipped) == {"ant/corrupt.png", "ant/truncated.png", "ant/zero.png"}
    assert "empty file" in skipped["ant/zero.png"]
    assert "truncated" in skipped["ant/truncated.png"] or "corrupt" in skipped["ant/truncated.png"]
    rel = set(run.samples[schema.RELPATH])
    assert {"ant/sixteen.png", "ant/gray.png"} <= rel and len(rel) == 20
    assert run.manifest["n_skipped"] == 3


def test_same_inputs_reuse_the_run(image_folder, tiny_resnet, tmp_path):
    a = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=tmp_path / "runs")
    mtime = (a.path / schema.MANIFEST).stat().st_mtime_ns
    b = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=tmp_path / "runs")
    assert b.path == a.path and (b.path / schema.MANIFEST).stat().st_mtime_ns == mtime
    c = analyze(tiny_config(image_folder, tiny_resnet, seed=1), runs_dir=tmp_path / "runs")
    assert c.path != a.path


def test_a_run_made_by_another_model_pass_is_analysed_again(image_folder, tiny_resnet, tmp_path):
    from analysis.pipeline.versions import list_runs_with_status, pass_code

    runs = tmp_path / "runs"
    a = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=runs)
    assert a.manifest["versions"]["pass_code"] == pass_code().fingerprint
    assert [r["current"] for r in list_runs_with_status(runs)] == [True]
    m = json.loads((a.path / schema.MANIFEST).read_text())
    m["versions"]["pass_code"] = "0ld0ld0ld0ld"
    m["created"] = "2000-01-01T00:00:00"
    (a.path / schema.MANIFEST).write_text(json.dumps(m))
    assert [r["current"] for r in list_runs_with_status(runs)] == [False]
    said = []
    b = analyze(
        tiny_config(image_folder, tiny_resnet), runs_dir=runs, progress=lambda m, f: said.append(m)
    )
    assert b.path == a.path  # same id: links to the run keep working
    assert b.manifest["versions"]["pass_code"] == pass_code().fingerprint
    assert b.manifest["created"] != "2000-01-01T00:00:00"
    assert any("other analysis code (its model pass changed)" in x for x in said), said
    assert [r["current"] for r in list_runs_with_status(runs)] == [True]
    # an older run-directory schema is analysed again too, not an error
    m = json.loads((b.path / schema.MANIFEST).read_text())
    m["schema_version"] = 0
    (b.path / schema.MANIFEST).write_text(json.dumps(m))
    c = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=runs)
    assert c.manifest["schema_version"] == schema.SCHEMA_VERSION


def test_cli_says_an_unreadable_run_in_one_line(image_folder, tiny_resnet, tmp_path, capsys):
    from analysis.cli import main

    run = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=tmp_path / "runs")
    m = json.loads((run.path / schema.MANIFEST).read_text())
    m["schema_version"] = 0
    (run.path / schema.MANIFEST).write_text(json.dumps(m))
    assert main(["report", str(run.path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("errorscope: error:") and "schema version 0" in err
    assert "Traceback" not in err


def test_interrupted_analysis_leaves_no_run(image_folder, tiny_resnet, tmp_path, monkeypatch):
    import analysis.pipeline.engine as pl

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pl, "build_samples", boom)  # inside model_pass
    with pytest.raises(KeyboardInterrupt):
        analyze(tiny_config(image_folder, tiny_resnet), runs_dir=tmp_path / "runs")
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # no run, no temporary folder


def test_old_schema_gets_a_clear_message(image_folder, tiny_resnet, tmp_path):
    run = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=tmp_path / "runs")
    m = json.loads((run.path / schema.MANIFEST).read_text())
    m["schema_version"] = 0
    (run.path / schema.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(RunError, match="schema version 0; this errorscope reads version 1"):
        open_run(run.path)


def test_predictions_file_mode(image_folder, tmp_path):
    from analysis.loading.datasets import load_image_set

    s = load_image_set(image_folder)
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=len(s))
    preds = pd.DataFrame(p, columns=CLASSES).assign(path=s.table[schema.RELPATH])
    preds.to_csv(tmp_path / "preds.csv", index=False)
    run = analyze(
        AnalysisConfig(
            data=str(image_folder),
            predictions=str(tmp_path / "preds.csv"),
            num_workers=0,
            umap=False,
        ),
        runs_dir=tmp_path / "runs",
    )
    np.testing.assert_allclose(run.probs, p.astype(np.float32), atol=1e-6)
    assert run.embeddings is None and run.manifest["has_model"] is False
    assert run.samples[schema.BRIGHTNESS].notna().all()
    preds.drop(columns=["bee"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks probability columns for classes \['bee'\]"):
        analyze(
            AnalysisConfig(
                data=str(image_folder), predictions=str(tmp_path / "bad.csv"), num_workers=0
            ),
            runs_dir=tmp_path / "runs",
        )


def test_wrong_class_count_fails_before_the_pass(image_folder, tmp_path):
    from tests.conftest import save_tiny_resnet

    ckpt = save_tiny_resnet(tmp_path / "five.pt", num_classes=5)
    with pytest.raises(ValueError, match="has 5 classes but the class list has 3"):
        analyze(tiny_config(image_folder, ckpt), runs_dir=tmp_path / "runs")


def _prep(sidecar, arch="resnet18", **cli):
    from analysis.pipeline.engine import _preprocessing

    return _preprocessing(AnalysisConfig(data="d", **cli), arch, sidecar)


def test_each_sidecar_preprocessing_key_applies_on_its_own():
    from analysis.loading.models import IMAGENET_MEAN, IMAGENET_STD

    assert _prep({}).to_dict() == {  # resnet18's documented transform
        "resize": 256,
        "crop": 224,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "exif_transpose": False,  # torchvision's default loader ignores EXIF orientation
        "interpolation": "bilinear",
        "squash": False,
    }
    assert _prep({"exif_transpose": True}).exif_transpose is True
    assert _prep({"exif_transpose": True}, exif_transpose=False).exif_transpose is False
    assert _prep({"interpolation": "bicubic"}).interpolation == "bicubic"
    assert (_prep({"crop": 200}).resize, _prep({"crop": 200}).crop) == (256, 200)
    assert _prep({"crop": None}).crop is None  # null: resize to a square, as --no-crop
    only_norm = _prep({"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})
    assert only_norm.mean == (0.5, 0.5, 0.5) and only_norm.std == (0.25, 0.25, 0.25)
    assert (only_norm.resize, only_norm.crop) == (256, 224)
    assert _prep({"std": [0.2, 0.2, 0.2]}).mean == IMAGENET_MEAN
    assert (_prep({"resize": 128}).resize, _prep({"resize": 128}).crop) == (128, 224)
    assert _prep({"resize": None, "crop": 96}).resize == 256  # a null resize keeps the default


def test_cli_preprocessing_options_win_over_the_sidecar():
    side = {"resize": 128, "crop": 112, "mean": [0.5] * 3, "std": [0.25] * 3}
    p = _prep(side, resize=300, crop=288, mean=(0.1, 0.2, 0.3), std=(0.4, 0.5, 0.6))
    assert (p.resize, p.crop, p.mean, p.std) == (300, 288, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    assert _prep(side, no_crop=True).crop is None
    assert _prep({"crop": 200}, crop=150).crop == 150
    assert _prep(side, arch=None).input_size == 112  # no architecture: sidecar over 256/224


@pytest.mark.parametrize(
    ("sidecar", "message"),
    [
        ({"crop": "224"}, r"'crop' is '224'; expected a positive whole number of pixels or null"),
        ({"resize": 0}, r"'resize' is 0; expected a positive whole number of pixels"),
        ({"resize": 1.5}, r"'resize' is 1.5; expected a positive whole number"),
        ({"mean": [0.5, 0.5]}, r"'mean' is \[0.5, 0.5\]; expected three numbers \(R, G, B\)"),
        ({"std": [0.2, 0, 0.2]}, r"'std' is \[0.2, 0, 0.2\]; expected three positive numbers"),
        ({"mean": "0.5"}, r"'mean' is '0.5'; expected three numbers"),
    ],
)
def test_bad_sidecar_preprocessing_is_named(sidecar, message):
    with pytest.raises(ValueError, match=message):
        _prep(sidecar)


def test_cli_max_pixels_reaches_the_pass(image_folder, tiny_resnet, tmp_path, capsys):
    from analysis.cli import main

    args = [
        "analyze",
        "--data",
        str(image_folder),
        "--model",
        str(tiny_resnet),
        "--arch",
        "resnet18",
        "--resize",
        "32",
        "--no-crop",
        "--workers",
        "0",
        "--no-umap",
        "--out",
        str(tmp_path / "runs"),
    ]
    assert main([*args, "--max-pixels", "1000"]) == 2  # the images are 40 x 40 = 1,600 pixels
    err = capsys.readouterr().err
    assert "none of the 18 images" in err
    assert "40x40 = 1,600 pixels exceeds the limit of 1,000" in err
    assert main([*args, "--max-pixels", "1600"]) == 0
    (run_dir,) = [d for d in (tmp_path / "runs").iterdir() if not d.name.startswith(".")]
    manifest = json.loads((run_dir / schema.MANIFEST).read_text())
    assert manifest["config"]["max_pixels"] == 1600 and manifest["n_skipped"] == 0
    with pytest.raises(SystemExit):
        main([*args, "--max-pixels", "-5"])
    assert "--max-pixels: expected a positive whole number of pixels, got '-5'" in (
        capsys.readouterr().err
    )


def test_run_writer_removes_only_stale_temporary_folders(tmp_path, caplog):
    import logging
    import os
    import time

    from analysis.store.runstore import RunWriter

    runs = tmp_path / "runs"
    day_ago = time.time() - RunWriter.STALE_TMP_AGE_S - 3600

    def tmp_folder(name, *, age_top, age_inner):
        d = runs / name
        (d / "thumbs").mkdir(parents=True)
        (d / "thumbs" / "a.jpg").write_bytes(b"x")
        os.utime(d / "thumbs", (age_inner, age_inner))
        os.utime(d, (age_top, age_top))
        return d

    killed = tmp_folder(".tmp-a-killed", age_top=day_ago, age_inner=day_ago)
    now = time.time()
    fresh = tmp_folder(".tmp-b-fresh", age_top=now, age_inner=now)
    # a concurrent analysis created its folder long ago but still writes thumbnails
    busy = tmp_folder(".tmp-c-busy", age_top=day_ago, age_inner=now)
    not_tmp = tmp_folder("old-run", age_top=day_ago, age_inner=day_ago)
    replaced = tmp_folder(".old-r-interrupted", age_top=day_ago, age_inner=day_ago)
    (runs / ".tmp-file").write_text("not a folder")
    os.utime(runs / ".tmp-file", (day_ago, day_ago))

    with caplog.at_level(logging.INFO, logger="analysis.store.runstore"):
        w = RunWriter(runs, "new-run")
    assert w.removed_stale == [replaced, killed] and not killed.exists()
    assert not replaced.exists()
    assert fresh.exists() and busy.exists() and not_tmp.exists() and (runs / ".tmp-file").exists()
    assert w.tmp.exists() and w.tmp.name.startswith(".tmp-new-run-")
    assert any(
        str(killed) in r.getMessage() and "interrupted" in r.getMessage() for r in caplog.records
    )
    w.__exit__(None, None, None)
    assert RunWriter(runs, "again").removed_stale == []  # nothing stale is left


def _pass_inputs(image_folder, tiny_resnet):
    """(absolute paths, 32-px preprocessing, loaded tiny resnet) for direct run_pass tests."""
    from analysis.loading.datasets import load_image_set
    from analysis.loading.models import Preprocessing, load_model

    data = load_image_set(str(image_folder))
    loaded = load_model(str(tiny_resnet), arch="resnet18", num_classes=len(data.class_names))
    return data.table["path"].tolist(), Preprocessing(resize=32, crop=None), loaded


def test_the_benchmarked_forward_is_the_pass(image_folder, tiny_resnet):
    """bench/bench_pass.py times _forward on decoded batches: it must be what run_pass computes."""
    import torch
    from torch.utils.data import DataLoader

    from analysis.loading.inference import (
        EmbeddingHook,
        _collate,
        _forward,
        _ImageDataset,
        run_pass,
    )

    paths, prep, loaded = _pass_inputs(image_folder, tiny_resnet)
    res = run_pass(paths, prep, model=loaded.model, num_workers=0, batch_size=4)
    loader = DataLoader(_ImageDataset(paths, prep, None, None), batch_size=4, collate_fn=_collate)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    logits, embs, props = [], [], []
    with EmbeddingHook(loaded.model) as hook, torch.inference_mode():
        for b in loader:
            p, out, emb, _ = _forward(
                b["x"],
                model=loaded.model,
                mean=mean,
                std=std,
                hook=hook,
                perturb=None,
                device="cpu",
            )
            logits.append(out)
            embs.append(emb)
            props.append(p)
    np.testing.assert_allclose(torch.cat(logits).numpy(), res.logits, atol=1e-5)
    np.testing.assert_allclose(torch.cat(embs).numpy(), res.embeddings, atol=1e-5)
    np.testing.assert_allclose(
        torch.cat(props).numpy()[:, 0], res.properties[schema.BRIGHTNESS], atol=1e-6
    )


def test_image_properties_equal_a_numpy_reference():
    """tensor_properties is hand-optimised (in-place slices, moments): check it against the
    textbook definitions computed independently with NumPy/SciPy."""
    import torch
    from scipy.ndimage import correlate

    from analysis.loading.inference import tensor_properties

    rng = np.random.default_rng(0)
    x = rng.random((5, 3, 40, 56)).astype(np.float32) ** 2
    x[1] = 0.0  # black: saturation 0, not NaN
    x[2] = 0.25  # flat grey
    got = tensor_properties(torch.from_numpy(x)).numpy()
    luma = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    k = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float64)
    lap = [correlate(v.astype(np.float64) * 255.0, k)[1:-1, 1:-1] for v in luma]
    mx, mn = x.max(axis=1), x.min(axis=1)
    sat = np.where(mx > 0, (mx - mn) / np.where(mx > 0, mx, 1), 0.0)
    m = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)  # Immerkaer 1996
    noise = [
        np.sqrt(np.pi / 2)
        / 6
        * np.abs(correlate(v.astype(np.float64) * 255.0, m)[1:-1, 1:-1]).mean()
        for v in luma
    ]
    want = np.stack(
        [
            luma.mean(axis=(1, 2)),
            luma.reshape(5, -1).std(axis=1, ddof=1),
            np.array([v.var(ddof=1) for v in lap]),
            sat.mean(axis=(1, 2)),
            np.array(noise),
        ],
        axis=1,
    )
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5)
    assert got[1, 3] == 0.0 and got[2, 1] < 1e-3 and got[2, 2] < 1e-3 and got[2, 4] < 1e-3
    # the noise estimate recovers the sigma of noise added to a smooth image
    smooth = np.broadcast_to(np.linspace(0.2, 0.7, 56, dtype=np.float32), (3, 3, 40, 56)).copy()
    noisy = smooth + rng.normal(0, 8 / 255, size=(3, 1, 40, 56)).astype(np.float32)
    est = tensor_properties(torch.from_numpy(np.ascontiguousarray(noisy))).numpy()[:, 4]
    np.testing.assert_allclose(est, 8.0, rtol=0.1)


def test_out_option_wins_over_the_environment(tmp_path, monkeypatch):
    from analysis.store.runstore import runs_dir_from_env

    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(tmp_path / "env"))
    assert runs_dir_from_env(tmp_path / "cli") == tmp_path / "cli"
    assert runs_dir_from_env() == tmp_path / "env"
    monkeypatch.delenv("ERRORSCOPE_RUNS_DIR")
    assert runs_dir_from_env() == runs_dir_from_env(None) and runs_dir_from_env().name == "runs"


def test_the_pass_gives_the_same_numbers_with_and_without_workers(image_folder, tiny_resnet):
    """Decoding in DataLoader workers or in the main process must not change any number."""
    from analysis.loading.inference import run_pass

    paths, prep, loaded = _pass_inputs(image_folder, tiny_resnet)
    main = run_pass(paths, prep, model=loaded.model, num_workers=0, batch_size=5)
    workers = run_pass(paths, prep, model=loaded.model, num_workers=1, batch_size=5)
    cols = list(schema.PROPERTY_COLUMNS[:5])
    np.testing.assert_allclose(
        workers.properties[cols].to_numpy(), main.properties[cols].to_numpy(), rtol=1e-4, atol=1e-5
    )
    np.testing.assert_allclose(workers.logits, main.logits, atol=1e-5)
