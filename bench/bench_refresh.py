"""What a code upgrade costs a 100,000-image run, before and after per-section versions.

Before, a run recorded one hash of every ``analysis/*.py`` file: any change (a CSS tweak in the
report, a new figure, a fixed detector) made every run stale, and running the same command again
redid the model pass and every section. Now each part records the code that made it
(:mod:`analysis.pipeline.versions`): presentation changes cost nothing, a changed section is
recomputed from the stored pass outputs, the model pass only runs again when its own code changed.

Measured in one process, on one synthetic run of N images (pass outputs as a real run stores
them: samples table with 6 metadata columns and the image properties, float32 probabilities over
10 classes, float16 512-d embeddings in 10 class clusters, float16 768-d appearance signatures;
no reference set):

- ``all_sections_s``: every section recomputed from the stored outputs (a refresh of all): what
  any code change cost before, on top of the model pass;
- ``one_section_s``: the refresh after an in-memory edit of ``data_issues/outliers.py``, and of
  ``stats/metrics.py`` (stale check, hard-linked copy of the run, the section, the sections that
  ``NEEDS`` it (triage reads every section above it, so it is recomputed too), samples.parquet,
  atomic rename);
- ``presentation_s``: the staleness check after an edit of ``present/figures.py`` (the run stays);
- ``pass_s``: the real model pass (:func:`analysis.pipeline.engine.model_pass`: decoding,
  thumbnails, properties, signatures, forward) on the bundled sample's 1,200 evaluation images
  (mobilenet_v3_small at 112 px, CPU) scaled linearly to N. The pass at 100k does not fit a bench
  run here; with real photos at 224 px and a resnet50 it is 10-50x slower, which only widens the
  gap.

    .venv/bin/python bench/bench_refresh.py [--n 100000]   -> bench/results/refresh.json

The machine is shared by several engineers (2 cores): compare the ratios, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ERRORSCOPE_NO_PROGRESS", "1")

from analysis import schema  # noqa: E402
from analysis.loading.datasets import sample_id_for  # noqa: E402
from analysis.loading.inference import prediction_columns  # noqa: E402
from analysis.pipeline import versions as V  # noqa: E402
from analysis.pipeline.engine import AnalysisConfig  # noqa: E402
from analysis.pipeline.refresh import refresh  # noqa: E402
from analysis.pipeline.sections import NEEDS, OPTIONAL, SECTIONS  # noqa: E402
from analysis.store.runstore import RunWriter, open_run  # noqa: E402
from analysis.version import ROOT as ANALYSIS  # noqa: E402
from analysis.version import read_source  # noqa: E402

CLASSES = [f"class_{i}" for i in range(10)]


def make_pass_outputs(n: int, runs_dir: Path) -> Path:
    """A run holding only what the model pass stores, with no section computed yet."""
    rng = np.random.default_rng(0)
    k = len(CLASSES)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 3.0 * np.eye(k)[labels] * rng.uniform(0, 1.5, (n, 1))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    rel = [f"img/{i:06d}.jpg" for i in range(n)]
    s = pd.DataFrame(
        {
            schema.SAMPLE_ID: [sample_id_for(r) for r in rel],
            schema.PATH: [f"/data/{r}" for r in rel],
            schema.RELPATH: rel,
            schema.CONTENT_HASH: [f"{i:064x}" for i in range(n)],
            schema.PHASH: [f"{v:016x}" for v in rng.integers(0, 2**63, n)],
            schema.LABEL: labels,
            schema.LABEL_NAME: np.asarray(CLASSES, dtype=object)[labels],
        }
    )
    pc = prediction_columns(probs, labels)
    for c in pc.columns:
        s[c] = pc[c].to_numpy()
    s[schema.PRED_NAME] = np.asarray(CLASSES, dtype=object)[s[schema.PRED]]
    meta = {
        "camera": [f"cam_{c}" for c in "abcdefgh"],
        "site": [f"site_{i}" for i in range(20)],
        "lighting": ["day", "dusk", "night"],
        "annotator": [f"a{i}" for i in range(12)],
    }
    for col, values in meta.items():
        s[col] = rng.choice(values, n)
    s["hour"] = rng.integers(0, 24, n)
    s["temperature"] = rng.normal(15, 8, n).round(1)
    s[schema.BRIGHTNESS] = rng.beta(5, 5, n)
    s[schema.CONTRAST] = rng.beta(4, 12, n)
    s[schema.SHARPNESS] = rng.lognormal(5, 1, n)
    s[schema.SATURATION] = rng.beta(3, 5, n)
    s[schema.NOISE] = rng.lognormal(0.5, 0.6, n)
    s[schema.WIDTH] = rng.choice([640, 1024, 3024], n)
    s[schema.HEIGHT] = rng.choice([480, 768, 4032], n)
    s[schema.ASPECT_RATIO] = s[schema.WIDTH] / s[schema.HEIGHT]
    s[schema.FILE_SIZE] = rng.integers(20_000, 4_000_000, n)
    s[schema.LATENCY_MS] = rng.uniform(1, 3, n).astype(np.float32)
    centres = rng.normal(size=(k, 512)) * 3
    emb = (centres[s[schema.PRED].to_numpy()] + rng.normal(size=(n, 512))).astype(np.float16)
    sig = rng.random((n, 768), dtype=np.float32).astype(np.float16)
    run_id = f"refresh-{n}"
    shutil.rmtree(runs_dir / run_id, ignore_errors=True)
    with RunWriter(runs_dir, run_id) as w:
        w.write_table(schema.SAMPLES, s)
        w.write_array(schema.PROBS, probs)
        w.write_array(schema.EMBEDDINGS, emb)
        w.write_array(schema.SIGNATURES, sig)
        manifest = {
            "created": "synthetic",
            "n_samples": n,
            "class_names": CLASSES,
            "metadata_columns": [*meta, "hour", "temperature"],
            "property_columns": schema.PROPERTY_COLUMNS,
            "has_embeddings": True,
            "inputs": {"data": {"name": "synthetic"}},
            "versions": {"pass_code": V.pass_code().fingerprint, "caches": V.cache_codes()},
            "sections": {},
        }
        return w.commit(manifest)


def edited(*relpaths: str):
    """A source reader for code that differs from the installed code in ``relpaths``."""
    targets = {(ANALYSIS / r).resolve() for r in relpaths}

    def read(path):
        text = read_source(path)
        return text + "\n# edited\n" if path.resolve() in targets else text

    return read


def installed(read) -> None:
    V.read_source = read
    V.forget_current_code()


def timed_refresh(path: Path, cfg) -> tuple[float, tuple[str, ...]]:
    t = time.perf_counter()
    run = open_run(path)
    stale = V.staleness(run.manifest)
    if not stale.current:
        refresh(run, stale, cfg)
    return time.perf_counter() - t, stale.sections


def pass_rate() -> dict:
    """Images/s of the real model pass on the bundled sample's evaluation set."""
    from analysis.cli import sample_config
    from analysis.loading.datasets import load_image_set
    from analysis.loading.models import load_model, read_sidecar
    from analysis.pipeline.engine import _class_names, _preprocessing, model_pass

    cfg = sample_config()
    side = read_sidecar(cfg.model)
    data = load_image_set(cfg.data, class_names=_class_names(cfg))
    loaded = load_model(
        cfg.model, arch=side["arch"], num_classes=len(data.class_names), device="cpu"
    )
    prep = _preprocessing(cfg, side["arch"], side)
    with tempfile.TemporaryDirectory() as tmp:
        timings: dict = {}
        t = time.perf_counter()
        model_pass(cfg, data, None, loaded, prep, Path(tmp), None, timings)
        seconds = time.perf_counter() - t
    return {"images": len(data), "seconds": round(seconds, 2), "img_s": len(data) / seconds}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    load_before = os.getloadavg()
    runs = ROOT / "bench" / "results" / "refresh-runs"
    cfg = AnalysisConfig(data="synthetic", seed=0)
    t = time.perf_counter()
    path = make_pass_outputs(args.n, runs)
    print(f"pass outputs of {args.n:,} images written in {time.perf_counter() - t:.1f} s")

    all_s, names = timed_refresh(path, cfg)
    # optional sections (the class hierarchy) run only when their input was given
    assert names == tuple(n for n in SECTIONS if n not in OPTIONAL), names
    failed = {n: e for n, e in open_run(path).sections.items() if e["status"] == "failed"}
    assert not failed, failed
    per_section = {n: e["seconds"] for n, e in open_run(path).sections.items()}
    print(f"every section from the stored outputs: {all_s:.1f} s {per_section}")

    one: dict[str, dict] = {}
    edits: list[str] = []
    for relpath in ("data_issues/outliers.py", "stats/metrics.py"):
        edits.append(relpath)  # cumulative: the code installed now differs in this module too
        installed(edited(*edits))
        seconds, names = timed_refresh(path, cfg)
        one[relpath] = {"sections": list(names), "seconds": round(seconds, 2)}
        print(f"after an edit of {relpath}: recomputed {names} in {seconds:.1f} s")
    installed(edited(*edits, "present/figures.py", "present/report/render_html.py"))
    t = time.perf_counter()
    current = V.staleness(open_run(path).manifest).current
    presentation_s = time.perf_counter() - t
    installed(read_source)
    assert current, "a figure edit made the run stale"

    rate = pass_rate()
    pass_s = args.n / rate["img_s"]
    before = pass_s + all_s
    res = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_before": load_before,
            "load_avg_after": os.getloadavg(),
            "shared": "yes: several engineers' tests and benchmarks ran at the same time",
        },
        "n": args.n,
        "command": "python bench/bench_refresh.py " + " ".join(sys.argv[1:]),
        "needs": {k: list(v) for k, v in NEEDS.items()},
        "all_sections_s": round(all_s, 1),
        "per_section_s": per_section,
        "one_section": one,
        "presentation_s": round(presentation_s, 3),
        "pass": {**rate, "img_s": round(rate["img_s"], 1), "scaled_to_n_s": round(pass_s, 1)},
        "before_any_change_s": round(before, 1),
        "saved_outliers_change": round(before / one["data_issues/outliers.py"]["seconds"], 1),
        "saved_metrics_change": round(before / one["stats/metrics.py"]["seconds"], 1),
    }
    out = ROOT / "bench" / "results" / "refresh.json"
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    shutil.rmtree(runs, ignore_errors=True)


if __name__ == "__main__":
    main()
