"""The derived sections of a run, computed after the pass from the stored arrays.

Each section is a small function ``(ctx) -> dict of new samples columns`` registered in
``SECTIONS``; ``run_sections`` runs them in order inside a guard that records ok/failed in the
manifest, so one failure never loses the others.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import schema
from ..store.runstore import RunWriter

METRICS_FILE = schema.METRICS


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
    signatures: np.ndarray | None
    reference_signatures: np.ndarray | None
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
    from ..stats.metrics import summary

    s = summary(
        ctx.labels, np.asarray(ctx.probs), n_classes=len(ctx.class_names), seed=ctx.cfg.seed
    )
    ctx.writer.write_json(METRICS_FILE, s.to_dict())


def _embedding_map(ctx: SectionContext):
    if ctx.embeddings is None:
        return (
            "no embeddings: the model gave none (a TorchScript file takes no hooks; an ONNX graph"
            " without a traceable final layer needs --onnx-embeddings) or the run was made from"
            " a predictions file without --embeddings"
        )
    from ..explain.embeddings import cluster_embeddings, cluster_table, project_2d

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
    from ..stats.slices import compute_slices

    table = compute_slices(ctx.samples_with_new(), **_slice_args(ctx))
    ctx.writer.write_table(schema.SLICES, table)


def _discovery(ctx: SectionContext):
    from ..stats.discovery import discover_slices

    table = discover_slices(ctx.samples_with_new(), **_slice_args(ctx))
    ctx.writer.write_table(schema.DISCOVERED, table)


def _label_issues(ctx: SectionContext):
    from ..data_issues.label_issues import estimate_noise_matrix, find_label_issues

    probs = np.asarray(ctx.probs, dtype=np.float64)
    table = find_label_issues(ctx.labels, probs, class_names=ctx.class_names)
    ctx.writer.write_table(schema.LABEL_ISSUES, table)
    ctx.writer.write_array(schema.NOISE_MATRIX, estimate_noise_matrix(ctx.labels, probs))
    by_row = table.set_index("index").sort_index()
    ctx.new_columns[schema.LABEL_ISSUE_SCORE] = by_row["label_quality"].to_numpy(np.float32)
    ctx.new_columns[schema.IS_LABEL_ISSUE] = by_row["is_label_issue"].to_numpy(bool)
    ctx.new_columns[schema.SUGGESTED_LABEL] = by_row["suggested_label"].to_numpy(np.int64)


def phash_distance(a, b) -> np.ndarray:
    """Hamming distances (of 64 bits) between two arrays of 16-hex-digit hashes; NaN if missing."""

    def valid(h):
        return np.array([isinstance(x, str) and len(x) == 16 for x in h], dtype=bool)

    def as_int(h, ok):
        return np.array(
            [int(x, 16) if v else 0 for x, v in zip(h, ok, strict=True)], dtype=np.uint64
        )

    va, vb = valid(a), valid(b)
    d = np.bitwise_count(as_int(a, va) ^ as_int(b, vb)).astype(float)
    d[~(va & vb)] = np.nan
    return d


def _duplicates(ctx: SectionContext):
    """Exact copies by content hash; near copies by appearance signature (see
    :func:`analysis.data_issues.duplicates.find_near_copies`), with the perceptual-hash distance and the
    model-embedding similarity of each pair kept as evidence."""
    from ..data_issues.duplicates import exact_duplicates, find_near_copies, partner_columns

    s = ctx.samples
    ref = ctx.reference
    parts = [
        exact_duplicates(
            s[schema.CONTENT_HASH].tolist(),
            reference_hashes=None if ref is None else ref[schema.CONTENT_HASH].tolist(),
        )
    ]
    if ctx.signatures is not None:
        near = find_near_copies(ctx.signatures, ctx.reference_signatures)
        exact_keys = set(zip(parts[0]["i"], parts[0]["j"], parts[0]["scope"], strict=True))
        keep = [
            (i, j, sc) not in exact_keys
            for i, j, sc in zip(near["i"], near["j"], near["scope"], strict=True)
        ]
        parts.append(near[keep])
    pairs = (
        pd.concat([p for p in parts if len(p)], ignore_index=True)
        if any(len(p) for p in parts)
        else parts[0]
    )
    leak = (pairs["scope"] == "leak").to_numpy()
    i, j = pairs["i"].to_numpy(int), pairs["j"].to_numpy(int)
    eh = s[schema.PHASH].to_numpy()
    rh = ref[schema.PHASH].to_numpy() if ref is not None else eh
    jl, jw = np.where(leak, j, 0), np.where(leak, 0, j)
    pairs["hash_distance"] = np.where(
        leak, phash_distance(eh[i], rh[jl]), phash_distance(eh[i], eh[jw])
    )
    if ctx.embeddings is not None:
        e = _unit(ctx.embeddings)
        r = _unit(ctx.reference_embeddings) if ctx.reference_embeddings is not None else e
        pairs["model_similarity"] = np.where(leak, (e[i] * r[jl]).sum(1), (e[i] * e[jw]).sum(1))
    pairs = pairs.sort_values("similarity", ascending=False).reset_index(drop=True)
    ctx.writer.write_table(schema.DUPLICATES, pairs)
    cols = partner_columns(
        pairs, s[schema.SAMPLE_ID].tolist(), None if ref is None else ref[schema.RELPATH].tolist()
    )
    for col in cols.columns:
        ctx.new_columns[col] = cols[col].to_numpy()


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _outliers(ctx: SectionContext):
    from ..data_issues.outliers import find_outliers, outlier_summary

    table = ctx.samples[[*schema.PROPERTY_COLUMNS, schema.CORRECT]].reset_index(drop=True)
    found = find_outliers(table)
    ctx.writer.write_table(schema.OUTLIERS, found)
    ctx.writer.write_table(OUTLIER_SUMMARY, outlier_summary(table, found))


OUTLIER_SUMMARY = schema.OUTLIER_SUMMARY

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
    signatures=None,
    reference_signatures=None,
) -> dict:
    """Run every registered section; returns the new samples columns they produced."""
    ctx = SectionContext(
        writer,
        samples,
        probs,
        embeddings,
        class_names,
        metadata_columns,
        reference,
        reference_embeddings,
        signatures,
        reference_signatures,
        cfg,
        progress,
    )
    for name, fn in SECTIONS.items():
        with section(name, sections, timings, progress) as entry:
            skipped = fn(ctx)
            if isinstance(skipped, str):
                entry.update(status="skipped", reason=skipped)
    return ctx.new_columns


@contextmanager
def section(name: str, sections: dict, timings: dict, progress: Callable | None = None):
    """Record a section's status; an exception is logged in the manifest, not raised."""
    if progress:
        progress(f"computing {name}", 0.0)
    t = time.perf_counter()
    entry = {"status": "ok"}
    try:
        yield entry
    except Exception as e:  # one failing section must not lose the others
        entry.update(
            status="failed",
            error=f"{type(e).__name__}: {e}",
            traceback=traceback.format_exc(limit=6),
        )
    finally:
        timings[name] = time.perf_counter() - t
        entry["seconds"] = round(timings[name], 3)
        sections[name] = entry
