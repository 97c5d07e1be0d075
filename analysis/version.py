"""Which analysis code made a run: a fingerprint of the ``analysis`` package's source.

A run is a cache of what the analysis code computed. When that code changes (a fixed detector, a
new default), a run made by the old code is stale even though its inputs are the same: the
pipeline re-analyses instead of reusing it, and the dashboard says so. Hashing the source, not
a version number, means nobody has to remember to bump anything.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

__all__ = ["analysis_code", "is_current"]


@lru_cache(maxsize=1)
def analysis_code() -> str:
    """12 hex digits of SHA-256 over the ``analysis/**/*.py`` files (paths and bytes, sorted)."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:12]


def is_current(manifest: dict) -> bool:
    """True when the run's manifest was written by this analysis code."""
    return (manifest.get("versions") or {}).get("analysis_code") == analysis_code()
