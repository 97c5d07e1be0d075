"""Drill-down contracts between the figures and the click handlers: what a click on a chart
element returns must be the row it shows (a wrong index opens the wrong images)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from analysis.present import figures
from dashboard import components as ui


def _click(trace, i: int):
    """A Streamlit plotly selection event for point i of a trace, as the browser sends it:
    customdata lists arrive as dicts keyed "0", "1", ..."""
    cd = np.asarray(trace.customdata)[i]
    cd = {str(k): v.item() for k, v in enumerate(np.atleast_1d(cd))} if cd.ndim else cd.item()
    return SimpleNamespace(selection=SimpleNamespace(points=[{"customdata": cd}]))


def test_value_bar_click_returns_the_bar_position_not_its_count():
    values = pd.DataFrame(
        {
            "value": ["day", "night", "overcast"],
            "n": [700, 117, 383],  # counts larger than the number of bars, as on real data
            "error_rate": [0.15, 0.55, 0.16],
            "error_rate_low": [0.12, 0.46, 0.13],
            "error_rate_high": [0.18, 0.64, 0.2],
        }
    )
    fig = figures.value_error_figure(values, column="lighting", overall_error=0.19)
    for i in range(len(values)):
        assert ui.clicked_points(_click(fig.data[0], i)) == [i]


def test_confusion_cell_click_returns_true_and_predicted_class():
    cm = np.array([[5, 1, 0], [2, 7, 3], [0, 4, 9]])
    fig = figures.confusion_figure(cm, ["a", "b", "c"])
    trace = fig.data[0]
    for i in range(cm.size):
        t, p = ui.clicked_cell(_click(trace, i), 3)
        cd = np.asarray(trace.customdata)[i]
        assert (t, p) == (int(cd[0]), int(cd[1]))
        assert cm[t, p] == int(cd[2])


def test_embedding_click_returns_sample_rows():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=20), rng.normal(size=20)
    colour = np.array(["correct", "wrong"] * 10)
    fig = figures.embedding_figure(x, y, colour, colour_name="correct", categorical=True)
    rows = set()
    for trace in fig.data:
        for i in range(len(trace.x)):
            (row,) = ui.clicked_points(_click(trace, i))
            assert trace.x[i] == x[row] and trace.y[i] == y[row]
            rows.add(row)
    assert rows == set(range(20))


def test_selected_regions_read_box_and_lasso_as_the_browser_sends_them():
    """A Streamlit selection state (attribute access and dict access both work on it)."""

    class Sel(dict):
        __getattr__ = dict.get

    ev = SimpleNamespace(
        selection=Sel(
            points=[],
            box=[{"x": [0.1, 0.9], "y": [-1, 2], "xref": "x", "yref": "y"}],
            lasso=[{"x": {"0": 0, "1": 1, "2": 0}, "y": [0, 0, 1]}],
        )
    )
    assert ui.selected_regions(ev) == [
        {"kind": "box", "x": [0.1, 0.9], "y": [-1, 2]},
        {"kind": "lasso", "x": [0, 1, 0], "y": [0, 0, 1]},
    ]
    assert ui.selected_regions(SimpleNamespace(selection=Sel(points=[]))) == []
    assert ui.selected_regions(object()) == []
