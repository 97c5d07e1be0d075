"""Time and peak memory of the blockwise near-duplicate / leakage search.

Run: ``.venv/bin/python bench/bench_duplicates.py [--sizes 10000 100000] [--block-size 2048]``.
For each size N: N synthetic 512-d float16 embeddings (ReLU-like features from 100 clusters, as
``embeddings.npy`` stores them) searched against a reference set of the same size
(:func:`analysis.data_issues.duplicates.find_leakage`), with 200 planted near-copies whose recovery is
checked; at N <= 20,000 also the within-set search (:func:`near_duplicates`). Peak memory is the
tracemalloc peak of the call (NumPy reports its buffers to tracemalloc), on top of the inputs.
Single-threaded BLAS so numbers are comparable on shared machines. Writes
``bench/results/duplicates.json`` and prints it.

``--copy-sizes``: the same for :func:`analysis.data_issues.duplicates.find_near_copies`, the search the
pipeline runs on 768-d appearance signatures (within the set and against the reference), with 200
planted copies among look-alike "scenes".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
import tracemalloc
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.data_issues.duplicates import (  # noqa: E402
    DEFAULT_BLOCK_SIZE,
    DEFAULT_THRESHOLD,
    DEFAULT_TOP_K,
    SIGNATURE_SIDE,
    find_leakage,
    find_near_copies,
    near_duplicates,
)

D, N_PLANTED, WITHIN_MAX = 512, 200, 20_000
D_SIG = SIGNATURE_SIDE * SIGNATURE_SIDE * 3  # the appearance signatures the pipeline searches
OUT = Path(__file__).resolve().parent / "results" / "duplicates.json"


def embeddings(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """float16 [n, D]: relu(centre + noise), built in chunks to keep memory at the output size."""
    out = np.empty((n, D), dtype=np.float16)
    for s in range(0, n, 8192):
        m = min(8192, n - s)
        c = centres[rng.integers(0, len(centres), size=m)]
        out[s : s + m] = np.maximum(c + rng.standard_normal((m, D), dtype=np.float32), 0)
    return out


def measure(fn):
    tracemalloc.start()
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, seconds, peak / 2**20


def run_size(n: int, block_size: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((100, D), dtype=np.float32)
    ev = embeddings(n, rng, centres)
    ref = embeddings(n, rng, centres)
    src = rng.choice(n, size=N_PLANTED, replace=False)
    dst = rng.choice(n, size=N_PLANTED, replace=False)
    noise = 0.05 * rng.standard_normal((N_PLANTED, D), dtype=np.float32)
    ref[dst] = (ev[src].astype(np.float32) + noise).astype(np.float16)
    planted = set(zip(src.tolist(), dst.tolist(), strict=True))

    leak, seconds, peak = measure(lambda: find_leakage(ev, ref, block_size=block_size))
    found = set(zip(leak["i"].tolist(), leak["j"].tolist(), strict=True))
    row = {
        "n": n,
        "m": n,
        "d": D,
        "dtype": "float16",
        "block_size": block_size,
        "threshold": DEFAULT_THRESHOLD,
        "top_k": DEFAULT_TOP_K,
        "leak_seconds": round(seconds, 2),
        "leak_pairs_per_second": round(n * n / seconds),
        "leak_peak_extra_mib": round(peak, 1),
        "inputs_mib": round((ev.nbytes + ref.nbytes) / 2**20, 1),
        "leak_pairs_found": len(found),
        "planted_recall": len(found & planted) / len(planted),
        "planted_precision": len(found & planted) / max(len(found), 1),
    }
    if n <= WITHIN_MAX:
        within, seconds, peak = measure(lambda: near_duplicates(ev, block_size=block_size))
        row |= {
            "within_seconds": round(seconds, 2),
            "within_peak_extra_mib": round(peak, 1),
            "within_pairs_found": len(within),
        }
    print(json.dumps(row), flush=True)
    return row


def signatures(n: int, rng: np.random.Generator) -> np.ndarray:
    """float16 [n, D_SIG] unit vectors with look-alike structure: 500 'scenes', each image a
    scene plus its own variation (as photos of one product or one background are)."""
    scenes = rng.standard_normal((500, D_SIG), dtype=np.float32)
    out = np.empty((n, D_SIG), dtype=np.float16)
    for s in range(0, n, 8192):
        m = min(8192, n - s)
        x = scenes[rng.integers(0, len(scenes), size=m)]
        x = x + 0.6 * rng.standard_normal((m, D_SIG), dtype=np.float32)
        x -= x.mean(axis=1, keepdims=True)
        out[s : s + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def run_copies(n: int, block_size: int, seed: int = 1) -> dict:
    """find_near_copies as the pipeline calls it: within the eval set and against the reference."""
    rng = np.random.default_rng(seed)
    ev, ref = signatures(n, rng), signatures(n, rng)
    src = rng.choice(n, size=N_PLANTED, replace=False)
    dst = rng.choice(n, size=N_PLANTED, replace=False)
    x = ev[src].astype(np.float32) + 0.01 * rng.standard_normal(
        (N_PLANTED, D_SIG), dtype=np.float32
    )
    ref[dst] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)
    planted = set(zip(src.tolist(), dst.tolist(), strict=True))
    pairs, seconds, peak = measure(lambda: find_near_copies(ev, ref, block_size=block_size))
    leak = pairs[pairs["scope"] == "leak"]
    found = set(zip(leak["i"].tolist(), leak["j"].tolist(), strict=True))
    row = {
        "n": n,
        "m": n,
        "d": D_SIG,
        "copies_seconds": round(seconds, 2),
        "copies_peak_extra_mib": round(peak, 1),
        "copies_leak_found": len(found),
        "copies_within_found": int((pairs["scope"] == "within").sum()),
        "copies_planted_recall": len(found & planted) / len(planted),
        "copies_planted_precision": len(found & planted) / max(len(found), 1),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--block-size", type=int, default=DEFAULT_BLOCK_SIZE)
    ap.add_argument(
        "--copy-sizes",
        type=int,
        nargs="*",
        default=[10_000, 100_000],
        help="sizes for find_near_copies on 768-d appearance signatures (within + leak)",
    )
    args = ap.parse_args()
    rows = [run_size(n, args.block_size) for n in args.sizes]
    copies = [run_copies(n, args.block_size) for n in args.copy_sizes]
    result = {
        "benchmark": "analysis.data_issues.duplicates blockwise cosine search",
        "command": "python bench/bench_duplicates.py " + " ".join(sys.argv[1:]),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        "numpy": np.__version__,
        "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "results": rows,
        "near_copies": copies,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
