"""``analyze``: inputs -> one batched pass -> derived sections -> a run directory.

Each derived section (metrics, embedding map, slices, label issues, duplicates, outliers) runs in
its own guard: a section that fails is recorded in the manifest with its error, and the others are
still written. Re-analysing the same inputs with the same config reuses the existing run, unless
it was made by other analysis code (:mod:`analysis.version`): then it is analysed again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema
from ..loading.datasets import ImageSet, load_image_set, read_class_file
from ..loading.inference import PassResult, Progress, prediction_columns, run_pass, softmax
from ..loading.models import Preprocessing, default_preprocessing, load_model
from ..store.runstore import Run, RunError, RunWriter, now_iso, open_run
from ..version import analysis_code, is_current


@dataclass(frozen=True)
class AnalysisConfig:
    """Everything that determines a run. Paths are as the user gave them.

    ``resize``/``crop``/``mean``/``std``/``exif_transpose`` override the model's defaults (sidecar
    JSON, then the model family's own preprocessing: torchvision's documented transform for
    ``arch``, timm's data config, a Hugging Face folder's image processor, an ONNX graph's input
    size; EXIF orientation ignored). ``embeddings`` (predictions-file runs only) is a ``.npy``
    ``[N, D]`` whose row i belongs to row i of the predictions file.
    ``labels_are`` ("names" / "indices") says how a label column of whole numbers is read when
    the class names are numbers too. ``max_file_bytes``/``max_pixels`` cap what one image file
    may cost (None: :mod:`analysis.loading.images`'s defaults).
    """

    data: str
    model: str | None = None
    predictions: str | None = None
    reference: str | None = None
    arch: str | None = None
    classes: str | None = None
    trust_checkpoint: bool = False
    resize: int | None = None
    crop: int | None = None
    no_crop: bool = False
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    batch_size: int = 64
    num_workers: int | None = None
    device: str | None = None
    seed: int = 0
    min_support: int = 20
    umap: bool = True
    max_pixels: int | None = None
    max_file_bytes: int | None = None
    exif_transpose: bool | None = None
    labels_are: str | None = None
    onnx_output: str | None = None
    onnx_embeddings: str | None = None
    embeddings: str | None = None

    def fingerprint_dict(self) -> dict:
        """The parts of the config that change results (not device or worker count)."""
        d = asdict(self)
        for k in (
            "data",
            "model",
            "predictions",
            "reference",
            "classes",
            "device",
            "num_workers",
            "batch_size",
            "embeddings",  # its content hash is part of the run id instead
        ):
            d.pop(k)
        return d


def _preprocessing(cfg: AnalysisConfig, arch: str | None, sidecar: dict) -> Preprocessing:
    """CLI options, else the sidecar's keys (each on its own), else the architecture's defaults.

    A sidecar ``"crop": null`` means what ``--no-crop`` means: resize to a square.
    """
    where = f"sidecar {Path(cfg.model).with_suffix('.json')}" if cfg.model else "model sidecar"

    def pixels(key: str) -> int:
        v = sidecar[key]
        whole = isinstance(v, int | float) and not isinstance(v, bool) and float(v).is_integer()
        if not whole or v < 1:
            raise ValueError(
                f"{where}: {key!r} is {v!r}; expected a positive whole number of pixels"
                + (" or null (no crop)" if key == "crop" else "")
            )
        return int(v)

    def rgb(key: str) -> tuple[float, float, float]:
        v = sidecar[key]
        try:
            t = tuple(float(x) for x in v) if not isinstance(v, str) else ()
        except (TypeError, ValueError):
            t = ()
        if len(t) != 3 or (key == "std" and min(t) <= 0):
            what = "three positive numbers" if key == "std" else "three numbers"
            raise ValueError(f"{where}: {key!r} is {v!r}; expected {what} (R, G, B)")
        return t

    side: dict = {}
    if sidecar.get("resize") is not None:
        side["resize"] = pixels("resize")
    if "crop" in sidecar:
        side["crop"] = None if sidecar["crop"] is None else pixels("crop")
    for key in ("mean", "std"):
        if sidecar.get(key) is not None:
            side[key] = rgb(key)
    if "exif_transpose" in sidecar:
        if not isinstance(sidecar["exif_transpose"], bool):
            raise ValueError(
                f"{where}: 'exif_transpose' is {sidecar['exif_transpose']!r}; expected true or false"
            )
        side["exif_transpose"] = sidecar["exif_transpose"]
    if sidecar.get("interpolation") is not None:
        from ..loading.models import INTERPOLATIONS

        if sidecar["interpolation"] not in INTERPOLATIONS:
            raise ValueError(
                f"{where}: 'interpolation' is {sidecar['interpolation']!r}; expected one of"
                f" {list(INTERPOLATIONS)}"
            )
        side["interpolation"] = sidecar["interpolation"]
    if cfg.model:
        base = default_preprocessing(arch, path=cfg.model, sidecar=sidecar)
    else:
        base = default_preprocessing(arch)
    base = replace(base, **side)
    return replace(
        base,
        resize=cfg.resize or base.resize,
        crop=None if cfg.no_crop else (cfg.crop or base.crop),
        mean=tuple(cfg.mean) if cfg.mean else base.mean,
        std=tuple(cfg.std) if cfg.std else base.std,
        exif_transpose=base.exif_transpose if cfg.exif_transpose is None else cfg.exif_transpose,
    )


_OPTION = {
    "resize": "--resize",
    "crop": "--crop",
    "mean": "--mean",
    "std": "--std",
    "exif_transpose": "--exif-transpose",
}


def _prep_sources(cfg: AnalysisConfig, arch: str | None, sidecar: dict) -> dict[str, str]:
    """Where each preprocessing value came from, in words ("--resize", "sidecar", ...)."""
    side = f"sidecar {Path(cfg.model).with_suffix('.json').name}" if cfg.model else "sidecar"
    default = _default_origin(cfg, arch)
    given = {
        "resize": cfg.resize,
        "crop": cfg.crop if not cfg.no_crop else None,
        "mean": cfg.mean,
        "std": cfg.std,
        "exif_transpose": cfg.exif_transpose,
    }
    out = {}
    for key, value in given.items():
        if key == "crop" and cfg.no_crop:
            out[key] = "--no-crop"
        elif value is not None:
            out[key] = _OPTION[key]
        elif sidecar.get(key) is not None or (key in ("crop", "exif_transpose") and key in sidecar):
            out[key] = side
        else:
            out[key] = "the default" if key == "exif_transpose" else default
    return out


def _default_origin(cfg: AnalysisConfig, arch: str | None) -> str:
    """Where the model family's preprocessing defaults come from, in words."""
    if cfg.model:
        from ..loading.families import family_for
        from ..loading.models import read_sidecar

        fam = family_for(Path(cfg.model).expanduser(), arch, read_sidecar(cfg.model)).name
        where = {
            "timm": f"timm's data config for {arch}",
            "hf": "the model folder's image processor",
            "onnx": "the ONNX graph's input size (ImageNet's ratio and mean/std)",
        }.get(fam)
        if where:
            return where
    return f"torchvision's default for {arch}" if arch else "the ImageNet default"


def check_config(cfg: AnalysisConfig) -> None:
    """Refuse options that contradict each other or cannot be meant, in one line naming them.

    Checked before anything is loaded; the preprocessing the options add up to is checked by
    :func:`check_preprocessing` once the sidecar and the architecture's defaults are known."""
    for name, value, lowest in (
        ("--resize", cfg.resize, 1),
        ("--crop", cfg.crop, 1),
        ("--batch-size", cfg.batch_size, 1),
        ("--workers", cfg.num_workers, 0),
        ("--min-support", cfg.min_support, 1),
        ("--max-pixels", cfg.max_pixels, 1),
        ("--max-file-bytes", cfg.max_file_bytes, 1),
    ):
        if value is None:
            continue
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole or value < lowest:
            what = "a positive whole number" if lowest else "a whole number, 0 or more"
            raise ValueError(f"{name} is {value!r}; expected {what}")
    if cfg.crop is not None and cfg.no_crop:
        raise ValueError(
            f"--crop {cfg.crop} and --no-crop contradict each other: give --crop N to centre-crop"
            " N x N after the resize, or --no-crop to resize to a square without cropping"
        )
    if cfg.labels_are is not None and cfg.labels_are not in ("names", "indices"):
        raise ValueError(f"--labels-are is {cfg.labels_are!r}; expected 'names' or 'indices'")
    for name, value in (("--mean", cfg.mean), ("--std", cfg.std)):
        if value is not None and len(tuple(value)) != 3:
            raise ValueError(f"{name} is {value!r}; expected three numbers (R, G, B)")


def check_preprocessing(prep: Preprocessing, sources: dict[str, str] | None = None) -> None:
    """Refuse a preprocessing that makes every number meaningless, naming the values and where
    they came from: a crop larger than the resize, mean/std outside [0, 1] (given on the 0-255
    scale), non-positive or non-finite values."""
    import math

    src = sources or {}

    def named(key: str, value) -> str:
        shown = ",".join(f"{v:g}" for v in value) if isinstance(value, tuple) else value
        where = src.get(key, "")
        if where.startswith("--"):
            return f"{where} {shown}"
        return f"{key} {shown}" + (f" ({where})" if where else "")

    for key in ("resize", "crop"):
        value = getattr(prep, key)
        if value is not None and value < 1:
            raise ValueError(f"{named(key, value)}: expected a positive whole number of pixels")
    if prep.crop is not None and prep.crop > prep.resize:
        raise ValueError(
            f"{named('crop', prep.crop)} is larger than {named('resize', prep.resize)}: a centre"
            f" crop cannot be larger than the resized image (its shorter side is {prep.resize} px);"
            f" give --crop {prep.resize} or less, or --no-crop to resize to a"
            f" {prep.resize}x{prep.resize} square"
        )
    for key in ("mean", "std"):
        value = getattr(prep, key)
        bad = [
            v
            for v in value
            if not math.isfinite(v) or not (0 <= v <= 1) or (key == "std" and v == 0)
        ]
        if bad:
            scale = " (they look like the 0-255 scale: divide by 255)" if max(value) > 1 else ""
            raise ValueError(
                f"{named(key, value)} is outside {'(0, 1]' if key == 'std' else '[0, 1]'}:"
                f" pixels are scaled to [0, 1] before normalising, so mean and std are on that"
                f" scale{scale}, e.g. ImageNet's 0.485,0.456,0.406 and 0.229,0.224,0.225"
            )


def describe_preprocessing(prep: Preprocessing, sources: dict[str, str]) -> str:
    """The preprocessing line printed at the start of every analysis: values, then origins."""
    by_origin: dict[str, list[str]] = {}
    for key in ("resize", "crop", "mean", "std", "exif_transpose"):
        by_origin.setdefault(sources.get(key, "?"), []).append(key.replace("_", " "))
    origins = "; ".join(f"{', '.join(keys)} from {where}" for where, keys in by_origin.items())
    return f"preprocessing: {prep.describe()} [{origins}]"


def _class_names(cfg: AnalysisConfig) -> tuple[list[str] | None, str | None]:
    """(class names, where they came from): --classes, the sidecar, or the model's own names (a
    Hugging Face config's id2label); (None, None) leaves them to the data."""
    if cfg.classes:
        return read_class_file(cfg.classes), f"--classes {cfg.classes}"
    if cfg.model:
        from ..loading.models import model_class_names, read_sidecar

        side = read_sidecar(cfg.model)
        if side.get("classes"):
            return [str(c) for c in side["classes"]], "the model's sidecar JSON"
        names = model_class_names(cfg.model, cfg.arch or side.get("arch"), side)
        if names:
            return names, "the model's id2label (config.json)"
    return None, None


def _load_data(cfg: AnalysisConfig) -> ImageSet:
    """The evaluation set, with the class names from :func:`_class_names`; when those came from
    the model, a label the model does not know is named as such."""
    class_names, where = _class_names(cfg)
    try:
        data = load_image_set(cfg.data, class_names=class_names, labels_are=cfg.labels_are)
    except ValueError as e:
        if where and "class list" in str(e):
            raise ValueError(f"{e} (class names from {where})") from None
        raise
    if where == "the model's id2label (config.json)":
        data.warnings.append(f"class names taken from {where}")
    elif class_names is not None and cfg.model:
        from ..loading.models import model_class_names, read_sidecar

        side = read_sidecar(cfg.model)
        own = model_class_names(cfg.model, cfg.arch or side.get("arch"), side)
        if own and own != list(data.class_names):
            diff = [
                f"output {i}: model says {a!r}, {where} says {b!r}"
                for i, (a, b) in enumerate(zip(own, data.class_names, strict=False))
                if a != b
            ]
            data.warnings.append(
                f"the model's id2label disagrees with {where}: "
                + "; ".join(diff[:5])
                + (f" (and {len(diff) - 5} more)" if len(diff) > 5 else "")
                + f"; errorscope uses {where}"
            )
    return data


def run_id_for(
    cfg: AnalysisConfig,
    data: ImageSet,
    model_sha: str | None,
    ref_fp: str | None,
    pred_sha: str | None,
    prep: Preprocessing,
) -> str:
    payload = json.dumps(
        {
            "config": cfg.fingerprint_dict(),
            "data": data.fingerprint(),
            "model": model_sha,
            "predictions": pred_sha,
            "reference": ref_fp,
            "prep": prep.to_dict(),
            "schema": schema.SCHEMA_VERSION,
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
    data_name = Path(cfg.data).stem or "data"
    model_name = (
        Path(cfg.model).stem
        if cfg.model
        else (Path(cfg.predictions).stem if cfg.predictions else "model")
    )
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in f"{data_name}-{model_name}")
    return f"{safe[:60]}-{digest}"


def analyze(
    cfg: AnalysisConfig,
    *,
    runs_dir: str | os.PathLike = "runs",
    progress: Progress | None = None,
    force: bool = False,
) -> Run:
    """Analyse ``cfg`` and return the run (reusing an identical existing run unless ``force``)."""
    if not cfg.model and not cfg.predictions:
        raise ValueError("give a model checkpoint (--model) or a predictions file (--predictions)")
    if cfg.model and cfg.predictions:
        raise ValueError("give either --model or --predictions, not both")
    check_config(cfg)
    say = progress or (lambda msg, frac: None)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    from ..loading.models import read_sidecar, sha256_file, sha256_path

    if cfg.embeddings and not cfg.predictions:
        raise ValueError(
            "--embeddings goes with --predictions (a model run computes its own embeddings)"
        )
    sidecar = read_sidecar(cfg.model) if cfg.model else {}
    arch = cfg.arch or sidecar.get("arch")
    prep = _preprocessing(cfg, arch, sidecar)
    sources = _prep_sources(cfg, arch, sidecar)
    check_preprocessing(prep, sources)
    say(describe_preprocessing(prep, sources), 0.0)

    data = _load_data(cfg)
    reference = (
        load_image_set(cfg.reference, class_names=data.class_names, labels_are=cfg.labels_are)
        if cfg.reference
        else None
    )
    model_sha = sha256_path(cfg.model) if cfg.model else None
    pred_sha = sha256_file(cfg.predictions) if cfg.predictions else None
    if cfg.embeddings:
        pred_sha = f"{pred_sha}+{sha256_file(cfg.embeddings)}"
    run_id = run_id_for(
        cfg, data, model_sha, reference.fingerprint() if reference else None, pred_sha, prep
    )
    final = Path(runs_dir) / run_id
    if not force and (final / schema.MANIFEST).exists():
        try:
            existing = open_run(final)
            manifest = existing.manifest
        except RunError:  # an older run-directory schema
            existing, manifest = None, {}
        if existing is not None and is_current(manifest):
            say(f"reusing existing run {run_id}", 1.0)
            return existing
        # same inputs, other analysis code: the stored results may be wrong or incomplete now
        old = (manifest.get("versions") or {}).get("analysis_code", "unknown")
        say(
            f"run {run_id} was made by other analysis code ({old}, now {analysis_code()}):"
            " analysing again (review tags and notes are kept)",
            0.0,
        )
        force = True

    loaded = None
    if cfg.model:
        say("loading model", 0.0)
        loaded = load_model(
            cfg.model,
            arch=arch,
            num_classes=len(data.class_names),
            trust_checkpoint=cfg.trust_checkpoint,
            device=_device(cfg.device),
            onnx_output=cfg.onnx_output,
            onnx_embeddings=cfg.onnx_embeddings,
        )
    warnings_: list[str] = list(data.warnings) + (list(loaded.notes) if loaded else [])

    with RunWriter(runs_dir, run_id) as w:
        thumbs = w.tmp / schema.THUMBS_DIR
        thumbs.mkdir()
        tp = time.perf_counter()
        res = run_pass(
            data.table[schema.PATH].tolist(),
            prep,
            model=loaded,
            relpaths=data.table[schema.RELPATH].tolist(),
            batch_size=cfg.batch_size,
            num_workers=cfg.num_workers,
            device=_device(cfg.device),
            max_pixels=cfg.max_pixels,
            max_file_bytes=cfg.max_file_bytes,
            thumb_paths=[str(thumbs / f"{sid}.jpg") for sid in data.table[schema.SAMPLE_ID]],
            progress=progress,
            desc="evaluation set",
        )
        timings["pass"] = time.perf_counter() - tp
        if len(res.ok_index) == 0:
            raise ValueError(
                f"none of the {len(data)} images of {cfg.data} could be read; first reasons:"
                f" {[s['reason'] for s in res.skipped[:3]]}"
            )
        table = data.table.iloc[res.ok_index].reset_index(drop=True)
        if loaded is not None:
            probs = softmax(res.logits)
        else:
            probs, pred_warn, pred_rows = _probs_from_file(cfg.predictions, table, data.class_names)
            warnings_ += pred_warn
            if cfg.embeddings:
                res.embeddings = _embeddings_from_file(cfg.embeddings, pred_rows, cfg.predictions)
        samples = build_samples(table, probs, res, data.class_names)

        ref_samples = ref_emb = ref_sig = None
        ref_skipped: list[dict] = []
        if reference is not None:
            tp = time.perf_counter()
            rres = run_pass(
                reference.table[schema.PATH].tolist(),
                prep,
                model=loaded,
                relpaths=reference.table[schema.RELPATH].tolist(),
                batch_size=cfg.batch_size,
                num_workers=cfg.num_workers,
                device=_device(cfg.device),
                max_pixels=cfg.max_pixels,
                max_file_bytes=cfg.max_file_bytes,
                thumb_paths=[
                    str(thumbs / f"ref-{sid}.jpg") for sid in reference.table[schema.SAMPLE_ID]
                ],
                progress=progress,
                desc="reference set",
            )
            timings["reference_pass"] = time.perf_counter() - tp
            rtable = reference.table.iloc[rres.ok_index].reset_index(drop=True)
            ref_samples = pd.concat([rtable, rres.properties], axis=1)
            warnings_ += [f"reference set: {w}" for w in reference.warnings if "outside" in w]
            if rres.logits is not None:
                rp = prediction_columns(softmax(rres.logits), rtable[schema.LABEL].to_numpy())
                ref_samples[schema.PRED] = rp[schema.PRED].to_numpy()
                ref_samples[schema.CORRECT] = rp[schema.CORRECT].to_numpy()
            ref_emb = rres.embeddings
            ref_sig = rres.signatures
            ref_skipped = reference.skipped + rres.skipped

        sections: dict[str, dict] = {}
        from .sections import run_sections

        extra_cols = run_sections(
            w,
            samples=samples,
            probs=probs,
            embeddings=res.embeddings,
            class_names=data.class_names,
            metadata_columns=data.metadata_columns,
            reference=ref_samples,
            reference_embeddings=ref_emb,
            cfg=cfg,
            sections=sections,
            timings=timings,
            progress=say,
            signatures=res.signatures,
            reference_signatures=ref_sig,
        )
        for col, values in extra_cols.items():
            samples[col] = values
        w.write_table(schema.SAMPLES, samples)
        w.write_array(schema.PROBS, probs.astype(np.float32))
        if res.embeddings is not None:
            w.write_array(schema.EMBEDDINGS, res.embeddings.astype(np.float16))
        if ref_samples is not None:
            w.write_table(schema.REFERENCE_SAMPLES, ref_samples)
            if ref_emb is not None:
                w.write_array(schema.REFERENCE_EMBEDDINGS, ref_emb.astype(np.float16))
        timings["total"] = time.perf_counter() - t0
        manifest = _manifest(
            cfg,
            data,
            reference,
            loaded,
            prep,
            model_sha,
            pred_sha,
            res,
            ref_skipped,
            samples,
            sections,
            timings,
            warnings_,
        )
        path = w.commit(manifest, replace=force)
    say(f"run {run_id} written", 1.0)
    return open_run(path)


def _device(device: str | None) -> str:
    from ..loading.inference import pick_device

    return pick_device(device)


def build_samples(
    table: pd.DataFrame, probs: np.ndarray, res: PassResult, class_names: list[str]
) -> pd.DataFrame:
    """samples.parquet's rows: the image table + predictions + properties + latency."""
    labels = table[schema.LABEL].to_numpy()
    pc = prediction_columns(probs, labels)
    names = np.asarray(class_names, dtype=object)
    out = table.copy()
    out[schema.CONTENT_HASH] = res.properties[schema.CONTENT_HASH].to_numpy()
    out[schema.PHASH] = res.properties[schema.PHASH].to_numpy()
    for col in pc.columns:
        out[col] = pc[col].to_numpy()
    out[schema.PRED_NAME] = names[pc[schema.PRED].to_numpy()]
    for col in schema.PROPERTY_COLUMNS:
        out[col] = res.properties[col].to_numpy()
    out[schema.EXIF_ORIENTATION] = res.properties[schema.EXIF_ORIENTATION].to_numpy()
    out[schema.LATENCY_MS] = res.latency_ms
    core = [c for c in schema.CORE_COLUMNS if c in out.columns]
    rest = [c for c in out.columns if c not in core]
    return out[core + rest]


def _probs_from_file(path: str, table: pd.DataFrame, class_names: list[str]):
    """Per-class probabilities from a CSV/Parquet with ``path`` + one column per class name."""
    p = Path(path)
    df = pd.read_csv(p) if p.suffix.lower() == ".csv" else pd.read_parquet(p)
    if "path" not in df.columns:
        raise ValueError(
            f"predictions file {p} needs a 'path' column; found {list(df.columns)[:10]}"
        )
    missing = [c for c in class_names if c not in df.columns]
    if missing:
        raise ValueError(
            f"predictions file {p} lacks probability columns for classes {missing[:10]};"
            f" expected one column per class name ({len(class_names)} classes)"
        )
    df = df.assign(path=df["path"].astype(str).map(lambda s: Path(s).as_posix()))
    if df["path"].duplicated().any():
        raise ValueError(
            f"predictions file {p} lists some paths twice, e.g."
            f" {df.loc[df['path'].duplicated(), 'path'].head(3).tolist()}"
        )
    by_path = df.set_index("path")
    keys = table[schema.RELPATH].where(
        table[schema.RELPATH].isin(by_path.index), table[schema.PATH]
    )
    absent = ~keys.isin(by_path.index)
    if absent.any():
        raise ValueError(
            f"predictions file {p} has no row for {int(absent.sum())} image(s), e.g."
            f" {table.loc[absent, schema.RELPATH].head(3).tolist()}"
        )
    probs = by_path.loc[keys, class_names].to_numpy(np.float64)
    rows = by_path.index.get_indexer(keys)  # each image's row in the predictions file
    notes = []
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise ValueError(f"predictions file {p} has negative or non-finite probabilities")
    sums = probs.sum(axis=1)
    if np.abs(sums - 1).max() > 1e-3:
        if (probs > 1).any():  # logits rather than probabilities
            probs = softmax(probs)
            notes.append("predictions look like logits (values > 1): softmax applied")
        else:
            probs = probs / sums[:, None]
            notes.append("prediction rows did not sum to 1: renormalised")
    return probs.astype(np.float32), notes, rows


def _embeddings_from_file(path: str, rows: np.ndarray, predictions: str) -> np.ndarray:
    """Rows ``rows`` of a ``.npy`` ``[N, D]`` whose row i belongs to row i of the predictions
    file (checked: N equals the predictions file's row count, values are finite)."""
    p = Path(path)
    if p.suffix.lower() != ".npy":
        raise ValueError(f"embeddings file {p} must be a NumPy .npy array [N, D]")
    try:
        emb = np.load(p, allow_pickle=False, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise ValueError(f"embeddings file {p} cannot be read as a .npy array: {e}") from None
    q = Path(predictions)
    n_pred = len(
        pd.read_csv(q, usecols=["path"])
        if q.suffix.lower() == ".csv"
        else pd.read_parquet(q, columns=["path"])
    )
    if emb.ndim != 2 or emb.shape[0] != n_pred:
        raise ValueError(
            f"embeddings file {p} has shape {list(emb.shape)}; expected [{n_pred}, D]: one row"
            f" per row of the predictions file {q.name}, in its order"
        )
    if not np.issubdtype(emb.dtype, np.number):
        raise ValueError(f"embeddings file {p} holds {emb.dtype}, not numbers")
    out = np.asarray(emb[rows], dtype=np.float32)
    if not np.isfinite(out).all():
        bad = int((~np.isfinite(out)).any(axis=1).sum())
        raise ValueError(f"embeddings file {p} has non-finite values in {bad} row(s)")
    return out


def _embedding_source(cfg, loaded, res) -> str | None:
    """Where the run's embeddings came from, in words (None: the run has none)."""
    if res.embeddings is None:
        return None
    if loaded is None:
        return f"the embeddings file {Path(cfg.embeddings).name} (given with --embeddings)"
    return f"{loaded.family}: {loaded.embedding_source}"


def _manifest(
    cfg,
    data,
    reference,
    loaded,
    prep,
    model_sha,
    pred_sha,
    res,
    ref_skipped,
    samples,
    sections,
    timings,
    warnings_,
) -> dict:
    import torch
    import torchvision

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    versions["analysis_code"] = analysis_code()
    try:
        from importlib.metadata import version

        versions["errorscope"] = version("errorscope")
    except Exception:
        pass
    n_total = len(data)
    skipped = sorted(data.skipped + res.skipped, key=lambda x: x["relpath"])
    return {
        "created": now_iso(),
        "n_samples": int(len(samples)),
        "n_skipped": len(skipped),
        "class_names": data.class_names,
        "metadata_columns": data.metadata_columns,
        "property_columns": schema.PROPERTY_COLUMNS,
        "has_embeddings": res.embeddings is not None,
        "embedding_source": _embedding_source(cfg, loaded, res),
        "has_model": loaded is not None,
        "inputs": {
            "data": {
                "source": str(Path(data.source).resolve()),
                "name": Path(data.source).name,
                "kind": data.kind,
                "root": data.root,
                "n_images": n_total,
                "fingerprint": data.fingerprint(),
                "outside_folder": _outside(data),
            },
            "model": None
            if loaded is None
            else {
                "path": str(Path(loaded.path).resolve()),
                "name": Path(loaded.path).name,
                "arch": loaded.arch,
                "kind": loaded.kind,
                "family": loaded.family,
                "gradients": loaded.gradients,
                "num_classes": loaded.num_classes,
                "sha256": model_sha,
            },
            "predictions": None
            if not cfg.predictions
            else {
                "path": str(Path(cfg.predictions).resolve()),
                "name": Path(cfg.predictions).name,
                "sha256": pred_sha,
            },
            "reference": None
            if reference is None
            else {
                "source": str(Path(reference.source).resolve()),
                "name": Path(reference.source).name,
                "n_images": len(reference),
                "n_skipped": len(ref_skipped),
                "fingerprint": reference.fingerprint(),
                "outside_folder": _outside(reference),
            },
        },
        "preprocessing": prep.to_dict(),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "versions": versions,
        "timings_s": {k: round(v, 3) for k, v in timings.items()},
        "images_per_second": round(len(samples) / max(timings.get("pass", 1e-9), 1e-9), 2),
        "warnings": warnings_,
        "skipped": skipped,
        "reference_skipped": ref_skipped,
        "sections": sections,
    }


#: At most this many paths outside the data folder are listed in the manifest (all are counted).
OUTSIDE_LISTED = 1000


def _outside(images: ImageSet) -> dict:
    """``{"root", "n", "paths"}``: the images whose paths lead out of the data folder."""
    return {
        "root": images.root,
        "n": len(images.outside),
        "paths": list(images.outside[:OUTSIDE_LISTED]),
    }
