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

from analysis.present.query import P_RUN  # noqa: E402
from dashboard import data, nav  # noqa: E402
from dashboard.views import VIEWS  # noqa: E402


def _cli_runs_dir() -> None:
    parser = argparse.ArgumentParser(add_help=False)
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
    from analysis.cli import SAMPLE_DIR, sample_configs
    from analysis.pipeline.engine import analyze

    if not (SAMPLE_DIR / "model.safetensors").exists():
        return
    st.title("errorscope")
    st.info(
        "The sample run was made by an older errorscope: analysing it again (about a minute;"
        " tags and notes are kept)."
        if refresh
        else "No runs yet: analysing the bundled sample once (about a minute; cached afterwards)."
    )
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
    index = ids.index(wanted) if wanted in ids else 0
    if wanted and wanted not in ids:
        st.sidebar.warning(
            f"Run {wanted!r} from the link is not in {data.runs_dir()}; showing {ids[0]!r}."
        )
    chosen = st.sidebar.selectbox(
        "Run",
        ids,
        index=index,
        key=f"run_picker_{wanted}",
        format_func=lambda i: f"{i} ({runs[ids.index(i)]['n_samples']} images)",
        help=f"Runs under {data.runs_dir()}",
    )
    if chosen != wanted:
        st.query_params[P_RUN] = chosen
    return runs[ids.index(chosen)]


def main() -> None:
    st.set_page_config(page_title="errorscope", page_icon=":material/troubleshoot:", layout="wide")
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
            url_path=v.url,
            default=v.url == "overview",
            visibility=v.visibility,
        )
        pages[v.url] = page
        sections.setdefault(v.section, []).append(page)
    nav.register(pages)
    st.navigation(sections).run()


main()
