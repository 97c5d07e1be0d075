"""Every post-pass section of a one-million-image run, timed and with its peak memory.

A synthetic world (bench/synthetic.py: 512-d embeddings, 768-d appearance signatures, 10-class
probabilities, 6 metadata columns, 9 image properties; 3% of the evaluation images leak from a
reference set of the same size, 0.5% are copied within, 4% of labels flipped, one weak slice) is
turned into a run directory the way ``analyze`` does after its pass: the same ``SectionContext``,
the same registered sections in the same order, the same ``RunWriter``. Images are not needed:
the pass's throughput is measured on real images by bench/bench_engines.py.

For each section: wall time and peak resident memory (VmHWM of this process, reset before the
section through /proc/self/clear_refs; it counts the pages of the memory-mapped arrays the section
touched, so it is an upper bound), and the peak of the memory the process allocated (RssAnon,
sampled every 0.1 s). The run it writes (bench/results/synthetic-runs/million-<n>)
is what ``bench/bench_dashboard.py --run`` opens. Targets (issue 16): near-duplicates + leakage
under 20 min and 8 GB; embedding map + clusters under 10 min; metrics, slices, discovery, label
issues each under 1 min. The machine is shared with other jobs: times are upper bounds.

    .venv/bin/python bench/bench_million.py [--n 1000000] [--m 1000000]
        -> bench/results/million.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import synthetic  # noqa: E402

from analysis import schema  # noqa: E402
from analysis.store.runstore import RunWriter  # noqa: E402

TARGETS_S = {
    "metrics": 60,
    "embedding_map": 600,
    "slices": 60,
    "discovered_slices": 60,
    "label_issues": 60,
    "duplicates": 1200,
}
OUT = ROOT / "bench" / "results" / "million.json"


def _status(key: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


class AnonPeak:
    """The largest RssAnon (memory the process allocated, not file pages it mapped) seen while a
    section runs, sampled every 0.1 s by a thread: VmHWM also counts the pages of the
    memory-mapped embedding files a section reads, which the kernel can drop at will."""

    def __enter__(self):
        import threading

        self.peak = _status("RssAnon")
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.1):
                self.peak = max(self.peak, _status("RssAnon"))

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _status("RssAnon"))


def reference_table(world, rng) -> pd.DataFrame:
    m = world.m
    rel = np.char.add(np.char.add("ref/", np.arange(m).astype(str)), ".jpg")
    return pd.DataFrame(
        {
            schema.SAMPLE_ID: np.char.add("r", np.char.zfill(np.arange(m).astype(str), 12)),
            schema.PATH: np.char.add("/data/", rel).astype(object),
            schema.RELPATH: rel.astype(object),
            schema.CONTENT_HASH: [f"{i + 10**15:064x}" for i in range(m)],
            schema.PHASH: [f"{v:016x}" for v in rng.integers(0, 2**63, m)],
            schema.LABEL: rng.integers(0, len(synthetic.CLASSES), m),
        }
    )


def write_thumbnails(folder: Path, keys: list[str]) -> None:
    """A pack of the sample's real thumbnails, each shared by many keys (the index format
    allows it), so the dashboard shows pictures without writing gigabytes."""
    from io import BytesIO

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    pool = sorted((ROOT / "sample_data" / "images").rglob("*.png"))[:200]
    pool += sorted((ROOT / "sample_data" / "images").rglob("*.jpg"))[: 200 - len(pool)]
    blobs = []
    for p in pool or []:
        im = Image.open(p).convert("RGB")
        im.thumbnail((160, 160))
        buf = BytesIO()
        im.save(buf, format="JPEG", quality=85)
        blobs.append(buf.getvalue())
    offsets = np.cumsum([0] + [len(b) for b in blobs])[:-1]
    with open(folder / "pack-00000.jpgs", "wb") as f:
        for b in blobs:
            f.write(b)
    which = np.arange(len(keys)) % max(1, len(blobs))
    pd.DataFrame(
        {
            "key": keys,
            "pack": np.zeros(len(keys), np.int32),
            "offset": offsets[which].astype(np.int64),
            "size": np.asarray([len(b) for b in blobs], np.int32)[which],
        }
    ).to_parquet(folder / "index.parquet", index=False)


def detector_agreement(world, pairs: pd.DataFrame, n_random: int = 1000, seed: int = 2) -> dict:
    """The near-copy detector as the run computed it (approximate search at this size) against
    the same rule on exact neighbours, for a sample of queries: 1,000 random evaluation images
    plus 1,000 of the planted leaks (the rows with pairs above the threshold)."""
    from analysis.data_issues.duplicates import COPY_MAX_GROUP, copies_from_neighbours
    from analysis.stats.neighbours import knn

    rng = np.random.default_rng(seed)
    q = np.union1d(rng.choice(world.n, n_random, replace=False), world.leaks[:1000, 0])
    k = COPY_MAX_GROUP + 1
    out: dict = {"queries": int(q.size)}
    t = time.perf_counter()
    for scope, base, ex in (
        ("leak", world.reference_signatures, None),
        ("within", world.signatures, q),
    ):
        res = knn(world.signatures[q], base, k=k, exclude=ex, method="exact")
        exact = copies_from_neighbours(res.indices, res.scores, k=k, scope=scope, query_rows=q)
        got = pairs[(pairs["scope"] == scope) & (pairs["kind"] == "near")]
        if scope == "within":  # unordered pairs: a sampled query may be either end
            e = {tuple(sorted(p)) for p in zip(exact["i"], exact["j"], strict=True)}
            g = set(zip(got["i"], got["j"], strict=True))
            out[scope] = {
                "exact_pairs": len(e),
                "recall": round(len(e & g) / max(1, len(e)), 4),
            }
        else:
            e = set(zip(exact["i"], exact["j"], strict=True))
            mine = got[got["i"].isin(q)]
            g = set(zip(mine["i"], mine["j"], strict=True))
            out[scope] = {
                "exact_pairs": len(e),
                "found": len(g),
                "recall": round(len(e & g) / max(1, len(e)), 4),
                "precision": round(len(e & g) / max(1, len(g)), 4),
            }
    out["seconds"] = round(time.perf_counter() - t, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--m", type=int, default=None, help="reference images (default: n)")
    ap.add_argument("--sections", nargs="*", default=None, help="only these sections")
    args = ap.parse_args()
    n, m = args.n, args.m or args.n
    os.environ.setdefault("ERRORSCOPE_NO_PROGRESS", "1")
    t = time.perf_counter()
    world = synthetic.world(n, m, ROOT / "bench" / "results" / "synthetic-worlds")
    made = time.perf_counter() - t
    print(f"world of {n:,} + {m:,} ready in {made:.0f} s", flush=True)

    from analysis.pipeline.sections import (
        SECTIONS,
        SectionContext,
        run_sections,
        with_section_columns,
    )
    from analysis.pipeline.versions import cache_codes, pass_code

    runs = ROOT / "bench" / "results" / "synthetic-runs"
    run_id = f"million-{n}"
    shutil.rmtree(runs / run_id, ignore_errors=True)
    rng = np.random.default_rng(1)
    ref = reference_table(world, rng)
    result: dict = {"n": n, "m": m, "world_seconds": round(made, 1), "sections": {}}
    base_rss = _status("VmRSS")
    with RunWriter(runs, run_id) as w:
        for name in ("embeddings", "reference_embeddings", "signatures", "reference_signatures"):
            os.link(world.folder / f"{name}.npy", w.tmp / f"{name}.npy")
        np.save(w.tmp / schema.PROBS, world.probs)
        mm = {
            k: np.load(w.tmp / f"{k}.npy", mmap_mode="r")
            for k in ("embeddings", "reference_embeddings", "signatures", "reference_signatures")
        }
        samples = world.samples
        say_log: list[str] = []
        ctx = SectionContext(
            w,
            samples,
            np.load(w.tmp / schema.PROBS, mmap_mode="r"),
            mm["embeddings"],
            synthetic.CLASSES,
            synthetic.METADATA_COLUMNS,
            ref,
            mm["reference_embeddings"],
            mm["signatures"],
            mm["reference_signatures"],
            SimpleNamespace(seed=0, min_support=20, umap=True),
            lambda msg, frac: say_log.append(f"{time.perf_counter() - t0:7.1f}s {msg}"),
        )
        sections, timings = {}, {}
        t0 = time.perf_counter()
        for name in SECTIONS:  # one at a time, as analyze runs them (run_sections)
            if args.sections and name not in args.sections:
                continue
            _reset_peak()
            ts = time.perf_counter()
            with AnonPeak() as anon:
                run_sections(ctx, sections=sections, timings=timings, only=[name])
            secs = time.perf_counter() - ts
            if name not in sections:  # an optional section without its input (a hierarchy)
                continue
            row = {
                "seconds": round(secs, 1),
                "peak_rss_mib": round(_status("VmHWM") / 2**20),
                "peak_anon_mib": round(anon.peak / 2**20),
                "status": sections[name]["status"],
                "target_seconds": TARGETS_S.get(name),
            }
            if sections[name]["status"] == "failed":
                row["error"] = sections[name]["error"]
            result["sections"][name] = row
            print(name, json.dumps(row), flush=True)
        samples = with_section_columns(samples, ctx.outputs)
        w.write_table(schema.SAMPLES, samples)
        w.write_table(schema.REFERENCE_SAMPLES, ref)
        write_thumbnails(w.tmp / schema.THUMBS_DIR, samples[schema.SAMPLE_ID].tolist())
        dups = w.tmp / schema.DUPLICATES
        if dups.exists():
            pairs = pd.read_parquet(dups)
            leak = pairs[pairs["scope"] == "leak"]
            found = set(zip(leak["i"].tolist(), leak["j"].tolist(), strict=True))
            planted = set(map(tuple, world.leaks.tolist()))
            result["planted_leaks"] = len(planted)
            result["planted_leak_recall"] = round(len(found & planted) / max(1, len(planted)), 4)
            within = pairs[pairs["scope"] == "within"]
            got = set(zip(within["i"].tolist(), within["j"].tolist(), strict=True))
            copies = set(map(tuple, world.copies.tolist()))
            result["planted_copy_recall"] = round(len(got & copies) / max(1, len(copies)), 4)
            result["near_copies_vs_exact"] = detector_agreement(world, pairs)
            print("near copies vs exact", result["near_copies_vs_exact"], flush=True)
        em = w.tmp / schema.EMBEDDING_MAP
        if em.exists():
            result["embedding_map"] = json.loads(em.read_text())
        w.commit(
            {
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "n_samples": n,
                "n_skipped": 0,
                "class_names": synthetic.CLASSES,
                "metadata_columns": synthetic.METADATA_COLUMNS,
                "property_columns": schema.PROPERTY_COLUMNS,
                "has_embeddings": True,
                "has_model": False,
                "inputs": {
                    "data": {"name": f"synthetic-{n}"},
                    "model": None,
                    "predictions": {"name": "synthetic"},
                    "reference": {"name": f"synthetic-ref-{m}", "n_images": m},
                },
                "preprocessing": {"resize": 112, "crop": None},
                "sections": sections,
                "versions": {
                    "pass_code": pass_code().fingerprint,
                    "caches": cache_codes(),
                },
                "timings_s": {k: round(v, 1) for k, v in timings.items()},
                "skipped": [],
                "reference_skipped": [],
                "warnings": [],
            },
            replace=True,
        )
    result["post_pass_seconds"] = round(sum(r["seconds"] for r in result["sections"].values()), 1)
    result["peak_rss_mib"] = max(r["peak_rss_mib"] for r in result["sections"].values())
    result["rss_before_sections_mib"] = round(base_rss / 2**20)
    result["log"] = say_log[-60:]
    result["machine"] = (
        f"{platform.machine()} {os.cpu_count()} cpus, shared with other jobs;"
        f" load average at the end {os.getloadavg()[0]:.1f}"
    )
    result["command"] = "python bench/bench_million.py " + " ".join(sys.argv[1:])
    OUT.parent.mkdir(parents=True, exist_ok=True)
    out = OUT if n == 1_000_000 else OUT.with_name(f"million-{n}.json")
    if args.sections:  # a partial run keeps the whole run's file
        out = out.with_name(f"{out.stem}-{'-'.join(args.sections)}.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "log"}, indent=2))
    print("written", out)


if __name__ == "__main__":
    main()
