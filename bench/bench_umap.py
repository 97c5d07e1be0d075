"""Benchmark: the embedding map (project_2d) and clusters (cluster_embeddings) vs plain umap-learn.

For each size N (default 10,000 and 100,000) on synthetic 512-d embeddings (a 30-component mixture
in a 32-d latent space, mapped linearly to 512-d, ReLU, stored as float16 like embeddings.npy),
one fresh Python process measures:

- ``import_s``: importing analysis.explain.embeddings and umap-learn (numba code loaded from the cache);
- ``cold``: our project_2d + cluster_embeddings, the first call in that process;
- ``warm``: the same again in the same process; up to 20,000 points also ``seed=None``
  (umap's layout on every core, not reproducible);
- ``umap_default``: ``umap.UMAP().fit_transform`` on the same raw 512-d input, default settings
  (no seed: all cores, spectral init, NN-descent on 512 dims), after ours, in the same process;
- the ratio umap_default / our warm project_2d, and quality: 5-NN accuracy of the planted
  mixture component in each 2-D map (on a 5,000-point subsample) and the adjusted Rand index of
  our clusters against the components.

``--cold-cache`` also runs the smallest size once with an empty numba cache (ERRORSCOPE_CACHE
pointed at a temporary folder): what every new process would pay without the machine-wide cache.

Usage::

    nice -n 10 .venv/bin/python bench/bench_umap.py [--sizes 10000 100000] [--cold-cache]
        [--threads 1]

Writes bench/results/umap.json (updating the entries of the sizes run) and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "umap.json"
DIM = 512
COMPONENTS = 30
PARALLEL_MAX = 20_000  # also time project_2d(seed=None) up to this size


def make_embeddings(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float16 [n, 512] non-negative embeddings and their mixture component [n]."""
    rng = np.random.default_rng(seed)
    latent_dim = 32
    centres = rng.normal(scale=3.0, size=(COMPONENTS, latent_dim))
    weights = rng.dirichlet(np.full(COMPONENTS, 2.0))
    comp = rng.choice(COMPONENTS, size=n, p=weights)
    latent = centres[comp] + rng.normal(size=(n, latent_dim))
    mixing = rng.normal(size=(latent_dim, DIM)) / np.sqrt(latent_dim)
    x = np.maximum(latent @ mixing, 0.0) + 0.05 * rng.random((n, DIM))
    return x.astype(np.float16), comp


def _knn_accuracy(xy: np.ndarray, y: np.ndarray, *, sample: int = 5000, seed: int = 0) -> float:
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), size=min(sample, len(y)), replace=False)
    _, nb = NearestNeighbors(n_neighbors=6).fit(xy).kneighbors(xy[idx])
    votes = y[nb[:, 1:]]
    pred = np.array([np.bincount(v).argmax() for v in votes])
    return float((pred == y[idx]).mean())


def _timed_project(E, x: np.ndarray, *, seed: int | None) -> tuple[np.ndarray, float, list]:
    stages: list[tuple[float, str]] = []
    t = time.perf_counter()
    xy = E.project_2d(x, seed=seed, progress=lambda m: stages.append((time.perf_counter(), m)))
    elapsed = time.perf_counter() - t
    return xy, elapsed, [{"at_s": round(ts - t, 2), "stage": m} for ts, m in stages]


def child(path: str, comp_path: str) -> dict:
    """Runs in a fresh process; returns the timings of one size."""
    t0 = time.perf_counter()
    from analysis.explain import embeddings as E

    E._import_umap()
    out: dict = {"import_s": round(time.perf_counter() - t0, 2)}
    x = np.load(path)
    y = np.load(comp_path)
    from sklearn.metrics import adjusted_rand_score

    for phase in ("cold", "warm"):
        xy, t_proj, stages = _timed_project(E, x, seed=0)
        t = time.perf_counter()
        labels = E.cluster_embeddings(x, seed=0)
        t_clu = time.perf_counter() - t
        out[phase] = {
            "project_2d_s": round(t_proj, 2),
            "cluster_s": round(t_clu, 2),
            "total_s": round(t_proj + t_clu, 2),
            "stages": stages,
        }
    if len(x) <= PARALLEL_MAX:
        # seed=None: umap's layout on every core, not reproducible
        _, t_par, _ = _timed_project(E, x, seed=None)
        out["warm"]["project_2d_seed_none_s"] = round(t_par, 2)
    out["n_clusters"] = int(labels.max() + 1)
    out["ours_knn_accuracy_2d"] = round(_knn_accuracy(xy, y), 4)
    out["ours_cluster_ari"] = round(float(adjusted_rand_score(y, labels)), 4)

    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        ref = umap.UMAP().fit_transform(x.astype(np.float32))
        out["umap_default_s"] = round(time.perf_counter() - t, 2)
    out["umap_default_knn_accuracy_2d"] = round(_knn_accuracy(ref, y), 4)
    out["ratio_umap_default_over_ours_warm_project"] = round(
        out["umap_default_s"] / out["warm"]["project_2d_s"], 2
    )
    return out


def child_cold_cache(path: str) -> dict:
    """A fresh process with an empty numba cache: import + first project_2d."""
    t0 = time.perf_counter()
    from analysis.explain import embeddings as E

    E._import_umap()
    t_import = time.perf_counter() - t0
    x = np.load(path)
    t = time.perf_counter()
    E.project_2d(x, seed=0)
    return {
        "import_s": round(t_import, 2),
        "project_2d_s": round(time.perf_counter() - t, 2),
        "cache_dir": os.environ.get("NUMBA_CACHE_DIR"),
    }


def _run_child(args: list[str], env: dict | None = None) -> dict:
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"child failed:\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - t, 2)
    return result


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("umap-learn", "pynndescent", "numba", "scikit-learn", "numpy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--cold-cache", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS/OpenMP threads of the measured processes (0 = library default); "
        "numba's threads (umap-learn's default run) are left alone",
    )
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--child-cold-cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if args.child_cold_cache:
        print(json.dumps(child_cold_cache(args.child_cold_cache)))
        return

    # Sizes can be run one at a time: each run updates its own entries of the results file.
    results: dict = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results.update(
        {
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "python": platform.python_version(),
            },
            "versions": _versions(),
            "dim": DIM,
            "blas_openmp_threads": args.threads or "default",
        }
    )
    results.setdefault("sizes", {})
    command = "python bench/bench_umap.py " + " ".join(sys.argv[1:])
    env = dict(os.environ)
    if args.threads > 0:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            x, comp = make_embeddings(n)
            path, comp_path = Path(tmp) / f"x{n}.npy", Path(tmp) / f"y{n}.npy"
            np.save(path, x)
            np.save(comp_path, comp)
            print(f"N={n:,}: running ...", file=sys.stderr, flush=True)
            load_before = [round(v, 2) for v in os.getloadavg()]
            entry = _run_child(["--child", str(path), str(comp_path)], env)
            entry["load_avg_before"] = load_before
            entry["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
            entry["command"] = command
            results["sizes"][str(n)] = entry
            print(json.dumps(entry, indent=1), file=sys.stderr, flush=True)
        if args.cold_cache:
            n = min(args.sizes)
            with tempfile.TemporaryDirectory() as cache:
                cold_env = {**env, "ERRORSCOPE_CACHE": cache}
                cold_env.pop("NUMBA_CACHE_DIR", None)
                print(f"N={n:,}: empty numba cache ...", file=sys.stderr, flush=True)
                load_before = [round(v, 2) for v in os.getloadavg()]
                cold = _run_child(["--child-cold-cache", str(Path(tmp) / f"x{n}.npy")], cold_env)
                cold.update(n=n, load_avg_before=load_before, command=command)
                cold["load_avg_after"] = [round(v, 2) for v in os.getloadavg()]
                results["empty_numba_cache"] = cold
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
