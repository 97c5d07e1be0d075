"""errorscope dashboard: ``streamlit run dashboard/app.py [-- --runs-dir RUNS]``.

Sets up the page, the run picker and the navigation; every page lives in ``dashboard/views/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run dashboard/app.py` from a plain checkout
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402
from streamlit.logger import get_logger  # noqa: E402

from analysis.present.formatting import plural  # noqa: E402
from analysis.present.query import P_RUN  # noqa: E402
from dashboard import data, nav  # noqa: E402
from dashboard.components import safe  # noqa: E402
from dashboard.views import VIEWS  # noqa: E402


def _cli_runs_dir() -> None:
    # no abbreviations: a host program's own "--run X" (bench_dashboard.py, run under AppTest with
    # its argv) was read as --runs-dir X, and the dashboard analysed the sample into that folder
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runs-dir")
    args, _ = parser.parse_known_args(sys.argv[1:])
    if args.runs_dir:
        os.environ["ERRORSCOPE_RUNS_DIR"] = str(Path(args.runs_dir).resolve())


def _is_stale_sample(r: dict) -> bool:
    from analysis.cli import SAMPLE_DIR

    src = r.get("data_source") or ""
    return not r.get("current", True) and bool(src) and Path(src).parent == SAMPLE_DIR.resolve()


def _ensure_sample_run(root: Path, *, refresh: bool = False) -> None:
    """First start: analyse the bundled sample once, with a visible progress bar; again when the
    sample run was made by other analysis code (an upgrade), so the sample never shows stale
    results."""
    from analysis.cli import SAMPLE_DIR, sample_configs, sample_skipped
    from analysis.pipeline.engine import analyze

    if not (SAMPLE_DIR / "model.safetensors").exists():
        return
    st.title("errorscope")
    st.info(
        "Parts of the sample run were made by an older errorscope: bringing them up to date"
        " (only what changed is recomputed; tags and notes are kept)."
        if refresh
        else "No runs yet: analysing the bundled sample once, with each of its models (a few"
        " minutes; cached afterwards)."
    )
    for why in sample_skipped():
        st.caption(why)
    bar = st.progress(0.0, text="starting")
    for cfg in sample_configs():  # both sample models: Compare has two runs to compare
        analyze(
            cfg,
            runs_dir=root,
            progress=lambda msg, frac: bar.progress(min(max(frac, 0.0), 1.0), text=msg),
        )
    data.available_runs.clear()
    st.rerun()


def _pick_run(runs: list[dict]) -> dict:
    ids = [r["run_id"] for r in runs]
    wanted = st.query_params.get(P_RUN)
    if not wanted and st.session_state.get("_run_id") in ids:
        # a sidebar link carries no query: stay on this session's run (it opened the newest
        # run instead, silently, whenever several runs were there), and say so in the URL
        wanted = st.session_state["_run_id"]
        st.query_params[P_RUN] = wanted
    index = ids.index(wanted) if wanted in ids else 0
    if wanted and wanted not in ids:
        st.sidebar.warning(
            f"Run {safe(repr(wanted))} from the link is not in {safe(data.runs_dir())};"
            f" showing {safe(repr(ids[0]))}."
        )
    chosen = st.sidebar.selectbox(
        "Run",
        ids,
        index=index,
        key=f"run_picker_{wanted}",
        format_func=lambda i: f"{i} ({plural(runs[ids.index(i)]['n_samples'] or 0, 'image')})",
        help=f"Runs under {data.runs_dir()}",
    )
    if chosen != wanted:
        st.query_params[P_RUN] = chosen
    return runs[ids.index(chosen)]


# a local file: a ":material/...:" page icon makes the browser fetch it from fonts.gstatic.com
ICON = str(Path(__file__).resolve().parent / "static" / "errorscope.png")
# Streamlit's logger setup: the same format and level as its own messages, on stderr
log = get_logger("errorscope.dashboard")


def _network_note() -> None:
    """Say so in the sidebar when the dashboard is open to the network (there is no login)."""
    import ipaddress

    from streamlit import config

    address = str(config.get_option("server.address") or "0.0.0.0")
    try:
        local = address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:
        local = False
    if not local:
        st.sidebar.caption(
            f":orange[:material/public:] Open to the network ({safe(address)}): there is no"
            " login, anyone who can reach this machine can read, tag and export."
        )


def _record_page_time(wall_s: float, cpu_s: float) -> None:
    """With ERRORSCOPE_PAGE_TIMES=FILE, one JSON line per script run: the page, its wall time and
    the CPU time of the thread that ran it, seconds (bench/bench_sessions.py tells the server's
    share of a page's time from the browser's with it)."""
    path = os.environ.get("ERRORSCOPE_PAGE_TIMES")
    if not path:
        return
    import json

    line = json.dumps({"page": st.session_state.get("_page_url"), "wall_s": wall_s, "cpu_s": cpu_s})
    with open(path, "a", encoding="utf-8") as f:  # one short append per run: whole lines
        f.write(line + "\n")


def guarded(fn) -> None:
    """Run ``fn`` (the app); an unexpected error is logged here, on the server, and the visitor
    gets a plain message (no traceback, no server paths). ERRORSCOPE_RAISE=1 lets it through
    (the test suite sets it, so that a broken page fails its test)."""
    import time

    t0, c0 = time.perf_counter(), time.thread_time()
    try:
        fn()
    except Exception:
        if os.environ.get("ERRORSCOPE_RAISE") == "1":
            raise
        log.exception("dashboard page failed (%s)", st.session_state.get("_run_id"))
        st.error(
            "This page hit an unexpected problem and cannot be shown. The details were written"
            " to the log of the errorscope process. Reload, or open another page.",
            icon=":material/error:",
        )
    finally:
        _record_page_time(time.perf_counter() - t0, time.thread_time() - c0)


DEFAULT, HOME = "overview", "home"
WRAP_LINKS = (
    '[data-testid="stMain"] [data-testid="stPageLink-NavLink"] span,'
    ' [data-testid="stMain"] [data-testid="stPageLink-NavLink"] p'
    " { white-space: normal; overflow: visible; }"
)


def main() -> None:
    st.set_page_config(page_title="errorscope", page_icon=ICON, layout="wide")
    from dashboard import prefetch

    prefetch.prefetcher().touch()  # background CAM work pauses while a page is drawn
    _cli_runs_dir()
    root = data.runs_dir()
    runs = data.available_runs(str(root))
    if any(_is_stale_sample(r) for r in runs):
        _ensure_sample_run(root, refresh=True)
        runs = data.available_runs(str(root))
    if not runs:
        _ensure_sample_run(root)
        st.title("errorscope")
        st.warning(
            f"No runs under {root}. Create one with `errorscope analyze --model M --data D`."
        )
        return
    info = _pick_run(runs)
    st.session_state["_run_id"] = info["run_id"]
    st.session_state["_run_path"] = info["path"]
    from dashboard import components

    components.sidebar_footer(data.current_run())
    from dashboard.views.review_panel import reviewer_box

    reviewer_box()
    pages = {}
    sections: dict[str, list] = {}
    for v in VIEWS:
        page = st.Page(
            v.page,
            title=v.title,
            icon=v.icon,
            # Streamlit serves the default page at "/" only and answers its own url_path with
            # "Page not found": it gets a path nobody types, and /overview an alias below
            url_path=HOME if v.url == DEFAULT else v.url,
            default=v.url == DEFAULT,
            visibility=v.visibility,
        )
        pages[v.url] = page
        sections.setdefault(v.section, []).append(page)
    default = next(v for v in VIEWS if v.url == DEFAULT)
    alias = st.Page(default.page, title=default.title, url_path=DEFAULT, visibility="hidden")
    sections[default.section].append(alias)
    nav.register(pages)
    # page links (thumbnail captions, "Open these images →") wrap instead of being cut off
    st.html(f"<style>{WRAP_LINKS}</style>")
    _network_note()
    current = st.navigation(sections)
    st.session_state["_page_url"] = current.url_path or DEFAULT
    current.run()
    prefetch.prefetcher().touch()
    if info.get("model"):  # the CAMs' model, loaded in the background once the page is drawn
        from dashboard.views.cam_panel import warm_up

        warm_up(info["path"], data.current_run().manifest["created"])


guarded(main)
