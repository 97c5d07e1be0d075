"""Server-side time of a gallery filter change and of a page switch on a 100,000-image run.

Makes a synthetic run (not committed; under bench/results/synthetic-runs/) with realistic columns,
then drives the real app with Streamlit's AppTest and reports the median of repeated timings.
Target: under 0.5 s each on the 2-core development machine.

    .venv/bin/python bench/bench_dashboard.py [--n 100000]   -> bench/results/dashboard.json

``--run DIR`` opens an existing run instead, e.g. the one-million-image run that
bench/bench_million.py writes (-> bench/results/dashboard-<n>.json): the same timings, every page
once, paging to the gallery's last page, and the memory of the process that serves the app
(AppTest runs the app in this process: its resident set is what Streamlit holds; VmHWM is the
peak, VmRSS after the pages ran).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ERRORSCOPE_NO_PROGRESS", "1")

from analysis import schema  # noqa: E402
from analysis.loading.datasets import sample_id_for  # noqa: E402
from analysis.store.runstore import RunWriter  # noqa: E402
from tests.dashboard.conftest import open_page  # noqa: E402

CLASSES = [f"class_{i}" for i in range(10)]


def make_run(n: int, runs_dir: Path) -> Path:
    """A synthetic run of ``n`` images: samples, probs, metrics and slices like a real one."""
    from analysis.loading.inference import prediction_columns
    from analysis.stats.metrics import summary
    from analysis.stats.slices import compute_slices

    rng = np.random.default_rng(0)
    k = len(CLASSES)
    labels = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 3.0 * np.eye(k)[labels] * rng.uniform(0, 1.5, (n, 1))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    img = ROOT / "sample_data" / "images" / "eval"
    pool = sorted(str(p) for p in img.glob("*.jpg"))[:200] or [str(ROOT / "README.md")]
    rel = [f"img/{i:06d}.jpg" for i in range(n)]
    s = pd.DataFrame(
        {
            schema.SAMPLE_ID: [sample_id_for(r) for r in rel],
            schema.PATH: [pool[i % len(pool)] for i in range(n)],
            schema.RELPATH: rel,
            schema.CONTENT_HASH: [f"{i:064x}" for i in range(n)],
            schema.LABEL: labels,
            schema.LABEL_NAME: np.asarray(CLASSES, dtype=object)[labels],
        }
    )
    pc = prediction_columns(probs, labels)
    for c in pc.columns:
        s[c] = pc[c].to_numpy()
    s[schema.PRED_NAME] = np.asarray(CLASSES, dtype=object)[s[schema.PRED]]
    meta = {
        "camera": [f"cam_{c}" for c in "abcdefgh"],
        "site": [f"site_{i}" for i in range(20)],
        "lighting": ["day", "dusk", "night"],
        "annotator": [f"a{i}" for i in range(12)],
    }
    for col, values in meta.items():
        s[col] = rng.choice(values, n)
    s["hour"] = rng.integers(0, 24, n)
    s["temperature"] = rng.normal(15, 8, n).round(1)
    for col in schema.PROPERTY_COLUMNS:
        s[col] = rng.uniform(0, 1, n)
    s[schema.UMAP_X], s[schema.UMAP_Y] = rng.normal(size=(2, n)).astype(np.float32)
    s[schema.CLUSTER] = rng.integers(0, 30, n)
    run_id = f"synthetic-{n}"
    shutil.rmtree(runs_dir / run_id, ignore_errors=True)

    with RunWriter(runs_dir, run_id) as w:
        w.write_table(schema.SAMPLES, s)
        w.write_array(schema.PROBS, probs)
        w.write_json(schema.METRICS, summary(labels, probs, n_classes=k, n_boot=200).to_dict())
        meta_cols = [*meta, "hour", "temperature"]
        w.write_table(
            schema.SLICES,
            compute_slices(
                s,
                metadata_columns=meta_cols,
                property_columns=schema.PROPERTY_COLUMNS,
                cluster_column=schema.CLUSTER,
                class_names=CLASSES,
            ),
        )
        return w.commit(
            {
                "created": "2026-01-01T00:00:00",
                "n_samples": n,
                "n_skipped": 0,
                "class_names": CLASSES,
                "metadata_columns": meta_cols,
                "property_columns": schema.PROPERTY_COLUMNS,
                "has_embeddings": False,
                "has_model": False,
                "inputs": {
                    "data": {"name": "synthetic"},
                    "model": None,
                    "predictions": {"name": "synthetic"},
                },
                "preprocessing": {"resize": 112, "crop": None},
                "sections": {},
                "skipped": [],
                "warnings": [],
            }
        )


def _timed(fn, repeats: int) -> list[float]:
    out = []
    for i in range(repeats):
        t = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - t)
    return out


def _mib(key: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--run", help="an existing run folder to open instead of a synthetic one")
    ap.add_argument(
        "--make-only",
        action="store_true",
        help="only write the synthetic run (then open it with --run in a fresh process, so the"
        " memory measured is the app's, not the generator's)",
    )
    args = ap.parse_args()
    rss_start = _mib("VmRSS")
    load_start = os.getloadavg()
    if args.run:
        run_dir = Path(args.run).resolve()
        runs, run_id = run_dir.parent, run_dir.name
        args.n = json.loads((run_dir / "manifest.json").read_text())["n_samples"]
        global CLASSES
        CLASSES = json.loads((run_dir / "manifest.json").read_text())["class_names"]
    else:
        runs = ROOT / "bench" / "results" / "synthetic-runs"
        t0 = time.perf_counter()
        run_id = make_run(args.n, runs).name
        print(f"synthetic run of {args.n:,} samples made in {time.perf_counter() - t0:.1f} s")
        if args.make_only:
            print("written", runs / run_id)
            return
    os.environ["ERRORSCOPE_RUNS_DIR"] = str(runs)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=600)
    at.query_params["run"] = run_id
    t = time.perf_counter()
    at.run()
    first = time.perf_counter() - t
    open_page(at, "gallery").run()
    assert not at.exception, [e.value for e in at.exception]
    choices = ["wrong", "correct", "all"]

    def filter_change(i):
        at.segmented_control(key="g_correct").set_value(choices[i % 3]).run()
        assert not at.exception, [e.value for e in at.exception]

    def class_filter(i):
        at.multiselect(key="g_true").set_value([CLASSES[i % 10]]).run()

    def new_range(i):  # a confidence range never asked before: no cache can answer it
        at.slider(key="g_conf").set_value((0.0, round(0.99 - 0.013 * i, 3))).run()
        assert not at.exception, [e.value for e in at.exception]

    pages = ["overview", "gallery", "confusion"]

    def page_switch(i):
        open_page(at, pages[i % 3]).run()
        assert not at.exception, [e.value for e in at.exception]

    res = {
        "n_samples": args.n,
        "first_load_s": round(first, 3),
        "gallery_filter_change_s": _timed(filter_change, args.repeats),
        "gallery_class_filter_s": _timed(class_filter, args.repeats),
        "gallery_uncached_filter_s": _timed(new_range, args.repeats),
        "page_switch_s": _timed(page_switch, args.repeats),
    }
    if args.run:  # the 1M checks: every page once, the gallery's last page, memory
        every = [
            "overview",
            "confusion",
            "slices",
            "embeddings",
            "gallery",
            "data_issues",
            "detail",
        ]
        first_visit = {}
        for url in every:
            t = time.perf_counter()
            open_page(at, url).run()
            first_visit[url] = round(time.perf_counter() - t, 3)
            assert not at.exception, (url, [e.value for e in at.exception])
        res["first_visit_s"] = first_visit
        open_page(at, "gallery").run()
        at.segmented_control(key="g_correct").set_value("all").run()

        def last_page(i):  # a fresh page number each time, deep in the set
            at.query_params["page"] = str(20_000 - 37 * i)
            at.run()
            assert not at.exception, [e.value for e in at.exception]

        res["gallery_deep_page_s"] = _timed(last_page, args.repeats)
        res["streamlit_rss_mib"] = {
            "before_app": rss_start,
            "after_pages": _mib("VmRSS"),
            "peak": _mib("VmHWM"),
        }
        print("memory", res["streamlit_rss_mib"])
    res["load_avg_start"] = load_start
    res["load_avg"] = os.getloadavg()
    res["machine"] = "2-core development machine shared with other engineers' jobs"
    res["command"] = "python bench/bench_dashboard.py " + " ".join(sys.argv[1:])
    res["cpu_count"] = os.cpu_count()
    for key in (
        "gallery_filter_change_s",
        "gallery_class_filter_s",
        "gallery_uncached_filter_s",
        "page_switch_s",
        "gallery_deep_page_s",
    ):
        if key not in res:
            continue
        times = res[key]
        res[key] = {
            "median": round(statistics.median(times), 4),
            "all": [round(x, 4) for x in times],
        }
        print(f"{key}: median {res[key]['median']:.3f} s  ({res[key]['all']})")
    print(f"first load (reads the run): {first:.2f} s")
    name = f"dashboard-{args.n}.json" if args.run else "dashboard.json"
    out = ROOT / "bench" / "results" / name
    out.write_text(json.dumps(res, indent=2))
    print("written", out)


if __name__ == "__main__":
    main()
