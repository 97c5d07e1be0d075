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
    leak_pairs: pd.DataFrame | None = None  # the duplicates section's eval -> reference pairs
    hierarchy: object = None  # analysis.stats.hierarchy.ClassHierarchy or None

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
            "no embeddings: the model has no nn.Linear classifier head for the hook (TorchScript,"
            " conv heads such as SqueezeNet) or the run was made from a predictions file"
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


def _hierarchy(ctx: SectionContext):
    """Superclass columns per level (slices and the Confusion page read them), the checked
    hierarchy, and per-superclass metrics with intervals. Runs only with a hierarchy
    (:data:`OPTIONAL`)."""
    from ..stats.hierarchy import hierarchy_metrics

    h = ctx.hierarchy
    preds = ctx.samples[schema.PRED].to_numpy()
    ctx.new_columns.update(h.columns(ctx.labels, preds))
    ctx.writer.write_json(schema.HIERARCHY, h.to_dict())
    table = hierarchy_metrics(ctx.labels, preds, h, seed=ctx.cfg.seed)
    ctx.writer.write_table(schema.HIERARCHY_METRICS, table)
    return None


def _superclass_columns(ctx: SectionContext) -> list[str]:
    from ..stats.hierarchy import level_column

    h = ctx.hierarchy
    cols = [] if h is None else [level_column(lv) for lv in range(1, h.depth + 1)]
    return [c for c in cols if c in ctx.new_columns]


def _slice_args(ctx: SectionContext) -> dict:
    cluster = schema.CLUSTER if schema.CLUSTER in ctx.new_columns else None
    return dict(
        metadata_columns=[*ctx.metadata_columns, *_superclass_columns(ctx)],
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
    from ..data_issues.label_issues import estimate_noise, find_label_issues

    # float32 as stored: a float64 copy of 100k x 1,000 probabilities is 800 MB; the estimate
    # is made once and shared by both passes and the noise matrix
    probs = np.asarray(ctx.probs)
    labels = ctx.labels
    est = estimate_noise(labels, probs)
    table = find_label_issues(labels, probs, class_names=ctx.class_names, estimate=est)
    evidence = _label_evidence(ctx, table)
    if evidence:
        table = find_label_issues(
            labels, probs, class_names=ctx.class_names, estimate=est, **evidence
        )
    ctx.writer.write_table(schema.LABEL_ISSUES, table)
    _write_noise(ctx, est.noise_matrix)
    by_row = table.set_index("index").sort_index()
    ctx.new_columns[schema.LABEL_ISSUE_SCORE] = by_row["label_quality"].to_numpy(np.float32)
    ctx.new_columns[schema.IS_LABEL_ISSUE] = by_row["is_label_issue"].to_numpy(bool)
    ctx.new_columns[schema.SUGGESTED_LABEL] = by_row["suggested_label"].to_numpy(np.int64)


#: Classes up to which the noise matrix is also stored whole (8 bytes x classes^2: 8 MB at
#: 1,000 classes, 800 MB at 10,000); its non-zero entries are always stored.
DENSE_NOISE_MAX = 256


def _write_noise(ctx: SectionContext, noise: np.ndarray) -> None:
    from ..data_issues.label_checks import noise_entries

    ctx.writer.write_table(schema.NOISE_ENTRIES, noise_entries(noise))
    if noise.shape[0] <= DENSE_NOISE_MAX:
        ctx.writer.write_array(schema.NOISE_MATRIX, noise)


#: Nearest reference images whose labels are weighed against a suspected label error.
LABEL_NEIGHBOURS = 10


def _label_evidence(ctx: SectionContext, table: pd.DataFrame) -> dict:
    """Evidence from the labelled reference set for the rows the probabilities flag: the labels
    of their nearest reference images in embedding space and of their near-copy there.

    Only the flagged rows are looked up: the evidence can only unflag or re-rank them, and the
    search then costs (flagged x reference) instead of (N x reference).
    """
    ref = ctx.reference
    if ref is None or schema.LABEL not in ref.columns or not len(ref):
        return {}
    n = len(ctx.samples)
    ref_labels = ref[schema.LABEL].to_numpy(np.int64)
    flagged = np.sort(table.loc[table["is_label_issue"].to_numpy(bool), "index"].to_numpy())
    out: dict = {}
    if ctx.embeddings is not None and ctx.reference_embeddings is not None and flagged.size:
        from ..explain.embeddings import NeighbourIndex

        k = min(LABEL_NEIGHBOURS, len(ref))
        index = NeighbourIndex(np.asarray(ctx.reference_embeddings, dtype=np.float32))
        rows, _ = index.query(np.asarray(ctx.embeddings, dtype=np.float32)[flagged], k=k)
        nb = np.full((n, k), -1, dtype=np.int64)
        nb[flagged] = np.where(rows >= 0, ref_labels[np.maximum(rows, 0)], -1)
        out["neighbour_labels"] = nb
    pairs = ctx.leak_pairs
    if pairs is not None and len(pairs):
        leak = pairs[pairs["scope"] == "leak"].sort_values("similarity", ascending=False)
        best = leak.drop_duplicates("i")
        copies = np.full(n, -1, dtype=np.int64)
        copies[best["i"].to_numpy(int)] = ref_labels[best["j"].to_numpy(int)]
        out["copy_labels"] = copies
    return out


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
    ctx.leak_pairs = pairs
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

#: Sections that run only when their input was given (not recorded at all otherwise).
OPTIONAL: dict[str, Callable[[SectionContext], bool]] = {
    "class_hierarchy": lambda ctx: ctx.hierarchy is not None,
}

SECTIONS: dict[str, Callable[[SectionContext], str | None]] = {
    "metrics": _metrics,
    "class_hierarchy": _hierarchy,
    "embedding_map": _embedding_map,
    "slices": _slices,
    "discovered_slices": _discovery,
    "duplicates": _duplicates,  # before label_issues: a near-copy's label is evidence there
    "label_issues": _label_issues,
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
    hierarchy=None,
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
        hierarchy=hierarchy,
    )
    for name, fn in SECTIONS.items():
        if name in OPTIONAL and not OPTIONAL[name](ctx):
            continue
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
