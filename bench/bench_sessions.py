"""A meeting is several people: page-ready times in real Chromium for 1 and for 6 concurrent
browser sessions on one dashboard process, on a synthetic run of ``--n`` images (made as
bench_dashboard.py makes them).

A page is ready when Streamlit has finished its run and drawn every element (no running
indicator, no stale element, no loading skeleton), measured from the navigation. Each session is
its own browser context (a new Streamlit session) and walks the same pages: Overview, Gallery
(wrong only), Confusion, Slices, Embeddings, an image's detail page, Data issues. One session
walks them first to warm the process (as the person who opens the dashboard does); then one
session walks them ``--rounds`` times alone, then six sessions walk them at the same time.

Goal (issue 11 §4): six sessions take no more than twice as long per page as one.

The browsers run on the dashboard's machine here (in a meeting each person's browser runs on
their own computer), so each phase also records the CPU seconds of the dashboard process and of
this benchmark's Chromium processes: how much of a slowdown is the server's.

Two ways to walk: ``--dwell 0`` (the default) is a stress test, every session clicking the
moment its page is ready; ``--dwell S`` is a meeting, each person reading a page for S seconds
before the next click, the sessions starting at staggered moments. Each session has its own
Chromium (``--browsers separate``, the default: each person has their own browser); with
``--browsers shared`` they are contexts of one Chromium, whose browser and GPU processes then
serve all six pages.

    .venv/bin/python bench/bench_sessions.py [--n 20000] [--rounds 2] [--sessions 6] [--dwell 0]
        -> bench/results/sessions.json (sessions-dwell3.json with --dwell 3)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ERRORSCOPE_NO_PROGRESS", "1")

from bench._browser import CHROMIUM, CHROMIUM_ARGS, READY, start_dashboard, stop  # noqa: E402

OUT = ROOT / "bench" / "results"


def pages(run_id: str, sample_id: str) -> list[tuple[str, str]]:
    return [
        ("overview", f"/?run={run_id}"),
        ("gallery", f"/gallery?correct=wrong&run={run_id}"),
        ("confusion", f"/confusion?run={run_id}"),
        ("slices", f"/slices?run={run_id}"),
        ("embeddings", f"/embeddings?run={run_id}"),
        ("detail", f"/detail?sample={sample_id}&correct=wrong&run={run_id}"),
        ("data_issues", f"/data_issues?run={run_id}"),
    ]


#: The click walk: (step name, sidebar link text or None for the detail page's Next, page title)
CLICKS = [
    ("detail", None, None),
    ("overview", "Overview", "Overview"),
    ("gallery", "Gallery", "Gallery"),
    ("confusion", "Confusion", "Confusion"),
    ("slices", "Slices", "Slices"),
    ("embeddings", "Embeddings", "Embeddings"),
    ("data_issues", "Data issues", "Data issues"),
]


async def click_walk(
    browser, url: str, todo, rounds: int, dwell: float = 0.0, start: float = 0.0
) -> list[tuple[str, float]]:
    """One session as people use the app: it opens an image's detail page by its link (the
    session's first page, which also loads Streamlit's JavaScript), then moves by clicking:
    *Next* on the detail page, then each page's link in the sidebar, ``rounds`` times. Each
    step is timed from the click until the new page is ready (its title or image position
    drawn, Streamlit's run finished). ``dwell`` seconds are spent on each page before the next
    click (people read a page; 0 is a stress test: every session clicks as soon as a page is
    ready); ``start`` seconds are waited before the first page (sessions do not click in
    lockstep)."""
    import re

    await asyncio.sleep(start)
    ctx = await browser.new_context(viewport={"width": 1500, "height": 1000})
    page = await ctx.new_page()
    page.set_default_timeout(600_000)
    out = []
    detail = dict(todo)["detail"]
    try:
        t = time.perf_counter()
        await page.goto(url + detail)
        await page.wait_for_function(READY, timeout=600_000)
        out.append(("first_open", time.perf_counter() - t))
        for _ in range(rounds):
            for name, link, title in CLICKS:
                await asyncio.sleep(dwell)
                if link is None:  # back to an image, then its Next
                    await page.goto(url + detail)
                    await page.wait_for_function(READY, timeout=600_000)
                    await asyncio.sleep(dwell)
                    pos = await page.get_by_text(re.compile(r"Image [\d,]+ of")).first.inner_text()
                    k = int(re.search(r"Image ([\d,]+) of", pos).group(1).replace(",", ""))
                    t = time.perf_counter()
                    await page.get_by_text("Next ▶").first.click()
                    await page.get_by_text(re.compile(rf"Image {k + 1:,} of")).first.wait_for()
                else:
                    t = time.perf_counter()
                    await (
                        page.get_by_test_id("stSidebarNav")
                        .get_by_role("link", name=link, exact=True)
                        .click()
                    )
                    await (
                        page.locator('[data-testid="stMain"] h1')
                        .filter(has_text=re.compile(rf"^{re.escape(title)}$"))
                        .first.wait_for()
                    )
                await page.wait_for_function(READY, timeout=600_000)
                out.append((name, time.perf_counter() - t))
    finally:
        await ctx.close()
    return out


async def walk(
    browser, url: str, todo, rounds: int, dwell: float = 0.0, start: float = 0.0
) -> list[tuple[str, float]]:
    """One session (a browser context) visiting every page ``rounds`` times (``dwell`` and
    ``start`` as in :func:`click_walk`)."""
    await asyncio.sleep(start)
    ctx = await browser.new_context(viewport={"width": 1500, "height": 1000})
    page = await ctx.new_page()
    page.set_default_timeout(600_000)
    out = []
    try:
        for r in range(rounds):
            for i, (name, path) in enumerate(todo):
                if i or r:
                    await asyncio.sleep(dwell)
                t = time.perf_counter()
                await page.goto(url + path)
                await page.wait_for_function(READY, timeout=600_000)
                # a session's first page also downloads Streamlit's JavaScript: kept apart
                out.append(("first_open" if r == i == 0 else name, time.perf_counter() - t))
    finally:
        await ctx.close()
    return out


def _server_runs(path: Path) -> list[dict]:
    """The dashboard's script runs so far (ERRORSCOPE_PAGE_TIMES lines)."""
    try:
        return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    except FileNotFoundError:
        return []


def _server_summary(runs: list[dict]) -> dict:
    """Medians of the server's script runs of a phase: wall time, and the CPU time of the
    thread that ran the page (its own work, whatever else shares the cores)."""
    if not runs:
        return {}
    return {
        "script_runs": len(runs),
        "wall_median_s": round(statistics.median(r["wall_s"] for r in runs), 3),
        "wall_p90_s": round(statistics.quantiles([r["wall_s"] for r in runs], n=10)[-1], 3),
        "cpu_median_s": round(statistics.median(r["cpu_s"] for r in runs), 3),
        "cpu_total_s": round(sum(r["cpu_s"] for r in runs), 2),
    }


async def run_bench(
    url: str,
    todo,
    *,
    rounds: int,
    sessions: int,
    server_pid: int,
    page_times: Path,
    how=None,
    dwell: float = 0.0,
    separate: bool = True,
) -> dict:
    import random

    walk_ = how or walk
    # people do not click in lockstep: with a dwell, each session starts at its own moment
    # within one dwell (seeded: the same offsets every run)
    starts = [random.Random(k).uniform(0.0, dwell) for k in range(sessions)]
    from playwright.async_api import async_playwright

    marker = f"--errorscope-bench={os.getpid()}"  # finds this benchmark's Chromium processes
    cpu = {}
    async with async_playwright() as p:

        async def launch():
            return await p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, marker])

        browser = await launch()
        # each person's own browser (its own browser and GPU processes), or one browser with a
        # context per session (those processes shared: every page's compositing in one queue)
        others = [await launch() for _ in range(sessions)] if separate else [browser] * sessions
        try:
            await walk(browser, url, todo, 1)  # the first person opens it: caches fill
            c, r = _cpu(server_pid, marker), len(_server_runs(page_times))
            t0 = time.perf_counter()
            one = await walk_(browser, url, todo, rounds, dwell)
            t1 = time.perf_counter()
            c2, r2 = _cpu(server_pid, marker), len(_server_runs(page_times))
            many = await asyncio.gather(
                *(walk_(others[k], url, todo, rounds, dwell, starts[k]) for k in range(sessions))
            )
            t2 = time.perf_counter()
            c3, runs = _cpu(server_pid, marker), _server_runs(page_times)
            cpu = {
                "one": {k: round(c2[k] - c[k], 1) for k in c},
                "many": {k: round(c3[k] - c2[k], 1) for k in c},
            }
            server = {"one": _server_summary(runs[r:r2]), "many": _server_summary(runs[r2:])}
            wall = {"one": round(t1 - t0, 1), "many": round(t2 - t1, 1)}
        finally:
            for b in {id(b): b for b in [browser, *others]}.values():
                await b.close()
    return {
        "one": one,
        "many": [x for s in many for x in s],
        "cpu": cpu,
        "server": server,
        "wall": wall,
    }


def _cpu(server_pid: int, marker: str) -> dict[str, float]:
    """CPU seconds so far of the dashboard process and of the Chromium processes under the
    browser launched with ``marker`` (exited children not counted)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid):
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0, None
        return (int(f[11]) + int(f[12])) / tick, int(f[1])

    parents = {}
    roots = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        _, ppid = stat(d.name)
        parents[int(d.name)] = ppid
        if marker.encode() in cmd:
            roots.add(int(d.name))
    tree = set(roots)
    changed = True
    while changed:
        grown = {pid for pid, pp in parents.items() if pp in tree} - tree
        changed = bool(grown)
        tree |= grown
    return {
        "dashboard_cpu_s": stat(server_pid)[0],
        "chromium_cpu_s": sum(stat(pid)[0] for pid in tree),
    }


def _summary(times: list[tuple[str, float]]) -> dict:
    """Medians over every page visit but each session's first (which also loads the app)."""
    by_page: dict[str, list[float]] = {}
    for name, t in times:
        by_page.setdefault(name, []).append(t)
    pages_only = [t for name, t in times if name != "first_open"]
    return {
        "median_s": round(statistics.median(pages_only), 3),
        "p90_s": round(statistics.quantiles(pages_only, n=10)[-1], 3),
        "max_s": round(max(pages_only), 3),
        "per_page_median_s": {k: round(statistics.median(v), 3) for k, v in by_page.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sessions", type=int, default=6)
    ap.add_argument(
        "--walk",
        choices=["clicks", "urls"],
        default="clicks",
        help="clicks: move by the app's links (as people do); urls: open every page by its"
        " address (a full page load each time)",
    )
    ap.add_argument(
        "--dwell",
        type=float,
        default=0.0,
        help="seconds each person spends on a page before the next click (0: a stress test,"
        " every session clicks as soon as its page is ready); with a dwell the sessions start"
        " at staggered moments within one dwell",
    )
    ap.add_argument(
        "--browsers",
        choices=["separate", "shared"],
        default="separate",
        help="separate: each session its own Chromium (as each person has their own browser);"
        " shared: one Chromium with a context per session (one browser and GPU process for all)",
    )
    args = ap.parse_args()
    from analysis import schema
    from bench.bench_dashboard import make_run

    runs = OUT / "synthetic-runs"
    t = time.perf_counter()
    make_run(args.n, runs)
    print(f"synthetic run of {args.n:,} images made in {time.perf_counter() - t:.1f} s")
    from analysis.store.runstore import open_run

    run = open_run(runs / f"synthetic-{args.n}")
    s = run.samples
    sid = s.loc[~s[schema.CORRECT], schema.SAMPLE_ID].iloc[0]
    todo = pages(run.run_id, sid)
    import tempfile

    tmp = tempfile.TemporaryDirectory()
    page_times = Path(tmp.name) / "page-times.jsonl"
    proc, url = start_dashboard(
        runs,
        log=Path(tmp.name) / "dashboard.log",
        env={"ERRORSCOPE_PAGE_TIMES": str(page_times)},
    )
    load_before = os.getloadavg()
    try:
        times = asyncio.run(
            run_bench(
                url,
                todo,
                rounds=args.rounds,
                sessions=args.sessions,
                server_pid=proc.pid,
                page_times=page_times,
                how=click_walk if args.walk == "clicks" else walk,
                dwell=args.dwell,
                separate=args.browsers == "separate",
            )
        )
    finally:
        stop(proc)
        tmp.cleanup()
    res = {
        "walk": args.walk,
        "dwell_s": args.dwell,
        "browsers": args.browsers,
        "n_images": args.n,
        "rounds": args.rounds,
        "sessions": args.sessions,
        "one_session": _summary(times["one"]),
        f"{args.sessions}_sessions": _summary(times["many"]),
        "cpu_s_per_phase": times["cpu"],
        "server_script_runs": times["server"],
        "pages_per_phase": {"one": len(times["one"]), "many": len(times["many"])},
        "load_avg_before": load_before,
        "load_avg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "note": "one 2-core machine runs the dashboard and every Chromium renderer, shared with"
        " other jobs: the ratio, measured in the same run, is the number to read",
    }
    res["ratio_median"] = round(
        res[f"{args.sessions}_sessions"]["median_s"] / res["one_session"]["median_s"], 2
    )
    srv = times["server"]
    if srv["one"] and srv["many"]:
        res["server_ratio_wall_median"] = round(
            srv["many"]["wall_median_s"] / srv["one"]["wall_median_s"], 2
        )
        res["server_ratio_cpu_median"] = round(
            srv["many"]["cpu_median_s"] / srv["one"]["cpu_median_s"], 2
        )
    # the least the ratio can be on this machine: the CPU seconds the phase needed, spread over
    # every core, against the one session's time (each browser renders on these same cores)
    cores = os.cpu_count() or 1
    need = sum(times["cpu"]["many"].values()) / cores
    res["phase_wall_s"] = times["wall"]
    # how busy the machine's cores were in the six-session phase (1.0: saturated)
    res["cpu_busy_many"] = round(need / times["wall"]["many"], 2)
    one_total = sum(t for name, t in times["one"] if name != "first_open")
    many_pages = sum(1 for name, _ in times["many"] if name != "first_open")
    if one_total and many_pages and not args.dwell:  # with a dwell, cores idle between pages
        per_session_pages = many_pages / args.sessions
        res["ratio_floor_from_cpu"] = round(
            (need / per_session_pages) / (one_total / (len(times["one"]) - 1)), 2
        )
    out = OUT / (
        ("sessions" if args.walk == "clicks" else "sessions-urls")
        + (f"-dwell{args.dwell:g}" if args.dwell else "")
        + ("-shared" if args.browsers == "shared" else "")
        + ".json"
    )
    out.write_text(json.dumps(res, indent=2))
    print(json.dumps(res, indent=2))
    print("written", out)


if __name__ == "__main__":
    main()
