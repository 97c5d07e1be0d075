"""Pure figure builders: results in, Plotly figures out (and two small plain-HTML ones,
:func:`top_k_html` and :func:`fields_html`, for the page a review opens cold). The dashboard and
the HTML report both render these, so no number is drawn two different ways. Plotly is imported
inside each builder.

Charts that drill down keep the ids of what they show in ``customdata`` (class indices for the
confusion grid, row positions for scatters), so a click can open exactly those images.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

OK_COLOUR = "#2a9d8f"
ERR_COLOUR = "#e76f51"
ACCENT = "#264653"
FONT = dict(family="Inter, Helvetica, Arial, sans-serif", size=13)
#: Up to this many categories, a class axis labels every one (Plotly's automatic ticks skip
#: every other label on a crowded axis); beyond, Plotly chooses.
MAX_LABELLED = 60


def plotly_text(value) -> str:
    """Data text (a class name, a metadata value) as Plotly must be given it to show it literally.

    Plotly reads a subset of HTML in every label, tick and legend entry (``<b>``, ``<a href>``,
    ``<br>``) and decodes ``&lt;``, ``&gt;``, ``&amp;`` (not ``&quot;``): so ``&``, ``<`` and
    ``>`` are written as entities and nothing else changes (a class named ``a"b`` stays ``a"b``).
    """
    return html.escape(str(value), quote=False)


def _texts(values) -> list[str]:
    return [plotly_text(v) for v in values]


def categorical(axis: dict | None = None, *, categories=None) -> dict:
    """Axis settings for categories: never numbers or dates, whatever the names look like.

    Plotly guesses an axis type from its values: class names "0" ... "9" became a numeric axis
    (ticks 0/2/4..., a bar named "3 (given)" dropped), "1e3" a thousand, "2024-01-02" a date.
    ``categories`` (already :func:`plotly_text`-ed) fixes their order and, for up to
    :data:`MAX_LABELLED` of them, labels every one.
    """
    out = dict(axis or {}, type="category")
    if categories is not None:
        cats = list(categories)
        out.update(categoryorder="array", categoryarray=cats)
        if len(cats) <= MAX_LABELLED:
            out.update(tickmode="array", tickvals=cats, ticktext=cats)
    return out


MAX_CLASS_BARS = 30  # one bar per class up to this many classes; beyond, the worst ones
# confusion grid colours on [-1, 1]: the diagonal teal, errors orange, opacity by value
_CONFUSION_SCALE = [
    [0.0, "rgba(42,157,143,1)"],
    [0.5, "rgba(42,157,143,0)"],
    [0.5, "rgba(231,111,81,0)"],
    [1.0, "rgba(231,111,81,1)"],
]


def _layout(fig, *, height: int | None = None, title: str | None = None):
    fig.update_layout(
        margin=dict(l=10, r=10, t=40 if title else 10, b=10),
        font=FONT,
        title=dict(text=title, x=0.01) if title else None,
        plot_bgcolor="white",
        paper_bgcolor="white",
        height=height,
    )
    return fig


def confusion_figure(
    cm: np.ndarray,
    class_names: list[str],
    *,
    normalize: str | None = None,
    class_ids: np.ndarray | None = None,
    focus: int | None = None,
):
    """Confusion matrix as a grid of square markers (clickable in Streamlit, unlike a heatmap).

    Parameters
    ----------
    cm : int [k, k]
        Counts, rows = true class, columns = predicted class (the whole matrix, or a
        sub-matrix of a larger one: then rows and columns are the classes ``class_ids``).
    class_names : list of str, length k
        Names of the k rows / columns shown (shortened on the axes, whole on hover).
    normalize : {None, "true", "pred"}
        Colour and text by counts, row shares (recall view) or column shares (precision view).
        Shares of a sub-matrix are of the row's (column's) total inside the sub-matrix.
    class_ids : int [k], optional
        The class (or superclass) id of each row / column: what a click opens. Default 0..k-1.
    focus : int, optional
        Position of a row / column to outline (a searched class).

    Each point's ``customdata`` is ``[true id, pred id, count]``.
    """
    import plotly.graph_objects as go

    from .formatting import short_names

    cm = np.asarray(cm, dtype=float)
    k = cm.shape[0]
    ids = np.arange(k) if class_ids is None else np.asarray(class_ids, dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        if normalize == "true":
            shown = cm / cm.sum(axis=1, keepdims=True)
        elif normalize == "pred":
            shown = cm / cm.sum(axis=0, keepdims=True)
        else:
            shown = cm
    t, p = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    t, p = t.ravel(), p.ravel()
    vals = shown[t, p]
    counts = cm[t, p].astype(int)
    # one cell's side in pixels: text only where it fits, markers fill the cell
    height = int(max(320, min(1000, 26 * k + 200)))
    cell = (height - 170) / max(k, 1)
    size = max(6, min(64, int(cell * 0.92)))
    show_text = cell >= 20
    off = t != p
    # past a handful of classes most off-diagonal cells are empty: leave them blank so the
    # errors stand out (their hover still says 0 images)
    blank = off & (counts == 0) & (k > 8)
    text = np.array(
        [
            "" if b else (("" if np.isnan(v) else f"{v:.0%}") if normalize else f"{c}")
            for v, c, b in zip(vals, counts, blank, strict=True)
        ],
        dtype=object,
    )
    # diagonal in teal, errors in orange, opacity by value: one number per cell on a two-tone
    # scale (diagonal in [-1, -0.15], errors in [0.08, 1]); per-cell colour strings made Plotly
    # validate each of them and cost ~10x the whole figure
    finite = np.nan_to_num(vals)
    scale_max = finite[off].max() if off.any() and finite[off].max() > 0 else 1.0
    diag_max = finite[~off].max() if (~off).any() and finite[~off].max() > 0 else 1.0
    colour = np.where(
        off,
        0.08 + 0.92 * np.minimum(1.0, finite / scale_max),
        -(0.15 + 0.85 * finite / diag_max),
    )
    raw = [str(n) for n in class_names]
    full = np.asarray(_texts(raw), dtype=object)
    short = np.asarray(_texts(short_names(raw)), dtype=object)
    hover = np.char.add(
        np.char.add("given <b>", full[t].astype(str)),
        np.char.add("</b> → predicted <b>", np.char.add(full[p].astype(str), "</b>")),
    ).astype(object)
    fig = go.Figure(
        go.Scatter(
            x=short[p],
            y=short[t],
            mode="markers+text" if show_text else "markers",
            marker=dict(
                symbol="square",
                size=size,
                color=colour,
                cmin=-1.0,
                cmax=1.0,
                colorscale=_CONFUSION_SCALE,
                line=dict(width=1, color="white"),
            ),
            text=text if show_text else None,
            textfont=dict(size=max(9, min(14, size // 3)), color="#1d3557"),
            customdata=np.stack([ids[t], ids[p], counts], axis=1),
            hovertext=hover,
            hovertemplate="%{hovertext}<br>%{customdata[2]} images<extra>click to open</extra>",
        )
    )
    fig.update_xaxes(
        categorical(
            dict(
                title="predicted",
                side="top",
                showgrid=False,
                zeroline=False,
                tickangle=-45 if k > 8 or max(map(len, short), default=0) > 12 else 0,
            ),
            categories=list(short),
        )
    )
    fig.update_yaxes(
        categorical(
            dict(title="given label", showgrid=False, zeroline=False), categories=list(short[::-1])
        )
    )
    if focus is not None and 0 <= focus < k:
        line = dict(color=ACCENT, width=2)
        row = k - 1 - focus  # the y axis runs top to bottom
        fig.add_shape(type="rect", x0=-0.5, x1=k - 0.5, y0=row - 0.5, y1=row + 0.5, line=line)
        fig.add_shape(type="rect", x0=focus - 0.5, x1=focus + 0.5, y0=-0.5, y1=k - 0.5, line=line)
    return _layout(fig, height=height)


def per_class_figure(per_class: pd.DataFrame, class_names: list[str]):
    """Precision, recall and F1 per class with 95% intervals as error bars, one group of bars
    per row of ``per_class`` in its order (pass a page of rows, not a thousand classes); names
    are shortened on the axis and whole on hover."""
    import plotly.graph_objects as go

    from .formatting import short_names

    raw = [str(class_names[int(c)]) for c in per_class["class"]]
    full = np.asarray(_texts(raw), dtype=object)
    # arrays: Plotly validates lists item by item
    names = np.asarray(_texts(short_names(raw)), dtype=object)
    fig = go.Figure()
    for metric, colour in (("precision", "#457b9d"), ("recall", ERR_COLOUR), ("f1", ACCENT)):
        v = per_class[metric].to_numpy(float)
        lo = per_class[f"{metric}_low"].to_numpy(float)
        hi = per_class[f"{metric}_high"].to_numpy(float)
        fig.add_bar(
            y=names,
            x=v,
            name=metric,
            orientation="h",
            marker_color=colour,
            error_x=dict(
                type="data",
                symmetric=False,
                array=hi - v,
                arrayminus=v - lo,
                thickness=1.2,
                width=3,
            ),
            hovertext=full,
            customdata=np.stack([lo, hi], axis=1),
            hovertemplate=f"{metric} %{{x:.1%}} (95% CI %{{customdata[0]:.1%}}–"
            "%{customdata[1]:.1%})<extra>%{hovertext}</extra>",
        )
    fig.update_layout(barmode="group", legend=dict(orientation="h", y=-0.1))
    fig.update_xaxes(range=[0, 1.02], tickformat=".0%", gridcolor="#eee")
    fig.update_yaxes(categorical(dict(autorange="reversed"), categories=list(names)))
    return _layout(fig, height=max(260, 60 * len(names) + 60))


def reliability_figure(bins: pd.DataFrame):
    """Reliability diagram: accuracy per confidence bin (with Wilson intervals) vs the diagonal."""
    import plotly.graph_objects as go

    b = bins[bins["count"] > 0]
    mid = (b["bin_low"] + b["bin_high"]) / 2
    acc = b["accuracy"].to_numpy(float)
    fig = go.Figure()
    fig.add_bar(
        x=mid,
        y=acc,
        width=(b["bin_high"] - b["bin_low"]) * 0.9,
        marker_color="#457b9d",
        name="accuracy",
        error_y=dict(
            type="data",
            symmetric=False,
            array=b["accuracy_high"] - acc,
            arrayminus=acc - b["accuracy_low"],
            thickness=1.2,
        ),
        customdata=np.stack([b["count"], b["mean_confidence"]], axis=1),
        hovertemplate="accuracy %{y:.1%}<br>mean confidence %{customdata[1]:.1%}"
        "<br>%{customdata[0]} images<extra></extra>",
    )
    fig.add_scatter(
        x=[0, 1],
        y=[0, 1],
        mode="lines",
        line=dict(dash="dash", color="#999"),
        name="perfect calibration",
        hoverinfo="skip",
    )
    fig.update_xaxes(title="confidence", range=[0, 1], tickformat=".0%", gridcolor="#eee")
    fig.update_yaxes(title="accuracy", range=[0, 1.05], tickformat=".0%", gridcolor="#eee")
    fig.update_layout(legend=dict(orientation="h", y=-0.25))
    return _layout(fig, height=340)


def class_distribution_figure(
    support: np.ndarray,
    errors: np.ndarray,
    class_names: list[str],
    *,
    max_bars: int = MAX_CLASS_BARS,
):
    """Images per class, split into correct and wrong.

    Up to ``max_bars`` classes every class is drawn in class order; beyond that (bars would be
    hair-thin and most names hidden) only the ``max_bars`` classes with the lowest recall,
    worst first, and the title says so. Names are shortened on the axis, whole on hover.
    """
    import plotly.graph_objects as go

    from .formatting import short_names

    support = np.asarray(support, int)
    errors = np.asarray(errors, int)
    k = support.size
    idx = np.arange(k)
    title = None
    if k > max_bars:
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(support > 0, 1 - errors / np.maximum(support, 1), np.inf)
        idx = np.lexsort((np.arange(k), -support, recall))[:max_bars]
        title = f"The {max_bars} classes with the lowest recall (of {k:,})"
    raw = [str(class_names[i]) for i in idx]
    full = np.asarray(_texts(raw), dtype=object)
    names = np.asarray(_texts(short_names(raw)), dtype=object)
    fig = go.Figure()
    for label, values, colour in (
        ("correct", support[idx] - errors[idx], OK_COLOUR),
        ("wrong", errors[idx], ERR_COLOUR),
    ):
        fig.add_bar(
            x=names,
            y=values,
            name=label,
            marker_color=colour,
            hovertext=full,
            customdata=idx,
            hovertemplate=f"%{{y}} {label}<extra>%{{hovertext}}</extra>",
        )
    fig.update_layout(barmode="stack", legend=dict(orientation="h", y=1.12))
    fig.update_xaxes(
        categorical(dict(tickangle=-45 if len(idx) > 8 else 0), categories=list(names))
    )
    fig.update_yaxes(title="images", gridcolor="#eee")
    return _layout(fig, height=340 if k > max_bars else 300, title=title)


def top_k_html(
    probs_row: np.ndarray, class_names: list[str], *, label: int, k: int = 5, width: int = 24
) -> str:
    """The k most probable classes of one image as horizontal bars in plain HTML (the given label
    is always listed, marked "(given)", in green).

    Plain HTML rather than a Plotly figure: the image detail page is the page a review opens
    cold, and Plotly's 4.7 MB of JavaScript took about 2 s of a cold page's 5.5 s in Chromium on
    the 2-core machine (``bench/bench_review.py``). Names are escaped (user text) and shortened to
    ``width`` characters with the full name as the row's tooltip; ``probs_row`` is ``[C]``.
    """
    from .formatting import short_name

    p = np.asarray(probs_row, float)
    order = np.argsort(-p, kind="stable")[:k]
    if label not in order:
        order = np.append(order, label)
    rows = []
    for i in order:
        mark = " (given)" if i == label else ""  # after the cut: a long name keeps its mark
        name = str(class_names[i]) + mark
        colour = OK_COLOUR if i == label else "#8d99ae"
        pct = 100 * float(np.clip(p[i], 0, 1))
        rows.append(
            f'<div class="es-topk-row" title="{html.escape(name)}: {p[i]:.2%}">'
            f'<span class="es-topk-name">{html.escape(short_name(class_names[i], width) + mark)}'
            "</span>"
            f'<span class="es-topk-track"><span class="es-topk-bar"'
            f' style="width:{pct:.2f}%;background:{colour}"></span></span>'
            f'<span class="es-topk-value">{p[i]:.1%}</span></div>'
        )
    style = (
        "<style>.es-topk{font-size:0.9rem;line-height:1.4}"
        ".es-topk-row{display:flex;align-items:center;gap:0.6em;margin:0.35em 0}"
        ".es-topk-name{flex:0 0 13em;text-align:right;overflow:hidden;white-space:nowrap}"
        ".es-topk-track{flex:1 1 auto;height:1.1em;background:#f0f2f6;border-radius:2px}"
        ".es-topk-bar{display:block;height:100%;border-radius:2px;min-width:1px}"
        ".es-topk-value{flex:0 0 3.8em;text-align:right;font-variant-numeric:tabular-nums}"
        "</style>"
    )
    return f'{style}<div class="es-topk">{"".join(rows)}</div>'


def fields_html(fields, values) -> str:
    """A two-column table (field, value) in plain HTML, every cell escaped: user text (metadata
    names and values) shows as text, never as Markdown or markup (Streamlit's ``st.table``
    renders Markdown in its cells: a value ``[x](http://...)`` became a live link)."""
    rows = "".join(
        f"<tr><th>{html.escape(str(f))}</th><td>{html.escape(str(v))}</td></tr>"
        for f, v in zip(fields, values, strict=True)
    )
    style = (
        "<style>.es-fields{border-collapse:collapse;font-size:0.9rem}"
        ".es-fields th,.es-fields td{padding:0.25em 0.9em 0.25em 0;border-bottom:1px solid #eef0f3;"
        "text-align:left;vertical-align:top}.es-fields th{font-weight:600;color:#4a5568}</style>"
    )
    return f'{style}<table class="es-fields"><tbody>{rows}</tbody></table>'


def slice_interval_figure(slices: pd.DataFrame, *, overall_error: float, max_rows: int = 25):
    """Error rate per slice with its 95% Wilson interval; the dashed line is the overall rate.

    ``slices`` has ``description, error_rate, error_rate_low, error_rate_high, n, significant``;
    each point's ``customdata`` is its row position in ``slices`` (for drill-down)."""
    import plotly.graph_objects as go

    df = slices.head(max_rows).reset_index(drop=True)
    er = df["error_rate"].to_numpy(float)
    colours = [ERR_COLOUR if s else "#8d99ae" for s in df["significant"].astype(bool)]
    labels = [plotly_text(f"{d} (n={n})") for d, n in zip(df["description"], df["n"], strict=True)]
    fig = go.Figure(
        go.Scatter(
            x=er,
            y=labels,
            mode="markers",
            marker=dict(size=11, color=colours, symbol="square"),
            error_x=dict(
                type="data",
                symmetric=False,
                array=df["error_rate_high"] - er,
                arrayminus=er - df["error_rate_low"],
                thickness=1.5,
                color="#555",
            ),
            customdata=np.arange(len(df)),
            hovertemplate="%{y}<br>error rate %{x:.1%}<extra>click to open</extra>",
        )
    )
    fig.add_vline(
        x=overall_error,
        line_dash="dash",
        line_color="#999",
        annotation_text=f"overall {overall_error:.1%}",
        annotation_position="top",
    )
    fig.update_xaxes(title="error rate (95% CI)", tickformat=".0%", range=[0, 1], gridcolor="#eee")
    fig.update_yaxes(categorical(dict(autorange="reversed"), categories=labels))
    fig = _layout(fig, height=max(240, 28 * len(df) + 100))
    fig.update_layout(margin_t=30)  # room for the "overall" label above the plot
    return fig


def value_error_figure(values: pd.DataFrame, *, column: str, overall_error: float):
    """Error rate per value (or bin) of one column, bars with 95% intervals, n on hover; bar i's
    ``customdata`` is ``[i, n]`` (i = row position in ``values``, for drill-down)."""
    import plotly.graph_objects as go

    er = values["error_rate"].to_numpy(float)
    cats = _texts(values["value"].astype(str))
    fig = go.Figure(
        go.Bar(
            x=cats,
            y=er,
            marker_color="#457b9d",
            error_y=dict(
                type="data",
                symmetric=False,
                array=values["error_rate_high"] - er,
                arrayminus=er - values["error_rate_low"],
                thickness=1.2,
            ),
            # first the row position (what a click opens), then n for the hover
            customdata=np.stack([np.arange(len(values)), values["n"]], axis=1),
            hovertemplate="%{x}<br>error rate %{y:.1%}<br>n = %{customdata[1]}<extra></extra>",
        )
    )
    fig.add_hline(y=overall_error, line_dash="dash", line_color="#999")
    fig.update_yaxes(title="error rate", tickformat=".0%", gridcolor="#eee", rangemode="tozero")
    fig.update_xaxes(categorical(dict(title=plotly_text(column)), categories=cats))
    return _layout(fig, height=340)


def embedding_figure(
    x: np.ndarray,
    y: np.ndarray,
    colour: np.ndarray,
    *,
    colour_name: str,
    categorical: bool,
    hover: list[str] | None = None,
):
    """The UMAP map as a WebGL scatter; point i's ``customdata`` is i (a samples row)."""
    import plotly.graph_objects as go

    n = len(x)
    size = 6 if n < 5_000 else (4 if n < 30_000 else 2.5)
    fig = go.Figure()
    idx = np.arange(n)
    if categorical:
        palette = [
            "#e76f51",
            "#2a9d8f",
            "#264653",
            "#e9c46a",
            "#f4a261",
            "#457b9d",
            "#8d99ae",
            "#6a4c93",
            "#1982c4",
            "#8ac926",
            "#ff595e",
            "#bc6c25",
        ]
        cats = pd.Series(colour).astype(str)
        for k, cat in enumerate(sorted(cats.unique(), key=lambda v: (len(v), v))):
            m = (cats == cat).to_numpy()
            fig.add_trace(
                go.Scattergl(
                    x=x[m],
                    y=y[m],
                    mode="markers",
                    name=plotly_text(cat),
                    customdata=idx[m],
                    marker=dict(size=size, color=palette[k % len(palette)], opacity=0.75),
                    text=None if hover is None else [plotly_text(hover[i]) for i in idx[m]],
                    # the legend name by reference: a value is never read as a template
                    hovertemplate="%{text}<extra>%{fullData.name}</extra>" if hover else None,
                )
            )
    else:
        fig.add_trace(
            go.Scattergl(
                x=x,
                y=y,
                mode="markers",
                customdata=idx,
                marker=dict(
                    size=size,
                    color=colour,
                    colorscale="Viridis",
                    showscale=True,
                    colorbar=dict(title=plotly_text(colour_name)),
                    opacity=0.8,
                ),
                text=None if hover is None else _texts(hover),
                hovertemplate="%{text}<extra></extra>" if hover else None,
            )
        )
    fig.update_xaxes(showticklabels=False, showgrid=False, zeroline=False, title=None)
    fig.update_yaxes(showticklabels=False, showgrid=False, zeroline=False, title=None)
    # legend above the plot area, left: the mode bar (lasso, box) sits top right
    fig.update_layout(
        dragmode="lasso",
        legend=dict(itemsizing="constant", orientation="h", x=0, xanchor="left", y=1.08),
    )
    return _layout(fig, height=620)


def noise_matrix_figure(noise: np.ndarray, class_names: list[str]):
    """Estimated P(given label i | true label j) as an annotated heatmap (display only)."""
    import plotly.graph_objects as go

    z = np.asarray(noise, float)
    names = _texts(class_names)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=names,
            y=names,
            colorscale="Oranges",
            zmin=0,
            zmax=1,
            text=[[f"{v:.0%}" for v in row] for row in z],
            texttemplate="%{text}",
            hovertemplate="true %{x}, labelled %{y}: %{z:.1%}<extra></extra>",
            showscale=False,
        )
    )
    fig.update_xaxes(
        categorical(dict(title="true label (estimated)", side="top"), categories=names)
    )
    fig.update_yaxes(categorical(dict(title="given label", autorange="reversed"), categories=names))
    return _layout(fig, height=max(300, 50 * len(class_names) + 120))


def robustness_grid_figure(summary: pd.DataFrame):
    """Accuracy per (perturbation, severity) as a grid of square markers (clickable like the
    confusion grid); ``customdata`` is ``[row position in summary]``."""
    import plotly.graph_objects as go

    df = summary.reset_index(drop=True)
    acc = df["accuracy"].to_numpy(float)
    lo, hi = np.nanmin(acc), np.nanmax(acc)
    colours = [f"rgba(231,111,81,{0.1 + 0.9 * (hi - a) / (hi - lo or 1):.3f})" for a in acc]
    fig = go.Figure(
        go.Scatter(
            x=[f"severity {s}" for s in df["severity"]],
            y=_texts(df["perturbation"]),
            mode="markers+text",
            marker=dict(symbol="square", size=44, color=colours, line=dict(width=1, color="white")),
            text=[f"{a:.0%}" for a in acc],
            textfont=dict(size=12, color="#1d3557"),
            customdata=np.arange(len(df)),
            hovertemplate="%{y}, %{x}<br>accuracy %{text}<extra>click: images that flipped</extra>",
        )
    )
    sev = [f"severity {v}" for v in sorted(df["severity"].unique())]
    fig.update_xaxes(categorical(dict(side="top", showgrid=False), categories=sev))
    rows = list(dict.fromkeys(_texts(df["perturbation"])))
    fig.update_yaxes(categorical(dict(autorange="reversed", showgrid=False), categories=rows))
    return _layout(fig, height=60 * df["perturbation"].nunique() + 90)


def robustness_curves_figure(summary: pd.DataFrame, *, clean_accuracy: float):
    """Accuracy vs severity per perturbation, 95% intervals as error bars."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for name, g in summary.groupby("perturbation", sort=False):
        acc = g["accuracy"].to_numpy(float)
        fig.add_scatter(
            x=g["severity"],
            y=acc,
            mode="lines+markers",
            name=plotly_text(name),
            error_y=dict(
                type="data",
                symmetric=False,
                array=g["high"] - acc,
                arrayminus=acc - g["low"],
                thickness=1,
            ),
        )
    fig.add_hline(
        y=clean_accuracy,
        line_dash="dash",
        line_color="#999",
        annotation_text="clean",
        annotation_position="bottom right",
    )
    fig.update_xaxes(title="severity", dtick=1)
    fig.update_yaxes(title="accuracy", tickformat=".0%", range=[0, 1.02], gridcolor="#eee")
    return _layout(fig, height=420)
