"""The derived sections of a run, computed after the pass from the stored pass outputs.

Each section is a small function ``(ctx) -> None | skip reason`` registered in ``SECTIONS``: it
reads the pass outputs from the :class:`SectionContext` (as stored in the run: probabilities,
float16 embeddings and signatures, the samples table), writes its files with ``ctx.writer`` and
puts the samples columns it adds in ``ctx.new_columns``. A section that reads another's columns
declares it in ``NEEDS`` and sees exactly those (``ctx.samples_with_new()``), in a fresh run and
in a refresh alike. ``run_sections`` runs them in order inside a guard that records ok/failed in
the manifest, so one failure never loses the others; each entry also records the fingerprint of
the code that computed it (:mod:`analysis.pipeline.versions`), the columns and the files it wrote,
so an upgrade recomputes only the sections whose code changed.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable
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
    #: section name -> the samples columns it added (this run's, or a refreshed run's current ones)
    outputs: dict = field(default_factory=dict)
    #: the section running now
    current: str = ""
    model: object = None  # the classifier (None for a predictions-file run or a refresh)
    prep: object = None  # its Preprocessing
    pass_seconds: float = 0.0  # how long the model pass took (budgets of optional work)
    status: dict = field(default_factory=dict)  # section -> its manifest entry, so far
    hierarchy: object = None  # analysis.stats.hierarchy.ClassHierarchy or None

    @property
    def labels(self) -> np.ndarray:
        return self.samples[schema.LABEL].to_numpy()

    def table(self, name: str) -> pd.DataFrame | None:
        """A table a section this one ``NEEDS`` wrote: this run's, or in a refresh the stored one
        (the run being written holds both), so a refresh reads what a fresh run reads."""
        p = self.writer.tmp / name
        return pd.read_parquet(p) if p.exists() else None

    @property
    def new_columns(self) -> dict:
        """The samples columns the running section adds: name -> values in samples order."""
        return self.outputs.setdefault(self.current, {})

    def samples_with_new(self) -> pd.DataFrame:
        """samples plus the columns of the sections this one needs (``NEEDS``) and its own."""
        cols: dict = {}
        for name in (*NEEDS.get(self.current, ()), self.current):
            cols.update(self.outputs.get(name, {}))
        return self.samples.assign(**cols) if cols else self.samples


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
    from ..explain.embeddings import cluster_table, embedding_map

    # the stored embeddings (float16, memory-mapped), read block by block; above
    # MAP_FIT_MAX images fitted on a sample stratified by given class x right/wrong
    s = ctx.samples
    m = embedding_map(
        ctx.embeddings,
        strata=2 * s[schema.LABEL].to_numpy() + s[schema.CORRECT].to_numpy(),
        umap=getattr(ctx.cfg, "umap", True),
        seed=ctx.cfg.seed,
        progress=lambda msg: ctx.progress(f"embedding map: {msg}", 0.5),
    )
    if m.xy is not None:
        ctx.new_columns[schema.UMAP_X] = m.xy[:, 0].astype(np.float32)
        ctx.new_columns[schema.UMAP_Y] = m.xy[:, 1].astype(np.float32)
    ctx.new_columns[schema.CLUSTER] = m.clusters.astype(np.int64)
    table = cluster_table(ctx.samples_with_new(), class_names=ctx.class_names)
    ctx.writer.write_table(schema.CLUSTERS, table)
    ctx.writer.write_json(schema.EMBEDDING_MAP, m.to_dict())
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
    """The given label's superclass columns the class_hierarchy section added, coarsest first.

    Read from that section's outputs by their schema prefix rather than through
    ``stats.hierarchy.level_column``: importing the hierarchy module would make the per-class
    metrics code (which it imports) part of the slices' code fingerprints.
    """
    p = schema.SUPERCLASS_PREFIX
    cols = [c for c in ctx.outputs.get("class_hierarchy", {}) if c.startswith(p)]
    return sorted(cols, key=lambda c: int(c[len(p) :]))


def _slice_args(ctx: SectionContext) -> dict:
    cluster = schema.CLUSTER if schema.CLUSTER in ctx.outputs.get("embedding_map", {}) else None
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
    _write_noise(ctx, est)
    by_row = table.set_index("index").sort_index()
    ctx.new_columns[schema.LABEL_ISSUE_SCORE] = by_row["label_quality"].to_numpy(np.float32)
    ctx.new_columns[schema.IS_LABEL_ISSUE] = by_row["is_label_issue"].to_numpy(bool)
    ctx.new_columns[schema.SUGGESTED_LABEL] = by_row["suggested_label"].to_numpy(np.int64)


#: CAMs of the images a review opens first (suspected label errors and errors by loss, in
#: turns) are computed at analysis time for up to this share of the model pass's time (at least
#: CAM_MIN_S seconds, and at least CAM_MIN_IMAGES images): a meeting's first images open at
#: once; the dashboard prefetches the rest while people look at the current one. Each image
#: costs what the detail page shows: two maps, their faithfulness checks (10 forwards each) and
#: sanity checks (a map on the randomised model), about 24 forwards, in batched passes.
CAM_SHARE, CAM_MIN_S, CAM_MIN_IMAGES = 0.25, 3.0, 8


def _cams(ctx: SectionContext):
    if ctx.model is None:
        return (
            "no model with gradients (a predictions file, an ONNX or TorchScript model, or a"
            " refresh): the maps are computed when an image is opened"
        )
    from ..explain.cam_views import precompute_cams, precompute_order

    samples = ctx.samples_with_new()
    rows = precompute_order(samples)
    if not len(rows):
        return "no errors to look at"
    budget = max(CAM_MIN_S, CAM_SHARE * ctx.pass_seconds)

    def step(done, total):
        ctx.progress(f"CAMs of the images a review opens first: {done} of up to {total}", 0.0)

    try:
        precompute_cams(
            ctx.writer.tmp,
            samples,
            ctx.model,
            ctx.prep,
            rows,
            budget_s=budget,
            min_images=CAM_MIN_IMAGES,
            progress=step,
            limits=_decode_limits(ctx.cfg),
        )
    except (ValueError, TypeError) as e:  # a model CAMs cannot hook (no conv or token map)
        return f"CAMs are not available for this model: {e}"
    return None


def _decode_limits(cfg) -> dict:
    """The pass's file limits (see :func:`analysis.loading.images.run_decode_limits`)."""
    return {k: int(getattr(cfg, k)) for k in ("max_pixels", "max_file_bytes") if getattr(cfg, k, 0)}


#: Classes up to which the noise matrix is also stored whole (8 bytes x classes^2: 8 MB at
#: 1,000 classes, 800 MB at 10,000); its non-zero entries are always stored.
DENSE_NOISE_MAX = 256


def _write_noise(ctx: SectionContext, est) -> None:
    from ..data_issues.label_checks import noise_entries

    ctx.writer.write_table(schema.NOISE_ENTRIES, noise_entries(est))  # from its non-zero cells
    if est.n_classes <= DENSE_NOISE_MAX:
        ctx.writer.write_array(schema.NOISE_MATRIX, est.noise_matrix)


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
        from ..stats.neighbours import knn

        k = min(LABEL_NEIGHBOURS, len(ref))
        # the one kNN path with its work limit: exact as before on small sets, the index at a
        # million reference images (an exact search of 60,000 flagged rows against them, 16
        # queries per pass over the float16 file, measured 3.8 s per query on the shared
        # 2-core machine: hours); only the flagged rows are read, never a float32 copy of all
        q = np.asarray(ctx.embeddings[flagged], dtype=np.float32)
        rows = knn(q, ctx.reference_embeddings, k=k, seed=ctx.cfg.seed).indices
        nb = np.full((n, k), -1, dtype=np.int64)
        nb[flagged] = np.where(rows >= 0, ref_labels[np.maximum(rows, 0)], -1)
        out["neighbour_labels"] = nb
    pairs = ctx.table(schema.DUPLICATES)  # the duplicates section's pairs (NEEDS)
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
        near = find_near_copies(
            ctx.signatures,
            ctx.reference_signatures,
            progress=lambda m: ctx.progress(f"duplicates: {m}", 0.5),
        )
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
        e = ctx.embeddings
        r = ctx.reference_embeddings if ctx.reference_embeddings is not None else e
        pairs["model_similarity"] = np.where(
            leak, _pair_cosine(e, i, r, jl), _pair_cosine(e, i, e, jw)
        )
    pairs = pairs.sort_values("similarity", ascending=False).reset_index(drop=True)
    ctx.writer.write_table(schema.DUPLICATES, pairs)
    cols = partner_columns(
        pairs, s[schema.SAMPLE_ID].tolist(), None if ref is None else ref[schema.RELPATH].tolist()
    )
    for col in cols.columns:
        ctx.new_columns[col] = cols[col].to_numpy()


def _pair_cosine(a, i: np.ndarray, b, j: np.ndarray) -> np.ndarray:
    """Cosine of rows ``a[i]`` and ``b[j]``, reading only those rows (the stored arrays may be
    memory-mapped million-row float16 files)."""
    out = np.zeros(len(i), dtype=np.float32)
    for s in range(0, len(i), 65_536):
        x = np.asarray(a[i[s : s + 65_536]], dtype=np.float32)
        y = np.asarray(b[j[s : s + 65_536]], dtype=np.float32)
        num = np.einsum("ij,ij->i", x, y)
        den = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        out[s : s + 65_536] = num / np.maximum(den, 1e-12)
    return out


def _neighbours(ctx: SectionContext):
    """Each image's nearest evaluation and reference images for the detail page, found once
    here (a million images cannot be searched on every click)."""
    if ctx.embeddings is None:
        return "no embeddings: nothing to search"
    from ..explain.embeddings import nearest_rows

    own, ref = nearest_rows(
        ctx.embeddings,
        ctx.reference_embeddings,
        seed=ctx.cfg.seed,
        progress=lambda m: ctx.progress(f"neighbours: {m}", 0.5),
    )
    ctx.writer.write_array(schema.NEIGHBOURS, own)
    if ref is not None:
        ctx.writer.write_array(schema.REFERENCE_NEIGHBOURS, ref)
    return None


def _outliers(ctx: SectionContext):
    from ..data_issues.outliers import find_outliers, outlier_summary

    table = ctx.samples[[*schema.PROPERTY_COLUMNS, schema.CORRECT]].reset_index(drop=True)
    found = find_outliers(table)
    ctx.writer.write_table(schema.OUTLIERS, found)
    ctx.writer.write_table(OUTLIER_SUMMARY, outlier_summary(table, found))


OUTLIER_SUMMARY = schema.OUTLIER_SUMMARY


def _triage(ctx: SectionContext):
    """Root-cause triage of every failure group, from what the sections above stored."""
    import numpy as np

    from ..store.selections import save_selection
    from ..triage.inputs import TriageInputs
    from ..triage.table import triage

    def table(name):
        p = ctx.writer.tmp / name
        return pd.read_parquet(p) if p.exists() else None

    inputs = TriageInputs(
        samples=ctx.samples_with_new(),
        class_names=ctx.class_names,
        metadata_columns=ctx.metadata_columns,
        property_columns=[c for c in schema.PROPERTY_COLUMNS if c in ctx.samples.columns],
        reference=ctx.reference,
        embeddings=None if ctx.embeddings is None else np.asarray(ctx.embeddings),
        reference_embeddings=ctx.reference_embeddings if ctx.reference is not None else None,
        slices=table(schema.SLICES),
        discovered=table(schema.DISCOVERED),
        seed=ctx.cfg.seed,
        missing={
            k: v.get("error") or v.get("reason") or v.get("status")
            for k, v in ctx.status.items()
            if v.get("status") != "ok"
        },
    )
    result = triage(
        inputs,
        save_selection=lambda ids: save_selection(ctx.writer.tmp, ids),
        outliers=table(schema.OUTLIERS),
    )
    ctx.writer.write_table(schema.TRIAGE, result.table)
    ctx.writer.write_json(schema.TRIAGE_INFO, result.info)
    if result.distance is not None:
        ctx.new_columns[schema.REFERENCE_DISTANCE] = result.distance.astype(np.float32)


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
    "neighbours": _neighbours,  # the detail page's nearest images, found once
    "outliers": _outliers,
    "cams": _cams,  # before triage: its shortcut rows read the cached maps
    "triage": _triage,
}

#: section -> the sections whose samples columns it reads (recomputing one recomputes these)
NEEDS: dict[str, tuple[str, ...]] = {
    # the cluster column and the superclass columns are slice sources
    "slices": ("embedding_map", "class_hierarchy"),
    "discovered_slices": ("embedding_map", "class_hierarchy"),
    "label_issues": ("duplicates",),  # a near-copy's label in the reference set is evidence
    "cams": ("label_issues",),  # the review queue opens suspected label errors first
    # every section above: triage weighs what they all found. Written out, not derived from
    # SECTIONS: SectionContext reads NEEDS, so a NEEDS that refers to SECTIONS would put every
    # section's function into every section's code fingerprint (one section's edit would stale
    # them all); tests/analysis/test_versions.py checks the list is complete.
    "triage": (
        "metrics",
        "class_hierarchy",
        "embedding_map",
        "slices",
        "discovered_slices",
        "duplicates",
        "label_issues",
        "neighbours",
        "outliers",
        "cams",
    ),
}


def run_sections(
    ctx: SectionContext, *, sections: dict, timings: dict, only: Iterable[str] | None = None
) -> dict[str, dict]:
    """Run the registered sections (all, or ``only`` these); returns the columns of each.

    ``ctx.samples`` holds the pass columns only; ``ctx.outputs`` the columns of sections that
    are not run again (a refresh), which those that ``NEEDS`` them read. Each section's manifest
    entry in ``sections`` gets its status, seconds, code fingerprint, columns and files.
    """
    from .versions import section_code

    writer, progress = ctx.writer, ctx.progress
    wanted = set(SECTIONS if only is None else only)
    ctx.status = sections
    for name, fn in SECTIONS.items():
        if name not in wanted or (name in OPTIONAL and not OPTIONAL[name](ctx)):
            continue
        ctx.current = name
        ctx.outputs[name] = {}
        written = len(writer.written)
        with section(name, sections, timings, progress) as entry:
            skipped = fn(ctx)
            if isinstance(skipped, str):
                entry.update(status="skipped", reason=skipped)
        if entry["status"] == "failed":
            ctx.outputs[name] = {}  # half-made columns of a failed section are not kept
        code = section_code(name)
        entry.update(
            code=code.fingerprint,
            code_modules=list(code.modules),
            columns=list(ctx.outputs[name]),
            files=writer.written[written:],
        )
    return ctx.outputs


def with_section_columns(samples: pd.DataFrame, outputs: dict) -> pd.DataFrame:
    """samples.parquet: the pass columns, then each section's columns in registry order."""
    cols = {c: v for name in SECTIONS for c, v in (outputs.get(name) or {}).items()}
    return samples.assign(**cols) if cols else samples


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
