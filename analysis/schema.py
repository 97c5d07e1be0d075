"""Names of the run directory's files and of the columns of ``samples.parquet``.

The run directory is the contract between the analysis layer and every reader (dashboard,
reports, other tools). Column names are defined once here; everything else imports them.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# Files inside runs/<run-id>/
MANIFEST = "manifest.json"
SAMPLES = "samples.parquet"
PROBS = "probs.npy"  # float32 [N, C], row i = samples.parquet row i
EMBEDDINGS = "embeddings.npy"  # float16 [N, D], penultimate-layer features
REFERENCE_SAMPLES = "reference.parquet"  # the optional reference (training) set, same core columns
REFERENCE_EMBEDDINGS = "reference_embeddings.npy"  # float16 [M, D]
SIGNATURES = "signatures.npy"  # float16 [N, 768] appearance signatures (near-copy search)
REFERENCE_SIGNATURES = "reference_signatures.npy"  # float16 [M, 768]
SLICES = "slices.parquet"  # one row per single-predicate slice (see analysis.stats.slices)
DISCOVERED = "discovered_slices.parquet"  # conjunctions found by analysis.stats.discovery
CLUSTERS = "clusters.parquet"  # one row per embedding cluster
EMBEDDING_MAP = "embedding_map.json"  # how the map was made: every image, or a sample + placement
LABEL_ISSUES = "label_issues.parquet"  # ranked suspected label errors
NOISE_MATRIX = "noise_matrix.npy"  # float64 [C, C], [i, j] = P(given label i | true label j);
# written up to 256 classes (analysis.pipeline.sections.DENSE_NOISE_MAX)
NOISE_ENTRIES = "noise_entries.parquet"  # its non-zero off-diagonal entries: given, true, rate
NEIGHBOURS = "neighbours.npy"  # int32 [N, 8]: each image's nearest other images (-1: none)
REFERENCE_NEIGHBOURS = "reference_neighbours.npy"  # int32 [N, 8]: its nearest reference rows
DUPLICATES = "duplicates.parquet"  # pairs: within-eval near-duplicates and eval<->reference leakage
OUTLIERS = "outliers.parquet"  # one row per (sample, outlier type)
OUTLIER_SUMMARY = "outlier_summary.parquet"  # one row per outlier type: counts, error rates
METRICS = "metrics.json"  # headline metrics with intervals, per-class table, confusion
HIERARCHY = "class_hierarchy.json"  # the --class-hierarchy file, checked (analysis.stats.hierarchy)
HIERARCHY_METRICS = "hierarchy_metrics.parquet"  # per (level, superclass): metrics with intervals
CAMS_DIR = "cams"  # cached CAM maps, <sample_id>__<method>__<layer>__<class>.npy
THUMBS_DIR = "thumbs"  # gallery JPEGs in packs + index.parquet (analysis.store.thumbs)
ROBUSTNESS_DIR = "robustness"
TRIAGE = "triage.parquet"  # one row per (failure group, candidate cause): analysis.triage.table
TRIAGE_INFO = "triage.json"  # what triage used: settings, representation and shortcut tables

# Core columns of samples.parquet (one row per analysed image, in probs.npy order)
SAMPLE_ID = "sample_id"  # stable id: "s" + 12 hex of sha1(path relative to the data root)
PATH = "path"  # absolute path of the image file
RELPATH = "relpath"  # path relative to the data root (what the user's manifest said)
CONTENT_HASH = "content_hash"  # sha256 hex of the file bytes (keys review data across runs)
PHASH = "phash"  # 64-bit perceptual hash (DCT) as 16 hex digits, "" if not computed
LABEL = "label"  # int 0..C-1, the given label
LABEL_NAME = "label_name"
PRED = "pred"  # int 0..C-1, argmax of probs
PRED_NAME = "pred_name"
CONFIDENCE = "confidence"  # max probability, [0, 1]
TRUE_PROB = "true_prob"  # probability of the given label
MARGIN = "margin"  # top-1 minus top-2 probability, [0, 1]
LOSS = "loss"  # cross-entropy of the given label, nats
ENTROPY = "entropy"  # of the predicted distribution, nats
CORRECT = "correct"  # bool, pred == label
LATENCY_MS = "latency_ms"  # model time per image in its batch, milliseconds
# int: the file's EXIF orientation tag, 0 = none. 1 = as stored; 2-8 = a photo viewer shows the
# image flipped or rotated (6: 90° clockwise, 8: 90° counter-clockwise, 3: 180°) while the model
# saw the stored pixels, unless the run used --exif-transpose (manifest preprocessing
# "exif_transpose"). Written by the pass.
EXIF_ORIENTATION = "exif_orientation"

CORE_COLUMNS = [
    SAMPLE_ID,
    PATH,
    RELPATH,
    CONTENT_HASH,
    LABEL,
    LABEL_NAME,
    PRED,
    PRED_NAME,
    CONFIDENCE,
    TRUE_PROB,
    MARGIN,
    LOSS,
    ENTROPY,
    CORRECT,
]

# Image properties, computed on the decoded image during the pass
BRIGHTNESS = "brightness"  # mean luma, [0, 1]
CONTRAST = "contrast"  # std of luma, [0, 0.5]
SHARPNESS = "sharpness"  # variance of the Laplacian of luma (higher = sharper)
SATURATION = "saturation"  # mean HSV saturation, [0, 1]
NOISE = "noise"  # estimated noise sigma of luma, 8-bit grey levels (Immerkaer 1996)
WIDTH = "width"  # original pixels
HEIGHT = "height"
ASPECT_RATIO = "aspect_ratio"  # width / height
FILE_SIZE = "file_size"  # bytes

PROPERTY_COLUMNS = [
    BRIGHTNESS,
    CONTRAST,
    SHARPNESS,
    SATURATION,
    NOISE,
    WIDTH,
    HEIGHT,
    ASPECT_RATIO,
    FILE_SIZE,
]

# Written by later sections
UMAP_X = "umap_x"
UMAP_Y = "umap_y"
CLUSTER = "cluster"  # int cluster id, -1 = none
LABEL_ISSUE_SCORE = "label_quality"  # [0, 1], low = likely label error
IS_LABEL_ISSUE = "is_label_issue"
SUGGESTED_LABEL = "suggested_label"  # int, the model's best other class
DUPLICATE_OF = "duplicate_of"  # sample_id of a within-set near-duplicate, or None
LEAK_OF = "leak_of"  # relpath of the reference image this one leaks from, or None
LEAK_SIMILARITY = "leak_similarity"
# cosine distance to the nearest reference image in the model's embedding space (PCA'd, a
# sample of at most 4,000-20,000 reference images searched; written by the triage section)
REFERENCE_DISTANCE = "reference_distance"

# Columns of triage.parquet, one row per (failure group, candidate cause, variant) tested, in
# the order analysis.triage.table writes them (TRIAGE_COLUMNS there is checked against this).
TRIAGE_COLUMNS = {
    "group_rank": "1 = the group that costs the most errors (the whole set ranks by its suspected"
    " label errors)",
    "group_key": "stable id of the group: kind + slice spec, or confusion:a->b",
    "group_kind": "weak_class, confusion, slice, discovered, error_cluster or whole_set",
    "group": "the group in words ('lighting is night', 'given star predicted as cross')",
    "group_n": "images in the group (a pair: images of its given class)",
    "group_errors": "its failures (a pair: images of a predicted b)",
    "group_expected": "failures expected at the rate of the rows it is compared with",
    "group_cost": "errors it costs: excess errors, errors - expected (a pair: its images)",
    "group_p_adj": "the adjusted p-value that made it a failure group",
    "group_spec": "slice spec JSON of the group's rows",
    "group_event_spec": "slice spec JSON of its failing images",
    "group_also": "JSON list: near-copies of the group merged into it (Jaccard >= 0.9)",
    "group_query": "JSON: gallery query parameters of the group's failing images",
    "cause": "label_noise, under_represented, shortcut, image_quality, unfamiliar,"
    " overlapping, leakage or none",
    "cause_label": "the cause in words",
    "detail": "the variant tested: a quality type, 'value → class', an under-represented value",
    "status": "significant, not significant, not tested, found (a whole-set data issue) or none",
    "statistic": "the cause's test statistic (see statistic_name)",
    "statistic_name": "what the statistic is",
    "p_value": "one-sided p-value of the cause's test",
    "p_adj": "Benjamini-Hochberg adjusted over every (group, cause, variant) tested",
    "significant": "p_adj < alpha (0.05)",
    "share": "share of the group's cost the cause accounts for, [0, 1] (read with significant)",
    "share_low": "95% row-bootstrap interval of share",
    "share_high": "",
    "explained": "errors accounted for (unclipped estimate)",
    "evidence": "the evidence in one paragraph, with its numbers",
    "numbers": "JSON: the numbers behind the evidence (charts read them)",
    "n_images": "images behind the finding",
    "query": "JSON: gallery query parameters of those images (claimed rows)",
    "recommendation": "the action, its numbers as {0}, {1}, ...",
    "links": "JSON list of {text, query}: each number of the recommendation and its images",
    "action": "relabel, collect, break_shortcut, augment, review_definition, deduplicate, model",
    "needs": "for a cause not tested: what the run lacks",
}
# With a class hierarchy, per level L (1 = coarsest): "superclass_L" (the given label's group
# name) and "pred_superclass_L" (the prediction's); see analysis.stats.hierarchy.level_column.
SUPERCLASS_PREFIX = "superclass_"
