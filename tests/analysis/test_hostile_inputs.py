"""Hostile files and deployments (issue 11 §5): devices, FIFOs, huge files, names that are not
UTF-8, broken checkpoints, CSVs that are empty or not UTF-8, paths outside the data folder, the
run folder's permissions."""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import schema
from analysis.loading.images import ImageReadError, decode_image, read_bytes
from analysis.pipeline.engine import analyze
from tests.conftest import make_image_folder, tiny_config

linux_only = pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")


# -- only regular files, with a size cap -------------------------------------------------------
@linux_only
def test_devices_fifos_and_links_to_them_are_refused_before_reading(tmp_path):
    with pytest.raises(ImageReadError, match="not a regular file: a character device"):
        read_bytes("/dev/zero")
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    with pytest.raises(ImageReadError, match=r"character device \(a symlink to /dev/zero\)"):
        decode_image(tmp_path / "zero.jpg")
    os.mkfifo(tmp_path / "x.jpg")  # nobody ever writes: opening it blocking would hang
    with pytest.raises(ImageReadError, match=r"named pipe \(FIFO\)"):
        decode_image(tmp_path / "x.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageReadError, match="a directory"):
        decode_image(tmp_path / "dir.jpg")
    (tmp_path / "dangling.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageReadError, match="broken symlink"):
        decode_image(tmp_path / "dangling.jpg")


def test_files_above_the_size_cap_are_not_read(tmp_path):
    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)
    size = path.stat().st_size
    assert decode_image(path, max_file_bytes=size).width == 40  # the limit itself is allowed
    with pytest.raises(ImageReadError, match=rf"{size:,} bytes exceeds the limit of {size - 1:,}"):
        decode_image(path, max_file_bytes=size - 1)


@linux_only
@pytest.mark.timeout(120)
def test_a_run_with_devices_fifos_and_huge_files_finishes_and_lists_them(
    image_folder, tiny_resnet, tmp_path
):
    ant = image_folder / "ant"
    (ant / "zero.jpg").symlink_to("/dev/zero")
    os.mkfifo(ant / "x.jpg")
    big = np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8)
    Image.fromarray(big).save(ant / "big.png")
    manifest = tmp_path / "m.csv"
    rows = [(f"data/{p.relative_to(image_folder)}", p.parent.name) for p in ant.glob("ant_*.png")]
    rows.append(("/dev/zero", "ant"))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(manifest, index=False)
    (tmp_path / "classes.txt").write_text("ant\nbee\ncat\n")
    for data, workers in ((image_folder, 0), (image_folder, 2), (manifest, 0)):
        run = analyze(
            tiny_config(data, tiny_resnet, max_file_bytes=100_000, num_workers=workers),
            runs_dir=tmp_path / f"runs{workers}",
        )
        skipped = {s["relpath"]: s["reason"] for s in run.manifest["skipped"]}
        if data == manifest:
            assert set(skipped) == {"/dev/zero"}
            assert "not a regular file: a character device" in skipped["/dev/zero"]
            assert len(run.samples) == 6
            continue
        assert set(skipped) == {"ant/zero.jpg", "ant/x.jpg", "ant/big.png"}, skipped
        assert "a symlink to /dev/zero" in skipped["ant/zero.jpg"]
        assert "named pipe (FIFO)" in skipped["ant/x.jpg"]
        assert "exceeds the limit of 100,000" in skipped["ant/big.png"]
        assert len(run.samples) == 18 and run.manifest["config"]["max_file_bytes"] == 100_000


def test_cli_max_file_bytes_takes_units_and_refuses_nonsense(capsys):
    from analysis.cli import _byte_count, main

    assert _byte_count("256M") == 256 * 2**20 and _byte_count("1GiB") == 2**30
    assert _byte_count("1_000") == 1000
    with pytest.raises(SystemExit):
        main(["analyze", "--data", "d", "--model", "m", "--max-file-bytes", "0"])
    assert "expected a positive number of bytes" in capsys.readouterr().err


# -- file names that are not UTF-8 -------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="bytes file names are a POSIX thing")
def test_a_file_name_that_is_not_utf8_is_skipped_and_shown_escaped(
    image_folder, tiny_resnet, tmp_path
):
    good = (image_folder / "ant" / "ant_00.png").read_bytes()
    bad = os.path.join(os.fsencode(image_folder / "ant"), b"caf\xe9-\xff.png")
    try:
        with open(bad, "wb") as f:
            f.write(good)
    except OSError:
        pytest.skip("this file system refuses names that are not UTF-8")
    run = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=tmp_path / "runs")
    assert run.manifest["skipped"] == [
        {"relpath": "ant/caf\\xe9-\\xff.png", "reason": "file name is not valid UTF-8"}
    ]
    assert run.manifest["n_skipped"] == 1 and len(run.samples) == 18
    json.dumps(run.manifest, ensure_ascii=False).encode("utf-8")  # nothing unencodable stored


# -- broken checkpoints: one clear line each ---------------------------------------------------
@pytest.fixture(scope="module")
def state_dict():
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet18(weights=None, num_classes=3).state_dict()


def _cli_error(args, capsys) -> str:
    from analysis.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if not line.startswith("· ")]  # progress lines
    assert len(errors) == 1 and errors[0].startswith("errorscope: error: "), err  # no traceback
    return errors[0]


def _broken_checkpoints(tmp_path, state_dict):
    import torch
    from safetensors.torch import save_file

    save_file(state_dict, tmp_path / "ok.safetensors")
    data = (tmp_path / "ok.safetensors").read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(data[: len(data) // 2])
    wrong = dict(state_dict)
    wrong["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    save_file(wrong, tmp_path / "shapes.safetensors")
    torch.save(state_dict, tmp_path / "ok.pt")
    data = (tmp_path / "ok.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(data[: len(data) // 2])
    with zipfile.ZipFile(tmp_path / "code.pt", "w") as z:
        z.writestr("archive/code/__torch__.py", "not torchscript")
        z.writestr("archive/data.pkl", b"junk")
    return {
        "truncated.safetensors": r"truncated\.safetensors is not a readable safetensors file"
        r" \(truncated or corrupt\?\): .*incomplete metadata",
        "shapes.safetensors": r"shapes\.safetensors does not fit resnet18: 1 tensor\(s\) have the"
        r" wrong shape \(conv1\.weight: \[64, 3, 3, 3\] in the file, \[64, 3, 7, 7\] in"
        r" resnet18\)",
        "truncated.pt": r"truncated\.pt cannot be read as a PyTorch checkpoint \(truncated or"
        r" corrupt\?\): PytorchStreamReader failed reading zip archive",
        "code.pt": r"code\.pt: a zip archive with a code/ entry, as TorchScript files are, but"
        r" TorchScript cannot load it",
    }


def test_broken_checkpoints_get_one_line_naming_the_file_and_the_fault(
    tmp_path, state_dict, capsys
):
    import re

    from analysis.loading.models import CheckpointError, load_model

    cases = _broken_checkpoints(tmp_path, state_dict)
    data = make_image_folder(tmp_path / "data", n_per_class=1)
    for name, pattern in cases.items():
        with pytest.raises(CheckpointError, match=pattern):
            load_model(tmp_path / name, arch="resnet18", num_classes=3)
        err = _cli_error(
            ["analyze", "--data", str(data), "--model", str(tmp_path / name), "--arch", "resnet18"]
            + ["--resize", "32", "--no-crop", "--out", str(tmp_path / "runs")],
            capsys,
        )
        assert re.search(pattern, err), err
        assert "unpickl" not in err and "--trust-checkpoint" not in err, err
    # a truncated .pt stays "corrupt" with --trust-checkpoint too: nothing to unpickle
    with pytest.raises(CheckpointError, match="cannot be read as a PyTorch checkpoint"):
        load_model(tmp_path / "truncated.pt", arch="resnet18", trust_checkpoint=True)
    assert load_model(tmp_path / "ok.safetensors", arch="resnet18").num_classes == 3


# -- manifests that are empty or not UTF-8 -----------------------------------------------------
def test_empty_and_non_utf8_manifests_name_the_file_and_line(tmp_path):
    from analysis.loading.datasets import load_image_set, read_class_file

    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(ValueError, match=r"manifest .*empty\.csv is empty: expected a header"):
        load_image_set(tmp_path / "empty.csv")
    (tmp_path / "latin1.csv").write_bytes(
        "path,label,site\na.png,ant,Köln\nb.png,bee,Zürich\n".encode("latin-1")
    )
    with pytest.raises(
        ValueError,
        match=r"manifest .*latin1\.csv is not UTF-8 text: line 2, column 12 has the byte 0xf6",
    ):
        load_image_set(tmp_path / "latin1.csv")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "classes.txt").write_bytes(b"ant\nbee\ncat\xe9\n")
    with pytest.raises(ValueError, match=r"class file .*classes\.txt is not UTF-8 text: line 3"):
        read_class_file(tmp_path / "c" / "classes.txt")
    (tmp_path / "ragged.csv").write_text("path,label\na.png,ant\nb.png,bee,extra,more\n")
    with pytest.raises(ValueError, match=r"manifest .*ragged\.csv is not valid CSV: .*line 3"):
        load_image_set(tmp_path / "ragged.csv")
    bom = tmp_path / "bom.csv"  # Excel's "CSV UTF-8" starts with a byte-order mark: fine
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    bom.write_bytes("path,label\na.png,ant\n".encode("utf-8-sig"))
    assert load_image_set(bom).table[schema.RELPATH].tolist() == ["a.png"]


# -- paths outside the data folder -------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_paths_outside_the_data_folder_are_counted_and_listed(tiny_resnet, tmp_path):
    from analysis.present.findings import findings

    elsewhere = make_image_folder(tmp_path / "elsewhere", n_per_class=2)
    data = make_image_folder(tmp_path / "set" / "data", n_per_class=3)
    (data / "ant" / "linked.png").symlink_to(elsewhere / "ant" / "ant_00.png")
    (data / "ant" / "inside-link.png").symlink_to(data / "ant" / "ant_00.png")
    run = analyze(tiny_config(data, tiny_resnet), runs_dir=tmp_path / "runs")
    info = run.manifest["inputs"]["data"]["outside_folder"]
    assert (info["n"], info["paths"]) == (1, ["ant/linked.png"])  # the inside link is fine
    manifest = tmp_path / "set" / "eval.csv"
    rows = [("data/bee/bee_00.png", "bee"), ("data/cat/cat_00.png", "cat")]
    rows += [("../elsewhere/ant/ant_01.png", "ant"), (str(elsewhere / "bee" / "bee_01.png"), "bee")]
    rows += [("data/ant/linked.png", "ant")]
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(manifest, index=False)
    run = analyze(tiny_config(manifest, tiny_resnet), runs_dir=tmp_path / "runs")
    info = run.manifest["inputs"]["data"]["outside_folder"]
    outside = sorted(["../elsewhere/ant/ant_01.png", str(elsewhere / "bee" / "bee_01.png")])
    assert info["n"] == 3 and info["paths"] == sorted([*outside, "data/ant/linked.png"])
    assert any(
        "3 image path(s) lead outside the data folder" in w for w in run.manifest["warnings"]
    )
    (f,) = [f for f in findings(run) if f.kind == "outside_data_folder"]
    assert f.message.startswith("3 evaluation images lie outside the data folder")
    assert "../elsewhere/ant/ant_01.png" in f.message and "manifest.json" in f.message


# -- run folders follow the umask --------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o755), (0o027, 0o750)])
def test_run_folders_respect_the_umask(image_folder, tiny_resnet, tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        run = analyze(tiny_config(image_folder, tiny_resnet), runs_dir=tmp_path / "runs")
    finally:
        os.umask(old)
    assert stat.S_IMODE(run.path.stat().st_mode) == mode
    assert stat.S_IMODE((run.path / schema.THUMBS_DIR).stat().st_mode) == mode
    assert stat.S_IMODE((run.path / schema.MANIFEST).stat().st_mode) == mode & 0o666


def test_images_read_again_later_use_the_runs_limits(image_folder, tiny_resnet, tmp_path):
    """CAMs and the detail page re-read an image with the limits the pass used, so raising
    --max-file-bytes / --max-pixels for big scans holds there too."""
    from unittest import mock

    from analysis.explain import cam_views
    from analysis.loading import images
    from analysis.loading.images import run_decode_limits
    from analysis.loading.models import load_run_model
    from analysis.present.image_view import model_view

    run = analyze(
        tiny_config(image_folder, tiny_resnet, max_file_bytes=123_456, max_pixels=98_765),
        runs_dir=tmp_path / "runs",
    )
    assert run_decode_limits(run.manifest) == {"max_pixels": 98_765, "max_file_bytes": 123_456}
    assert run_decode_limits({"config": {"max_pixels": None}}) == {}
    seen = []
    real = images.decode_image

    def spy(path, **kw):
        seen.append(kw)
        return real(path, **kw)

    # the maps the analysis precomputed (and the model's view stored with them) are dropped, so
    # the CAM view decodes the image again
    shutil.rmtree(run.path / schema.CAMS_DIR, ignore_errors=True)
    with mock.patch.object(images, "decode_image", spy):
        model_view(run, 0)
        loaded, prep = load_run_model(run.manifest)
        cam_views.cam_view(run, loaded.model, prep, 0, classes=[0])
    assert len(seen) == 2
    assert all(k["max_pixels"] == 98_765 and k["max_file_bytes"] == 123_456 for k in seen)
