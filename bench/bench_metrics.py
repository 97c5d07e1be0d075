"""Time ``analysis.stats.metrics.summary`` on 100k rows x 10 classes (1000 bootstrap resamples).

Run: ``.venv/bin/python bench/bench_metrics.py``. Writes ``bench/results/metrics.json`` and
prints it. Single-threaded BLAS so numbers are comparable on shared machines.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analysis.stats import metrics  # noqa: E402
from analysis.stats.intervals import bootstrap_interval  # noqa: E402

N, K, N_BOOT, REPEATS = 100_000, 10, 1000, 3


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Imbalanced labels, a ~70%-accurate over-confident model, float32 probabilities."""
    rng = np.random.default_rng(seed)
    prior = np.linspace(1.0, 4.0, K)
    y = rng.choice(K, size=N, p=prior / prior.sum())
    logits = rng.normal(size=(N, K)).astype(np.float32)
    logits[np.arange(N), y] += 2.0
    probs = np.exp(2.0 * logits)
    return y, (probs / probs.sum(axis=1, keepdims=True)).astype(np.float32)


def best_of(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    y, probs = make_data()
    warnings.simplefilter("ignore")
    result = {
        "n": N,
        "n_classes": K,
        "n_boot": N_BOOT,
        "repeats": REPEATS,
        "summary_s": best_of(lambda: metrics.summary(y, probs, n_classes=K, n_boot=N_BOOT)),
        "expected_calibration_error_s": best_of(
            lambda: metrics.expected_calibration_error(y, probs, n_boot=N_BOOT)
        ),
        "per_class_metrics_s": best_of(
            lambda: metrics.per_class_metrics(y, probs.argmax(1), n_classes=K, n_boot=N_BOOT)
        ),
        "one_vs_rest_scores_s": best_of(lambda: metrics.one_vs_rest_scores(y, probs)),
        "bootstrap_mean_vectorized_s": best_of(
            lambda: bootstrap_interval(
                lambda v: v.mean(axis=-1), probs[:, 0], n_boot=N_BOOT, vectorized=True
            )
        ),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_avg_1min_at_end": os.getloadavg()[0],
    }
    out = Path(__file__).resolve().parent / "results" / "metrics.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
