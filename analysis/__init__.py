"""errorscope's analysis layer: everything the dashboard shows is computed here.

The subpackages are layers, bottom first; a module imports only its own layer and lower ones
(``tests/test_architecture.py`` checks it), and nothing here imports streamlit::

    schema, version        the run-directory contract; which code made a run
    checks                 the input checks every public function shares
    store/                 run directories and the review database
    loading/               datasets, images, models -> the one batched pass
    stats/                 metrics, intervals, slices, discovery, compare, drift, robustness
    data_issues/ explain/  label errors, duplicates, outliers | CAMs, layers, embedding map
    pipeline/ present/     analyze() runs it all | findings, figures, report
    cli                    the ``errorscope`` command

The public entry points are importable from here: ``analyze``, ``AnalysisConfig``, ``open_run``.
"""

from __future__ import annotations

__all__ = ["AnalysisConfig", "analyze", "open_run"]

_LAZY = {
    "AnalysisConfig": "analysis.pipeline.engine",
    "analyze": "analysis.pipeline.engine",
    "open_run": "analysis.store.runstore",
}


def __getattr__(name: str):
    # Lazy, so that ``import analysis`` stays cheap (no torch, pandas or umap until needed).
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
