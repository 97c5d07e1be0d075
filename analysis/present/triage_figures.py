"""Figures of the triage: failure groups by cost, and the evidence behind each cause.

Pure builders (a triage row or table in, a Plotly figure out), shared by the Triage page and the
HTML report. Each cause's chart reads the row's ``numbers`` JSON, so it shows exactly the counts
the evidence sentence quotes.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from ..stats.intervals import wilson_interval
from .figures import ACCENT, ERR_COLOUR, OK_COLOUR, _layout

GREY = "#adb5bd"


def _numbers(row) -> dict:
    try:
        return json.loads(row.get("numbers") or "{}") or {}
    except (TypeError, json.JSONDecodeError):
        return {}


def groups_figure(table: pd.DataFrame):
    """Horizontal bars: each failure group's cost in errors, costliest on top; the bar's colour
    says whether a cause was found. ``customdata`` holds the group rank (for a click)."""
    import plotly.graph_objects as go

    if table is None or table.empty:
        return _layout(go.Figure(), height=120)
    firsts = table.drop_duplicates("group_rank").sort_values("group_rank")
    labels, cost, colour, hover, ranks = [], [], [], [], []
    for _, g in firsts.iterrows():
        mine = table[table["group_rank"] == g["group_rank"]]
        claimed = mine[mine["status"].isin(["significant", "found"])]
        causes = ", ".join(dict.fromkeys(claimed["cause_label"])) or "none of these"
        labels.append(f"{int(g['group_rank'])}. {_short(g['group'])}")
        cost.append(float(g["group_cost"]))
        colour.append(ERR_COLOUR if len(claimed) else GREY)
        hover.append(f"{g['group']}<br>{float(g['group_cost']):.0f} errors · {causes}")
        ranks.append(int(g["group_rank"]))
    fig = go.Figure(
        go.Bar(
            x=cost,
            y=labels,
            orientation="h",
            marker_color=colour,
            customdata=ranks,
            hovertext=hover,
            hoverinfo="text",
            text=[f"{c:.0f}" for c in cost],
            textposition="outside",
            cliponaxis=False,
        )
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(title="errors it costs (excess errors; a pair: its images)")
    return _layout(fig, height=max(160, 28 * len(labels) + 60))


def _short(text: str, n: int = 48) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


def _rate_bar(fig, col: int, names, k, n, colours):
    import plotly.graph_objects as go

    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    rate = np.where(n > 0, k / np.maximum(n, 1), np.nan)
    low, high = wilson_interval(k.astype(np.int64), n.astype(np.int64))
    fig.add_trace(
        go.Bar(
            x=list(names),
            y=rate,
            marker_color=colours,
            error_y=dict(
                type="data",
                array=np.asarray(high) - rate,
                arrayminus=rate - np.asarray(low),
                color=ACCENT,
            ),
            text=[
                f"{r:.0%}<br>({int(a)}/{int(b)})" if b else "—"
                for r, a, b in zip(rate, k, n, strict=True)
            ],  # fmt: skip
            textposition="outside",
            cliponaxis=False,
            showlegend=False,
            hoverinfo="skip",
        ),
        row=1,
        col=col,
    )
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=col)


def _shares_bar(fig, col: int, names, values, colours):
    import plotly.graph_objects as go

    fig.add_trace(
        go.Bar(
            x=list(names),
            y=values,
            marker_color=colours,
            text=[f"{v:.1%}" if np.isfinite(v) else "—" for v in values],
            textposition="outside",
            cliponaxis=False,
            showlegend=False,
            hoverinfo="skip",
        ),
        row=1,
        col=col,
    )
    fig.update_yaxes(tickformat=".0%", rangemode="tozero", row=1, col=col)


def cause_figure(row):
    """The evidence of one triage row as a small chart (None when it has no numbers)."""
    fig = _cause_figure(row)
    if fig is not None:
        fig.update_layout(margin=dict(l=10, r=10, t=44, b=10))
        fig.update_annotations(font_size=12)
    return fig


def _cause_figure(row):
    from plotly.subplots import make_subplots

    num = _numbers(row)
    cause = row.get("cause")
    if not num or cause in ("none", None):
        return None
    if "robustness" in num and num["robustness"].get("curve"):
        return robustness_figure(num["robustness"])
    if cause == "leakage":
        fig = make_subplots(rows=1, cols=1, subplot_titles=["accuracy"])
        _shares_bar(
            fig,
            1,
            ["with leaked", "without", "leaked only"],
            [num.get("accuracy_all"), num.get("accuracy_without"), num.get("accuracy_leaked")],
            [ACCENT, OK_COLOUR, ERR_COLOUR],
        )
        return _layout(fig, height=260)
    if cause == "under_represented":
        fig = make_subplots(rows=1, cols=1, subplot_titles=["share of the set"])
        vals = [num.get("ref_share"), num.get("target_share"), num.get("eval_share")]
        _shares_bar(
            fig,
            1,
            ["training (reference)", "target", "evaluation"],
            [np.nan if v is None else float(v) for v in vals],
            [ERR_COLOUR, GREY, ACCENT],
        )
        return _layout(fig, height=260)
    est = num.get("estimator")
    if est == "mixture":
        what = "flagged" if cause == "label_noise" else "low margin"
        fig = make_subplots(rows=1, cols=1, subplot_titles=[f"share of errors {what}"])
        _rate_bar(
            fig,
            1,
            ["this group's errors", "errors elsewhere"],
            [num.get("flagged_group", 0), num.get("flagged_baseline", 0)],
            [num.get("events_group", 0), num.get("events_baseline", 0)],
            [ERR_COLOUR, GREY],
        )
        return _layout(fig, height=260)
    if est == "within":
        fig = make_subplots(rows=1, cols=1, subplot_titles=["failure rate inside the group"])
        _rate_bar(
            fig,
            1,
            ["with the cause", "without"],
            [num.get("events_group_cause", 0), num.get("events_group_comparison", 0)],
            [num.get("n_group_cause", 0), num.get("n_group_comparison", 0)],
            [ERR_COLOUR, GREY],
        )
        return _layout(fig, height=260)
    if est == "composition":
        right = "error rate" + ("" if num.get("separable", True) else " (all images)")
        fig = make_subplots(
            rows=1,
            cols=2,
            subplot_titles=["share with the cause", right],
            horizontal_spacing=0.2,
        )
        _shares_bar(
            fig,
            1,
            ["in the group", "elsewhere"],
            [num.get("share_group_cause", math.nan), num.get("share_baseline_cause", math.nan)],
            [ERR_COLOUR, GREY],
        )
        rc, rm = num.get("rate_cause"), num.get("rate_comparison")
        _shares_bar(
            fig,
            2,
            ["with the cause", "without"],
            [math.nan if rc is None else rc, math.nan if rm is None else rm],
            [ERR_COLOUR, GREY],
        )
        return _layout(fig, height=260)
    return None


def robustness_figure(rob: dict):
    """Accuracy of the images outside the group under the matching perturbation, by severity,
    against the group's own accuracy (the level it fails at)."""
    import plotly.graph_objects as go

    curve = pd.DataFrame(rob.get("curve", []))
    fig = go.Figure()
    if curve.empty:
        return _layout(fig, height=240)
    x = ["clean", *[f"{int(s)} ({p:g})" for s, p in zip(curve["severity"], curve["parameter"],
                                                      strict=True)]]  # fmt: skip
    y = [float(curve["clean_accuracy"].iloc[0]), *curve["accuracy"].astype(float)]
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="lines+markers",
            line=dict(color=ACCENT),
            name="images outside the group",
        )
    )
    ga = rob.get("group_accuracy")
    if ga is not None and math.isfinite(ga):
        fig.add_trace(
            go.Scatter(
                x=[x[0], x[-1]],
                y=[ga, ga],
                mode="lines",
                line=dict(color=ERR_COLOUR, dash="dash"),
                name="the group, clean",
            )
        )
    fig.update_xaxes(type="category", title=f"{rob.get('perturbation')} severity (parameter)")
    fig.update_yaxes(tickformat=".0%", title="accuracy")
    fig.update_layout(legend=dict(orientation="h", y=-0.35))
    return _layout(fig, height=280)
