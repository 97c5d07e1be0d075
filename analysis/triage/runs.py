"""Triage of a run directory: the stored result, or a fresh one when the run gained evidence.

The analysis pipeline writes ``triage.parquet`` and ``triage.json`` once. Two kinds of evidence
arrive later: a robustness run (``errorscope robustness``, stored in the run's cache) and review
decisions (tags, corrected labels, in the review database). :func:`load_triage` returns the
stored result when neither exists and recomputes otherwise (seconds; the dashboard caches it),
so the quality causes are confirmed by the robustness curve and confirmed label errors count,
without rewriting the immutable run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import schema
from ..store.runstore import Run
from ..store.selections import save_selection
from .inputs import TriageInputs
from .table import TRIAGE_COLUMNS, TriageResult, triage


def triage_run(
    run: Run, *, review: pd.DataFrame | None = None, robustness="latest", alpha: float = 0.05
) -> TriageResult:
    """Compute the triage of a stored run (links stored as selections in its cache)."""
    inputs = TriageInputs.from_run(run, review=review, robustness=robustness)
    return triage(
        inputs,
        alpha=alpha,
        save_selection=lambda ids: save_selection(run.path, ids),
        outliers=run.table(schema.OUTLIERS),
    )


def stored_triage(run: Run) -> TriageResult | None:
    """The result the pipeline wrote, or None (an older run, or the section failed)."""
    t = run.table(schema.TRIAGE)
    if t is None:
        return None
    info = run.json(schema.TRIAGE_INFO) or {}
    return TriageResult(table=t[[c for c in TRIAGE_COLUMNS if c in t.columns]], info=info)


def needs_recompute(run: Run, review: pd.DataFrame | None) -> bool:
    """Whether evidence arrived after the analysis (a robustness run, review decisions)."""
    root = Path(run.path) / schema.ROBUSTNESS_DIR
    has_rob = root.exists() and any(not d.name.startswith(".") for d in root.iterdir())
    relevant = False
    if review is not None and not review.empty and schema.CONTENT_HASH in run.samples.columns:
        mine = review[review["content_hash"].isin(set(run.samples[schema.CONTENT_HASH]))]
        if len(mine):
            tags = mine["tags"].map(lambda t: bool(set(t or ()) & {"label error", "ambiguous"}))
            relevant = bool(tags.any() or (mine["corrected_label"].astype(str) != "").any())
    return has_rob or relevant or run.table(schema.TRIAGE) is None


def load_triage(run: Run, *, review: pd.DataFrame | None = None) -> TriageResult:
    """The run's triage, up to date with its robustness runs and ``review`` (module docstring)."""
    if not needs_recompute(run, review):
        stored = stored_triage(run)
        if stored is not None:
            return stored
    return triage_run(run, review=review)


def result_json(result: TriageResult) -> str:
    return json.dumps(result.info, indent=2, default=str)
