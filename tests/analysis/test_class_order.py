"""Class order (issue 11 §1): labels that are class names are mapped by name, never by position;
a label column that reads two ways (digit class names, digit labels) stops with both readings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import schema
from analysis.loading.datasets import load_image_set

DIGITS = [str(d) for d in range(10)]


@pytest.fixture
def digit_manifest(tmp_path):
    """Ten images labelled 0..9 (one each, label 7 twice), with classes.txt listed "9" ... "0"."""
    rows = []
    for i, label in enumerate([*range(10), 7]):
        Image.fromarray(np.full((8, 8, 3), 20 * label, np.uint8)).save(tmp_path / f"{i}.png")
        rows.append((f"{i}.png", label))
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(tmp_path / "eval.csv", index=False)
    (tmp_path / "classes.txt").write_text("\n".join(reversed(DIGITS)) + "\n")
    return tmp_path / "eval.csv"


def test_a_label_column_that_reads_two_ways_stops_with_both_readings(digit_manifest):
    with pytest.raises(ValueError) as err:
        load_image_set(digit_manifest)
    msg = str(err.value)
    assert "the labels are numbers and so are the class names, and the two readings differ" in msg
    assert "for 11 of 11 rows" in msg
    assert "label 0: as a name, class '0' (output 9); as a position, output 0, class '9'" in msg
    assert "--labels-are names" in msg and "--labels-are indices" in msg
    assert "classes in output order: ['9', '8', '7'" in msg


def test_labels_are_names_or_indices_decides(digit_manifest):
    by_name = load_image_set(digit_manifest, labels_are="names").table.sort_values(schema.RELPATH)
    # every label keeps its name: label 3 is class "3", which is output 6 of the reversed list
    assert (by_name[schema.LABEL_NAME] == by_name[schema.RELPATH].map(_given)).all()
    assert (by_name[schema.LABEL] == 9 - by_name[schema.LABEL_NAME].astype(int)).all()
    by_pos = load_image_set(digit_manifest, labels_are="indices").table
    assert (by_pos[schema.LABEL] == by_pos[schema.RELPATH].map(_given).astype(int)).all()
    assert (by_pos[schema.LABEL_NAME].astype(int) == 9 - by_pos[schema.LABEL]).all()
    with pytest.raises(ValueError, match="labels_are must be one of"):
        load_image_set(digit_manifest, labels_are="positions")


def _given(relpath: str) -> str:
    i = int(relpath.split(".")[0])
    return str([*range(10), 7][i])


def test_readings_that_agree_or_only_one_possible_need_no_choice(digit_manifest, tmp_path):
    (tmp_path / "classes.txt").write_text("\n".join(DIGITS) + "\n")  # in order: both agree
    t = load_image_set(digit_manifest).table
    assert (t[schema.LABEL_NAME].astype(int) == t[schema.LABEL]).all()
    (tmp_path / "classes.txt").write_text("\n".join(str(d) for d in range(1, 12)) + "\n")
    t = load_image_set(digit_manifest).table  # label 0 is no class name: positions
    assert (t[schema.LABEL_NAME].astype(int) == t[schema.LABEL] + 1).all()
    (tmp_path / "classes.txt").write_text("\n".join(["a", "b", "c", *"defghij"]) + "\n")
    t = load_image_set(digit_manifest).table  # names that are not numbers: positions
    assert t.set_index(schema.RELPATH).loc["3.png", schema.LABEL_NAME] == "d"


def test_text_labels_are_mapped_by_name_whatever_the_class_order(tmp_path):
    for i, name in enumerate(["cat", "ant", "bee"]):
        Image.fromarray(np.full((8, 8, 3), 50 * i, np.uint8)).save(tmp_path / f"{name}.png")
    pd.DataFrame(
        {"path": ["cat.png", "ant.png", "bee.png"], "label": ["cat", "ant", "bee"]}
    ).to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "classes.txt").write_text("cat\nbee\nant\n")
    t = load_image_set(tmp_path / "m.csv").table.set_index(schema.RELPATH)
    assert dict(t[schema.LABEL]) == {"ant.png": 2, "bee.png": 1, "cat.png": 0}
    assert (t.index.str.replace(".png", "") == t[schema.LABEL_NAME]).all()


def test_cli_passes_labels_are_to_the_evaluation_and_reference_sets(digit_manifest, capsys):
    from analysis.cli import main
    from tests.conftest import save_tiny_resnet

    model = save_tiny_resnet(digit_manifest.parent / "m.pt", num_classes=10)
    args = ["analyze", "--data", str(digit_manifest), "--reference", str(digit_manifest)]
    args += ["--model", str(model), "--arch", "resnet18", "--resize", "16", "--no-crop"]
    args += ["--workers", "0", "--no-umap", "--out", str(digit_manifest.parent / "runs")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "the two readings differ" in err and "--labels-are" in err
    assert main([*args, "--labels-are", "names"]) == 0
    from analysis.store.runstore import list_runs, open_run

    (info,) = list_runs(digit_manifest.parent / "runs")
    run = open_run(info["path"])
    s = run.samples.set_index(schema.RELPATH)
    assert s.loc["3.png", schema.LABEL_NAME] == "3" and s.loc["3.png", schema.LABEL] == 6
    assert run.manifest["config"]["labels_are"] == "names"
    assert any("labels read as class names" in w for w in run.manifest["warnings"])
    ref = run.reference.set_index(schema.RELPATH)
    assert ref.loc["3.png", schema.LABEL] == 6
