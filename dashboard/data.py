"""Cached access to runs for the pages. Nothing here computes: it opens, reads and memoises.

``st.cache_resource`` holds one :class:`analysis.store.runstore.Run` per run folder per process (its
tables are read once and shared; never mutate them). Query results are cached by run id + query.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from analysis.present.query import ImageQuery, apply_query
from analysis.store.runstore import Run, RunError, open_run, runs_dir_from_env


def runs_dir() -> Path:
    """The runs folder: ``--runs-dir`` given to the app, ``$ERRORSCOPE_RUNS_DIR``, or ./runs."""
    return runs_dir_from_env()


@st.cache_data(ttl=10, show_spinner=False)
def available_runs(root: str) -> list[dict]:
    from analysis.pipeline.versions import list_runs_with_status

    return list_runs_with_status(root)


@st.cache_resource(show_spinner=False, max_entries=8)
def _open(path: str, stamp: int) -> Run:
    return open_run(path)


def current_run() -> Run:
    """The run picked in the sidebar for this session (set by app.py before the page runs)."""
    path = st.session_state.get("_run_path")
    if not path:
        st.error("No run selected.")
        st.stop()
    try:
        return get_run(path)
    except (RunError, OSError) as e:  # an older schema, a half-deleted folder: say it, no trace
        from dashboard.components import safe

        st.error(
            f"Run {safe(Path(path).name)} cannot be read: {safe(e)}  \nAnalyse its data again"
            " with `errorscope analyze`, or pick another run in the sidebar."
        )
        st.stop()


def get_run(path: str | os.PathLike) -> Run:
    """The run at ``path``, opened once per process (re-opened if its manifest changes)."""
    p = Path(path)
    stamp = (p / "manifest.json").stat().st_mtime_ns
    return _open(str(p), stamp)


@st.cache_data(show_spinner=False, max_entries=64)
def _query_rows(path: str, params: tuple) -> np.ndarray:
    run = get_run(path)
    q = ImageQuery.from_params(dict(params))
    return apply_query(run.samples, q, run_dir=run.path, outliers=outliers(path))


def query_rows(run: Run, q: ImageQuery) -> np.ndarray:
    """Row positions of ``run.samples`` matching ``q``, sorted; cached per (run, query)."""
    return _query_rows(str(run.path), tuple(sorted(q.to_params().items())))


@st.cache_data(show_spinner=False, max_entries=16)
def outliers(path: str) -> pd.DataFrame | None:
    from analysis import schema

    return get_run(path).table(schema.OUTLIERS)


@st.cache_data(show_spinner=False, max_entries=32)
def table(path: str, name: str) -> pd.DataFrame | None:
    return get_run(path).table(name)


@st.cache_resource(show_spinner=False, max_entries=8)
def _metrics(path: str, stamp: int):
    from analysis.present.findings import load_metrics

    return load_metrics(get_run(path))


def metrics(run: Run):
    """The run's MetricsSummary, parsed once per process (a 1,000-class metrics.json holds a
    million-cell confusion matrix); never mutate it."""
    return _metrics(str(run.path), (Path(run.path) / "manifest.json").stat().st_mtime_ns)


@st.cache_resource(show_spinner=False, max_entries=8)
def _hierarchy(path: str, stamp: int):
    from analysis.present.classes import load_hierarchy

    return load_hierarchy(get_run(path))


def hierarchy(run: Run):
    """The run's ClassHierarchy or None."""
    return _hierarchy(str(run.path), (Path(run.path) / "manifest.json").stat().st_mtime_ns)


def _stamp(run: Run) -> int:
    return (Path(run.path) / "manifest.json").stat().st_mtime_ns


@st.cache_data(show_spinner=False, max_entries=64)
def _matrix_view(path: str, stamp: int, level: int | None, group: int | None, n: int, focus):
    from analysis.present import classes as cv

    run = get_run(path)
    cm = _metrics(path, stamp).confusion
    if level is None:
        return cv.class_matrix(cm, run.class_names, n=n, focus=focus, pairs=_all_pairs(path, stamp))
    h = _hierarchy(path, stamp)
    if group is None:
        return cv.level_matrix(cm, h, level, n=n)
    return cv.drill_down(cm, h, level, group, n=n)


def matrix_view(
    run: Run, *, level: int | None = None, group: int | None = None, n: int, focus=None
):
    """The part of the confusion matrix to draw (analysis.present.classes), cached per view:
    at 1,000 classes choosing it scans a million cells."""
    return _matrix_view(str(run.path), _stamp(run), level, group, n, focus)


@st.cache_resource(show_spinner=False, max_entries=8)
def _all_pairs(path: str, stamp: int):
    """Every (given, predicted) pair of the run's confusion, ordered (shared, never mutate):
    one scan of the matrix per run, not one per view (100 million cells at 10,000 classes)."""
    from analysis.stats.confusion import confusion_pairs

    return confusion_pairs(_metrics(path, stamp).confusion)


@st.cache_data(show_spinner=False, max_entries=64)
def _pair_table(path: str, stamp: int, classes: tuple | None, k: int):
    from analysis.present.classes import pair_table

    cm = _metrics(path, stamp).confusion
    return pair_table(
        cm, get_run(path).class_names, classes=classes, k=k, pairs=_all_pairs(path, stamp)
    )


def pair_table(run: Run, *, classes=None, k: int):
    """The top confusion pairs (optionally involving ``classes``), cached."""
    key = None if classes is None else tuple(int(c) for c in classes)
    return _pair_table(str(run.path), _stamp(run), key, k)


@st.cache_data(show_spinner=False, max_entries=16)
def label_words(path: str):
    """The run's suspected-label-error sentences (analysis.present.label_words), cached."""
    from analysis.present.label_words import label_issue_summary

    return label_issue_summary(get_run(path))


@st.cache_data(show_spinner=False, max_entries=8)
def map_points(path: str):
    """The Embeddings page's drawn points of a run (every error + a sample of the rest)."""
    from analysis.present.map_points import map_points as pick

    return pick(get_run(path).samples)


@st.cache_data(show_spinner=False, max_entries=8)
def filter_options(path: str):
    """The gallery's metadata filters of a run (kinds, values, ranges), computed once."""
    from analysis.present.query import filter_options as options

    run = get_run(path)
    cols = [c for c in run.filter_columns if c in run.samples.columns]
    return options(run.samples, cols, listed=run.superclass_columns)
