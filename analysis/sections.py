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

    s = summary(
        ctx.labels, np.asarray(ctx.probs), n_classes=len(ctx.class_names), seed=ctx.cfg.seed
    )
    ctx.writer.write_json(METRICS_FILE, s.to_dict())


def _embedding_map(ctx: SectionContext):
    if ctx.embeddings is None:
        return "no embeddings (TorchScript model or predictions file)"
    from .embeddings import cluster_embeddings, cluster_table, project_2d

    emb = np.asarray(ctx.embeddings, dtype=np.float32)
    if getattr(ctx.cfg, "umap", True):
        xy = project_2d(
            emb, seed=ctx.cfg.seed, progress=lambda msg: ctx.progress(f"embedding map: {msg}", 0.5)
        )
        ctx.new_columns[schema.UMAP_X] = xy[:, 0].astype(np.float32)
        ctx.new_columns[schema.UMAP_Y] = xy[:, 1].astype(np.float32)
    clusters = cluster_embeddings(emb, seed=ctx.cfg.seed)
    ctx.new_columns[schema.CLUSTER] = clusters.astype(np.int64)
    table = cluster_table(ctx.samples_with_new(), class_names=ctx.class_names)
    ctx.writer.write_table(schema.CLUSTERS, table)
    return None


def _slice_args(ctx: SectionContext) -> dict:
    cluster = schema.CLUSTER if schema.CLUSTER in ctx.new_columns else None
    return dict(
        metadata_columns=ctx.metadata_columns,
        property_columns=schema.PROPERTY_COLUMNS,
        cluster_column=cluster,
        class_names=ctx.class_names,
        min_support=getattr(ctx.cfg, "min_support", 20),
    )


def _slices(ctx: SectionContext):
    from .slices import compute_slices

    table = compute_slices(ctx.samples_with_new(), **_slice_args(ctx))
    ctx.writer.write_table(schema.SLICES, table)


def _discovery(ctx: SectionContext):
    from .discovery import discover_slices

    table = discover_slices(ctx.samples_with_new(), **_slice_args(ctx))
    ctx.writer.write_table(schema.DISCOVERED, table)


def _label_issues(ctx: SectionContext):
    from .label_issues import estimate_noise_matrix, find_label_issues

    probs = np.asarray(ctx.probs, dtype=np.float64)
    table = find_label_issues(ctx.labels, probs, class_names=ctx.class_names)
    ctx.writer.write_table(schema.LABEL_ISSUES, table)
    ctx.writer.write_array(schema.NOISE_MATRIX, estimate_noise_matrix(ctx.labels, probs))
    by_row = table.set_index("index").sort_index()
    ctx.new_columns[schema.LABEL_ISSUE_SCORE] = by_row["label_quality"].to_numpy(np.float32)
    ctx.new_columns[schema.IS_LABEL_ISSUE] = by_row["is_label_issue"].to_numpy(bool)
    ctx.new_columns[schema.SUGGESTED_LABEL] = by_row["suggested_label"].to_numpy(np.int64)


def _duplicates(ctx: SectionContext):
    from .duplicates import confirm_pairs, find_duplicates, partner_columns

    s = ctx.samples
    ref = ctx.reference
    pairs = find_duplicates(
        None if ctx.embeddings is None else np.asarray(ctx.embeddings, np.float32),
        reference_embeddings=None
        if ctx.reference_embeddings is None
        else np.asarray(ctx.reference_embeddings, np.float32),
        hashes=s[schema.CONTENT_HASH].tolist(),
        reference_hashes=None if ref is None else ref[schema.CONTENT_HASH].tolist(),
    )
    if len(pairs):
        pairs = confirm_pairs(
            pairs, s[schema.PATH].tolist(), None if ref is None else ref[schema.PATH].tolist()
        )
    ctx.writer.write_table(schema.DUPLICATES, pairs)
    cols = partner_columns(
        pairs, s[schema.SAMPLE_ID].tolist(), None if ref is None else ref[schema.RELPATH].tolist()
    )
    for col in cols.columns:
        ctx.new_columns[col] = cols[col].to_numpy()


def _outliers(ctx: SectionContext):
    from .outliers import find_outliers, outlier_summary

    table = ctx.samples[[*schema.PROPERTY_COLUMNS, schema.CORRECT]].reset_index(drop=True)
    found = find_outliers(table)
    ctx.writer.write_table(schema.OUTLIERS, found)
    ctx.writer.write_table(OUTLIER_SUMMARY, outlier_summary(table, found))


OUTLIER_SUMMARY = "outlier_summary.parquet"

SECTIONS: dict[str, Callable[[SectionContext], str | None]] = {
    "metrics": _metrics,
    "embedding_map": _embedding_map,
    "slices": _slices,
    "discovered_slices": _discovery,
    "label_issues": _label_issues,
    "duplicates": _duplicates,
    "outliers": _outliers,
}


def run_sections(
    writer: RunWriter,
    *,
    samples,
    probs,
    embeddings,
    class_names,
    metadata_columns,
    reference,
    reference_embeddings,
    cfg,
    sections: dict,
    timings: dict,
    progress: Callable,
) -> dict:
    """Run every registered section; returns the new samples columns they produced."""
    from .pipeline import section

    ctx = SectionContext(
        writer,
        samples,
        probs,
        embeddings,
        class_names,
        metadata_columns,
        reference,
        reference_embeddings,
        cfg,
        progress,
    )
    for name, fn in SECTIONS.items():
        with section(name, sections, timings, progress) as entry:
            skipped = fn(ctx)
            if isinstance(skipped, str):
                entry.update(status="skipped", reason=skipped)
    return ctx.new_columns
