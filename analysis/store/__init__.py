"""Storage: the run directory (derived, immutable) and the review database (people's work).

- ``runstore``: writing a run atomically and reading it back (``open_run``).
- ``review``: tags, notes and corrected labels in SQLite, keyed by image content.
"""
