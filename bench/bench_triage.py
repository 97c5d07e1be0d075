"""Root-cause triage: attribution precision and recall on planted worlds, and its speed at 100k.

Run: ``.venv/bin/python bench/bench_triage.py [--worlds 120] [--null 100] [--speed 100000]``.

**Attribution** (the numbers the README quotes). ``--worlds`` random worlds of
``bench/cause_worlds.py`` (2,000-8,000 images, 3-10 classes, 1-3 planted causes drawn from
under-represented value, rare class, shortcut, image quality, unfamiliar inputs, label noise,
overlapping classes, plus a genuine weak slice half the time), each triaged as the pipeline does
(``compute_slices`` + ``discover_slices`` + :func:`analysis.triage.table.triage`). Scored:

- *group found*: the planted failure became a failure group (Jaccard >= 0.8 with its rows; a
  class pair for overlapping classes; a weak class for a rare class);
- *recall*: its planted cause is claimed (significant after BH at 5%) for that group;
- *precision*: of the causes claimed for planted groups, the share that truly account for at
  least 20% of the group's planted errors (``cause_worlds.true_causes``: composition for slices,
  within the class for pairs); also over every group reported (proxy slices included);
- *genuine*: groups of a planted weak slice with no cause (a genuine model error) for which some
  cause is claimed (should be rare).

**Null worlds**: ``--null`` worlds where nothing is planted (errors independent of every column):
the share with any cause claimed (target: at most the 5% false-discovery rate).

**Speed**: triage of a run-sized table (``--speed`` images, 20 metadata columns, the 9 image
properties, 10 classes, a reference set of the same size, 512-d embeddings, 8 planted weak
slices) after the other sections, against ``compute_slices`` on the same table in the same
process (the ratio is what survives a busy machine).

Defaults (``UNDER_FACTOR`` = 1/4, ``SHORTCUT_LIFT`` = 2, the 95th-percentile distance, 20% for
truth) were set on these random worlds, never on the sample or on the tests' inputs. Writes
``bench/results/triage.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
OUT = Path(__file__).resolve().parent / "results" / "triage.json"
MATCH = 0.8


def _group_rows(samples, row):
    import numpy as np

    from analysis import schema
    from analysis.stats.slices import apply_slice, spec_from_json

    if row["group_kind"] == "confusion":
        a = int(row["group_key"].split(":")[1].split("->")[0])
        return (samples[schema.LABEL].to_numpy() == a), True
    if row["group_kind"] == "whole_set":
        return np.ones(len(samples), dtype=bool), False
    return apply_slice(samples, spec_from_json(row["group_spec"])), False


def _jaccard(a, b) -> float:
    u = int((a | b).sum())
    return int((a & b).sum()) / u if u else 0.0


def score_world(cw, table) -> dict:
    """Per planted cause: group found? cause claimed? Per claim: supported by the truth?"""
    import numpy as np

    from analysis import schema
    from bench.cause_worlds import true_causes

    s = cw.world.samples
    groups = []
    for _key, g in table[table["group_kind"] != "whole_set"].groupby("group_key", sort=False):
        first = g.iloc[0]
        rows, within = _group_rows(s, first)
        claimed = set(g.loc[g["status"] == "significant", "cause"])
        base = None
        if within:
            b = int(first["group_key"].split("->")[1])
            base = ~rows & (s[schema.LABEL].to_numpy() != b)
        truth = true_causes(cw, rows, base, within=within)
        groups.append((first, rows, within, claimed, truth))
    out = {"planted": [], "claims": [], "genuine": []}
    for p in cw.planted:
        kind = p.kind
        match = None
        for first, rows, within, claimed, truth in groups:
            if kind == "overlapping":
                ok = first["group_kind"] == "confusion" and first["group_key"] == (
                    f"confusion:{p.details['a']}->{p.details['b']}"
                )
            else:
                ok = not within and _jaccard(rows, p.mask) >= MATCH
            if ok:
                match = (first, claimed, truth)
                break
        if kind == "weak_slice":
            if match is not None and not match[2]:
                out["genuine"].append(bool(match[1]))
            continue
        out["planted"].append(
            {
                "kind": kind if not (kind == "under_represented" and p.spec is not None
                                     and p.spec.columns == (schema.LABEL,)) else "rare_class",
                "found": match is not None,
                "claimed": match is not None and kind in match[1],
                "claims": sorted(match[1]) if match else [],
                "supported": [c in match[2] for c in sorted(match[1])] if match else [],
            }
        )  # fmt: skip
    for _first, _rows, _within, claimed, truth in groups:
        for c in claimed:
            out["claims"].append({"cause": c, "supported": c in truth})
    _ = np
    return out


def attribution(n_worlds: int, n_null: int, seed0: int = 1000) -> dict:
    from analysis.triage.table import triage
    from bench.cause_worlds import make_cause_world

    per_kind = defaultdict(lambda: {"planted": 0, "found": 0, "claimed": 0})
    planted_claims = supported_planted = 0
    all_claims = supported_all = 0
    genuine = []
    t0 = time.perf_counter()
    seconds = []
    for i in range(n_worlds):
        cw = make_cause_world(seed0 + i)
        t = time.perf_counter()
        table = triage(cw.inputs()).table
        seconds.append(time.perf_counter() - t)
        sc = score_world(cw, table)
        for p in sc["planted"]:
            d = per_kind[p["kind"]]
            d["planted"] += 1
            d["found"] += int(p["found"])
            d["claimed"] += int(p["claimed"])
            planted_claims += len(p["supported"])
            supported_planted += sum(p["supported"])
        all_claims += len(sc["claims"])
        supported_all += sum(c["supported"] for c in sc["claims"])
        genuine += sc["genuine"]
        if (i + 1) % 20 == 0:
            print(f"  {i + 1}/{n_worlds} worlds, {time.perf_counter() - t0:.0f} s", flush=True)
    null_any = 0
    null_groups = 0
    for i in range(n_null):
        cw = make_cause_world(seed0 + 100_000 + i, causes=())
        table = triage(cw.inputs()).table
        null_groups += int(table.loc[table["group_kind"] != "whole_set", "group_key"].nunique())
        null_any += int((table["status"] == "significant").any())
    rows = {}
    for kind, d in sorted(per_kind.items()):
        rows[kind] = {
            **d,
            "found_rate": d["found"] / d["planted"] if d["planted"] else None,
            "recall_given_found": d["claimed"] / d["found"] if d["found"] else None,
            "recall": d["claimed"] / d["planted"] if d["planted"] else None,
        }
    tot_p = sum(d["planted"] for d in per_kind.values())
    tot_f = sum(d["found"] for d in per_kind.values())
    tot_c = sum(d["claimed"] for d in per_kind.values())
    return {
        "worlds": n_worlds,
        "per_cause": rows,
        "recall": tot_c / tot_p if tot_p else None,
        "recall_given_found": tot_c / tot_f if tot_f else None,
        "precision_planted_groups": supported_planted / planted_claims if planted_claims else None,
        "claims_planted_groups": planted_claims,
        "precision_all_groups": supported_all / all_claims if all_claims else None,
        "claims_all_groups": all_claims,
        "genuine_groups": len(genuine),
        "genuine_with_a_claim": sum(genuine),
        "genuine_claim_rate": sum(genuine) / len(genuine) if genuine else None,
        "null_worlds": n_null,
        "null_worlds_with_a_claim": null_any,
        "null_claim_rate": null_any / n_null if n_null else None,
        "null_groups": null_groups,
        "seconds_per_world_median": sorted(seconds)[len(seconds) // 2] if seconds else None,
    }


def speed_table(n: int, seed: int = 0):
    """A run-sized samples table, reference, embeddings and its slices (module docstring)."""
    import numpy as np
    import pandas as pd

    from analysis import schema

    rng = np.random.default_rng(seed)
    c = 10
    meta = {}
    for j in range(20):
        if j % 4 == 3:
            meta[f"num{j}"] = rng.normal(0, 1, n).round(3)
        else:
            k = int(rng.integers(3, 12))
            meta[f"cat{j}"] = rng.choice([f"v{i}" for i in range(k)], n)
    props = {
        schema.BRIGHTNESS: rng.beta(2.5, 2.5, n),
        schema.CONTRAST: 0.5 * rng.beta(2, 5, n),
        schema.SHARPNESS: rng.lognormal(5, 1.2, n),
        schema.SATURATION: rng.beta(2, 3, n),
        schema.NOISE: rng.gamma(2.0, 1.5, n),
        schema.WIDTH: rng.choice([224, 640, 1024], n).astype(float),
        schema.HEIGHT: rng.choice([224, 480, 768], n).astype(float),
        schema.ASPECT_RATIO: rng.uniform(0.75, 1.5, n),
        schema.FILE_SIZE: rng.lognormal(11, 0.8, n),
    }

    def table(m, planted):
        t = pd.DataFrame({k: (v if len(v) == m else v[:m]) for k, v in {**meta, **props}.items()})
        label = rng.integers(0, c, m)
        t[schema.LABEL] = label
        if not planted:
            return t
        p = np.full(m, 0.1)
        cats = [k for k in meta if k.startswith("cat")][:8]
        for col in cats:  # eight planted weak slices: twenty-some failure groups
            p[t[col].to_numpy() == "v0"] += 0.08
        wrong = rng.random(m) < p
        pred = np.where(wrong, (label + rng.integers(1, c, m)) % c, label)
        t[schema.PRED] = pred
        t[schema.CORRECT] = pred == label
        t[schema.MARGIN] = rng.uniform(0, 1, m)
        t[schema.IS_LABEL_ISSUE] = wrong & (rng.random(m) < 0.2)
        t[schema.SAMPLE_ID] = [f"s{i:07d}" for i in range(m)]
        t[schema.CLUSTER] = rng.integers(0, 12, m)
        return t

    samples = table(n, True)
    ref = table(n, False).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    emb = rng.normal(size=(n, 512)).astype(np.float16)
    remb = rng.normal(size=(n, 512)).astype(np.float16)
    return samples, ref, emb, remb, list(meta), list(props)


def speed(n: int) -> dict:
    import numpy as np

    from analysis.stats.discovery import discover_slices
    from analysis.stats.slices import compute_slices
    from analysis.triage.inputs import TriageInputs
    from analysis.triage.table import triage

    samples, ref, emb, remb, meta, props = speed_table(n)
    kw = dict(metadata_columns=meta, property_columns=props, cluster_column="cluster",
              class_names=[f"c{i}" for i in range(10)])  # fmt: skip
    t = time.perf_counter()
    slices = compute_slices(samples, **kw)
    t_slices = time.perf_counter() - t
    t = time.perf_counter()
    found = discover_slices(samples, **kw)
    t_disc = time.perf_counter() - t
    inputs = TriageInputs(
        samples=samples,
        class_names=kw["class_names"],
        metadata_columns=meta,
        property_columns=props,
        reference=ref,
        embeddings=np.asarray(emb),
        reference_embeddings=np.asarray(remb),
        slices=slices,
        discovered=found,
    )
    stored = []
    t, c = time.perf_counter(), time.process_time()
    res = triage(inputs, save_selection=lambda ids: stored.append(len(ids)) or f"x{len(stored)}")
    t_triage, c_triage = time.perf_counter() - t, time.process_time() - c
    return {
        "n": n,
        "metadata_columns": len(meta),
        "property_columns": len(props),
        "embedding_dim": int(emb.shape[1]),
        "reference_rows": len(ref),
        "groups": int(res.info["n_groups"]),
        "hypotheses_tested": int(res.info["n_tests"]),
        "triage_seconds": round(t_triage, 2),
        "triage_cpu_seconds": round(c_triage, 2),
        "triage_timings": res.info["timings_s"],
        "compute_slices_seconds": round(t_slices, 2),
        "discover_slices_seconds": round(t_disc, 2),
        "ratio_triage_to_compute_slices": round(t_triage / t_slices, 2),
        "selections_stored": len(stored),
        "target_seconds": 10,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=120)
    ap.add_argument("--null", type=int, default=100)
    ap.add_argument("--speed", type=int, default=100_000, help="0 to skip")
    args = ap.parse_args()
    import numpy as np

    result = {
        "benchmark": "analysis.triage.table.triage on bench/cause_worlds.py worlds; speed at n",
        "command": "python bench/bench_triage.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}"
        " (shared with other jobs)",
        "load_average_1min": round(os.getloadavg()[0], 2),
        "numpy": np.__version__,
    }
    if args.speed:
        result["speed"] = speed(args.speed)
        print(json.dumps(result["speed"], indent=2), flush=True)
    if args.worlds or args.null:
        result["attribution"] = attribution(args.worlds, args.null)
        print(json.dumps(result["attribution"], indent=2), flush=True)
    result["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    if OUT.exists():  # a partial run (--speed only, or --worlds 0 --null 0) keeps the other part
        stored = json.loads(OUT.read_text())
        for part in ("speed", "attribution"):
            if part not in result and part in stored:
                result[part] = stored[part]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    _table(result)


def _table(result: dict) -> None:
    a = result.get("attribution")
    if a:
        print("\ncause               planted  group found  recall (given found)  recall")
        for kind, d in a["per_cause"].items():
            print(
                f"{kind:<20}{d['planted']:>7}  {d['found_rate']:>10.0%}  "
                f"{(d['recall_given_found'] or 0):>20.0%}  {(d['recall'] or 0):>6.0%}"
            )
        print(
            f"\nprecision on planted groups {a['precision_planted_groups']:.0%}"
            f" ({a['claims_planted_groups']} claims); on every group"
            f" {a['precision_all_groups']:.0%} ({a['claims_all_groups']} claims)"
        )
        print(
            f"genuine model errors with a cause claimed: {a['genuine_with_a_claim']}"
            f" of {a['genuine_groups']}"
        )
        print(
            f"null worlds with any cause claimed: {a['null_worlds_with_a_claim']} of"
            f" {a['null_worlds']} (target <= 5%)"
        )
    sp = result.get("speed")
    if sp:
        print(
            f"\nspeed: triage of {sp['n']:,} images, {sp['metadata_columns']} metadata columns,"
            f" {sp['groups']} groups: {sp['triage_seconds']} s wall, {sp['triage_cpu_seconds']} s"
            " CPU"
            f" ({sp['ratio_triage_to_compute_slices']}x compute_slices on the same table)"
        )


if __name__ == "__main__":
    main()
