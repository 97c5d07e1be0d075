"""Every figure builder with class names that look like numbers, booleans, NaN or markup.

Plotly guesses an axis type from its values: with classes "0" ... "9" it drew numeric axes (the
detail page's top-classes chart dropped the bar of a correctly predicted image, the class chart
labelled only 0 and 5). Each builder must keep every category, with its exact name, on a
categorical axis; the browser test at the end checks the drawn tick labels themselves.
"""

from __future__ import annotations

import html
import inspect
import json
import re

import numpy as np
import pandas as pd
import pytest

from analysis.present import figures
from analysis.present.figures import plotly_text

NAMES = ["0", "7", "1e3", "nan", "True", "-1", 'say "hi"', "<b>x</b> & y", "2024-01-02"]
K = len(NAMES)


def _per_class() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    d = {"class": np.arange(K), "support": np.full(K, 10), "tp": np.arange(K) % 10}
    for m in ("precision", "recall", "f1"):
        v = rng.uniform(0.2, 0.8, K)
        d.update({m: v, f"{m}_low": v - 0.1, f"{m}_high": v + 0.1})
    return pd.DataFrame(d)


def _slices() -> pd.DataFrame:
    er = np.linspace(0.1, 0.9, K)
    return pd.DataFrame(
        {
            "description": [f"class is {n}" for n in NAMES],
            "n": np.arange(K) + 5,
            "error_rate": er,
            "error_rate_low": er - 0.05,
            "error_rate_high": er + 0.05,
            "significant": [True, False] * (K // 2) + [True] * (K % 2),
        }
    )


def _values() -> pd.DataFrame:
    er = np.linspace(0.1, 0.9, K)
    return pd.DataFrame(
        {
            "value": NAMES,
            "n": np.arange(K) + 3,
            "error_rate": er,
            "error_rate_low": er - 0.05,
            "error_rate_high": er + 0.05,
        }
    )


def _robustness() -> pd.DataFrame:
    rows = [
        {"perturbation": p, "severity": s, "accuracy": 0.9 - 0.1 * s, "low": 0.5, "high": 0.95}
        for p in ("blur", "noise")
        for s in range(1, 6)
    ]
    return pd.DataFrame(rows)


def _reliability() -> pd.DataFrame:
    lo = np.linspace(0, 0.9, 10)
    return pd.DataFrame(
        {
            "bin_low": lo,
            "bin_high": lo + 0.1,
            "count": np.full(10, 5),
            "accuracy": lo + 0.05,
            "accuracy_low": lo,
            "accuracy_high": lo + 0.1,
            "mean_confidence": lo + 0.05,
        }
    )


# builder -> (figure, [(axis name, the categories it must show, in order)])
CASES = {
    "confusion_figure": lambda: (
        figures.confusion_figure(np.arange(K * K).reshape(K, K), NAMES),
        [("xaxis", NAMES), ("yaxis", NAMES[::-1])],
    ),
    "per_class_figure": lambda: (
        figures.per_class_figure(_per_class(), NAMES),
        [("yaxis", NAMES)],
    ),
    "class_distribution_figure": lambda: (
        figures.class_distribution_figure(np.full(K, 10), np.arange(K), NAMES),
        [("xaxis", NAMES)],
    ),
    "slice_interval_figure": lambda: (
        figures.slice_interval_figure(_slices(), overall_error=0.3),
        [("yaxis", [f"class is {n} (n={i + 5})" for i, n in enumerate(NAMES)])],
    ),
    "value_error_figure": lambda: (
        figures.value_error_figure(_values(), column="camera", overall_error=0.3),
        [("xaxis", NAMES)],
    ),
    "noise_matrix_figure": lambda: (
        figures.noise_matrix_figure(np.eye(K), NAMES),
        [("xaxis", NAMES), ("yaxis", NAMES)],
    ),
    "robustness_grid_figure": lambda: (
        figures.robustness_grid_figure(_robustness()),
        [("xaxis", [f"severity {s}" for s in range(1, 6)]), ("yaxis", ["blur", "noise"])],
    ),
    "embedding_figure": lambda: (
        figures.embedding_figure(
            np.arange(2 * K, dtype=float),
            np.arange(2 * K, dtype=float),
            np.array(NAMES * 2, dtype=object),
            colour_name="given label",
            categorical=True,
            hover=[f"{n} → {n}" for n in NAMES * 2],
        ),
        [],  # no class axis; the legend is checked below
    ),
    "reliability_figure": lambda: (figures.reliability_figure(_reliability()), []),
    "robustness_curves_figure": lambda: (
        figures.robustness_curves_figure(_robustness(), clean_accuracy=0.9),
        [],
    ),
}


def test_every_figure_builder_is_covered():
    builders = {
        name
        for name, fn in inspect.getmembers(figures, inspect.isfunction)
        if name.endswith("_figure") and fn.__module__ == figures.__name__
    }
    assert builders == set(CASES), builders ^ set(CASES)


def _axis_values(fig, axis: str) -> list[str]:
    """Every value the figure's traces put on ``axis`` ("xaxis" or "yaxis"), first-seen order."""
    letter = axis[0]
    seen: dict[str, None] = {}
    for tr in fig.data:
        vals = getattr(tr, letter, None)
        if vals is not None:
            seen.update(dict.fromkeys(str(v) for v in vals))
    return list(seen)


@pytest.mark.parametrize("builder", sorted(CASES))
def test_class_axes_are_categorical_with_every_exact_name(builder):
    fig, axes = CASES[builder]()
    for axis, expected in axes:
        ax = fig.layout[axis]
        assert ax.type == "category", (builder, axis, ax.type)
        want = [plotly_text(n) for n in expected]
        # every category drawn, in order, each under its own label (no tick skipped)
        assert list(ax.categoryarray) == want, (builder, axis)
        assert list(ax.tickvals) == want and list(ax.ticktext) == want, (builder, axis)
        assert set(_axis_values(fig, axis)) == set(want), (builder, axis)
        # the values reach plotly.js as JSON strings, never as numbers or booleans
        raw = json.loads(fig.to_json())["data"]
        for tr in raw:
            for v in tr.get(axis[0], []):
                assert isinstance(v, str), (builder, axis, v)


def test_embedding_legend_has_every_category_once_and_no_template_in_names():
    fig, _ = CASES["embedding_figure"]()
    assert sorted(tr.name for tr in fig.data) == sorted(plotly_text(n) for n in NAMES)
    for tr in fig.data:  # a category is never spliced into the hover template
        assert tr.hovertemplate == "%{text}<extra>%{fullData.name}</extra>"


def test_plotly_text_escapes_markup_only():
    assert plotly_text('say "hi"') == 'say "hi"'  # Plotly does not decode &quot;
    assert plotly_text("<a href='x'>y</a>") == "&lt;a href='x'&gt;y&lt;/a&gt;"
    assert plotly_text("R&D") == "R&amp;D"
    for n in ("0", "7", "1e3", "nan", "True", "-1"):
        assert plotly_text(n) == n


def test_many_classes_leave_tick_choice_to_plotly():
    names = [str(i) for i in range(figures.MAX_LABELLED + 1)]
    # every class drawn (max_bars): past MAX_LABELLED categories Plotly chooses the ticks
    fig = figures.class_distribution_figure(
        np.ones(len(names)), np.zeros(len(names)), names, max_bars=len(names)
    )
    assert fig.layout.xaxis.type == "category" and fig.layout.xaxis.tickvals is None
    assert list(fig.layout.xaxis.categoryarray) == names


def test_top_k_html_lists_the_given_class_with_every_exact_name():
    """The detail page's top classes (plain HTML, no Plotly): with classes that look like numbers
    the given class's bar is there even when it is also the prediction (the numeric-axis bug),
    every name is escaped once, and the given class is marked."""
    from analysis.present.figures import top_k_html

    p = np.full(K, 0.01)
    p[3] = 0.8  # "nan" is both the given label and the prediction
    out = top_k_html(p / p.sum(), NAMES, label=3, k=K)
    names = re.findall(r'<span class="es-topk-name">(.*?)</span>', out)
    assert names[0] == "nan (given)"
    assert [html.unescape(n) for n in names[1:]] == [n for n in NAMES if n != "nan"]
    assert "<b>x</b>" not in out and "&lt;b&gt;x&lt;/b&gt; &amp;amp; y" not in out
    assert "&lt;b&gt;x&lt;/b&gt; &amp; y" in out
    widths = [float(w) for w in re.findall(r"width:([\d.]+)%", out)]
    assert widths == sorted(widths, reverse=True) and abs(widths[0] - 80 / 0.88) < 0.01

    # the given label outside the top k is appended, with its own (small) bar
    q = np.array([0.5, 0.3, 0.15, 0.05])
    out = top_k_html(q, ["a", "b", "c", "d"], label=3, k=2)
    names = re.findall(r'<span class="es-topk-name">(.*?)</span>', out)
    assert names == ["a", "b", "d (given)"]
    assert re.findall(r'class="es-topk-value">(.*?)<', out) == ["50.0%", "30.0%", "5.0%"]
    # a long name is cut with the full name in the tooltip
    long = "n01440764 tench, Tinca tinca"
    out = top_k_html(np.array([0.9, 0.1]), [long, "b"], label=1, k=2)
    assert f'title="{long}: 90.00%"' in out and ">n01440764 tench, Tinca …<" in out
    # the given class's mark survives the cut
    out = top_k_html(np.array([0.9, 0.1]), [long, "b"], label=0, k=2)
    assert ">n01440764 tench, Tinca … (given)<" in out


def test_fields_html_escapes_every_cell():
    """The detail page's metadata table: names and values are text (st.table read Markdown in
    its cells and made a value "[x](http://...)" a live link)."""
    from analysis.present.figures import fields_html

    out = fields_html(["site [x](http://phish.example)", "a<b"], ["<b>bold</b> & co", 3])
    assert "<b>bold</b>" not in out and "&lt;b&gt;bold&lt;/b&gt; &amp; co" in out
    assert "<th>a&lt;b</th>" in out and "<td>3</td>" in out
    assert "<th>site [x](http://phish.example)</th>" in out  # shown literally, no Markdown
    with pytest.raises(ValueError):
        fields_html(["one"], [])
