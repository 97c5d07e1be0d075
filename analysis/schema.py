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
SLICES = "slices.parquet"  # one row per single-predicate slice (see analysis.stats.slices)
DISCOVERED = "discovered_slices.parquet"  # conjunctions found by analysis.stats.discovery
CLUSTERS = "clusters.parquet"  # one row per embedding cluster
LABEL_ISSUES = "label_issues.parquet"  # ranked suspected label errors
NOISE_MATRIX = "noise_matrix.npy"  # float64 [C, C], [i, j] = P(given label i | true label j)
DUPLICATES = "duplicates.parquet"  # pairs: within-eval near-duplicates and eval<->reference leakage
OUTLIERS = "outliers.parquet"  # one row per (sample, outlier type)
OUTLIER_SUMMARY = "outlier_summary.parquet"  # one row per outlier type: counts, error rates
METRICS = "metrics.json"  # headline metrics with intervals, per-class table, confusion
CAMS_DIR = "cams"  # cached CAM maps, <sample_id>__<method>__<layer>__<class>.npy
THUMBS_DIR = "thumbs"  # cached JPEG thumbnails, <sample_id>.jpg
ROBUSTNESS_DIR = "robustness"

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
