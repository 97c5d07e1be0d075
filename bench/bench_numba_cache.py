"""Is caching umap's numba code through numba's private internals worth it?

``analysis.explain.embeddings._make_numba_cacheable`` turns on numba's disk cache for every jitted
function of umap-learn and pynndescent and gives them stable ids (``Dispatcher._set_uuid``, a
private method: numba offers no public way to cache a function someone else jitted, and the
per-process id of a function passed as an argument defeats the cache, numba issue #6264).
This bench measures what a new process pays for its first embedding map with the machine's warm
cache, with and without that step, alternating, in fresh processes:

    .venv/bin/python bench/bench_numba_cache.py [--n 3000] [--repeats 3]
        -> bench/results/numba_cache.json

Each process imports umap through :func:`analysis.explain.embeddings._import_umap` and maps N
random 512-d points (PCA to 50, exact neighbours below 20,000 points: NN-descent does not run).
The first process of each kind warms the cache for that kind and is not counted. The machine is
shared (2 cores, other engineers' jobs): compare the two kinds, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CODE = """
import time, numpy as np
t0 = time.perf_counter()
from analysis.explain import embeddings as E
if {off}:
    E._make_numba_cacheable = lambda *a, **k: 0  # numba's own caching only
E._import_umap()
t1 = time.perf_counter()
E.project_2d(np.random.default_rng(0).normal(size=({n}, 512)).astype(np.float32), seed=0)
t2 = time.perf_counter()
print(round(t1 - t0, 2), round(t2 - t1, 2))
"""


def one(n: int, off: bool) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", CODE.format(n=n, off=off)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "ERRORSCOPE_NO_PROGRESS": "1"},
    )
    imp, fit = (float(x) for x in out.stdout.split())
    return imp, fit


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs: dict[str, list] = {"patched": [], "numba_default": []}
    for kind in runs:  # warm the cache the way each kind uses it
        one(args.n, kind == "numba_default")
    for _ in range(args.repeats):
        for kind in runs:
            runs[kind].append(one(args.n, kind == "numba_default"))
            print(kind, runs[kind][-1])
    res = {
        "n": args.n,
        "repeats": args.repeats,
        "load_avg": os.getloadavg(),
        "shared": "yes: other engineers' tests and benchmarks ran at the same time",
    }
    for kind, rows in runs.items():
        res[kind] = {
            "import_s": statistics.median(r[0] for r in rows),
            "first_map_s": statistics.median(r[1] for r in rows),
            "total_s": statistics.median(r[0] + r[1] for r in rows),
            "runs": rows,
        }
    res["saved_per_new_process_s"] = round(
        res["numba_default"]["total_s"] - res["patched"]["total_s"], 1
    )
    out = ROOT / "bench" / "results" / "numba_cache.json"
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
