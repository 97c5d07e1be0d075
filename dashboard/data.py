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
from analysis.store.runstore import Run, RunError, list_runs, open_run, runs_dir_from_env


def runs_dir() -> Path:
    """The runs folder: ``--runs-dir`` given to the app, ``$ERRORSCOPE_RUNS_DIR``, or ./runs."""
    return runs_dir_from_env()


@st.cache_data(ttl=10, show_spinner=False)
def available_runs(root: str) -> list[dict]:
    return list_runs(root)


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
        st.error(
            f"Run `{Path(path).name}` cannot be read: {e}  \nAnalyse its data again with"
            " `errorscope analyze`, or pick another run in the sidebar."
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
