"""``analyze``: inputs -> one batched pass -> derived sections -> a run directory.

Each derived section (metrics, embedding map, slices, label issues, duplicates, outliers) runs in
its own guard: a section that fails is recorded in the manifest with its error, and the others are
still written. Re-analysing the same inputs with the same config reuses the existing run; if some
of it was made by other analysis code (:mod:`analysis.pipeline.versions`), only that part is
redone: the sections whose code changed, from the stored pass outputs
(:mod:`analysis.pipeline.refresh`), or everything when the model pass itself changed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema
from ..checks import PROB_ROW_SUM_ATOL
from ..loading.datasets import ImageSet, load_image_set, read_class_file
from ..loading.inference import PassResult, Progress, prediction_columns, run_pass, softmax
from ..loading.models import Preprocessing, default_preprocessing, load_model
from ..stats.sanity import ChanceCheck, chance_check
from ..store.runstore import Run, RunError, RunWriter, now_iso, open_run


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
    class_hierarchy: str | None = None
    engine: str = "local"
    ray_address: str | None = None
    ray_workers: int | None = None
    onnx_output: str | None = None
    onnx_embeddings: str | None = None
    embeddings: str | None = None

    def fingerprint_dict(self) -> dict:
        """The parts of the config that change results (not device, worker count or engine:
        both engines compute the same run, tests/analysis/test_ray_engine.py checks it)."""
        d = asdict(self)
        for k in (
            "data",
            "model",
            "predictions",
            "reference",
            "classes",
            "class_hierarchy",  # its content goes into the run id instead (see analyze)
            "device",
            "num_workers",
            "batch_size",
            "engine",
            "ray_address",
            "ray_workers",
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
    from ..checks import check_int

    for name, value, lowest in (
        ("--resize", cfg.resize, 1),
        ("--crop", cfg.crop, 1),
        ("--batch-size", cfg.batch_size, 1),
        ("--workers", cfg.num_workers, 0),
        ("--min-support", cfg.min_support, 1),
        ("--max-pixels", cfg.max_pixels, 1),
        ("--max-file-bytes", cfg.max_file_bytes, 1),
        ("--ray-workers", cfg.ray_workers, 1),
    ):
        try:
            check_int(value, name, minimum=lowest, allow_none=True)
        except TypeError as e:  # a config built in code: still one line, still a ValueError
            raise ValueError(str(e)) from None
    if cfg.crop is not None and cfg.no_crop:
        raise ValueError(
            f"--crop {cfg.crop} and --no-crop contradict each other: give --crop N to centre-crop"
            " N x N after the resize, or --no-crop to resize to a square without cropping"
        )
    if cfg.engine not in ENGINES:
        raise ValueError(f"--engine is {cfg.engine!r}; expected one of {', '.join(ENGINES)}")
    if cfg.engine != "ray" and (cfg.ray_address or cfg.ray_workers):
        option = "--ray-address" if cfg.ray_address else "--ray-workers"
        raise ValueError(f"{option} needs --engine ray (the engine is {cfg.engine!r})")
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


def chance_warning(
    chance: ChanceCheck,
    class_names: list[str],
    prep: Preprocessing,
    sources: dict[str, str],
    *,
    from_predictions: bool = False,
) -> str:
    """The loud one-paragraph warning of a run whose model is no better than chance."""
    what = []
    if not chance.better_than_chance:
        what.append(
            f"accuracy {chance.accuracy:.1%} (95% CI {chance.accuracy_low:.1%}-"
            f"{chance.accuracy_high:.1%}) is not above the {chance.majority_rate:.1%} of always"
            f" answering {class_names[chance.majority_class]!r} (one-sided binomial test,"
            f" p = {chance.p_value:.2g})"
        )
    if chance.near_uniform:
        what.append(
            f"its confidence is near uniform (median entropy {chance.median_entropy:.0%} of the"
            " maximum)"
        )
    classes = ", ".join(class_names[:5]) + (", ..." if len(class_names) > 5 else "")
    if from_predictions:
        causes = (
            "the predictions file's rows or probability columns do not belong to these images"
            f" and classes ({classes}); the labels are read in another class order"
        )
    else:
        causes = (
            "the preprocessing differs from training"
            f" ({describe_preprocessing(prep, sources)[len('preprocessing: ') :]}); the class"
            f" list is not in the model's output order ({classes}); the checkpoint is not the"
            " trained model (another run, or untrained weights)"
        )
    return (
        "the model is no better than chance on these images: "
        + " and ".join(what)
        + f"; it predicts {class_names[chance.top_pred_class]!r} for"
        f" {chance.top_pred_share:.0%} of them. Every number of this run is suspect. Likely"
        f" causes: {causes}"
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
    *,
    hierarchy_sha: str | None = None,
) -> str:
    fields = {
        "config": cfg.fingerprint_dict(),
        "data": data.fingerprint(),
        "model": model_sha,
        "predictions": pred_sha,
        "reference": ref_fp,
        "prep": prep.to_dict(),
        "schema": schema.SCHEMA_VERSION,
    }
    if hierarchy_sha:  # only when given, so runs without one keep their ids
        fields["class_hierarchy"] = hierarchy_sha
    payload = json.dumps(fields, sort_keys=True)
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
    hierarchy = hierarchy_file = None
    if cfg.class_hierarchy:  # checked before the pass: a bad file fails in seconds, not hours
        from ..stats.hierarchy import file_fingerprint, load_hierarchy

        hierarchy = load_hierarchy(cfg.class_hierarchy, data.class_names)
        hierarchy_file = {**file_fingerprint(cfg.class_hierarchy), "depth": hierarchy.depth}
    model_sha = sha256_path(cfg.model) if cfg.model else None
    pred_sha = sha256_file(cfg.predictions) if cfg.predictions else None
    if cfg.embeddings:
        pred_sha = f"{pred_sha}+{sha256_file(cfg.embeddings)}"
    run_id = run_id_for(
        cfg,
        data,
        model_sha,
        reference.fingerprint() if reference else None,
        pred_sha,
        prep,
        hierarchy_sha=hierarchy_file["sha256"] if hierarchy_file else None,
    )
    final = Path(runs_dir) / run_id
    if not force and (final / schema.MANIFEST).exists():
        try:
            existing = open_run(final)
            manifest = existing.manifest
        except RunError:  # an older run-directory schema
            existing, manifest = None, {}
        if existing is not None:
            from .versions import staleness

            stale = staleness(manifest)
            if stale.current:
                say(f"reusing existing run {run_id}", 1.0)
                return existing
            if not stale.pass_stale:
                say(
                    f"run {run_id}: {stale.describe()}; recomputing only those from the stored"
                    " pass outputs (the model does not run again)",
                    0.0,
                )
                from .refresh import refresh

                return refresh(existing, stale, cfg, progress=say)
        # same inputs, another model pass: every stored result may be wrong or incomplete now
        say(
            f"run {run_id} was made by other analysis code (its model pass changed):"
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
    if hierarchy is not None:
        warnings_ += list(hierarchy.warnings)

    model_spec = (
        None
        if loaded is None
        else {
            "path": str(cfg.model),
            "arch": arch,
            "num_classes": len(data.class_names),
            "trust_checkpoint": cfg.trust_checkpoint,
            "onnx_output": cfg.onnx_output,
            "onnx_embeddings": cfg.onnx_embeddings,
        }
    )
    if cfg.engine == "ray":  # one Ray session for both passes (starting one takes seconds)
        from ..loading.ray_pass import ray_session

        engine_session = ray_session(cfg.ray_address)
    else:
        engine_session = contextlib.nullcontext()
    with engine_session, RunWriter(runs_dir, run_id) as w:
        out = model_pass(cfg, data, reference, loaded, model_spec, prep, w, progress, timings)
        warnings_ += out.warnings
        res, samples, probs = out.res, out.samples, out.probs
        chance = chance_check(samples[schema.LABEL].to_numpy(), probs)
        if not chance.ok:
            warnings_.append(
                chance_warning(
                    chance, data.class_names, prep, sources, from_predictions=loaded is None
                )
            )
        # probs, embeddings and signatures were streamed into the run during the pass (float16
        # embeddings and signatures, as stored), so a refresh computes what a fresh run does
        emb, ref_emb = res.embeddings, out.ref_embeddings
        if out.ref_samples is not None:
            w.write_table(schema.REFERENCE_SAMPLES, out.ref_samples)
        ref_samples, ref_sig, ref_skipped = out.ref_samples, out.ref_signatures, out.ref_skipped

        sections: dict[str, dict] = {}
        from .sections import SectionContext, run_sections, with_section_columns

        ctx = SectionContext(
            writer=w,
            samples=samples,
            probs=probs,
            embeddings=emb,
            class_names=data.class_names,
            metadata_columns=data.metadata_columns,
            reference=ref_samples,
            reference_embeddings=ref_emb,
            signatures=res.signatures,
            reference_signatures=ref_sig,
            cfg=cfg,
            progress=say,
            # the CAM precompute needs gradients (not ONNX or TorchScript)
            model=loaded.model if loaded is not None and loaded.gradients else None,
            prep=prep,
            pass_seconds=float(timings.get("pass", 0.0)),
            hierarchy=hierarchy,
        )
        outputs = run_sections(ctx, sections=sections, timings=timings)
        samples = with_section_columns(samples, outputs)
        w.write_table(schema.SAMPLES, samples)
        timings["total"] = time.perf_counter() - t0
        manifest = _manifest(
            chance,
            sources,
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
        manifest["inputs"]["class_hierarchy"] = hierarchy_file
        manifest["hierarchy_columns"] = list(outputs.get("class_hierarchy") or {})
        path = w.commit(manifest, replace=force)
    say(f"run {run_id} written", 1.0)
    return open_run(path)


@dataclass
class PassOutputs:
    """What the model pass produced: everything the sections read, and what the manifest lists."""

    res: PassResult  # the evaluation set's pass (skipped files, embeddings, signatures)
    samples: pd.DataFrame  # samples.parquet's pass columns
    probs: np.ndarray  # float32 [N, C], memory-mapped from the run being written
    warnings: list[str]
    ref_samples: pd.DataFrame | None = None
    ref_embeddings: np.ndarray | None = None
    ref_signatures: np.ndarray | None = None
    ref_skipped: list[dict] = field(default_factory=list)


def model_pass(
    cfg: AnalysisConfig,
    data: ImageSet,
    reference: ImageSet | None,
    loaded,
    model_spec: dict | None,
    prep: Preprocessing,
    w: RunWriter,
    progress: Progress | None,
    timings: dict,
) -> PassOutputs:
    """The one batched pass over the evaluation (and reference) set, on the configured engine.

    Probabilities, embeddings and signatures are streamed into the run being written (``w``),
    thumbnails into its packs. Its code's fingerprint (:mod:`analysis.pipeline.versions`)
    decides whether an upgrade must run it again; everything after it is recomputed from what
    it stored.
    """
    from ..store.thumbs import ThumbnailWriter

    warnings_: list[str] = []
    thumbs = ThumbnailWriter(w.tmp / schema.THUMBS_DIR)
    ids = data.table[schema.SAMPLE_ID].tolist()
    tp = time.perf_counter()
    res = _pass(
        cfg,
        data,
        prep,
        loaded,
        model_spec,
        thumbnails=lambda i, jpeg: thumbs.add(ids[i], jpeg),
        files={
            "logits": w.tmp / _SCRATCH_LOGITS,
            "embeddings": w.tmp / schema.EMBEDDINGS,
            "signatures": w.tmp / schema.SIGNATURES,
        },
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
        probs = _probs_file(res.logits, w.tmp / schema.PROBS)
        res.logits = None
    else:
        probs, pred_warn, pred_rows = _probs_from_file(cfg.predictions, table, data.class_names)
        warnings_ += pred_warn
        probs = probs.astype(np.float32)
        w.write_array(schema.PROBS, probs)
        if cfg.embeddings:  # stored as a model run's are (float16), read back as they are
            emb = _embeddings_from_file(cfg.embeddings, pred_rows, cfg.predictions)
            w.write_array(schema.EMBEDDINGS, emb.astype(np.float16))
            res.embeddings = np.load(w.tmp / schema.EMBEDDINGS, mmap_mode="r")
    (w.tmp / _SCRATCH_LOGITS).unlink(missing_ok=True)
    samples = build_samples(table, probs, res, data.class_names)

    ref_samples = ref_emb = ref_sig = None
    ref_skipped: list[dict] = []
    if reference is not None:
        rids = reference.table[schema.SAMPLE_ID].tolist()
        tp = time.perf_counter()
        rres = _pass(
            cfg,
            reference,
            prep,
            loaded,
            model_spec,
            thumbnails=lambda i, jpeg: thumbs.add(f"ref-{rids[i]}", jpeg),
            files={
                "logits": w.tmp / _SCRATCH_LOGITS,
                "embeddings": w.tmp / schema.REFERENCE_EMBEDDINGS,
                "signatures": w.tmp / schema.REFERENCE_SIGNATURES,
            },
            progress=progress,
            desc="reference set",
        )
        timings["reference_pass"] = time.perf_counter() - tp
        rtable = reference.table.iloc[rres.ok_index].reset_index(drop=True)
        ref_samples = pd.concat([rtable, rres.properties], axis=1)
        warnings_ += [f"reference set: {w}" for w in reference.warnings if "outside" in w]
        if rres.logits is not None:
            pred = _argmax_rows(rres.logits)
            ref_samples[schema.PRED] = pred
            ref_samples[schema.CORRECT] = pred == rtable[schema.LABEL].to_numpy()
            rres.logits = None
        (w.tmp / _SCRATCH_LOGITS).unlink(missing_ok=True)
        ref_emb = rres.embeddings
        ref_sig = rres.signatures
        ref_skipped = reference.skipped + rres.skipped
    thumbs.close()
    return PassOutputs(res, samples, probs, warnings_, ref_samples, ref_emb, ref_sig, ref_skipped)


#: The pass streams logits here; probabilities are written from it, then it is removed.
_SCRATCH_LOGITS = ".pass-logits.npy"
_ROWS = 65_536  # rows per chunk when a per-image array is turned into another


def _probs_file(logits: np.ndarray, path: Path) -> np.ndarray:
    """Softmax of ``logits`` [N, C], written to ``path`` chunk by chunk; returned memory-mapped."""
    from ..store.npy import NpyRowWriter

    out = NpyRowWriter(path, logits.shape[1:], np.float32)
    for s in range(0, logits.shape[0], _ROWS):
        out.append(softmax(np.asarray(logits[s : s + _ROWS])))
    return out.close()


def _argmax_rows(logits: np.ndarray) -> np.ndarray:
    return np.concatenate(
        [np.asarray(logits[s : s + _ROWS]).argmax(axis=1) for s in range(0, len(logits), _ROWS)]
        or [np.zeros(0, np.int64)]
    ).astype(np.int64)


ENGINES = ("local", "ray")


def _pass(cfg, images, prep, loaded, model_spec, *, thumbnails, files, progress, desc):
    """One image set through the pass, on the engine the config names; both engines return
    the same :class:`~analysis.loading.inference.PassResult` for the same inputs."""
    common = dict(
        relpaths=images.table[schema.RELPATH].tolist(),
        batch_size=cfg.batch_size,
        max_pixels=cfg.max_pixels,
        max_file_bytes=cfg.max_file_bytes,
        thumbnails=thumbnails,
        files=files,
        progress=progress,
        desc=desc,
    )
    paths = images.table[schema.PATH].tolist()
    if cfg.engine == "ray":
        from ..loading.ray_pass import run_pass_ray

        return run_pass_ray(
            paths,
            prep,
            model_spec=model_spec,
            address=cfg.ray_address,
            workers=cfg.ray_workers,
            device=cfg.device,
            **common,
        )
    return run_pass(
        paths,
        prep,
        model=loaded,  # a LoadedModel: its family's embedding head comes with it
        num_workers=cfg.num_workers,
        device=_device(cfg.device),
        **common,
    )


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
    if np.abs(sums - 1).max() > PROB_ROW_SUM_ATOL:
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
    chance,
    sources,
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
    from .versions import cache_codes, pass_code

    versions["pass_code"] = pass_code().fingerprint
    versions["caches"] = cache_codes()
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
        "preprocessing_sources": sources,
        "chance_check": chance.to_dict(),
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
