"""Label issues with many classes (issue 17 §3): how many rows confident learning flags, and how
many of them are real flips, on synthetic many-class problems.

Grid: 100 and 1,000 classes x 5, 20 and 100 images per class x no label noise and 5% flipped
labels x a calibrated and an overconfident model (the same ranking, softmax temperature 3). The
problems come from ``tests/synthetic_classes.py`` (probabilities drawn first, true classes
sampled from them, so "calibrated" is exact; flips half to a look-alike, half anywhere). For
each problem: the model's error rate, the flip rate, the rows flagged and their share, the
precision and recall of the flags against the known flips, the detector's own estimate of the
noise rate, and the checks of ``analysis/data_issues/label_checks.py``: the noise rate the
model's confidence can explain, its verdict, and the share of classes whose threshold rests on
too few images. Seeds are fixed;
the numbers are the README's table. Not used by any test: defaults are chosen on these worlds,
the tests use others.

    .venv/bin/python bench/bench_many_class_label_issues.py [--quick]
        -> bench/results/many_class_label_issues.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.data_issues import label_checks as lc  # noqa: E402
from analysis.data_issues import label_issues as li  # noqa: E402
from tests.synthetic_classes import many_class_world  # noqa: E402

MODELS = {"calibrated": 1.0, "overconfident": 3.0}


def measure(k: int, per_class: int, noise: float, model: str, seed: int = 0) -> dict:
    w = many_class_world(k, per_class, seed=seed, noise=noise, temperature=MODELS[model])
    t = time.perf_counter()
    table = li.find_label_issues(w.given, w.probs)
    seconds = time.perf_counter() - t
    by_row = table.set_index(li.INDEX).sort_index()
    flagged = by_row["is_label_issue"].to_numpy(bool)
    n = len(w.given)
    hits = int((flagged & w.flipped).sum())
    est = li.estimate_noise(w.given, w.probs)
    out = {
        "classes": k,
        "images_per_class": per_class,
        "images": n,
        "noise": noise,
        "model": model,
        "model_error_rate": round(float((w.probs.argmax(1) != w.true).mean()), 4),
        "disagreement_rate": round(float((w.probs.argmax(1) != w.given).mean()), 4),
        "flip_rate": round(float(w.flipped.mean()), 4),
        "flagged": int(flagged.sum()),
        "flagged_share": round(float(flagged.mean()), 4),
        "real_flips_flagged": hits,
        "precision": round(hits / flagged.sum(), 3) if flagged.any() else None,
        "recall": round(hits / w.flipped.sum(), 3) if w.flipped.any() else None,
        "estimated_noise_rate": round(est.num_label_issues / n, 4),
        "seconds": round(seconds, 2),
    }
    pred = w.probs.argmax(axis=1)
    chk = lc.noise_rate_check(pred == w.given, w.probs.max(axis=1), flagged)
    out["verdict"] = chk.verdict
    out["noise_bound"] = round(chk.bound_high, 4)
    out["max_real_share"] = None if chk.max_real_share is None else round(chk.max_real_share, 3)
    true_prob = w.probs[np.arange(n), w.given]
    thr = lc.threshold_check(w.given, true_prob, n_classes=k)
    out["classes_too_few_for_threshold"] = round(float(thr[lc.TOO_FEW].mean()), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="100 classes only")
    args = ap.parse_args()
    grid = itertools.product(
        (100,) if args.quick else (100, 1000), (5, 20, 100), (0.0, 0.05), tuple(MODELS)
    )
    rows = []
    load_start = os.getloadavg()
    for k, per, noise, model in grid:
        r = measure(k, per, noise, model)
        rows.append(r)
        print(
            f"{k:>5} cls {per:>3}/cls noise {noise:.2f} {model:>13}: err {r['model_error_rate']:.1%}"
            f" flagged {r['flagged']:>6} ({r['flagged_share']:.1%}) real flips {r['real_flips_flagged']:>5}"
            f" precision {r['precision']} recall {r['recall']} est.noise {r['estimated_noise_rate']:.1%}"
            f" bound {r['noise_bound']:.1%} {r['verdict']} max real {r['max_real_share']}"
            f" thin thresholds {r['classes_too_few_for_threshold']:.0%}",
            flush=True,
        )
    out = ROOT / "bench" / "results" / "many_class_label_issues.json"
    out.write_text(
        json.dumps(
            {
                "rows": rows,
                "load_avg_start": load_start,
                "load_avg": os.getloadavg(),
                "machine": "2-core development machine, shared with other jobs",
            },
            indent=2,
        )
    )
    print("written", out)


if __name__ == "__main__":
    main()
