"""Tests for analysis.stats.hierarchy: reading a class hierarchy, levels, per-superclass metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sklearn.metrics as skm

from analysis.stats import hierarchy as H

CLASSES = ["maple", "oak", "rose", "tulip", "bus", "car"]
# depth 2 for the plants, depth 1 for the vehicles (a ragged hierarchy)
PAIRS = [
    ("maple", "trees"),
    ("oak", "trees"),
    ("rose", "flowers"),
    ("tulip", "flowers"),
    ("trees", "flora"),
    ("flowers", "flora"),
    ("bus", "vehicles"),
    ("car", "vehicles"),
]


def _h() -> H.ClassHierarchy:
    return H.parse_hierarchy(PAIRS, CLASSES)


def test_levels_count_from_the_top_and_ragged_classes_keep_their_deepest_group() -> None:
    h = _h()
    assert h.depth == 2
    assert h.group_names(1) == ("flora", "vehicles")
    assert [h.group_names(1)[g] for g in h.groups(1)] == ["flora"] * 4 + ["vehicles"] * 2
    names2 = h.group_names(2)
    assert [names2[g] for g in h.groups(2)] == ["trees", "trees", "flowers", "flowers"] + [
        "vehicles"
    ] * 2
    flora = names2  # drill-down: flora's children at level 2 are trees and flowers
    kids = [flora[g] for g in h.children(1, h.group_names(1).index("flora"))]
    assert sorted(kids) == ["flowers", "trees"]
    trees = h.group_names(2).index("trees")
    assert h.children(2, trees).tolist() == [0, 1]  # the finest level drills into classes


def test_aggregate_sums_confusion_counts_into_groups() -> None:
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 9, size=(6, 6))
    h = _h()
    agg = h.aggregate(cm, 1)
    g = h.groups(1)
    ref = np.zeros((2, 2), int)
    for i in range(6):
        for j in range(6):
            ref[g[i], g[j]] += cm[i, j]
    assert agg.tolist() == ref.tolist() and agg.sum() == cm.sum()


def test_columns_name_the_given_and_predicted_superclass() -> None:
    cols = _h().columns(np.array([0, 4]), np.array([2, 0]))
    assert cols[H.level_column(1)].tolist() == ["flora", "vehicles"]
    assert cols[H.level_column(1, predicted=True)].tolist() == ["flora", "flora"]
    assert cols[H.level_column(2)].tolist() == ["trees", "vehicles"]
    assert cols["pred_superclass_2"].tolist() == ["flowers", "trees"]


def test_files_csv_tsv_json_with_header_comments_and_bom(tmp_path) -> None:
    csv = tmp_path / "h.csv"
    csv.write_text(
        "\ufeffclass,parent\n# plants\n" + "\n".join(f"{a},{b}" for a, b in PAIRS) + "\n\n",
        encoding="utf-8",
    )
    tsv = tmp_path / "h.tsv"
    tsv.write_text("\n".join(f"{a}\t{b}" for a, b in PAIRS))
    js = tmp_path / "h.json"
    js.write_text(json.dumps(dict(PAIRS)))
    for p in (csv, tsv, js):
        assert H.load_hierarchy(p, CLASSES) == _h(), p.name


def test_classes_missing_from_the_file_stand_alone_with_a_warning() -> None:
    h = H.parse_hierarchy(PAIRS[:2] + [("x", "y")], CLASSES)
    assert h.depth == 1 and "x" not in h.parent  # a node leading to no class is dropped
    assert set(h.group_names(1)) == {"trees", "rose", "tulip", "bus", "car"}
    assert "4 of 6 classes have no parent" in h.warnings[0]


@pytest.mark.parametrize(
    ("pairs", "match"),
    [
        ([("maple", "trees"), ("maple", "flora")], "'maple' has two parents, 'trees' and 'flora'"),
        ([("maple", "a"), ("a", "b"), ("b", "a")], "cycle a -> b -> a"),
        ([("maple", "maple")], "'maple' is its own parent"),
        ([("maple", "oak")], "class 'oak' is also the parent of \\['maple'\\]"),
        ([("pine", "trees")], "mentions none of the run's 6 classes"),
    ],
)
def test_bad_hierarchies_name_the_offending_entries(pairs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        H.parse_hierarchy(pairs, CLASSES)


def test_bad_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        H.load_hierarchy(tmp_path / "nope.csv", CLASSES)
    bad = tmp_path / "bad.csv"
    bad.write_text("maple,trees,extra\n")
    with pytest.raises(ValueError, match=r"line 1: expected two columns"):
        H.load_hierarchy(bad, CLASSES)
    js = tmp_path / "bad.json"
    js.write_text('["maple", "trees"]')
    with pytest.raises(ValueError, match="expected a JSON object mapping each class"):
        H.load_hierarchy(js, CLASSES)
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00maple")
    with pytest.raises(ValueError, match="not UTF-8"):
        H.load_hierarchy(binary, CLASSES)


def test_roundtrip_through_dict() -> None:
    h = _h()
    assert H.ClassHierarchy.from_dict(json.loads(json.dumps(h.to_dict()))) == h
    with pytest.raises(ValueError, match="expected a class_hierarchy dict"):
        H.ClassHierarchy.from_dict({"kind": "x"})
    with pytest.raises(ValueError, match=r"level must be in 1..2"):
        h.groups(3)


def test_hierarchy_metrics_match_sklearn_on_mapped_labels() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 500)
    pred = np.where(rng.random(500) < 0.6, y, rng.integers(0, 6, 500))
    h = _h()
    table = H.hierarchy_metrics(y, pred, h, n_boot=200)
    assert sorted(set(table[H.LEVEL])) == [1, 2]
    for level in (1, 2):
        g = h.groups(level)
        rows = table[table[H.LEVEL] == level].reset_index(drop=True)
        assert rows[H.NAME].tolist() == list(h.group_names(level))
        ref_r = skm.recall_score(g[y], g[pred], average=None, labels=range(len(rows)))
        ref_p = skm.precision_score(g[y], g[pred], average=None, labels=range(len(rows)))
        np.testing.assert_allclose(rows["recall"], ref_r)
        np.testing.assert_allclose(rows["precision"], ref_p)
        assert (rows["recall_low"] <= rows["recall"]).all()
        for gi in range(len(rows)):
            m = g[y] == gi
            assert rows[H.CLASS_ACCURACY][gi] == pytest.approx((y[m] == pred[m]).mean())
            # the superclass is right at least as often as the exact class
            assert rows["recall"][gi] >= rows[H.CLASS_ACCURACY][gi]
    assert table[table[H.LEVEL] == 1][H.N_CLASSES].tolist() == [4, 2]


def test_cli_takes_a_hierarchy_and_refuses_a_bad_one_before_the_pass(tmp_path, capsys) -> None:
    from analysis import schema
    from analysis.cli import main
    from analysis.store.runstore import list_runs, open_run
    from tests.synthetic_classes import many_class_world, write_predictions_inputs

    world = many_class_world(12, 3, seed=3, group_size=4, kingdoms=2)
    paths = write_predictions_inputs(tmp_path / "in", world)
    base = [
        "analyze",
        "--data",
        str(paths["data"]),
        "--predictions",
        str(paths["predictions"]),
        "--classes",
        str(paths["classes"]),
        "--resize",
        "16",
        "--no-crop",
        "--workers",
        "0",
        "--no-umap",
        "--out",
        str(tmp_path / "runs"),
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text(f'"{world.names[0]}",a\na,b\nb,a\n')  # names with commas are quoted
    assert main([*base, "--class-hierarchy", str(bad)]) == 2
    assert "cycle a -> b -> a" in capsys.readouterr().err
    assert not list_runs(tmp_path / "runs")  # refused before anything was written
    assert main([*base, "--class-hierarchy", str(paths["hierarchy"])]) == 0
    (info,) = list_runs(tmp_path / "runs")
    run = open_run(info["path"])
    assert run.manifest["inputs"]["class_hierarchy"]["name"] == "hierarchy.csv"
    assert run.sections["class_hierarchy"]["status"] == "ok"
    assert run.table(schema.HIERARCHY_METRICS)["level"].max() == 2
    assert {"superclass_1", "pred_superclass_2"} <= set(run.samples.columns)
