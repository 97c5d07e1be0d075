"""Slice reports: data gathered from a real tiny run, three renderers, strict escaping."""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from analysis import schema
from analysis.pipeline.engine import analyze
from analysis.present import formatting as fmt
from analysis.present.findings import load_metrics
from analysis.present.report import (
    CSV_DIR,
    RELABEL_CSV,
    REPORT_HTML,
    REPORT_MD,
    Report,
    build_report,
    to_csv_tables,
    to_html,
    to_markdown,
    write_report,
)
from analysis.present.report.model import _select_failures
from analysis.present.report.render_markdown import escape_markdown as _md
from analysis.stats.slices import SLICE_COLUMNS
from analysis.store.review import ReviewStore
from analysis.store.runstore import RunWriter, open_run
from tests.conftest import CLASSES, REPO, make_image_folder, tiny_config

XSS_CLASS = "<script>alert(1)</script>"
XSS_META = "<img src=x onerror=alert(2)>"
XSS_NOTE = "</td><script>alert(3)</script>"
XSS_REVIEWER = "<b>eve</b>"
XSS_TITLE = "<u>title</u>"
PIPES = "north|south"


def _hash(run, relpath: str) -> str:
    s = run.samples
    return str(s.loc[s[schema.RELPATH] == relpath, schema.CONTENT_HASH].iloc[0])


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_resnet):
    root = tmp_path_factory.mktemp("report")
    return analyze(
        tiny_config(make_image_folder(root / "data"), tiny_resnet), runs_dir=root / "runs"
    )


@pytest.fixture(scope="module")
def review(run, tmp_path_factory):
    store = ReviewStore(tmp_path_factory.mktemp("review") / "review.sqlite")
    store.add_tag(_hash(run, "ant/ant_00.png"), "ambiguous", reviewer="ana", run_id=run.run_id)
    store.add_note(_hash(run, "ant/ant_00.png"), "Looks like a bee to me", reviewer="ben")
    store.set_label(_hash(run, "bee/bee_01.png"), "cat", reviewer="ana")
    store.add_note("f" * 64, "an image of another run", reviewer="ana")  # not in this run
    return store.state()


@pytest.fixture(scope="module")
def report(run, review):
    return build_report(run, review_state=review, max_examples=6)


@pytest.fixture(scope="module")
def page(report, run):
    return to_html(report, run)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, tiny_resnet):
    """A manifest run whose class name, metadata, note, reviewer and title are hostile."""
    root = tmp_path_factory.mktemp("hostile")
    data = make_image_folder(root / "data")
    rows = []
    for folder, label in (("ant", "ant"), ("bee", XSS_CLASS), ("cat", "cat")):
        for i, p in enumerate(sorted((data / folder).glob("*.png"))):
            rows.append(
                {
                    "path": p.relative_to(data).as_posix(),
                    "label": label,
                    "site": XSS_META if i % 2 else PIPES,
                }
            )
    pd.DataFrame(rows).to_csv(data / "manifest.csv", index=False)
    (data / "classes.txt").write_text(f"ant\n{XSS_CLASS}\ncat\n")
    run = analyze(tiny_config(data / "manifest.csv", tiny_resnet), runs_dir=root / "runs")
    s = run.samples
    target = str(s.loc[s["site"] == XSS_META, schema.CONTENT_HASH].iloc[0])
    other = str(s.loc[s["site"] == PIPES, schema.CONTENT_HASH].iloc[0])
    store = ReviewStore(root / "review.sqlite")
    store.add_note(target, XSS_NOTE, reviewer=XSS_REVIEWER)
    store.add_note(target, "left | right", reviewer="ana")
    store.add_tag(target, "odd <i>tag</i>", reviewer="ana")
    store.set_label(other, XSS_CLASS, reviewer=XSS_REVIEWER)
    rep = build_report(run, review_state=store.state(), title=XSS_TITLE)
    return run, rep


def _empty_run(tmp_path):
    samples = pd.DataFrame(
        {
            schema.SAMPLE_ID: pd.Series(dtype=str),
            schema.PATH: pd.Series(dtype=str),
            schema.RELPATH: pd.Series(dtype=str),
            schema.CONTENT_HASH: pd.Series(dtype=str),
            schema.LABEL: pd.Series(dtype="int64"),
            schema.LABEL_NAME: pd.Series(dtype=str),
            schema.PRED: pd.Series(dtype="int64"),
            schema.PRED_NAME: pd.Series(dtype=str),
            **{
                c: pd.Series(dtype=float)
                for c in (
                    schema.CONFIDENCE,
                    schema.TRUE_PROB,
                    schema.MARGIN,
                    schema.LOSS,
                    schema.ENTROPY,
                )
            },
            schema.CORRECT: pd.Series(dtype=bool),
        }
    )
    with RunWriter(tmp_path / "runs", "empty") as w:
        w.write_table(schema.SAMPLES, samples)
        w.write_array(schema.PROBS, np.zeros((0, 2), np.float32))
        path = w.commit({"class_names": ["a", "b"], "created": "2025-01-01", "n_samples": 0})
    return open_run(path)


def _outside_bundle(text: str) -> str:
    from plotly.offline import get_plotlyjs

    return text.replace(get_plotlyjs(), "")


def _unescaped_pipes(line: str) -> int:
    return len(re.findall(r"(?<!\\)\|", line))


# ---------------------------------------------------------------------------------------------
# the empty input


def test_empty_run_gives_a_report_whose_missing_sections_are_notes(tmp_path):
    run = _empty_run(tmp_path)
    r = build_report(run, review_state=None)
    assert r.n_samples == 0 and r.headline == () and r.per_class is None
    assert r.confusion is None and r.slices is None and r.discovered_slices is None
    assert r.label_issues is None and math.isnan(r.overall_error)
    assert len(r.failures) == len(r.reviewed) == len(r.relabel) == len(r.top_confusions) == 0
    notes = " ".join(r.notes)
    for title in (
        "Headline and per-class metrics",
        "Weak slices",
        "Discovered slices",
        "Suspected label errors",
        "Near-duplicates and leakage",
        "Property outliers",
    ):
        assert f"{title}: not in this run" in notes
    assert "No review data was given" in notes
    page = to_html(r, run)
    assert page.startswith("<!DOCTYPE html>") and "Plotly.newPlot" not in page
    assert "<script" not in page.lower()  # no figure, so no plotly.js either
    assert "No misclassified images." in to_markdown(r)
    tables = to_csv_tables(r)
    assert set(tables) == {"top_confusions", "data_issues", "failures", "reviewed", "relabel_list"}
    for text in tables.values():
        assert len(pd.read_csv(io.StringIO(text))) == 0


# ---------------------------------------------------------------------------------------------
# validation


def test_validation_messages(run, report, tmp_path):
    with pytest.raises(TypeError, match="run must be an analysis.store.runstore.Run .*got str"):
        build_report("runs/x", review_state=None)
    with pytest.raises(TypeError, match="review_state must be a DataFrame .* got dict"):
        build_report(run, review_state={"tags": []})
    with pytest.raises(ValueError, match=r"review_state lacks column\(s\) \['tags', 'notes'"):
        build_report(run, review_state=pd.DataFrame({"content_hash": []}))
    with pytest.raises(TypeError, match="title must be a str or None, got int"):
        build_report(run, review_state=None, title=3)
    with pytest.raises(TypeError, match="max_examples must be an int >= 0, got bool"):
        build_report(run, review_state=None, max_examples=True)
    with pytest.raises(TypeError, match="max_examples must be an int >= 0, got float"):
        build_report(run, review_state=None, max_examples=2.5)
    with pytest.raises(ValueError, match="max_examples must be >= 0, got -1"):
        build_report(run, review_state=None, max_examples=-1)
    with pytest.raises(TypeError, match="review_state"):
        build_report(run)  # review data is an explicit decision: no default
    with pytest.raises(TypeError, match="report must be a Report .*got str"):
        to_markdown("report")
    with pytest.raises(TypeError, match="report must be a Report"):
        to_csv_tables(None)
    with pytest.raises(TypeError, match="run must be an analysis.store.runstore.Run, got str"):
        to_html(report, "runs/x")
    with pytest.raises(ValueError, match="report was built from run .* but run is 'empty'"):
        to_html(report, _empty_run(tmp_path))
    with pytest.raises(
        ValueError,
        match=r"unknown report format\(s\) \['pdf'\]; valid formats:"
        r" \['html', 'md', 'csv'\]",
    ):
        write_report(report, run, tmp_path / "out", formats=("html", "pdf"))
    with pytest.raises(ValueError, match="formats must name at least one of"):
        write_report(report, run, tmp_path / "out", formats=())
    assert not (tmp_path / "out").exists()  # nothing written before the check


# ---------------------------------------------------------------------------------------------
# the data


def test_report_holds_the_runs_numbers(run, report):
    m = load_metrics(run)
    assert isinstance(report, Report) and report.run_id == run.run_id
    assert report.headline[0].name == "Accuracy" and report.headline[0].estimate == m.accuracy
    assert report.headline[0].text == fmt.estimate(m.accuracy)
    assert report.overall_error == pytest.approx(1 - m.accuracy.value)
    assert report.per_class["name"].tolist() == CLASSES
    assert report.per_class["support"].sum() == 18
    np.testing.assert_array_equal(report.confusion, m.confusion)
    for _, r in report.top_confusions.iterrows():
        assert r["count"] == report.confusion[r["true"], r["pred"]] and r["true"] != r["pred"]
        assert r["true_name"] == CLASSES[r["true"]] and r["pred_name"] == CLASSES[r["pred"]]
    # 18 images < min_support 20: slices were tested on nothing, so none is weak
    assert report.slices is not None and report.slices.empty
    assert list(report.slices.columns) == SLICE_COLUMNS
    assert report.discovered_slices is not None and report.discovered_slices.empty


def test_failures_are_the_highest_loss_wrong_images(run, report):
    s = run.samples
    wrong = s[~s[schema.CORRECT]]
    expected = wrong.sort_values(schema.LOSS, ascending=False, kind="stable").head(6)
    assert report.failures[schema.SAMPLE_ID].tolist() == expected[schema.SAMPLE_ID].tolist()
    assert (report.failures["why"] == "highest loss").all()
    assert build_report(run, review_state=None, max_examples=0).failures.empty


def test_reviewed_images_and_relabel_list(report):
    rv = report.reviewed
    assert rv[schema.RELPATH].tolist() == ["ant/ant_00.png", "bee/bee_01.png"]  # other run: no
    first = rv.iloc[0]
    assert first["tags"] == ("ambiguous",)
    assert first["notes"] == (("ben", "Looks like a bee to me"),)
    assert first["corrected_label"] == "" and first["reviewer"] == "ben"
    assert rv.iloc[1]["corrected_label"] == "cat" and rv.iloc[1]["tags"] == ()
    rl = report.relabel
    assert len(rl) == 1
    assert rl.iloc[0][["relpath", "given_label", "corrected_label", "reviewer"]].tolist() == [
        "bee/bee_01.png",
        "bee",
        "cat",
        "ana",
    ]


def test_data_issues_count_what_the_run_found(run, report):
    s = run.samples
    di = report.data_issues.set_index("issue")
    n_flagged = int(s[schema.IS_LABEL_ISSUE].sum())
    assert di.loc["suspected label errors", "images"] == n_flagged
    assert di.loc["suspected label errors", "share"] == pytest.approx(n_flagged / 18)
    assert di.loc["near-duplicates inside the set", "images"] == int(
        s[schema.DUPLICATE_OF].notna().sum()
    )
    summary = run.table("outlier_summary.parquet")
    for _, r in summary.iterrows():
        assert di.loc[f"outlier: {r['type']}", "images"] == r["n"]
    assert any("leakage was not checked" in n for n in report.notes)
    li = report.label_issues
    assert len(li) == n_flagged
    assert li["label_quality"].is_monotonic_increasing
    flagged = s[s[schema.IS_LABEL_ISSUE]]
    assert set(li[schema.RELPATH]) == set(flagged[schema.RELPATH])


def test_a_broken_part_becomes_a_note(run, review, monkeypatch):
    import analysis.present.report.model as rp

    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(rp, "_label_issues", boom)
    r = build_report(run, review_state=review)
    assert r.label_issues is None and r.headline  # the rest is still there
    assert any(
        "label-issue table could not be built: RuntimeError: disk on fire" in n for n in r.notes
    )
    assert "disk on fire" in to_html(r, run)


def test_select_failures_mixes_in_the_top_slice():
    correct = np.array([True, False, False, False, False, False, False, True])
    loss = np.array([9.0, 1, 2, 3, 4, 5, 6, 0])
    in_slice = np.zeros(8, bool)
    in_slice[[1, 2, 7]] = True
    rows, why = _select_failures(
        correct, loss, slice_mask=in_slice, slice_description="d", max_examples=6
    )
    assert rows.tolist() == [6, 5, 4, 3, 2, 1]
    assert why == ["highest loss"] * 4 + ["top slice: d"] * 2
    rows, why = _select_failures(
        correct, loss, slice_mask=in_slice, slice_description="d", max_examples=3
    )
    assert rows.tolist() == [6, 5, 2] and why[-1] == "top slice: d"
    only_top = np.zeros(8, bool)
    only_top[6] = True  # its one wrong image is already picked: the places go back to loss
    rows, why = _select_failures(
        correct, loss, slice_mask=only_top, slice_description="d", max_examples=6
    )
    assert rows.tolist() == [6, 5, 4, 3, 2, 1] and set(why) == {"highest loss"}
    rows, why = _select_failures(
        correct,
        np.array([9.0, np.nan, 2, 3, 4, 5, 6, 0]),
        slice_mask=None,
        slice_description=None,
        max_examples=3,
    )
    assert rows.tolist() == [6, 5, 4]  # NaN loss last
    rows, why = _select_failures(
        correct, loss, slice_mask=in_slice, slice_description="d", max_examples=0
    )
    assert rows.size == 0 and why == []


# ---------------------------------------------------------------------------------------------
# HTML


def test_html_is_self_contained_and_shows_the_meeting(page, report, run):
    m = load_metrics(run)
    assert page.startswith("<!DOCTYPE html>")
    assert fmt.estimate(m.accuracy) in page
    assert "ant/ant_00.png" in page and '<span class="tag">ambiguous</span>' in page
    assert "Looks like a bee to me" in page and "relabel as cat" in page
    (csp,) = re.findall(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', page)
    assert html.unescape(csp).startswith("default-src 'none';")  # no network request at all
    from plotly.offline import get_plotlyjs

    assert page.count(get_plotlyjs()) == 1  # plotly.js inline, exactly once
    # classes, per-class, confusion, reliability; no slice is weak in this run
    assert page.count("Plotly.newPlot(") == 4
    assert page.lower().count("<script") == 2 + 4  # PlotlyConfig + bundle + one per figure
    rest = _outside_bundle(page)
    # the action plan's numbers are links (navigation on a click, not a request) to their
    # images on the dashboard; nothing else may point at the network
    base = re.escape(report.action_plan.dashboard_url)
    rest = re.sub(rf'<a href="{base}/gallery\?[^"<>]*">', "<a>", rest)
    assert not re.findall(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", rest, re.I)
    assert not re.findall(r"""url\(\s*["']?\s*(?:https?:)?//""", rest, re.I)
    uris = re.findall(r'src="data:image/jpeg;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(uris) == len(report.failures) + len(report.reviewed)
    with Image.open(io.BytesIO(base64.b64decode(uris[0]))) as im:
        assert im.format == "JPEG" and max(im.size) <= 160


def test_html_makes_images_without_thumbnails_and_marks_missing_ones(run, report, tmp_path):
    copy = tmp_path / run.path.name
    shutil.copytree(run.path, copy)
    shutil.rmtree(copy / schema.THUMBS_DIR)
    bare = open_run(copy)
    page = to_html(report, bare)
    assert page.count("data:image/jpeg;base64,") == len(report.failures) + len(report.reviewed)
    gone = dataclasses.replace(
        report,
        failures=report.failures.assign(path="/nonexistent.png"),
        reviewed=report.reviewed.iloc[:0],
    )
    page = to_html(gone, bare)
    assert "data:image" not in _outside_bundle(page)
    assert page.count("image not available") == len(report.failures)


def test_html_escapes_every_hostile_string(hostile):
    run, rep = hostile
    assert rep.class_names[1] == XSS_CLASS and len(rep.reviewed) == 2
    page = to_html(rep, run)
    for raw in (XSS_CLASS, XSS_META, XSS_NOTE, XSS_REVIEWER, XSS_TITLE, "<i>tag</i>"):
        assert raw not in page, raw
        assert html.escape(raw) in page, raw
    # Plotly gets escaped labels (it decodes entities for display, never markup) ...
    assert '"&lt;script&gt;alert(1)&lt;\\u002fscript&gt;"' in page
    # ... and never the raw ones (which Plotly would write out as \u003cscript\u003e...)
    assert "\\u003cscript\\u003ealert(1)" not in page
    n_fig = page.count("Plotly.newPlot(")
    assert n_fig == 4 and page.lower().count("<script") == 2 + n_fig
    assert not re.findall(r"<img(?![^>]*src=\"data:image/jpeg;base64,)", _outside_bundle(page))


def test_hostile_slice_descriptions_are_escaped_in_tables_and_figures(hostile):
    run, rep = hostile
    row = {c: np.nan for c in SLICE_COLUMNS}
    row.update(
        source="metadata",
        column="site",
        spec='[["site","==","x"]]',
        description=f"site is {XSS_META}",
        n=9,
        share=0.5,
        errors=8,
        error_rate=8 / 9,
        error_rate_low=0.56,
        error_rate_high=0.98,
        rest_error_rate=0.4,
        gap=0.49,
        p_value=0.01,
        p_adj=0.02,
        significant=True,
        accuracy=1 / 9,
        top_confusion=f"ant -> {XSS_CLASS} (3)",
    )
    weak = pd.DataFrame([row])[SLICE_COLUMNS]
    page = to_html(dataclasses.replace(rep, slices=weak), run)
    assert page.count("Plotly.newPlot(") == 5
    assert f"site is {XSS_META}" not in page and f"ant -&gt; {html.escape(XSS_CLASS)}" in page
    assert html.escape(f"site is {XSS_META} (n=9)") in page  # the figure's label
    md = to_markdown(dataclasses.replace(rep, slices=weak))
    assert "site is \\<img src=x onerror=alert(2)\\>" in md and XSS_META not in md


def test_chart_labels_are_escaped_once_and_cannot_close_the_script(report, run):
    """A class named with a double quote reads as typed on the charts (issue 11: it showed
    ``&quot;``); a class named to close the script tag stays inside Plotly's JSON."""
    quote, breakout = 'say "hi"', "x</script><script>alert(9)</script>"
    names = (report.class_names[0], quote, breakout)
    page = to_html(dataclasses.replace(report, class_names=names), run)
    rest = _outside_bundle(page)
    assert "&quot;" not in rest and "&amp;quot;" not in rest
    assert '"say \\"hi\\""' in rest  # the label in the figure JSON, escaped once (JSON)
    assert "alert(9)" in rest and "</script><script>alert(9)" not in rest
    assert "x&lt;\\u002fscript&gt;&lt;script&gt;alert(9)" in rest  # escaped for Plotly, once
    assert rest.lower().count("<script") == 2 + 4  # no extra script element


def test_every_template_autoescapes_even_one_added_later(tmp_path):
    """The environment escapes by default, for any template name: not chosen by extension."""
    import jinja2

    from analysis.present.report.render_html import environment, make_environment

    hostile = '<script>alert(1)</script> & "q"'
    env = environment()
    assert env.autoescape is True
    later = tmp_path / "templates"
    later.mkdir()
    for name in ("new_section.html.j2", "new_section.txt", "partial"):
        (later / name).write_text("<p>{{ x }}</p>{% include 'inc' %}")
    (later / "inc").write_text("<i>{{ x }}</i>")
    added = make_environment(jinja2.ChoiceLoader([env.loader, jinja2.FileSystemLoader(later)]))
    for name in ("new_section.html.j2", "new_section.txt", "partial"):
        out = added.get_template(name).render(x=hostile)
        assert "<script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt; &amp;" in out
        assert out.count("&lt;script&gt;") == 2, out
    assert "<script>" not in env.from_string("{{ x }}").render(x=hostile)
    with pytest.raises(jinja2.UndefinedError):  # a misspelt variable fails, not blank output
        env.from_string("{{ nothing_here }}").render()


def test_templates_mark_nothing_safe():
    """Only the Plotly figures (built in Python) are inserted unescaped: no template opts out."""
    from analysis.present.report import render_html

    root = REPO / "analysis" / "present" / "report" / "templates"
    files = sorted(p for p in root.rglob("*") if p.is_file())
    assert len(files) > 10
    for p in files:
        text = p.read_text()
        for bad in ("|safe", "| safe", "autoescape false", "Markup"):
            assert bad not in text, f"{p.name} uses {bad!r}"
    src = (REPO / "analysis" / "present" / "report" / "render_html.py").read_text()
    assert src.count("Markup(") == 1 and render_html.environment().autoescape is True


# ---------------------------------------------------------------------------------------------
# Markdown


def test_markdown_escapes_markup_and_keeps_tables_intact(hostile):
    run, rep = hostile
    md = to_markdown(rep)
    assert md.startswith("# \\<u\\>title\\</u\\>\n")
    for raw in (XSS_CLASS, XSS_META, XSS_NOTE, XSS_REVIEWER):
        assert raw not in md
    assert "\\<script\\>alert(1)\\</script\\>" in md
    assert "left \\| right" in md
    table: list[str] = []
    for line in [*md.splitlines(), ""]:
        if line.startswith("|"):
            table.append(line)
            continue
        if table:  # every row of a table has its header's number of cells
            counts = {_unescaped_pipes(t) for t in table}
            assert len(counts) == 1, table
            table = []
    assert "## Reviewed images" in md and "## Relabel list" in md


def test_markdown_escape_rules():
    assert _md("a|b") == "a\\|b"
    assert _md("<b>x</b>") == "\\<b\\>x\\</b\\>"
    assert _md("# heading") == "\\# heading" and _md("#tag") == "#tag"
    assert _md("1. item") == "1\\. item" and _md("33.3%") == "33.3%"
    assert _md("- item") == "\\- item" and _md("-3.2 pts") == "-3.2 pts"
    assert _md("*a* _b_ `c` [d](e) ~f~ $g$ &amp;") == (
        "\\*a\\* \\_b\\_ \\`c\\` \\[d\\](e) \\~f\\~ \\$g\\$ \\&amp;"
    )
    assert _md("one\ntwo\r\nthree") == "one<br>two<br>three"
    assert _md(None) == "—" and _md(float("nan")) == "—"


def test_markdown_has_the_numbers(report, run):
    md = to_markdown(report)
    assert f"| Accuracy | {fmt.estimate(load_metrics(run).accuracy)} |" in md
    assert "Looks like a bee to me" in md and "ant/ant\\_00.png" in md


# ---------------------------------------------------------------------------------------------
# CSV and files


def test_csv_tables_parse_back(report):
    tables = to_csv_tables(report)
    assert set(tables) == {
        "headline",
        "per_class",
        "confusion",
        "top_confusions",
        "slices",
        "discovered_slices",
        "data_issues",
        "label_issues",
        "action_plan",
        "failures",
        "reviewed",
        "relabel_list",
    }
    read = {k: pd.read_csv(io.StringIO(v), keep_default_na=False) for k, v in tables.items()}
    assert read["per_class"]["name"].tolist() == CLASSES
    assert read["headline"]["value"].iloc[0] == pytest.approx(report.headline[0].estimate.value)
    np.testing.assert_array_equal(read["confusion"][CLASSES].to_numpy(), report.confusion)
    assert read["failures"]["sample_id"].tolist() == report.failures["sample_id"].tolist()
    assert len(read["label_issues"]) == len(report.label_issues)
    assert len(read["slices"]) == 0 and "spec" in read["slices"].columns
    rv = read["reviewed"]
    assert rv["relpath"].tolist() == ["ant/ant_00.png", "bee/bee_01.png"]
    assert rv["tags"].tolist() == ["ambiguous", ""]
    assert rv["notes"].iloc[0] == "ben: Looks like a bee to me"
    assert read["relabel_list"][["relpath", "corrected_label"]].values.tolist() == [
        ["bee/bee_01.png", "cat"]
    ]


def test_csv_keeps_data_but_defuses_formulas(hostile):
    run, rep = hostile
    tables = to_csv_tables(rep)
    pc = pd.read_csv(io.StringIO(tables["per_class"]))
    assert pc["name"].tolist() == ["ant", XSS_CLASS, "cat"]  # CSV is data: no HTML escaping
    rv = pd.read_csv(io.StringIO(tables["reviewed"]), keep_default_na=False)
    lines = "\n".join(rv["notes"]).split("\n")
    assert f"{XSS_REVIEWER}: {XSS_NOTE}" in lines and "ana: left | right" in lines
    bad = rep.relabel.assign(
        corrected_label=['=HYPERLINK("http://x")'] * len(rep.relabel),
        reviewer=["@ana"] * len(rep.relabel),
    )
    rl = pd.read_csv(
        io.StringIO(to_csv_tables(dataclasses.replace(rep, relabel=bad))["relabel_list"])
    )
    assert rl["corrected_label"].tolist() == ['\'=HYPERLINK("http://x")']
    assert rl["reviewer"].tolist() == ["'@ana"]


def test_write_report_writes_every_format(report, run, tmp_path):
    out = tmp_path / "out"
    paths = write_report(report, run, out)
    assert paths[:2] == [out / REPORT_HTML, out / REPORT_MD] and paths[-1] == out / RELABEL_CSV
    assert {p.name for p in (out / CSV_DIR).iterdir()} == {
        f"{k}.csv" for k in to_csv_tables(report)
    }
    assert all(p.is_file() for p in paths)
    assert (out / REPORT_HTML).read_text(encoding="utf-8") == to_html(report, run)
    assert (out / RELABEL_CSV).read_text() == (out / CSV_DIR / "relabel_list.csv").read_text()
    only_md = write_report(report, None, tmp_path / "md", formats="md")
    assert only_md == [tmp_path / "md" / REPORT_MD]
    assert sorted(p.name for p in (tmp_path / "md").iterdir()) == [REPORT_MD]


def test_the_confusion_csv_is_the_matrix_for_few_classes_and_its_cells_for_many():
    import numpy as np

    from analysis.present.report.render_csv import CONFUSION_MATRIX_CSV_MAX, confusion_table

    small = confusion_table(np.array([[3, 1], [0, 2]]), ["a", "=b"])
    assert list(small.columns) == ["given \\ predicted", "a", "=b"] and small["a"].tolist() == [
        3,
        0,
    ]
    k = CONFUSION_MATRIX_CSV_MAX + 1
    cm = np.zeros((k, k), dtype=np.int64)
    cm[np.arange(k), np.arange(k)] = 5
    cm[3, 7], cm[0, k - 1] = 2, 1
    long = confusion_table(cm, [f"c{i}" for i in range(k)])
    assert list(long.columns) == ["given", "predicted", "count"]
    assert len(long) == k + 2 and long["count"].sum() == cm.sum()  # every non-zero cell
    row = long[(long["given"] == "c3") & (long["predicted"] == "c7")]
    assert row["count"].tolist() == [2]


def test_metrics_are_parsed_once_per_file_version(tmp_path, monkeypatch):
    """A report asks for the metrics four times: the parse (an 800 MB matrix at 10,000
    classes) happens once per version of metrics.json."""
    import json
    import os

    from analysis.present import findings
    from analysis.stats import metrics

    calls = []
    real = metrics.MetricsSummary.from_dict
    monkeypatch.setattr(
        metrics.MetricsSummary, "from_dict", staticmethod(lambda d: calls.append(1) or real(d))
    )

    class _Run:
        path = tmp_path

    (tmp_path / "metrics.json").write_text(json.dumps(_tiny_metrics()))
    a, b = findings.load_metrics(_Run()), findings.load_metrics(_Run())
    assert a is b and len(calls) == 1
    os.utime(tmp_path / "metrics.json", ns=(1, 1))  # a re-analysis writes a new file
    assert findings.load_metrics(_Run()) is not a and len(calls) == 2


def _tiny_metrics() -> dict:
    import numpy as np

    from analysis.stats.metrics import summary

    labels = np.array([0, 1, 1, 0, 1, 0])
    probs = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
    return summary(labels, probs, n_classes=2, seed=0, n_boot=50).to_dict()
