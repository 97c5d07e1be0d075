"""Slice discovery on random planted worlds: which settings find the planted slices, and only them.

Run: ``.venv/bin/python bench/bench_discovery.py [--worlds 300] [--null-worlds 1000]
[--null-worlds-settings 200]``. Writes
``bench/results/discovery.json`` and prints the table the README shows.

The worlds come from ``bench/worlds.py`` (seeded; nothing in them is the bundled sample): tables
of 1,500-8,000 rows with 2-12 classes, 1-7 metadata columns (categorical of 2-12 values with
skewed frequencies, numeric, noisy copies of each other, some tilted by the class), 0-5 image
properties, the predicted class and an embedding cluster (an error sits in its *predicted*
class's cluster half the time), a base error rate of 5-30% with 0-80% of the errors going to
one fixed confuser class, and 0-4 planted weak slices of 1-3 input conditions holding 2-30% of
the rows with error odds 2-12x the base odds. Errors elsewhere depend on nothing.

For each setting of :func:`analysis.stats.discovery.discover_slices` (the default and one change
at a time) it reports, over the planted worlds:

- ``recall@3`` / ``recall@10``: share of planted slices matched (Jaccard >= 0.5 between the
  rows) by one of the first 3 / 10 reported slices; ``recall@3 J.8`` the same at Jaccard >= 0.8;
  ``det. recall@10``: recall@10 among the *detectable* plants, those whose own rows pass a
  one-sided Fisher test at Bonferroni level (0.05 / candidates tested): a plant no method could
  find does not dilute the comparison;
- ``false/world``: reported slices that are not worse in truth (their rows' known error
  probability less than 1.1x the rest's; ``bench.worlds.truly_worse``), per world;

and over worlds with nothing planted (errors independent of every column):

- ``null rate``: share of worlds where anything at all is reported, with its 95% Clopper-Pearson
  interval. Benjamini-Hochberg at alpha = 5% promises at most 5% under this complete null.

The same null worlds also measure :func:`analysis.stats.slices.compute_slices` (single slices),
counting any significant slice, and input-condition slices only.
"""

from __future__ import annotations

import argparse
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

from analysis.stats.discovery import discover_slices  # noqa: E402
from analysis.stats.slices import (  # noqa: E402
    apply_slice,
    compute_slices,
    fisher_worse_p,
    spec_from_json,
)
from bench.worlds import first_match, make_world, truly_worse  # noqa: E402

OUT = ROOT / "bench" / "results" / "discovery.json"

#: name -> discover_slices keyword arguments (one change from the defaults at a time).
SETTINGS: dict[str, dict] = {
    "defaults": {},
    "rank_by=sliceline": {"rank_by": "sliceline"},
    "model_outputs=True": {"model_outputs": True},
    "containment=0.6": {"containment": 0.6},
    "containment off": {"containment": 1.01},
    "pieces=drop (the old rule)": {"pieces": "drop"},
    "pieces=drop, rank_by=sliceline": {"pieces": "drop", "rank_by": "sliceline"},
    "max_share=1 (no rule)": {"max_share": 1.0},
    "n_bins=10": {"n_bins": 10},
    "min_support=50": {"min_support": 50},
    "max_depth=2": {"max_depth": 2},
}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    a = (1 - level) / 2
    low = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return low, high


def _masks(world, table) -> list[np.ndarray]:
    return [apply_slice(world.samples, spec_from_json(s)) for s in table["spec"]]


def score_planted(seeds: list[int]) -> dict[str, dict]:
    acc = {
        name: {"found3": 0, "found10": 0, "found3_strict": 0, "det": 0, "det10": 0, "false": 0}
        for name in SETTINGS
    }
    n_plants = n_worlds = 0
    seconds = dict.fromkeys(SETTINGS, 0.0)
    for seed in seeds:
        world = make_world(seed)
        if not world.planted:
            continue
        n_worlds += 1
        n_plants += len(world.planted)
        kw = world.discovery_kwargs()
        error = ~world.samples["correct"].to_numpy()
        for name, change in SETTINGS.items():
            t = time.perf_counter()
            out = discover_slices(world.samples, **kw, **change)
            seconds[name] += time.perf_counter() - t
            masks = _masks(world, out)
            a = acc[name]
            if name == "defaults":
                m = max(int(out.attrs["n_tested"]), 1)
                detectable = []
                for p in world.planted:
                    pv = float(
                        fisher_worse_p(
                            int(error[p.mask].sum()), int(p.mask.sum()), error.sum(), error.size
                        )
                    )
                    detectable.append(pv < 0.05 / m)
                world_detectable = detectable
            for p, det in zip(world.planted, world_detectable, strict=True):
                r = first_match(p.mask, masks, min_jaccard=0.5)
                r_strict = first_match(p.mask, masks, min_jaccard=0.8)
                a["found3"] += r is not None and r <= 3
                a["found10"] += r is not None and r <= 10
                a["found3_strict"] += r_strict is not None and r_strict <= 3
                a["det"] += det
                a["det10"] += det and r is not None and r <= 10
            a["false"] += sum(not truly_worse(world, m) for m in masks)
    rows = {}
    for name, a in acc.items():
        rows[name] = {
            "recall_at_3": round(a["found3"] / max(n_plants, 1), 3),
            "recall_at_10": round(a["found10"] / max(n_plants, 1), 3),
            "recall_at_3_jaccard_0.8": round(a["found3_strict"] / max(n_plants, 1), 3),
            "detectable_recall_at_10": round(a["det10"] / max(a["det"], 1), 3),
            "false_per_world": round(a["false"] / max(n_worlds, 1), 3),
            "seconds_per_world": round(seconds[name] / max(n_worlds, 1), 3),
        }
    return {
        "worlds": n_worlds,
        "plants": n_plants,
        "detectable": acc["defaults"]["det"],
        "rows": rows,
    }


def score_null(seeds: list[int], n_settings: int) -> dict:
    """Null worlds: the defaults and compute_slices on every seed, the other settings on the
    first ``n_settings`` seeds (the promise needs many worlds; the comparison fewer)."""
    any_found = dict.fromkeys(SETTINGS, 0)
    false = dict.fromkeys(SETTINGS, 0)
    worlds = dict.fromkeys(SETTINGS, 0)
    single_any = single_inputs = 0
    for k, seed in enumerate(seeds):
        world = make_world(seed, n_planted=0)
        kw = world.discovery_kwargs()
        for name, change in SETTINGS.items():
            if name != "defaults" and k >= n_settings:
                continue
            out = discover_slices(world.samples, **kw, **change)
            worlds[name] += 1
            any_found[name] += len(out) > 0
            false[name] += len(out)
        single = compute_slices(world.samples, **kw)
        sig = single[single["significant"]]
        single_any += len(sig) > 0
        single_inputs += bool((~sig["model_output"]).any())
    n = len(seeds)
    rows = {}
    for name in SETTINGS:
        m = max(worlds[name], 1)
        low, high = clopper_pearson(any_found[name], m)
        rows[name] = {
            "worlds": worlds[name],
            "null_rate": round(any_found[name] / m, 4),
            "null_rate_ci": [round(low, 4), round(high, 4)],
            "false_per_null_world": round(false[name] / m, 3),
        }
    lo_a, hi_a = clopper_pearson(single_any, n)
    lo_i, hi_i = clopper_pearson(single_inputs, n)
    return {
        "worlds": n,
        "rows": rows,
        "compute_slices_any": {
            "rate": round(single_any / n, 4),
            "ci": [round(lo_a, 4), round(hi_a, 4)],
        },
        "compute_slices_inputs_only": {
            "rate": round(single_inputs / n, 4),
            "ci": [round(lo_i, 4), round(hi_i, 4)],
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worlds", type=int, default=300, help="seeds of planted worlds (0-4 plants)")
    ap.add_argument("--null-worlds", type=int, default=1000, help="null worlds (defaults)")
    ap.add_argument(
        "--null-worlds-settings", type=int, default=200, help="null worlds for the other settings"
    )
    args = ap.parse_args()
    load_before = round(os.getloadavg()[0], 2)
    start = time.perf_counter()
    planted = score_planted(list(range(args.worlds)))
    null = score_null(list(range(100_000, 100_000 + args.null_worlds)), args.null_worlds_settings)
    result = {
        "benchmark": "analysis.stats.discovery.discover_slices on bench/worlds.py worlds",
        "command": "python bench/bench_discovery.py " + " ".join(sys.argv[1:]),
        "planted": planted,
        "null": null,
        "seconds": round(time.perf_counter() - start, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
        # The 2-core development machine is shared with other jobs: absolute seconds vary.
        "machine_shared": True,
        "load_average_1min_before": load_before,
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "numpy": np.__version__,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{planted['worlds']} planted worlds ({planted['plants']} plants, {planted['detectable']}"
        f" detectable), {null['worlds']} null worlds ({args.null_worlds_settings} for the"
        " settings other than the defaults)"
    )
    head = (
        "| setting | recall@3 | recall@10 | recall@3 J.8 | det. recall@10 | false/world |"
        " null rate (95% CI) | false/null world |"
    )
    print(head)
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in SETTINGS:
        p, q = planted["rows"][name], null["rows"][name]
        ci = q["null_rate_ci"]
        print(
            f"| {name} | {p['recall_at_3']:.2f} | {p['recall_at_10']:.2f} |"
            f" {p['recall_at_3_jaccard_0.8']:.2f} | {p['detectable_recall_at_10']:.2f} |"
            f" {p['false_per_world']:.2f} | {q['null_rate']:.1%} ({ci[0]:.1%}-{ci[1]:.1%}) |"
            f" {q['false_per_null_world']:.2f} |"
        )
    for key in ("compute_slices_any", "compute_slices_inputs_only"):
        r = null[key]
        print(f"{key}: {r['rate']:.1%} ({r['ci'][0]:.1%}-{r['ci'][1]:.1%}) of null worlds")
    print(f"{result['seconds']} s -> {OUT}")


if __name__ == "__main__":
    main()
