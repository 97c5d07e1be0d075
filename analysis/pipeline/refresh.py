"""Bring a run up to date without the model pass: recompute only its stale sections.

When an upgrade changed the code of some sections but not the pass
(:func:`analysis.pipeline.versions.staleness`), :func:`refresh` writes a new version of the run
in place: every file of the old one is hard-linked into a temporary folder (thumbnails and pass
outputs cost neither disk nor copying), the stale sections run again on the stored pass outputs
exactly as in a fresh run, their files and samples columns replace the old ones, on-demand caches
made by changed code are dropped, and the folder is renamed into place atomically. Review data
lives outside runs and is untouched.
"""

from __future__ import annotations

import time

import numpy as np

from .. import schema
from ..loading.inference import Progress
from ..store.runstore import Run, RunWriter, now_iso, open_run
from .versions import Staleness, cache_codes

__all__ = ["refresh"]


def refresh(run: Run, stale: Staleness, cfg, *, progress: Progress | None = None) -> Run:
    """Recompute ``stale.sections`` of ``run`` from its stored pass outputs; drop stale caches.

    Parameters
    ----------
    run : Run
        A run whose pass is current (``stale.pass_stale`` is False).
    stale : Staleness
        What to redo, from :func:`analysis.pipeline.versions.staleness`.
    cfg : AnalysisConfig
        The run's configuration (same inputs and options, so the same run id).

    Returns
    -------
    Run
        The updated run, at the same path.
    """
    from .sections import SECTIONS, SectionContext, run_sections, with_section_columns

    if stale.pass_stale:
        raise ValueError("the model pass is stale: analyse again with analyze(), not refresh()")
    say = progress or (lambda msg, frac: None)
    t0 = time.perf_counter()
    m = run.manifest
    recorded = m.get("sections") or {}
    columns = {n: list((recorded.get(n) or {}).get("columns") or []) for n in recorded}
    stored = run.samples
    ours = [c for cols in columns.values() for c in cols if c in stored.columns]
    base = stored.drop(columns=ours)
    keep = {
        n: {c: stored[c].to_numpy() for c in cols if c in stored.columns}
        for n, cols in columns.items()
        if n not in stale.sections
    }
    timings: dict[str, float] = {}
    entries: dict[str, dict] = {}
    with RunWriter(run.path.parent, run.run_id) as w:
        w.link_from(run.path, skip=stale.caches)
        gone = [n for n in recorded if n not in SECTIONS]  # a section the code no longer has
        for name in (*stale.sections, *gone):
            for f in (recorded.get(name) or {}).get("files") or []:
                w.remove(f)
        ctx = SectionContext(
            writer=w,
            samples=base,
            probs=np.asarray(run.probs),
            embeddings=run.embeddings,
            class_names=run.class_names,
            metadata_columns=run.metadata_columns,
            reference=run.reference,
            reference_embeddings=run.reference_embeddings,
            signatures=run.signatures,
            reference_signatures=run.reference_signatures,
            cfg=cfg,
            progress=say,
            outputs=keep,
            hierarchy=_stored_hierarchy(run),
        )
        outputs = run_sections(ctx, sections=entries, timings=timings, only=stale.sections)
        if stale.sections or gone:
            w.write_table(schema.SAMPLES, with_section_columns(base, outputs))
        sections = {
            n: entries.get(n) or recorded[n] for n in SECTIONS if n in entries or n in recorded
        }
        manifest = {
            **m,
            "sections": sections,
            "versions": {**(m.get("versions") or {}), "caches": cache_codes()},
            "timings_s": {
                **(m.get("timings_s") or {}),
                **{k: round(v, 3) for k, v in timings.items()},
            },
            "refreshed": [
                *(m.get("refreshed") or []),
                {
                    "at": now_iso(),
                    "sections": list(stale.sections),
                    "caches_dropped": list(stale.caches),
                    "seconds": round(time.perf_counter() - t0, 3),
                },
            ],
        }
        path = w.commit(manifest, replace=True)
    say(f"run {run.run_id} refreshed ({', '.join(stale.sections) or 'caches only'})", 1.0)
    return open_run(path)


def _stored_hierarchy(run: Run):
    """The class hierarchy the run was analysed with (its checked copy), or None."""
    import json

    p = run.path / schema.HIERARCHY
    if not p.is_file():
        return None
    from ..stats.hierarchy import ClassHierarchy

    return ClassHierarchy.from_dict(json.loads(p.read_text()))
