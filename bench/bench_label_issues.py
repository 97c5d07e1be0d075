"""Ranking quality of the label-issue detector: every filter method x every score.

Run: ``.venv/bin/python bench/bench_label_issues.py``. Writes ``bench/results/label_issues.json``
and prints a table. This is a quality benchmark, not a speed one: for each synthetic problem with
known flips it reports, per (method, score), the flagged count, the flagged set's precision and
recall, and the recall of the true flips among the top ``K = 2 x (number of flips)`` rows of the
ranked table (flagged first, then by score), the issue's acceptance measure.

The problems are built so that "the model is wrong" and "the label is wrong" are different
things, as on real data:

- ``clean``: a good model, uniform flips.
- ``hard_slice``: as ``clean`` plus a 15% slice (think night images) where the model is
  systematically wrong towards one class with moderate confidence: model errors that are not
  label errors, the case that decides between filters.
- ``confusable``: classes in confusable pairs (cat/dog), flips mostly within the pairs.
- ``weak``: a weak model on 20 classes (low thresholds, many ties near the decision boundary).

If a bundled-sample run exists (``errorscope sample``), its planted flips are scored too.
Timing of ``find_label_issues`` on 100k x 100 is included for the record.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analysis import schema  # noqa: E402
from analysis.data_issues.label_issues import FILTER_METHODS, QUALITY_SCORES, find_label_issues  # noqa: E402


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _flip(true: np.ndarray, c: int, share: float, rng, partner=None) -> np.ndarray:
    given = true.copy()
    flip = rng.random(true.size) < share
    for k in np.flatnonzero(flip):
        if partner is not None and rng.random() < 0.7:
            given[k] = partner[true[k]]
        else:
            given[k] = (true[k] + rng.integers(1, c)) % c
    return given


def problem(name: str, seed: int = 0, n: int = 6000):
    """(given labels, pred_probs, flipped mask) of one synthetic problem; see the docstring."""
    rng = np.random.default_rng([seed, hash(name) % 1000])
    if name == "weak":
        c = 20
        true = rng.integers(0, c, size=n)
        z = rng.normal(size=(n, c))
        z[np.arange(n), true] += 1.6
        return _finish(true, _softmax(1.5 * z), _flip(true, c, 0.06, rng))
    c = 10
    true = rng.integers(0, c, size=n)
    z = rng.normal(size=(n, c))
    z[np.arange(n), true] += 3.0
    partner = None
    if name == "confusable":
        partner = np.arange(c) ^ 1  # 0<->1, 2<->3, ...
        z[np.arange(n), partner[true]] += 1.8
    if name == "hard_slice":
        hard = rng.random(n) < 0.15
        wrong = (true + 1 + rng.integers(0, 2, size=n)) % c  # systematic: one of two neighbours
        z[hard, true[hard]] -= 2.2
        z[hard, wrong[hard]] += 2.0 + rng.normal(0, 0.8, size=int(hard.sum()))
    probs = _softmax(1.6 * z)
    return _finish(true, probs, _flip(true, c, 0.04, rng, partner))


def _finish(true, probs, given):
    return given, probs.astype(np.float32), given != true


def score_table(given: np.ndarray, probs: np.ndarray, flipped: np.ndarray) -> list[dict]:
    k = 2 * int(flipped.sum())
    rows = []
    for method in FILTER_METHODS:
        for score in QUALITY_SCORES:
            df = find_label_issues(given, probs, method=method, score=score)
            order = df["index"].to_numpy()
            flagged = order[df[schema.IS_LABEL_ISSUE].to_numpy()]
            hits = int(flipped[flagged].sum())
            rows.append(
                {
                    "method": method,
                    "score": score,
                    "flagged": int(flagged.size),
                    "precision": round(hits / max(flagged.size, 1), 3),
                    "recall": round(hits / max(int(flipped.sum()), 1), 3),
                    "k": k,
                    "recall_at_k": round(float(flipped[order[:k]].mean() * k / flipped.sum()), 3),
                }
            )
    return rows


def sample_problem():
    """The bundled sample's run under runs/, if one was analysed; else None."""
    runs = Path(os.environ.get("ERRORSCOPE_RUNS_DIR", ROOT / "runs"))
    candidates = sorted(runs.glob("*/samples.parquet")) if runs.exists() else []
    planted = json.loads((ROOT / "sample_data" / "planted.json").read_text())
    flips = {f["path"] for f in planted["flipped_labels"]}
    import pandas as pd

    for path in candidates:
        s = pd.read_parquet(path, columns=[schema.LABEL, "relpath"])
        if s["relpath"].isin(flips).sum() == len(flips):
            probs = np.load(path.parent / "probs.npy").astype(np.float32)
            return s[schema.LABEL].to_numpy(), probs, s["relpath"].isin(flips).to_numpy(), path
    return None


def main() -> None:
    results = {"problems": {}}
    for name in ("clean", "hard_slice", "confusable", "weak"):
        given, probs, flipped = problem(name)
        acc = float((probs.argmax(1) == given).mean())
        results["problems"][name] = {
            "n": int(given.size),
            "n_classes": int(probs.shape[1]),
            "flips": int(flipped.sum()),
            "accuracy_on_given": round(acc, 3),
            "rows": score_table(given, probs, flipped),
        }
    sample = sample_problem()
    if sample is not None:
        given, probs, flipped, path = sample
        results["problems"]["bundled_sample"] = {
            "run": str(path.parent.relative_to(ROOT) if path.is_relative_to(ROOT) else path.parent),
            "n": int(given.size),
            "n_classes": int(probs.shape[1]),
            "flips": int(flipped.sum()),
            "accuracy_on_given": round(float((probs.argmax(1) == given).mean()), 3),
            "rows": score_table(given, probs, flipped),
        }

    rng = np.random.default_rng(1)
    n, c = 100_000, 100
    z = rng.normal(size=(n, c)).astype(np.float32)
    y = rng.integers(0, c, size=n)
    z[np.arange(n), y] += 3
    p = _softmax(z).astype(np.float32)
    start = time.perf_counter()
    find_label_issues(y, p)
    results["time_100k_x_100_s"] = round(time.perf_counter() - start, 2)
    results.update(
        python=platform.python_version(),
        numpy=np.__version__,
        cpu_count=os.cpu_count(),
    )
    out = ROOT / "bench" / "results" / "label_issues.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    for name, r in results["problems"].items():
        print(
            f"\n{name}: n={r['n']} C={r['n_classes']} flips={r['flips']} acc={r['accuracy_on_given']}"
        )
        print(f"  {'method':22s} {'score':18s} flagged  prec   rec  recall@{r['rows'][0]['k']}")
        for row in r["rows"]:
            print(
                f"  {row['method']:22s} {row['score']:18s} {row['flagged']:7d} {row['precision']:.3f}"
                f" {row['recall']:.3f} {row['recall_at_k']:.3f}"
            )
    print(f"\nfind_label_issues on 100k x 100: {results['time_100k_x_100_s']} s -> {out}")


if __name__ == "__main__":
    main()
