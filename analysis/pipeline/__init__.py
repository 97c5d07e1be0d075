"""Orchestration: ``analyze`` runs the pass and then every derived section into a run.

- ``engine``: inputs -> pass -> sections -> run directory (``analyze``, ``AnalysisConfig``).
- ``sections``: the registry of derived sections, each run in its own guard.
"""
