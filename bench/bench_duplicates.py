"""Near-duplicate and leakage search through the one nearest-neighbour path: time, memory and
recall of the approximate index against exact search.

For each size N (evaluation) = M (reference): a synthetic world (bench/synthetic.py: 512-d
embeddings with low intrinsic dimension as classifier features have, 768-d appearance
signatures around scenes, 3% of the evaluation images leaked from the reference set)
searched as the package searches it, ``method="auto"`` (exact up to
``analysis.stats.neighbours.EXACT_MAX_WORK`` multiply-adds, the IVF index beyond):

- ``find_leakage`` on the embeddings (threshold 0.95, top 10): time, peak memory, planted recall;
- the k-nearest-neighbour search itself, approximate vs exact on 2,000 sampled queries (1,000
  random + 1,000 planted leaks): recall@k and the recall of the pairs above 0.95 cosine, for
  embeddings and signatures.

The index's ``nprobe`` (16) and ``rerank`` (4) were chosen on these worlds (not on any test's
data), for recall >= 0.99 of the pairs above the threshold. Peak memory is VmHWM of this
process, reset before each call. The machine is shared: times are upper bounds.

    .venv/bin/python bench/bench_duplicates.py [--sizes 10000 100000 200000]
        -> bench/results/duplicates.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import synthetic  # noqa: E402

from analysis.data_issues.duplicates import DEFAULT_THRESHOLD, DEFAULT_TOP_K, find_leakage  # noqa: E402
from analysis.stats import neighbours as N  # noqa: E402

OUT = ROOT / "bench" / "results" / "duplicates.json"


def _peak_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def measure(fn):
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    t = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t, 2), _peak_mib()


def recall_vs_exact(q, base, leaks, *, k: int, seed: int = 0) -> dict:
    """Approximate search (what auto runs at this size) vs exact on sampled queries."""
    n = q.shape[0]
    rng = np.random.default_rng(seed)
    sample = np.union1d(rng.choice(n, min(n, 1000), replace=False), leaks[:1000, 0])
    approx, seconds, peak = measure(lambda: N.knn(q, base, k=k, seed=seed))
    exact = N.knn(q[sample], base, k=k, method="exact")
    a_idx = approx.indices[sample]
    hit = [len(set(x) & set(y)) for x, y in zip(a_idx, exact.indices, strict=True)]
    above = exact.scores >= DEFAULT_THRESHOLD
    e_pairs = {
        (int(s), int(j))
        for s, row, m in zip(sample, exact.indices, above, strict=True)
        for j in row[m]
    }
    a_pairs = {(int(s), int(j)) for s, row in zip(sample, a_idx, strict=True) for j in row}
    return {
        "method": approx.method,
        "seconds": seconds,
        "peak_rss_mib": peak,
        "sampled_queries": int(sample.size),
        "recall_at_k": round(float(np.sum(hit)) / (k * sample.size), 4),
        "pairs_above_threshold": len(e_pairs),
        "recall_of_pairs_above_threshold": round(len(e_pairs & a_pairs) / max(1, len(e_pairs)), 4),
    }


def run_size(n: int) -> dict:
    world = synthetic.world(n, n, ROOT / "bench" / "results" / "synthetic-worlds")
    leaks = world.leaks
    pairs, seconds, peak = measure(
        lambda: find_leakage(world.embeddings, world.reference_embeddings)
    )
    found = set(zip(pairs["i"].tolist(), pairs["j"].tolist(), strict=True))
    planted = set(map(tuple, leaks.tolist()))
    row = {
        "n": n,
        "m": n,
        "leak_search": {
            "d": synthetic.D_EMB,
            "threshold": DEFAULT_THRESHOLD,
            "top_k": DEFAULT_TOP_K,
            "seconds": seconds,
            "peak_rss_mib": peak,
            "planted": len(planted),
            "planted_recall": round(len(found & planted) / len(planted), 4),
            "planted_precision": round(len(found & planted) / max(len(found), 1), 4),
        },
        "embeddings_knn": recall_vs_exact(
            world.embeddings, world.reference_embeddings, leaks, k=DEFAULT_TOP_K
        ),
        "signatures_knn": recall_vs_exact(world.signatures, world.reference_signatures, leaks, k=5),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 200_000])
    args = ap.parse_args()
    rows = [run_size(n) for n in args.sizes]
    result = {
        "benchmark": "near-duplicate / leakage search through analysis.stats.neighbours.knn",
        "command": "python bench/bench_duplicates.py " + " ".join(sys.argv[1:]),
        "exact_max_work": N.EXACT_MAX_WORK,
        "nprobe": N.DEFAULT_NPROBE,
        "rerank": N.DEFAULT_RERANK,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, shared with other jobs",
        "load_avg": os.getloadavg(),
        "results": rows,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
