import pandas as pd
import pytest

from analysis import schema
from analysis.loading.datasets import load_image_set, read_class_file, sample_id_for
from tests.conftest import CLASSES


def test_imagefolder(image_folder):
    s = load_image_set(image_folder)
    assert s.class_names == CLASSES and s.kind == "imagefolder" and len(s) == 18
    assert set(s.table[schema.LABEL]) == {0, 1, 2}
    row = s.table.iloc[0]
    assert row[schema.SAMPLE_ID] == sample_id_for(row[schema.RELPATH])
    assert row[schema.LABEL_NAME] == CLASSES[row[schema.LABEL]]


def test_empty_folder(tmp_path):
    (tmp_path / "a").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        load_image_set(tmp_path)
    with pytest.raises(ValueError, match="no class sub-folders"):
        load_image_set(tmp_path / "a")


def test_manifest_relative_paths_metadata_and_class_order(image_folder, tmp_path):
    rows = [{"path": f"data/{c}/{c}_00.png", "label": c, "camera": "x", "pred": 1} for c in CLASSES]
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    (tmp_path / "classes.txt").write_text("cat\nbee\nant\n")
    s = load_image_set(tmp_path / "m.csv")
    assert s.class_names == ["cat", "bee", "ant"]  # classes.txt beside the manifest wins
    assert s.metadata_columns == ["camera", "meta_pred"]  # a computed name is renamed
    assert all(p.startswith(str(tmp_path)) for p in s.table[schema.PATH])
    ant = s.table[s.table[schema.LABEL_NAME] == "ant"].iloc[0]
    assert ant[schema.LABEL] == 2


def test_manifest_errors(tmp_path, image_folder):
    pd.DataFrame({"file": ["a.png"], "label": ["ant"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['path'\]"):
        load_image_set(tmp_path / "bad.csv")
    pd.DataFrame({"path": ["a.png", "b.png"], "label": ["ant", "dog"]}).to_csv(
        tmp_path / "unk.csv", index=False
    )
    with pytest.raises(ValueError, match=r"1 label\(s\) are not in the class list: 'dog'"):
        load_image_set(tmp_path / "unk.csv", class_names=CLASSES)
    pd.DataFrame({"path": ["a.png", "a.png"], "label": ["ant", "ant"]}).to_csv(
        tmp_path / "dup.csv", index=False
    )
    with pytest.raises(ValueError, match="point at the same file more than once"):
        load_image_set(tmp_path / "dup.csv")
    pd.DataFrame({"path": ["a.png"], "label": [5]}).to_csv(tmp_path / "int.csv", index=False)
    with pytest.raises(ValueError, match=r"label indices \[5\] are outside 0..2"):
        load_image_set(tmp_path / "int.csv", class_names=CLASSES)
    pd.DataFrame(columns=["path", "label"]).to_csv(tmp_path / "empty.csv", index=False)
    with pytest.raises(ValueError, match="no images found"):
        load_image_set(tmp_path / "empty.csv")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_image_set(tmp_path / "nothing.csv")


def test_class_file(tmp_path):
    (tmp_path / "c.txt").write_text("# header\na\n\nb\n")
    assert read_class_file(tmp_path / "c.txt") == ["a", "b"]
    (tmp_path / "d.txt").write_text("a\na\n")
    with pytest.raises(ValueError, match="twice"):
        read_class_file(tmp_path / "d.txt")
