"""Root-cause triage: for every failure group, which causes explain it, by how much, and what to do.

Layer: between the findings about data and explanations (``data_issues/``, ``explain/``) and
the pipeline and presentation: it reads what the other sections stored and writes
``triage.parquet``. Public entry points: :func:`triage` (from :class:`TriageInputs`),
:func:`triage_run` / :func:`load_triage` (a run directory).
"""

from __future__ import annotations

__all__ = ["TriageInputs", "TriageResult", "load_triage", "triage", "triage_run"]

_LAZY = {
    "TriageInputs": "analysis.triage.inputs",
    "TriageResult": "analysis.triage.table",
    "triage": "analysis.triage.table",
    "triage_run": "analysis.triage.runs",
    "load_triage": "analysis.triage.runs",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'analysis.triage' has no attribute {name!r}")
