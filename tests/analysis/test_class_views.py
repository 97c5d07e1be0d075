"""Tests for analysis.present.classes: which part of a confusion matrix to draw, which per-class
rows to show, what a click opens; and the shortened class names the charts use."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.present import classes as cv
from analysis.present.formatting import short_name, short_names
from analysis.present.query import apply_query
from analysis.stats.hierarchy import level_column, parse_hierarchy
from analysis.stats.metrics import per_class_metrics

CLASSES = ["maple", "oak", "rose", "tulip", "bus", "car"]
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


def _cm(k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    cm = rng.poisson(0.3, size=(k, k))
    cm[np.diag_indices(k)] = rng.integers(5, 30, size=k)
    return cm


def test_small_matrices_are_drawn_whole_large_ones_as_a_submatrix() -> None:
    small = cv.class_matrix(_cm(6), CLASSES)
    assert small.cm.shape == (6, 6) and small.note == "" and small.ids.tolist() == list(range(6))
    names = [f"c{i}" for i in range(100)]
    big = cv.class_matrix(_cm(100), names, n=12)
    assert big.cm.shape == (12, 12) and "12 of 100 classes" in big.note
    assert big.names == [names[i] for i in big.ids]
    assert cv.class_matrix(_cm(100), names, n=999).cm.shape == (cv.SUBMATRIX_MAX,) * 2


def test_focus_puts_the_class_first_with_its_partners() -> None:
    cm = _cm(50)
    cm[7, 30] = cm[30, 7] = 40
    view = cv.class_matrix(cm, [f"c{i}" for i in range(50)], n=5, focus=7)
    assert view.ids[0] == 7 and view.ids[1] == 30 and view.focus == 0
    assert "c7 and the 4 classes it is most confused with" in view.note


def test_cell_queries_open_the_cell(tmp_path) -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 6, 400)
    pred = np.where(rng.random(400) < 0.6, y, rng.integers(0, 6, 400))
    cm = np.zeros((6, 6), int)
    np.add.at(cm, (y, pred), 1)
    h = parse_hierarchy(PAIRS, CLASSES)
    samples = pd.DataFrame({"label": y, "pred": pred, "correct": y == pred, **h.columns(y, pred)})
    view = cv.class_matrix(cm, CLASSES)
    assert len(apply_query(samples, view.cell_query(2, 3))) == cm[2, 3]
    for level in (1, 2):
        lv = cv.level_matrix(cm, h, level)
        agg = h.aggregate(cm, level)
        for i in range(len(lv.ids)):
            for j in range(len(lv.ids)):
                q = lv.cell_query(lv.ids[i], lv.ids[j])
                assert dict(q.where)[level_column(level)] == lv.names[i]
                assert len(apply_query(samples, q)) == agg[lv.ids[i], lv.ids[j]] == lv.cm[i, j]


def test_drill_down_skips_single_child_levels_down_to_classes() -> None:
    h = parse_hierarchy(PAIRS, CLASSES)
    cm = _cm(6)
    flora = h.group_names(1).index("flora")
    down = cv.drill_down(cm, h, 1, flora)
    assert down.level == 2 and sorted(down.names) == ["flowers", "trees"]
    vehicles = h.group_names(1).index("vehicles")
    leaf = cv.drill_down(cm, h, 1, vehicles)  # vehicles has one child (itself): go to classes
    assert leaf.level is None and leaf.names == ["bus", "car"]
    assert leaf.cm.tolist() == cm[np.ix_([4, 5], [4, 5])].tolist()
    made = int(cm[[4, 5]].sum())
    assert f"of its {made:,} images are predicted outside vehicles" in leaf.note
    assert cv.hierarchy_levels(h) == [1, 2]


def test_per_class_rows_sort_worst_first_search_and_put_undefined_last() -> None:
    y = np.array([0] * 10 + [1] * 10 + [2] * 10)
    pred = np.array([0] * 9 + [1] + [1] * 5 + [0] * 5 + [0] * 10)  # class 2 never predicted
    pc = per_class_metrics(y, pred, n_classes=4, n_boot=20)  # class 3 never present
    names = ["ant", "bee", "cat", "antelope"]
    rows = cv.per_class_rows(pc, names, sort="recall")
    assert rows["class"].tolist() == [2, 1, 0, 3]  # 0%, 50%, 90%, undefined
    assert cv.per_class_rows(pc, names, sort="recall", worst_first=False)["class"].tolist() == [
        0,
        1,
        2,
        3,
    ]
    assert cv.per_class_rows(pc, names, search="ANT")["class"].tolist() == [0, 3]
    precision = cv.per_class_rows(pc, names, sort="precision")["class"].tolist()
    assert precision[-2:] == [2, 3]  # never predicted / never present: no precision, last
    with pytest.raises(ValueError, match="unknown sort 'x'"):
        cv.per_class_rows(pc, names, sort="x")


def test_largest_noise_entries() -> None:
    noise = np.array([[0.9, 0.05, 0.3], [0.02, 0.9, 0.0], [0.08, 0.05, 0.7]])
    top = cv.largest_noise_entries(noise, k=3)
    assert top[["given", "true"]].values.tolist() == [[0, 2], [2, 0], [0, 1]]
    assert top["rate"].tolist() == [0.3, 0.08, 0.05]
    assert len(cv.largest_noise_entries(noise, k=50)) == 5  # the zero entry is left out


def test_short_names_stay_unique() -> None:
    assert short_name("n01440764 tench, Tinca tinca", 20) == "n01440764 tench, Ti…"
    assert short_name("cat") == "cat"
    names = ["a very long class name one", "a very long class name two", "short"]
    out = short_names(names, width=12)
    assert len(set(out)) == 3 and out[2] == "short" and all(len(s) <= 12 for s in out)


@pytest.mark.parametrize("focus", [None, 7])
def test_views_from_the_cached_pairs_equal_those_from_the_matrix(focus) -> None:
    """The dashboard hands every view the run's pairs (made once) so that no change of view
    scans the whole matrix; the views are the same as from the matrix alone."""
    from analysis.stats.confusion import confusion_pairs

    cm = _cm(120, seed=3)
    names = [f"class {i}" for i in range(120)]
    pairs = confusion_pairs(cm)
    for n in (5, 17, 40):
        a = cv.class_matrix(cm, names, n=n, focus=focus)
        b = cv.class_matrix(cm, names, n=n, focus=focus, pairs=pairs)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.cm, b.cm)
        assert (a.names, a.note, a.focus) == (b.names, b.note, b.focus)
    for classes in (None, np.array([3, 50, 77])):
        for k in (1, 10, 500):
            a = cv.pair_table(cm, names, classes=classes, k=k)
            b = cv.pair_table(cm, names, classes=classes, k=k, pairs=pairs)
            pd.testing.assert_frame_equal(a.reset_index(drop=True), b)
