"""The derived sections of a run, computed after the pass from the stored arrays.

Each section is a small function ``(ctx) -> dict of new samples columns`` registered in
``SECTIONS``; ``run_sections`` runs them in order inside a guard that records ok/failed in the
manifest, so one failure never loses the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from . import schema
from .runstore import RunWriter

METRICS_FILE = "metrics.json"


@dataclass
class SectionContext:
    writer: RunWriter
    samples: pd.DataFrame
    probs: np.ndarray
    embeddings: np.ndarray | None
    class_names: list[str]
    metadata_columns: list[str]
    reference: pd.DataFrame | None
    reference_embeddings: np.ndarray | None
    cfg: object
    progress: Callable
    new_columns: dict = field(default_factory=dict)

    @property
    def labels(self) -> np.ndarray:
        return self.samples[schema.LABEL].to_numpy()

    def samples_with_new(self) -> pd.DataFrame:
        """samples plus the columns earlier sections added (e.g. clusters for slices)."""
        if not self.new_columns:
            return self.samples
        return self.samples.assign(**self.new_columns)


def _metrics(ctx: SectionContext) -> None:
    from .metrics import summary

    s = summary(ctx.labels, np.asarray(ctx.probs), n_classes=len(ctx.class_names),
                seed=ctx.cfg.seed)
    ctx.writer.write_json(METRICS_FILE, s.to_dict())


SECTIONS: dict[str, Callable[[SectionContext], None]] = {
    "metrics": _metrics,
}


def run_sections(writer: RunWriter, *, samples, probs, embeddings, class_names, metadata_columns,
                 reference, reference_embeddings, cfg, sections: dict, timings: dict,
                 progress: Callable) -> dict:
    """Run every registered section; returns the new samples columns they produced."""
    from .pipeline import section

    ctx = SectionContext(writer, samples, probs, embeddings, class_names, metadata_columns,
                         reference, reference_embeddings, cfg, progress)
    for name, fn in SECTIONS.items():
        with section(name, sections, timings, progress) as entry:
            skipped = fn(ctx)
            if isinstance(skipped, str):
                entry.update(status="skipped", reason=skipped)
    return ctx.new_columns
