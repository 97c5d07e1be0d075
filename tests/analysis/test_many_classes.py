"""A 1,000-class run end to end (issue 17): every section works, the class hierarchy is
stored and sliced, and the run directory grows with the images, not with images x classes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sklearn.metrics as skm

from analysis import schema
from analysis.present import classes as cv
from analysis.present.findings import load_metrics
from analysis.stats.hierarchy import level_column


def test_every_section_runs_at_a_thousand_classes(thousand_class_run) -> None:
    run, world, paths = thousand_class_run
    assert run.n_classes == 1000 and len(run.samples) == len(world.given)
    failed = {k: v for k, v in run.sections.items() if v["status"] == "failed"}
    assert not failed, failed
    assert run.sections["class_hierarchy"]["status"] == "ok"
    m = load_metrics(run)
    y, pred = run.samples[schema.LABEL].to_numpy(), run.samples[schema.PRED].to_numpy()
    np.testing.assert_array_equal(m.confusion, skm.confusion_matrix(y, pred, labels=range(1000)))
    ref = skm.top_k_accuracy_score(y, run.probs, k=5, labels=range(1000))
    assert m.top_k[5].value == pytest.approx(ref) and m.top_k[5].low < m.top_k[5].high


def test_the_hierarchy_is_recorded_stored_and_sliced(thousand_class_run) -> None:
    run, world, paths = thousand_class_run
    rec = run.manifest["inputs"]["class_hierarchy"]
    assert rec["name"] == "hierarchy.csv" and rec["depth"] == 2 and len(rec["sha256"]) == 64
    s = run.samples
    groups = dict(world.parents)
    given = np.asarray(world.names, dtype=object)[world.given]
    assert s[level_column(2)].tolist() == [groups[c] for c in given]
    assert s[level_column(1)].tolist() == [groups[groups[c]] for c in given]
    assert level_column(1, predicted=True) in run.superclass_columns
    table = run.table(schema.HIERARCHY_METRICS)
    assert sorted(set(table["level"])) == [1, 2]
    assert len(table[table["level"] == 1]) == 5 and len(table[table["level"] == 2]) == 50
    lvl1 = table[table["level"] == 1]
    assert lvl1["support"].sum() == len(s)
    # superclass recall is never below exact-class accuracy
    assert (lvl1["recall"] >= lvl1["class_accuracy"] - 1e-12).all()
    slices = run.table(schema.SLICES)
    sup = slices[slices["description"].str.startswith(level_column(1))]
    assert len(sup) == 5, slices["description"].head(20).tolist()


def test_changing_the_hierarchy_file_makes_another_run(thousand_class_run, tmp_path) -> None:
    from analysis.loading.datasets import load_image_set
    from analysis.loading.models import default_preprocessing
    from analysis.pipeline.engine import AnalysisConfig, run_id_for

    run, world, paths = thousand_class_run
    cfg = AnalysisConfig(data=str(paths["data"]), predictions=str(paths["predictions"]))
    data = load_image_set(paths["data"], class_names=world.names)
    prep = default_preprocessing(None)
    a = run_id_for(cfg, data, None, None, "p", prep, hierarchy_sha="a" * 64)
    b = run_id_for(cfg, data, None, None, "p", prep, hierarchy_sha="b" * 64)
    none = run_id_for(cfg, data, None, None, "p", prep)
    assert len({a, b, none}) == 3
    assert run_id_for(cfg, data, None, None, "p", prep, hierarchy_sha=None) == none


def test_run_directory_grows_with_images_not_images_times_classes(thousand_class_run) -> None:
    run, world, _ = thousand_class_run
    n, k = len(run.samples), run.n_classes
    sizes = {p.name: p.stat().st_size for p in run.path.iterdir() if p.is_file()}
    assert sizes[schema.PROBS] >= 4 * n * k
    for name, size in sizes.items():
        if name == schema.PROBS:
            continue
        if name.endswith(".npy"):
            # per-image arrays of a fixed width (appearance signatures: 768 float16 per image)
            # are linear in images; none may carry a class axis (images x classes or a
            # classes x classes matrix, e.g. the noise matrix beyond 256 classes)
            shape = np.load(run.path / name, mmap_mode="r").shape
            assert k not in shape, (name, shape)
            assert shape[0] == n, (name, shape)
        else:
            # everything else: a few hundred bytes per image or per class, never per cell
            assert size < 400 * (n + k), (name, size)
    metrics = json.loads((run.path / schema.METRICS).read_text())
    assert isinstance(metrics["confusion"], dict)  # non-zero cells only


def test_class_views_of_a_thousand_classes(thousand_class_run) -> None:
    run, world, _ = thousand_class_run
    m = load_metrics(run)
    names = run.class_names
    view = cv.class_matrix(m.confusion, names, n=20)
    assert view.cm.shape == (20, 20) and "20 of 1,000 classes" in view.note
    assert m.confusion[np.ix_(view.ids, view.ids)].tolist() == view.cm.tolist()
    t, p = view.ids[0], view.ids[1]
    assert view.cell_query(t, p).true == (t,) and view.cell_query(t, p).pred == (p,)
    worst = cv.per_class_rows(m.per_class, names, sort="recall")
    rec = worst["recall"].to_numpy()
    assert np.all(np.diff(rec[np.isfinite(rec)]) >= 0)
    found = cv.per_class_rows(m.per_class, names, search="tabby")
    assert len(found) == sum("tabby" in c for c in names)
    pairs = cv.pair_table(m.confusion, names, k=50)
    assert len(pairs) == 50 and (pairs["rate_low"] <= pairs["rate"]).all()


def test_a_hierarchy_cell_opens_exactly_its_images(thousand_class_run) -> None:
    from analysis.present.query import apply_query

    run, world, _ = thousand_class_run
    h = cv.load_hierarchy(run)
    m = load_metrics(run)
    view = cv.level_matrix(m.confusion, h, 2)
    i, j = np.unravel_index(np.argmax(view.cm - np.diag(np.diag(view.cm))), view.cm.shape)
    q = view.cell_query(view.ids[i], view.ids[j])
    rows = apply_query(run.samples, q)
    assert len(rows) == view.cm[i, j] > 0
    down = cv.drill_down(m.confusion, h, 1, 0)
    assert down.level == 2 and len(down.ids) == 10  # kingdom 0 holds 10 groups
    cls = cv.drill_down(m.confusion, h, 2, int(view.ids[i]))
    assert cls.level is None and len(cls.ids) == 20
    assert pd.Series(cls.names).isin(names := run.class_names).all() and len(names) == 1000
