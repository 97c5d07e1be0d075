"""Time for the Embeddings page's map to draw in a real browser, on a large run.

Starts ``streamlit run dashboard/app.py`` on the folder of ``--run`` (127.0.0.1), opens the
Embeddings page in Debian's Chromium (Playwright, software rendering: ``--disable-gpu``, as in the
browser tests) and measures, from the navigation, the time until Plotly has drawn the scatter
(its WebGL canvas exists and every trace has its points), then the time to redraw after choosing
another colouring. Repeated ``--repeats`` times in fresh pages; the median is reported with the
number of points drawn (bench/results/map_browser-<n>.json). Target (issue 16): within 3 s at
one million images.

    .venv/bin/python bench/bench_map_browser.py --run bench/results/synthetic-runs/million-1000000
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
DRAWN = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  if (!gd || !gd._fullData || !gd._fullData.length) return 0;
  if (!gd.querySelector('canvas')) return 0;
  let n = 0;
  for (const t of gd._fullData) n += (t.x || []).length;
  return n;
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    run = Path(args.run).resolve()
    n = json.loads((run / "manifest.json").read_text())["n_samples"]
    port = _free_port()
    env = dict(os.environ, ERRORSCOPE_RUNS_DIR=str(run.parent))
    log = open(ROOT / "bench" / "results" / "map_browser_streamlit.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "dashboard" / "app.py"),
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("streamlit did not start; see bench/results/map_browser_*.log")
            time.sleep(0.2)
        from playwright.sync_api import sync_playwright

        loads, ready, recolours, points = [], [], [], 0
        with sync_playwright() as p:
            b = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
            )
            page = b.new_page(viewport={"width": 1600, "height": 1000})
            # warm the server (reads the run, caches the drawn points) before timing
            page.goto(f"{url}/embeddings?run={run.name}")
            page.wait_for_function(DRAWN, timeout=600_000)
            for _ in range(args.repeats):
                page = b.new_page(viewport={"width": 1600, "height": 1000})
                t = time.perf_counter()
                page.goto(f"{url}/embeddings?run={run.name}")
                # the page itself (app shell, script run, title) without the map: the baseline
                page.get_by_role("heading", name="Embeddings").wait_for(timeout=600_000)
                ready.append(time.perf_counter() - t)
                handle = page.wait_for_function(DRAWN, timeout=600_000, polling=50)
                loads.append(time.perf_counter() - t)
                points = int(handle.json_value())
                # another colouring: the page reruns and Plotly redraws
                box = page.get_by_label("Colour by")
                t = time.perf_counter()
                box.click()
                page.get_by_role("option", name="given label").click()
                page.wait_for_function(
                    """() => { const gd = document.querySelector('.js-plotly-plot');
                       return gd && gd._fullData && gd._fullData.length > 2; }""",
                    timeout=600_000,
                    polling=50,
                )
                recolours.append(time.perf_counter() - t)
                page.screenshot(path=str(ROOT / "bench" / "results" / f"map_browser-{n}.png"))
                page.close()
            b.close()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    res = {
        "n_samples": n,
        "points_drawn": points,
        "page_to_title_s": {
            "median": round(statistics.median(ready), 3),
            "all": [round(x, 3) for x in ready],
        },
        "title_to_drawn_s": {
            "median": round(
                statistics.median([a - b for a, b in zip(loads, ready, strict=True)]), 3
            ),
        },
        "page_to_drawn_s": {
            "median": round(statistics.median(loads), 3),
            "all": [round(x, 3) for x in loads],
        },
        "recolour_to_drawn_s": {
            "median": round(statistics.median(recolours), 3),
            "all": [round(x, 3) for x in recolours],
        },
        "browser": "Debian chromium, --disable-gpu (software WebGL), 1600x1000",
        "load_avg": os.getloadavg(),
        "command": "python bench/bench_map_browser.py " + " ".join(sys.argv[1:]),
    }
    out = ROOT / "bench" / "results" / f"map_browser-{n}.json"
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
