"""Time of the slices table and of slice discovery on synthetic samples tables.

Run: ``.venv/bin/python bench/bench_slices.py [--sizes 10000 100000] [--repeats 2]``.
For each size N, a samples table with 10 classes, 6 metadata columns (camera, site, lens,
weather as categories; hour and temperature as numbers) and the 8 image-property columns of
``analysis.schema``, with one planted weak slice (camera c and the darkest 20%: 35% errors, 12%
elsewhere), is analysed by :func:`analysis.stats.slices.compute_slices` and
:func:`analysis.stats.discovery.discover_slices` (defaults: 5 bins, depth 3, min_support 20):

- cold: in a fresh Python process, ``import`` of both modules and the first call of each (what
  the pipeline pays once per run);
- warm: the same calls again in that process, ``--repeats`` times (best and all times shown).

Single-threaded BLAS, one process at a time. Writes ``bench/results/slices.json`` and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "results" / "slices.json"
N_CLASSES = 10


def make_samples(n: int, seed: int = 0):
    """A synthetic samples table (pandas DataFrame) with one planted weak slice."""
    import numpy as np
    import pandas as pd

    from analysis import schema

    rng = np.random.default_rng(seed)
    sizes = np.array([[224, 224], [640, 480], [480, 640], [1024, 768], [800, 600]])
    wh = sizes[rng.integers(0, len(sizes), n)]
    df = pd.DataFrame(
        {
            "camera": rng.choice(["a", "b", "c", "d", "e"], n),
            "site": rng.choice([f"site{i}" for i in range(8)], n),
            "lens": rng.choice(["wide", "normal", "tele"], n),
            "weather": rng.choice(["sun", "cloud", "rain", "fog", "snow", "night"], n),
            "hour": rng.uniform(0, 24, n),
            "temperature": rng.normal(15, 8, n).round(1),
            schema.BRIGHTNESS: rng.beta(3, 3, n),
            schema.CONTRAST: rng.beta(2, 6, n) * 0.5,
            schema.SHARPNESS: rng.lognormal(5, 1, n),
            schema.SATURATION: rng.beta(2, 3, n),
            schema.WIDTH: wh[:, 0],
            schema.HEIGHT: wh[:, 1],
            schema.ASPECT_RATIO: wh[:, 0] / wh[:, 1],
            schema.FILE_SIZE: rng.lognormal(11, 0.6, n).astype(np.int64),
        }
    )
    dark = df[schema.BRIGHTNESS] < df[schema.BRIGHTNESS].quantile(0.2)
    planted = (df["camera"] == "c") & dark
    wrong = rng.uniform(size=n) < np.where(planted, 0.35, 0.12)
    label = rng.integers(0, N_CLASSES, n)
    df[schema.LABEL] = label
    df[schema.PRED] = np.where(wrong, (label + rng.integers(1, N_CLASSES, n)) % N_CLASSES, label)
    df[schema.CORRECT] = ~wrong
    return df


def worker(n: int, repeats: int) -> dict:
    """Runs in a fresh process: cold import and first calls, then warm repeats."""
    df = make_samples(n)  # not timed (imports numpy and pandas, which analysis needs anyway)
    t0 = time.perf_counter()
    from analysis import schema
    from analysis.stats.discovery import discover_slices
    from analysis.stats.slices import compute_slices

    import_s = time.perf_counter() - t0
    kw = dict(
        metadata_columns=["camera", "site", "lens", "weather", "hour", "temperature"],
        property_columns=list(schema.PROPERTY_COLUMNS),
        class_names=[f"class{i}" for i in range(N_CLASSES)],
    )

    def timed(fn):
        t = time.perf_counter()
        out = fn()
        return out, time.perf_counter() - t

    slices, slices_cold = timed(lambda: compute_slices(df, **kw))
    found, discover_cold = timed(lambda: discover_slices(df, **kw))
    slices_warm = [timed(lambda: compute_slices(df, **kw))[1] for _ in range(repeats)]
    discover_warm = [timed(lambda: discover_slices(df, **kw))[1] for _ in range(repeats)]
    top = found["description"].iloc[0] if len(found) else None
    return {
        "n": n,
        "metadata_columns": 6,
        "property_columns": len(schema.PROPERTY_COLUMNS),
        "classes": N_CLASSES,
        "import_seconds": round(import_s, 3),
        "compute_slices_cold_seconds": round(slices_cold, 3),
        "compute_slices_warm_seconds": round(min(slices_warm), 3),
        "compute_slices_warm_all": [round(s, 3) for s in slices_warm],
        "discover_slices_cold_seconds": round(discover_cold, 3),
        "discover_slices_warm_seconds": round(min(discover_warm), 3),
        "discover_slices_warm_all": [round(s, 3) for s in discover_warm],
        "slices_tested": int(slices.attrs["n_tested"]),
        "slices_significant": int(slices["significant"].sum()),
        "discovery_candidates_tested": int(found.attrs["n_tested"]),
        "discovery_significant_before_redundancy": int(found.attrs["n_significant"]),
        "discovered_reported": len(found),
        "discovered_top": top,
        "planted_is_top": top is not None and "camera is c" in top and "darkest 20%" in top,
        "worker_max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker is not None:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(worker(args.worker, args.repeats)))
        return
    rows = []
    for n in args.sizes:
        cmd = [sys.executable, __file__, "--worker", str(n), "--repeats", str(args.repeats)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    import numpy as np
    import pandas as pd
    import scipy

    result = {
        "benchmark": "analysis.stats.slices.compute_slices + analysis.stats.discovery.discover_slices",
        "command": "python bench/bench_slices.py " + " ".join(sys.argv[1:]),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "scipy": scipy.__version__,
        "results": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
