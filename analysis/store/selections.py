"""Explicit image selections (a lasso, a review queue, the images behind a triage number).

A selection is a sorted list of sample ids stored as JSON in the run's ``selections/`` cache,
named by a short content hash, so a URL can carry ``sel=<id>`` and reopen the same images.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

SELECTIONS_DIR = "selections"


def selection_id(sample_ids) -> tuple[str, list[str]]:
    """(id, sorted unique ids) of a set of sample ids."""
    ids = sorted(set(map(str, sample_ids)))
    return hashlib.sha1("\n".join(ids).encode()).hexdigest()[:12], ids


def save_selection(run_dir: str | Path, sample_ids) -> str:
    """Store a set of sample ids in the run's cache; returns its short content id for URLs."""
    sel_id, ids = selection_id(sample_ids)
    d = Path(run_dir) / SELECTIONS_DIR
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{sel_id}.json"
    if not p.exists():
        tmp = p.with_suffix(f".{os.getpid()}.{int.from_bytes(os.urandom(4), 'little')}.tmp")
        tmp.write_text(json.dumps(ids))
        tmp.replace(p)
    return sel_id


def load_selection(run_dir: str | Path, sel_id: str) -> list[str] | None:
    """The sample ids of a stored selection, or None when there is no such selection."""
    if not sel_id.isalnum():
        return None
    p = Path(run_dir) / SELECTIONS_DIR / f"{sel_id}.json"
    return json.loads(p.read_text()) if p.exists() else None
