"""Time of one robustness pass per perturbation, against a clean pass over the same images.

Run: ``.venv/bin/python bench/bench_robustness.py [--n 512] [--size 112] [--severity 3]``.
Writes N synthetic PNG images (``size`` px, 4 classes) into a temporary ImageFolder, analyses
them with ``mobilenet_v3_small`` (random weights, no crop) to get a run, then times:

- ``clean_pass_s``: :func:`analysis.loading.inference.run_pass` without a perturbation (decode +
  resize + properties + model), the baseline every robustness pass pays;
- per perturbation, ``pass_s``: :func:`analysis.stats.robustness.run_robustness` for that one
  perturbation at ``severity`` (one pass, including writing the result), and ``overhead`` =
  ``pass_s / clean_pass_s``;
- per perturbation, ``perturb_only_s``: :func:`apply_perturbation` alone on the already decoded
  float batches (64 images each), i.e. what the perturbation itself costs;
- ``estimate_s``: :func:`analysis.stats.robustness.estimate_cost` for one pass (what the user is told
  before starting), to compare with ``pass_s``.

Single-threaded torch and ``num_workers=0`` so numbers are comparable on shared machines.
Writes ``bench/results/robustness.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ERRORSCOPE_NO_PROGRESS", "1")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import schema  # noqa: E402
from analysis.loading.inference import run_pass, to_model_tensor  # noqa: E402
from analysis.loading.models import load_run_model  # noqa: E402
from analysis.stats.robustness import (  # noqa: E402
    PERTURBATIONS,
    apply_perturbation,
    estimate_cost,
    run_robustness,
)

OUT = ROOT / "bench" / "results" / "robustness.json"
CLASSES = ["a", "b", "c", "d"]


def make_images(root: Path, n: int, size: int, seed: int = 0) -> Path:
    """Smooth random backgrounds with a class-coloured square, as PNG."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = [(220, 60, 60), (60, 200, 60), (60, 60, 220), (220, 220, 60)]
    for i in range(n):
        c = i % len(CLASSES)
        low = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((size, size), Image.BILINEAR)).copy()
        s = int(rng.integers(size // 5, size // 2))
        y, x = rng.integers(0, size - s, size=2)
        img[y : y + s, x : x + s] = colours[c]
        d = root / CLASSES[c]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(d / f"{i:05d}.png")
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=512)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--severity", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="of the perturbation-only timing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import torchvision

    from analysis.pipeline.engine import AnalysisConfig, analyze

    with tempfile.TemporaryDirectory(prefix="bench-robust-") as tmp:
        tmp = Path(tmp)
        data = make_images(tmp / "data", args.n, args.size)
        torch.manual_seed(0)
        model = torchvision.models.mobilenet_v3_small(weights=None, num_classes=len(CLASSES))
        torch.save(model.state_dict(), tmp / "mnv3s.pt")
        cfg = AnalysisConfig(
            data=str(data),
            model=str(tmp / "mnv3s.pt"),
            arch="mobilenet_v3_small",
            resize=args.size,
            no_crop=True,
            num_workers=0,
            batch_size=64,
            umap=False,
        )
        t = time.perf_counter()
        run = analyze(cfg, runs_dir=tmp / "runs")
        analyze_s = time.perf_counter() - t

        loaded, prep = load_run_model(run.manifest)
        paths = run.samples[schema.PATH].tolist()
        run_pass(paths[:64], prep, model=loaded.model, num_workers=0, want_embeddings=False)
        t = time.perf_counter()
        run_pass(
            paths, prep, model=loaded.model, num_workers=0, batch_size=64, want_embeddings=False
        )
        clean_s = time.perf_counter() - t

        from analysis.loading.images import decode_image

        batches = [
            torch.stack([to_model_tensor(decode_image(p).rgb, prep) for p in paths[i : i + 64]])
            .float()
            .div(255)
            for i in range(0, len(paths), 64)
        ]
        rows = []
        for name in PERTURBATIONS:
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                for x in batches:
                    apply_perturbation(x, name, args.severity, seed=0)
                times.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = run_robustness(
                run,
                perturbations=[name],
                severities=[args.severity],
                num_workers=0,
                batch_size=64,
                force=True,
            )
            pass_s = time.perf_counter() - t
            row = {
                "perturbation": name,
                "severity": args.severity,
                "parameter": PERTURBATIONS[name].levels[args.severity - 1],
                "pass_s": round(pass_s, 3),
                "images_per_s": round(args.n / pass_s, 1),
                "overhead": round(pass_s / clean_s, 3),
                "perturb_only_s": round(statistics.median(times), 4),
                "perturb_only_ms_per_image": round(1000 * statistics.median(times) / args.n, 3),
                "estimate_s": round(
                    estimate_cost(run, perturbations=[name], severities=[args.severity]), 3
                ),
                "accuracy": round(float(res.summary["accuracy"].iloc[0]), 4),
                "flip_rate": round(float(res.summary["flip_rate"].iloc[0]), 4),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)

    result = {
        "benchmark": "analysis.stats.robustness: one perturbed pass per perturbation",
        "command": "python bench/bench_robustness.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "num_workers": 0,
        "model": "mobilenet_v3_small (random weights)",
        "n_images": args.n,
        "input_px": args.size,
        "analyze_s": round(analyze_s, 2),
        "run_images_per_second": run.manifest.get("images_per_second"),
        "clean_pass_s": round(clean_s, 3),
        "clean_images_per_s": round(args.n / clean_s, 1),
        "all_10_perturbations_x_5_severities_estimate_s": round(estimate_cost(run), 1),
        "results": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
