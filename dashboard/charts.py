"""The figures of a run, built once per dashboard process and shared by every session.

Building a Plotly figure validates every value it holds: 0.1-0.5 s for a small chart, 0.7 s for
the embedding map of 20,000 images on the development machine. A meeting's six sessions paid it
on every rerun of every page; here each figure is built once per (run, options) and handed to
every session (``st.cache_resource``; ``st.plotly_chart`` copies a figure before sending it, and
nothing here or in the pages mutates one). Arguments are the run's path and its ``created``
stamp (a re-analysed run gets new figures) plus the page's options.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from analysis import schema
from analysis.present import figures
from dashboard import data


@st.cache_resource(show_spinner=False, max_entries=16)
def metrics(path: str, stamp: str):
    """The run's metrics summary (parsed once; shared, never mutate), or None."""
    from analysis.present.findings import load_metrics

    return load_metrics(data.get_run(path))


@st.cache_resource(show_spinner=False, max_entries=16)
def class_distribution(path: str, stamp: str):
    run = data.get_run(path)
    pc = metrics(path, stamp).per_class
    return figures.class_distribution_figure(
        pc["support"], pc["support"] - pc["tp"], run.class_names
    )


@st.cache_resource(show_spinner=False, max_entries=32)
def confusion(path: str, stamp: str, normalize: str | None):
    run = data.get_run(path)
    return figures.confusion_figure(
        metrics(path, stamp).confusion, run.class_names, normalize=normalize
    )


@st.cache_resource(show_spinner=False, max_entries=16)
def per_class(path: str, stamp: str):
    return figures.per_class_figure(metrics(path, stamp).per_class, data.get_run(path).class_names)


@st.cache_resource(show_spinner=False, max_entries=16)
def reliability(path: str, stamp: str):
    return figures.reliability_figure(metrics(path, stamp).reliability)


@st.cache_resource(show_spinner=False, max_entries=32)
def embedding(path: str, stamp: str, column: str, colour_name: str):
    """The UMAP map coloured by ``column`` (its legend titled ``colour_name``): the points of
    :func:`dashboard.data.map_points` (every error, a sample of the rest past 40,000 images),
    in that order (a clicked point's index is its position among them)."""
    run = data.get_run(path)
    s, names = run.samples, run.class_names
    drawn = data.map_points(path).rows
    values = s[column].to_numpy()[drawn]
    categorical = column in (
        schema.CORRECT,
        schema.LABEL_NAME,
        schema.PRED_NAME,
        schema.CLUSTER,
    ) or not np.issubdtype(values.dtype, np.number)
    if column == schema.CORRECT:
        values = np.where(values, "correct", "wrong")
    hover = None
    if len(drawn) <= 20_000:  # beyond, hover texts cost more than they help
        labels, preds = s[schema.LABEL].to_numpy()[drawn], s[schema.PRED].to_numpy()[drawn]
        hover = [f"{names[a]} → {names[b]}" for a, b in zip(labels, preds, strict=True)]
    return figures.embedding_figure(
        s[schema.UMAP_X].to_numpy()[drawn],
        s[schema.UMAP_Y].to_numpy()[drawn],
        values,
        colour_name=colour_name,
        categorical=categorical,
        hover=hover,
    )


@st.cache_resource(show_spinner=False, max_entries=64)
def slice_intervals(
    path: str,
    stamp: str,
    table: str,
    sources: tuple | None,
    only_sig: bool,
    model_output: bool | None = None,
):
    """(figure, the rows it shows) of a slices table, optionally only some sources, the
    significant ones, or those defined (or not) by the model's own output; a click's customdata
    is a row position in the returned table."""
    df = data.table(path, table)
    if sources is not None:
        df = df[df["source"].isin(sources)]
    if only_sig:
        df = df[df["significant"].astype(bool)]
    if model_output is not None and "model_output" in df:
        df = df[df["model_output"].astype(bool) == model_output]
    df = df.reset_index(drop=True)
    overall = 1.0 - float(data.get_run(path).samples[schema.CORRECT].mean())
    return figures.slice_interval_figure(df, overall_error=overall), df


@st.cache_resource(show_spinner=False, max_entries=64)
def value_errors(path: str, stamp: str, column: str):
    """(figure, table) of the error rate per value of one column."""
    from analysis.stats.slices import error_rate_by_value

    run = data.get_run(path)
    vals = error_rate_by_value(run.samples, column, class_names=run.class_names)
    overall = 1.0 - float(run.samples[schema.CORRECT].mean())
    return figures.value_error_figure(vals, column=column, overall_error=overall), vals


@st.cache_data(show_spinner=False, max_entries=512)
def top_k(path: str, stamp: str, row: int) -> str:
    run = data.get_run(path)
    label = int(run.samples[schema.LABEL].iloc[row])
    return figures.top_k_html(np.asarray(run.probs[row]), run.class_names, label=label)


@st.cache_resource(show_spinner=False, max_entries=16)
def noise_matrix(path: str, stamp: str):
    run = data.get_run(path)
    noise = run.array(schema.NOISE_MATRIX)
    return None if noise is None else figures.noise_matrix_figure(noise, run.class_names)
