"""Report: export the meeting's slice report (HTML, Markdown, CSV) and the relabel list."""

from __future__ import annotations

import io
import shlex
import zipfile

import streamlit as st

from analysis.present import formatting as fmt
from analysis.present.report.model import DEFAULT_DASHBOARD_URL
from analysis.store.runstore import Run
from dashboard import nav
from dashboard.views import review_panel


# shared by every session and never copied (cache_resource: the values are immutable strings
# and bytes; cache_data unpickled them on every rerun), the CSV zip built once with them (its
# compression was 0.8 s of every rerun at 10,000 classes); rebuilt when the run or the review
# changes (its stamp, the review's event count), not on a timer (a 10,000-class report was
# rebuilt every 30 s)
@st.cache_resource(show_spinner="Building the report…", max_entries=4)
def _build(path: str, stamp: str, review_version: int, title: str, base: str):
    from analysis.present.report import build_report, to_csv_tables, to_html, to_markdown
    from dashboard.data import get_run

    run = get_run(path)
    state = review_panel.review_store().state()
    rep = build_report(run, review_state=state, title=title or None, dashboard_url=base)
    csvs = to_csv_tables(rep)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in csvs.items():
            z.writestr(f"{name}.csv", text)
    return to_html(rep, run), to_markdown(rep), csvs, buf.getvalue(), len(rep.reviewed)


def render(run: Run) -> None:
    st.title("Report")
    st.caption(
        "A slice report of this run: headline metrics with intervals, the action plan of the"
        " root-cause triage, the confusion matrix, weak and discovered slices, data issues, and every image reviewed in the meeting"
        " with its tags, notes and decisions. The HTML file is self-contained: it opens"
        " offline and can be mailed as is."
    )
    title = st.text_input("Title", value=f"Error review — {run.run_id}", key="rep_title")
    n_events = len(review_panel.review_store().events())
    # the action plan's numbers link to their images on this dashboard
    base = nav.url("gallery").split("/gallery?")[0]
    if not base.startswith(("http://", "https://")):
        base = DEFAULT_DASHBOARD_URL
    html, md, csvs, zipped, n_reviewed = _build(
        str(run.path), run.manifest["created"], n_events, title, base
    )
    st.markdown(
        f"{fmt.plural(n_reviewed, 'reviewed image')} {'is' if n_reviewed == 1 else 'are'} included."
    )
    c = st.columns(4)
    c[0].download_button(
        "HTML report",
        html,
        file_name=f"{run.run_id}-report.html",
        mime="text/html",
        type="primary",
        key="dl_html",
    )
    c[1].download_button(
        "Markdown", md, file_name=f"{run.run_id}-report.md", mime="text/markdown", key="dl_md"
    )
    c[2].download_button(
        "CSV tables (zip)",
        zipped,
        file_name=f"{run.run_id}-csv.zip",
        mime="application/zip",
        key="dl_csv",
    )
    c[3].download_button(
        "Relabel list (CSV)",
        csvs.get("relabel_list", "path\n"),
        file_name=f"{run.run_id}-relabel.csv",
        mime="text/csv",
        key="dl_relabel",
        help="image path, given label, corrected label, reviewer: for annotators",
    )
    with st.expander("Preview (Markdown)", expanded=False):
        st.code(md[:20000], language="markdown")
    st.caption("Same from the command line:")
    st.code(f"errorscope report {shlex.quote(str(run.path))} --format html", language="bash")
