"""AppTest of the class pages on a 1,000-class run (issue 17): a readable sub-matrix instead of
a million markers, a class search, the top pairs, per-class tables sorted and paged, top-5
accuracy, superclass levels and drill-down, every click opening the right images."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.present import classes as cv
from analysis.present.findings import load_metrics

from .conftest import APP, assert_on_page, open_page


def _app(run):
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(APP, default_timeout=300)
    app.query_params["run"] = run.run_id
    return app


@pytest.fixture
def at(thousand_class_run, monkeypatch):
    run = thousand_class_run[0]
    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(run.path.parent))
    return _app(run)


def _open(at, page: str, state: dict | None = None, **params):
    """``page`` opened with URL ``params`` and widget ``state`` (an expander's key: opened)."""
    at.run()
    for key, value in params.items():
        at.query_params[key] = value
    for key, value in (state or {}).items():
        at.session_state[key] = value
    open_page(at, page).run()
    assert_on_page(at, page)
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return at


def _figures(at) -> list:
    """The page's Plotly figures (plotly.graph_objects.Figure, arrays decoded)."""
    import plotly.io as pio

    return [pio.from_json(el.proto.spec) for el in at.get("plotly_chart")]


def _array(v) -> np.ndarray:
    """A Plotly array, which arrives base64-typed ({"dtype", "bdata", "shape"}) or as a list."""
    if isinstance(v, dict) and "bdata" in v:
        import base64

        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        shape = [int(x) for x in str(v.get("shape", a.size)).split(",")]
        return a.reshape(shape)
    return np.asarray(v)


def _matrix(at) -> np.ndarray:
    """customdata (true, pred, count) of the confusion grid's markers."""
    for fig in _figures(at):
        trace = fig.data[0]
        if trace.type == "scatter" and trace.marker.symbol == "square":
            return _array(trace.customdata).reshape(-1, 3)
    raise AssertionError("no confusion grid on the page")


def test_overview_shows_top_5_and_a_readable_class_chart(at, thousand_class_run) -> None:
    run = thousand_class_run[0]
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [m.label for m in at.metric]
    assert "Top-5 accuracy" in labels
    bars = [f for f in _figures(at) if f.data and f.data[0].type == "bar"]
    assert bars, "no class chart"
    assert len(bars[0].data[0].x) == 30  # not one hair-thin bar per class
    assert "lowest recall (of 1,000)" in bars[0].layout.title.text
    assert max(len(x) for x in bars[0].data[0].x) <= 24  # shortened names
    assert len(bars[0].data[0].hovertext[0]) > 24  # the whole name on hover
    assert any("Images per class" in c.value for c in at.caption)
    assert len(run.class_names) == 1000


def test_confusion_page_draws_the_most_confused_submatrix(at, thousand_class_run) -> None:
    run = thousand_class_run[0]
    at = _open(at, "confusion")
    grid = _matrix(at)
    assert len(grid) == 20 * 20  # 400 markers, not a million
    m = load_metrics(run)
    ids = cv.class_matrix(m.confusion, run.class_names).ids
    for t, p, count in grid[:50]:
        assert m.confusion[int(t), int(p)] == int(count) and int(t) in ids
    at.slider(key="cm_n").set_value(10).run()
    assert len(_matrix(at)) == 100
    assert at.query_params["n"] == ["10"] or at.query_params["n"] == "10"


def test_class_search_focuses_one_class(at, thousand_class_run) -> None:
    run = thousand_class_run[0]
    m = load_metrics(run)
    target = int(np.argmax(m.confusion.sum(1) - np.diag(m.confusion)))
    at = _open(at, "confusion", view="class", cls=str(target))
    grid = _matrix(at)
    rows = {int(t) for t, _, _ in grid}
    assert int(grid[0][0]) == target and target in rows
    # the focused class's row holds its errors, largest partner first
    partners = cv.class_matrix(m.confusion, run.class_names, focus=target).ids
    assert list(partners[:1]) == [target]
    assert any(run.class_names[target][:20] in c.value for c in at.caption)
    pairs = next(d.value for d in at.dataframe if "rate 95% CI" in d.value.columns)
    name = run.class_names[target]
    assert len(pairs) and ((pairs["given"] == name) | (pairs["predicted"] == name)).all()


def test_per_class_table_sorted_worst_first_searched_and_paged(at) -> None:
    at = _open(at, "confusion")
    tables = [d.value for d in at.dataframe]
    per_class = next(t for t in tables if "recall 95% CI" in t.columns)
    assert len(per_class) == 25  # one page
    rec = per_class["recall"].to_numpy(float)
    rec = rec[np.isfinite(rec)]
    assert np.all(np.diff(rec) >= 0)  # worst first
    pairs = next(t for t in tables if "rate 95% CI" in t.columns)
    assert len(pairs) == 200 and pairs["images"].is_monotonic_decreasing
    at.text_input(key="pc_q").set_value("tabby").run()
    per_class = next(d.value for d in at.dataframe if "recall 95% CI" in d.value.columns)
    assert per_class["class"].str.contains("tabby").all() and len(per_class) == 25
    page_input = next(n for n in at.number_input if n.key.startswith("pc_page"))
    page_input.set_value(2).run()
    second = next(d.value for d in at.dataframe if "recall 95% CI" in d.value.columns)
    assert set(second["class"]).isdisjoint(per_class["class"])
    per_chart = [f for f in _figures(at) if f.data and f.data[0].orientation == "h"]
    assert len(per_chart[0].data[0].y) == 25  # the chart shows the page, not 1,000


def test_superclass_level_and_drill_down(at, thousand_class_run) -> None:
    run = thousand_class_run[0]
    at = _open(at, "confusion", level="2")
    grid = _matrix(at)
    assert len(grid) == 20 * 20  # 50 groups: the 20 most confused
    sup = next(d.value for d in at.dataframe if "superclass" in d.value.columns)
    assert len(sup) == 50 and "class accuracy 95% CI" in sup.columns
    at = _open(_app(run), "confusion", level="1", group="kingdom 0")  # a pasted link
    assert len(_matrix(at)) == 10 * 10  # its ten groups
    assert any("kingdom 0 split into its 10 superclasses" in c.value for c in at.caption)
    assert len(run.superclass_columns) == 4


def test_slices_page_lists_superclass_slices(at) -> None:
    at = _open(at, "slices", tab="All slices")
    slices = [d.value["slice"] for d in at.dataframe if "slice" in d.value.columns]
    assert any(s.str.startswith("superclass_").any() for s in slices), slices


def test_every_page_renders_without_an_error_box(at, thousand_class_run, tmp_path) -> None:
    from dashboard.views import VIEWS
    from tests.synthetic_classes import analyze_world, many_class_world

    # a second run with other classes beside it: Compare must say so, not raise
    world = many_class_world(3, 4, seed=5, group_size=3)
    other, _ = analyze_world(world, tmp_path, thousand_class_run[0].path.parent, hierarchy=False)
    at.run()
    for v in VIEWS:
        open_page(at, v.url).run()
        assert_on_page(at, v.url)
        assert not at.exception, (v.url, [e.value for e in at.exception])
        assert not at.error, (v.url, [e.value for e in at.error])
    at.query_params["b"] = other.run_id
    open_page(at, "compare").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("other classes than this run" in i.value for i in at.info), [
        i.value for i in at.info
    ]


def test_data_issues_lists_the_largest_noise_entries_and_how_far_to_trust_the_flags(
    at, thousand_class_run
) -> None:
    import pandas as pd

    from analysis import schema

    run = thousand_class_run[0]
    at = _open(at, "data_issues")
    # the expander is built once opened (a closed one costs every browser nothing)
    assert not any("P(labelled as | true)" in d.value.columns for d in at.dataframe)
    at.session_state["noise_open"] = True
    at.run()
    # no 1,000 x 1,000 picture: the noise matrix is its largest off-diagonal entries
    assert not any(f.data and f.data[0].type == "heatmap" for f in _figures(at))
    table = next(d.value for d in at.dataframe if "P(labelled as | true)" in d.value.columns)
    stored = pd.read_parquet(run.path / schema.NOISE_ENTRIES)
    assert len(table) == min(50, len(stored)) > 0
    names = run.class_names
    top = stored.head(len(table))
    assert table["true class (estimated)"].tolist() == [names[i] for i in top["true"]]
    assert table["labelled as"].tolist() == [names[i] for i in top["given"]]
    np.testing.assert_allclose(table["P(labelled as | true)"].to_numpy(float), top["rate"])
    assert table["P(labelled as | true)"].is_monotonic_decreasing
    assert any(f"{len(names) ** 2 - len(names):,} in all" in c.value for c in at.caption)
    # the words on how far to trust the flags: 2 images a class, thresholds on too few images
    said = " ".join(m.value for m in at.markdown).replace("\\", "")  # ui.safe's escapes
    assert "of 1,000 classes have too few images for a stable threshold" in said


def _click_row(at, key: str, row: int):
    """A click on row ``row`` of a ``ui.clickable_table`` (its first widget version)."""
    at.session_state[f"{key}_0"] = {"selection": {"rows": [row], "columns": [], "cells": []}}
    return at.run()


def _gallery_count(at) -> int:
    import re

    said = " ".join(m.value for m in at.markdown).replace("\\", "")
    return int(re.search(r"\*\*([\d,]+) images?\*\* match", said).group(1).replace(",", ""))


def test_a_confusion_pair_row_opens_exactly_its_images(at, thousand_class_run) -> None:
    run = thousand_class_run[0]
    m = load_metrics(run)
    at = _open(at, "confusion")
    pairs = cv.pair_table(m.confusion, run.class_names, k=200)
    _click_row(at, "pairs_tbl", 1)
    assert_on_page(at, "gallery")
    t, p = int(pairs.iloc[1]["true"]), int(pairs.iloc[1]["pred"])
    assert at.query_params["true"] in (str(t), [str(t)])
    assert at.query_params["pred"] in (str(p), [str(p)])
    assert _gallery_count(at) == m.confusion[t, p] > 0


def test_a_noise_entry_row_opens_its_suspected_label_errors(at, thousand_class_run) -> None:
    import pandas as pd

    from analysis import schema

    run = thousand_class_run[0]
    at = _open(at, "data_issues", state={"noise_open": True})
    top = pd.read_parquet(run.path / schema.NOISE_ENTRIES).iloc[0]
    _click_row(at, "noise_tbl", 0)
    assert_on_page(at, "gallery")
    given, true = int(top["given"]), int(top["true"])
    s = run.samples
    want = (s[schema.LABEL] == given) & (s[schema.PRED] == true) & s[schema.IS_LABEL_ISSUE]
    assert at.query_params["issue"] in ("label", ["label"])
    assert _gallery_count(at) == int(want.sum()) > 0
