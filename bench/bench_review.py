"""Review speed in real Chromium: how long until an image's CAMs and faithfulness checks are on
screen.

- *cold*: an image detail page opened right after the dashboard started (a fresh process: the
  run is read, nothing is in memory), for the first image a review opens;
- *queue*: Skip in a review queue of the run's errors, the reviewer spending ``--dwell`` seconds
  on each image before moving on;
- *next*: Next on the image detail page, same dwell.

resnet18 at 224 px (torchvision's transform: resize 256, crop 224), random weights, 10 classes,
``--n`` synthetic 320 px images (the sample's pictures, enlarged). Each number is measured twice
in the same run, on the same machine: with what this version does (CAMs of the first review
images precomputed at analysis time, the next images prefetched while one is looked at) and
with neither (the run's cams/ emptied, ERRORSCOPE_NO_PREFETCH=1): the baseline.

Besides each step's wall time (navigation or click to the panel drawn), the dashboard
process's CPU seconds for the step (``/proc/<pid>/stat``): on a machine shared with other jobs
the wall time mostly measures the others, the CPU time what this code costs.

The images, runs and logs go to a temporary folder outside the checkout (``--work DIR`` keeps
them there instead): only ``bench/results/review.json`` is a result.

Targets (issue 11 §4): queue and Next within 1 s, a cold detail page within 3 s.

    .venv/bin/python bench/bench_review.py [--n 160] [--steps 8] [--dwell 3] [--work DIR]
        -> bench/results/review.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ERRORSCOPE_NO_PROGRESS", "1")

from bench._browser import CHROMIUM, CHROMIUM_ARGS, READY, start_dashboard, stop  # noqa: E402

OUT = ROOT / "bench" / "results"
CLASSES = [f"c{i}" for i in range(10)]


def make_run(n: int, work: Path):
    """An ImageFolder of ``n`` 320 px images and a random resnet18, analysed as a user would."""
    import torch
    import torchvision
    from PIL import Image

    from analysis.pipeline.engine import AnalysisConfig, analyze

    pool = sorted((ROOT / "sample_data" / "images" / "eval").glob("*.jpg"))[:n]
    data = work / "data"
    for i, src in enumerate(pool):
        d = data / CLASSES[i % len(CLASSES)]
        d.mkdir(parents=True, exist_ok=True)
        Image.open(src).convert("RGB").resize((320, 320)).save(d / f"{i:04d}.jpg", quality=92)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=len(CLASSES))
    torch.save(model.state_dict(), work / "resnet18.pt")
    t = time.perf_counter()
    run = analyze(
        AnalysisConfig(
            data=str(data), model=str(work / "resnet18.pt"), arch="resnet18", umap=False
        ),
        runs_dir=work / "runs",
    )
    return run, time.perf_counter() - t


def _ready(page, *, changed: str | None = None, timeout_ms: int = 300_000) -> None:
    """Wait for the CAM panel of the current image: (the new image's position text, then)
    Streamlit's run finished with both maps and their checks drawn."""
    if changed:
        page.get_by_text(re.compile(changed)).first.wait_for(timeout=timeout_ms)
    page.wait_for_function(READY, timeout=timeout_ms)
    page.get_by_text(re.compile(r"gradcam for|No map to show")).first.wait_for(timeout=timeout_ms)
    page.get_by_text(re.compile(r"Removing the top 20%|No map to show")).first.wait_for(
        timeout=timeout_ms
    )


def measure(
    runs_dir: Path,
    run,
    order: list[str],
    queue_id: str,
    *,
    steps: int,
    dwell: float,
    env: dict,
    log: Path,
    browser,
) -> dict:
    proc, url = start_dashboard(runs_dir, log=log, env=env)
    rid = run.run_id
    cpu = {"cold": 0.0, "queue": [], "next": []}
    try:
        page = browser.new_page(viewport={"width": 1500, "height": 1400})
        page.set_default_timeout(300_000)
        t, c = time.perf_counter(), _cpu_s(proc.pid)
        page.goto(f"{url}/detail?sample={order[0]}&correct=wrong&run={rid}")
        _ready(page)
        cold = time.perf_counter() - t
        cpu["cold"] = _cpu_s(proc.pid) - c

        queue = []
        page.goto(f"{url}/review?queue={queue_id}&pos=0&run={rid}")
        _ready(page, changed=r"^1/\d+:")
        for i in range(1, steps + 1):
            time.sleep(dwell)  # the reviewer looks at the image
            t, c = time.perf_counter(), _cpu_s(proc.pid)
            page.get_by_role("button", name=re.compile("Skip")).click()
            _ready(page, changed=rf"^{i + 1}/\d+:")
            queue.append(time.perf_counter() - t)
            cpu["queue"].append(_cpu_s(proc.pid) - c)

        nxt = []
        page.goto(f"{url}/detail?sample={order[steps + 1]}&correct=wrong&run={rid}")
        _ready(page, changed=r"Image [\d,]+ of")
        for _ in range(steps):
            time.sleep(dwell)
            pos = page.get_by_text(re.compile(r"Image [\d,]+ of")).first.inner_text()
            k = int(re.search(r"Image ([\d,]+) of", pos).group(1).replace(",", ""))
            t, c = time.perf_counter(), _cpu_s(proc.pid)
            page.get_by_text("Next ▶").first.click()
            _ready(page, changed=rf"Image {k + 1:,} of")
            nxt.append(time.perf_counter() - t)
            cpu["next"].append(_cpu_s(proc.pid) - c)
        page.close()
    finally:
        stop(proc)
    return {
        "cold_detail_s": round(cold, 3),
        "queue_skip_s": _summary(queue),
        "detail_next_s": _summary(nxt),
        "server_cpu_s": {
            "cold_detail": round(cpu["cold"], 3),
            "queue_skip": _summary(cpu["queue"]),
            "detail_next": _summary(cpu["next"]),
        },
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far, every thread included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(xs: list[float]) -> dict:
    return {
        "median": round(statistics.median(xs), 3),
        "max": round(max(xs), 3),
        "all": [round(x, 3) for x in xs],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=160)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--dwell", type=float, default=3.0, help="seconds spent on each image")
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="keep the images, runs and logs here (default:"
        " a temporary folder, removed at the end)",
    )
    args = ap.parse_args()

    if args.work is None:
        with tempfile.TemporaryDirectory(prefix="errorscope-review-bench-") as tmp:
            bench(args, Path(tmp))
    else:
        shutil.rmtree(args.work, ignore_errors=True)
        args.work.mkdir(parents=True)
        bench(args, args.work)


def bench(args, work: Path) -> None:
    from playwright.sync_api import sync_playwright

    from analysis import schema
    from analysis.explain.cam_views import review_rows
    from analysis.store.review import ReviewStore, default_db_path

    load_at_start = os.getloadavg()
    run, analyse_s = make_run(args.n, work)
    s = run.samples
    rows = review_rows(s)
    # the gallery's order of the errors (what Next walks through), the queue in review order
    wrong = np.flatnonzero(~s[schema.CORRECT].to_numpy())
    by_loss = wrong[np.argsort(-s[schema.LOSS].to_numpy()[wrong], kind="stable")]
    order = s[schema.SAMPLE_ID].to_numpy()[by_loss].tolist()
    assert len(order) > 2 * args.steps + 2, "too few errors for the walk"

    def precomputed(sid) -> bool:
        return (run.path / schema.CAMS_DIR / f"{sid}__input.png").exists()

    n_pre = sum(1 for sid in s[schema.SAMPLE_ID] if precomputed(sid))
    queue_ids = s[schema.SAMPLE_ID].to_numpy()[rows].tolist()
    walked = {
        "cold_detail": precomputed(order[0]),
        "queue": sum(precomputed(i) for i in queue_ids[1 : args.steps + 1]),
        "next": sum(precomputed(i) for i in order[args.steps + 2 : 2 * args.steps + 2]),
    }
    base_runs = work / "runs-baseline"
    shutil.copytree(run.path.parent, base_runs, ignore=shutil.ignore_patterns("review.sqlite"))
    shutil.rmtree(base_runs / run.path.name / schema.CAMS_DIR, ignore_errors=True)
    queues = {}
    for runs_dir in (run.path.parent, base_runs):
        ids = s[schema.SAMPLE_ID].to_numpy()[rows].tolist()
        hashes = s[schema.CONTENT_HASH].to_numpy()[rows].tolist()
        q = ReviewStore(default_db_path(runs_dir)).create_queue(
            run.run_id, "errors", ids, hashes, reviewer="bench", query={}
        )
        queues[runs_dir] = q.id
    res = {
        "model": "resnet18, random weights, 10 classes, 224 px (resize 256, crop 224)",
        "n_images": len(s),
        "n_errors": int(len(wrong)),
        "analysis_s": round(analyse_s, 1),
        "pass_s": round(run.manifest["timings_s"].get("pass", float("nan")), 2),
        "cams_section_s": run.sections.get("cams", {}).get("seconds"),
        "cams_section": run.sections.get("cams", {}).get("status"),
        "n_precomputed": n_pre,
        "precomputed_of_the_walked_images": walked,
        "dwell_s": args.dwell,
        "steps": args.steps,
        "load_avg_at_start": load_at_start,
        "load_avg_before": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "note": "2-core machine shared with other jobs: compare the two variants, measured in"
        " the same run, rather than absolute times",
    }
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            res["this_version"] = measure(
                run.path.parent,
                run,
                order,
                queues[run.path.parent],
                steps=args.steps,
                dwell=args.dwell,
                env={},
                log=work / "dashboard.log",
                browser=browser,
            )
            res["baseline_no_precompute_no_prefetch"] = measure(
                base_runs,
                run,
                order,
                queues[base_runs],
                steps=args.steps,
                dwell=args.dwell,
                env={"ERRORSCOPE_NO_PREFETCH": "1"},
                log=work / "dashboard-baseline.log",
                browser=browser,
            )
        finally:
            browser.close()
    res["load_avg_after"] = os.getloadavg()
    fast, base = res["this_version"], res["baseline_no_precompute_no_prefetch"]
    for key in ("queue_skip_s", "detail_next_s"):
        res[f"{key}_speedup"] = round(base[key]["median"] / fast[key]["median"], 2)
    res["cold_detail_speedup"] = round(base["cold_detail_s"] / fast["cold_detail_s"], 2)
    out = OUT / "review.json"
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps({k: v for k, v in res.items() if k != "note"}, indent=2))
    print("written", out)


if __name__ == "__main__":
    main()
