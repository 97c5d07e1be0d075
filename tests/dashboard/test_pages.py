"""AppTest of every page on the sample run: renders without exception, filters change counts."""

from __future__ import annotations

import re

import numpy as np

from analysis import schema
from dashboard.components import safe

from .conftest import assert_on_page, open_page


def _open(at, page, **params):
    at.run()
    # AppTest keeps a value set as a string as a string (its [0] was the id's first letter, so
    # these tests silently opened the newest run, which was the sample only while it was alone)
    run = at.query_params.get("run")
    params.setdefault("run", run[0] if isinstance(run, list) else run)
    params = {k: v for k, v in params.items() if v is not None}
    for k, v in params.items():
        at.query_params[k] = v
    open_page(at, page).run()
    assert_on_page(at, page)
    assert not at.exception, [e.value for e in at.exception]
    return at


def _match_count(at) -> int:
    for md in at.markdown:
        m = re.match(r"\*\*([\d,]+) images?\*\* match", md.value)
        if m:
            return int(m.group(1).replace(",", ""))
    raise AssertionError("no match count on the page")


def test_overview_shows_metrics_with_intervals(app_test, sample_run):
    at = app_test.run()
    assert not at.exception, [e.value for e in at.exception]
    labels = [m.label for m in at.metric]
    assert labels[:4] == ["Accuracy", "Balanced accuracy", "Macro F1", "ECE"]
    acc = float(at.metric[0].value.rstrip("%")) / 100
    assert abs(acc - sample_run.samples[schema.CORRECT].mean()) < 0.0006
    assert any("95% CI" in c.value for c in at.caption)
    links = [p.label for p in at.get("page_link")]
    # the most frequent confusion, every number saying what it counts
    s = sample_run.samples
    names = sample_run.class_names
    cm = np.zeros((len(names), len(names)), int)
    np.add.at(cm, (s[schema.LABEL], s[schema.PRED]), 1)
    support = cm.sum(axis=1)
    np.fill_diagonal(cm, 0)
    t, p = np.unravel_index(cm.argmax(), cm.shape)
    n = int(cm[t, p])
    want = (
        f"{n} of {support[t]:,} images labelled {names[t]} are predicted as {names[p]}"
        f" ({n / support[t]:.0%}, 95% CI "
    )
    assert any(lbl.startswith(want) for lbl in links), links


def test_confusion_page_renders(app_test):
    at = _open(app_test, "confusion")
    assert at.title[0].value == "Confusion"
    # the per-class table (one row per class of the 6) and the top confusion pairs
    per_class = [d.value for d in at.dataframe if "recall 95% CI" in d.value.columns]
    assert len(per_class) == 1 and len(per_class[0]) == 6
    pairs = [d.value for d in at.dataframe if "rate 95% CI" in d.value.columns]
    assert len(pairs) == 1 and pairs[0]["images"].is_monotonic_decreasing


def test_gallery_filters_change_counts(app_test, sample_run):
    s = sample_run.samples
    at = _open(app_test, "gallery")
    assert _match_count(at) == len(s)
    at.segmented_control(key="g_correct").set_value("wrong").run()
    assert _match_count(at) == int((~s[schema.CORRECT]).sum())
    at.multiselect(key="g_true").set_value(["triangle"]).run()
    tri = sample_run.class_names.index("triangle")
    expected = int(((s[schema.LABEL] == tri) & ~s[schema.CORRECT]).sum())
    assert _match_count(at) == expected

    def qp(key):
        v = at.query_params[key]
        return v[0] if isinstance(v, list) else v

    assert qp("correct") == "wrong" and qp("true") == str(tri)


def test_gallery_deep_link_reopens_the_same_set(app_test, sample_run):
    s = sample_run.samples
    t, p = 3, 0
    at = _open(app_test, "gallery", true=str(t), pred=str(p))
    assert _match_count(at) == int(((s[schema.LABEL] == t) & (s[schema.PRED] == p)).sum())


def test_detail_deep_link_reopens_that_image(app_test, sample_run):
    s = sample_run.samples
    wrong = np.flatnonzero(~s[schema.CORRECT].to_numpy())
    row = s.iloc[int(wrong[0])]
    at = _open(app_test, "detail", sample=row[schema.SAMPLE_ID])
    title = at.title[0].value
    names = sample_run.class_names
    assert f"{names[row[schema.LABEL]]} → {names[row[schema.PRED]]}" in title
    assert any(safe(row[schema.RELPATH]) in c.value for c in at.caption)  # shown as text


def test_every_page_renders_without_exception(app_test):
    from dashboard.views import VIEWS

    at = app_test.run()
    for v in VIEWS:
        open_page(at, v.url).run()
        assert_on_page(at, v.url)
        assert not at.exception, (v.url, [e.value for e in at.exception])
        assert not at.error, (v.url, [e.value for e in at.error])
        assert at.title and at.title[0].value, v.url


def test_data_issues_page_says_suspected_with_the_measured_share(app_test, sample_run):
    """Honest words: 'suspected, to review', the share of such flags that were real label errors
    on problems like the sample, and the ranking in plain words."""
    at = _open(app_test, "data_issues")
    text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert "are suspected label errors, to review" in text
    assert "On synthetic problems with a model of similar accuracy" in text
    assert "Most suspicious first: ranked by how little probability" in text
    assert "nearest reference (training) images" in text  # the sample has a reference set
    assert "look mislabelled" not in text


def test_outlier_types_are_called_worse_only_by_the_test_with_intervals(app_test, sample_run):
    """The Outliers tab names the types misclassified more often than the other images (one-
    sided Fisher, BH over the types) with their interval and adjusted p, and only those."""
    at = _open(app_test, "data_issues", section="Outliers")
    summ = sample_run.table(schema.OUTLIER_SUMMARY)
    sig = summ[summ["significant"].fillna(False).astype(bool)]
    assert len(sig), summ  # on the sample: near-constant images (33% wrong against 18%)
    text = " ".join(m.value for m in at.markdown)
    for _, r in summ[summ["n"] > 0].iterrows():
        said = f"**{safe(r['type'])}** images are misclassified more often" in text
        assert said == bool(r["type"] in set(sig["type"])), (r["type"], text)
    assert text.count("(95% CI") >= len(sig) and text.count("adjusted p") >= len(sig)


def test_slices_page_lists_the_discovered_slices(app_test, sample_run):
    at = _open(app_test, "slices")
    found = sample_run.table("discovered_slices.parquet")
    table = at.dataframe[0].value
    assert list(table["slice"][:3]) == list(found["description"][:3])


def test_only_the_open_tab_and_opened_expanders_are_built(app_test, sample_run):
    """A hidden tab or closed expander is not built: its charts would cost every browser that
    shows the page (a meeting's sessions), for content nobody sees. Opening one builds it."""

    def charts(at):
        return [c for c in at.get("plotly_chart")]

    def tables(at):
        return [d.value for d in at.dataframe]

    at = _open(app_test, "slices")  # "Discovered" open: its chart and table only
    assert len(charts(at)) == 1 and len(tables(at)) == 1
    assert not at.multiselect  # the "All slices" tab's source filter is not built
    found = sample_run.table("discovered_slices.parquet")
    assert list(tables(at)[0]["slice"][:3]) == list(found["description"][:3])
    at = _open(app_test, "slices", tab="All slices")
    assert [m.label for m in at.multiselect] == ["Sources"]
    single = sample_run.table(schema.SLICES)
    shown = sum(len(t) for t in tables(at))
    assert shown == len(single)  # every slice, in the inputs' and the model-output table
    at = _open(app_test, "data_issues")
    assert not any("Outlier" in " ".join(map(str, t.columns)) for t in tables(at))
    at = _open(app_test, "confusion")
    reliability = [e for e in at.expander if e.label.startswith("Reliability")]
    assert len(reliability) == 1 and not charts_in(reliability[0])
    n = len(charts(at))
    at.session_state["rel_open"] = True  # the person opens the expander
    at.run()
    reliability = [e for e in at.expander if e.label.startswith("Reliability")]
    assert len(charts(at)) == n + 1 and charts_in(reliability[0])


def charts_in(block) -> list:
    return list(block.get("plotly_chart"))


def test_review_save_keeps_a_tag_added_by_someone_else(app_test, sample_run, tmp_path, monkeypatch):
    """Ana's page is drawn, Bo tags the image, Ana picks "model error" and saves: both stay."""
    from analysis.store.review import ReviewStore

    db_path = tmp_path / "review.sqlite"
    monkeypatch.setenv("ERRORSCOPE_REVIEW_DB", str(db_path))
    row = sample_run.samples.iloc[0]
    h = row[schema.CONTENT_HASH]
    at = _open(app_test, "detail", sample=row[schema.SAMPLE_ID])
    at.text_input(key="reviewer").set_value("Ana").run()
    assert not at.exception, [e.value for e in at.exception]

    bo = ReviewStore(db_path)
    bo.add_tag(h, "ambiguous", reviewer="Bo")
    bo.set_label(h, sample_run.class_names[0], reviewer="Bo")

    def form_tags():
        return next(p for p in at.pills if p.key.startswith("detail_tags_"))

    form_tags().select("model error")
    next(t for t in at.text_area if t.key.startswith("detail_note_")).set_value("cut off")
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception, [e.value for e in at.exception]

    st = bo.state([h]).iloc[0]
    assert st["tags"] == ["ambiguous", "model error"]
    assert st["corrected_label"] == sample_run.class_names[0] and st["label_by"] == "Bo"
    ev = bo.history(h)
    assert "untag" not in set(ev["kind"])
    assert ev[ev["reviewer"] == "Ana"]["kind"].tolist() == ["tag", "note", "reviewed"]
    # After the save the form is drawn afresh from the database, with an empty note box.
    assert sorted(form_tags().value) == ["ambiguous", "model error"]
    assert next(t for t in at.text_area if t.key.startswith("detail_note_")).value == ""


def test_robustness_page_shows_fragile_images_and_the_slice_breakdown(app_test, sample_run):
    from analysis.stats.robustness import fragile_images, run_robustness, slice_vs_rest
    from analysis.stats.slices import spec_from_json

    res = run_robustness(sample_run, perturbations=["gaussian_noise"], subset=150, seed=3)
    at = _open(app_test, "robustness")
    assert any(h.value == "By slice" for h in at.subheader)
    # the fragile-image links: one per severity, counts as fragile_images says
    frag = fragile_images(res, "gaussian_noise")
    expected = [
        f"severity {s}: {n} image{'s' if n != 1 else ''} first become{'s' if n == 1 else ''} wrong"
        for s, n in frag.groupby("severity").size().items()
    ]
    labels = [el.proto.label for el in at.get("page_link")]
    assert [lb for lb in labels if lb.startswith("severity ")] == expected, labels
    # the per-class table is ranked by the interval's upper end (per_class_ranking), not by
    # the point estimate
    from analysis.stats.robustness import per_class_ranking

    ranked = per_class_ranking(res.per_class, "gaussian_noise")
    (pc,) = [d.value for d in at.dataframe if "high" in d.value.columns]
    assert list(pc.index) == list(ranked["class_name"])
    # the slice table is slice_vs_rest of the first discovered slice
    first = sample_run.table(schema.DISCOVERED)["spec"].iloc[0]
    want = slice_vs_rest(res, sample_run, spec_from_json(first))
    shown = at.dataframe[-1].value
    np.testing.assert_allclose(
        shown.to_numpy(dtype=float).ravel(), want["extra_drop"].to_numpy(), atol=1e-9
    )


def test_gallery_numeric_metadata_filter_is_a_range(app_test, sample_run):
    """Numeric metadata with many values (here the sample's capture_hour) gets a range slider,
    and a link with a range opens the same rows with the slider set to it."""
    import json

    s = sample_run.samples
    at = _open(app_test, "gallery")
    slider = at.slider(key="g_where_capture_hour")
    lo, hi = float(s["capture_hour"].min()), float(s["capture_hour"].max())
    assert tuple(slider.value) == (lo, hi)
    slider.set_value((6.0, 12.0)).run()
    expected = int(s["capture_hour"].between(6.0, 12.0).sum())
    assert 0 < expected < len(s) and _match_count(at) == expected
    where = at.query_params["where"]
    where = where[0] if isinstance(where, list) else where
    assert json.loads(where) == [["capture_hour", "between:6,12"]]
    # the link reopens it
    at2 = _open(app_test, "gallery", where=where)
    assert _match_count(at2) == expected
    assert tuple(at2.slider(key="g_where_capture_hour").value) == (6.0, 12.0)


def test_cam_method_and_layer_travel_in_the_link(app_test, sample_run):
    s = sample_run.samples
    sid = s[schema.SAMPLE_ID].iloc[int(np.flatnonzero(~s[schema.CORRECT].to_numpy())[0])]
    at = _open(app_test, "detail", sample=sid)
    assert "cam" not in at.query_params and "layer" not in at.query_params  # defaults: short URL
    layers = at.selectbox(key="cam_layer").options
    at.selectbox(key="cam_method").set_value("layercam").run()
    at.selectbox(key="cam_layer").set_value(at.selectbox(key="cam_layer").options[-1]).run()
    assert not at.exception

    def qp(key):
        v = at.query_params[key]
        return v[0] if isinstance(v, list) else v

    assert qp("cam") == "layercam" and qp("layer")
    link = next(c.value for c in at.code if "/detail?" in c.value)
    assert "cam=layercam" in link and f"layer={qp('layer')}" in link
    assert len(layers) > 1


def test_gallery_order_follows_the_link_and_the_control(app_test, sample_run):
    at = _open(app_test, "gallery", correct="wrong", desc="0")
    assert at.segmented_control(key="g_order").value == "lowest first"
    assert "desc" in at.query_params
    at.segmented_control(key="g_order").set_value("highest first").run()
    assert not at.exception
    assert "desc" not in at.query_params  # the default: highest loss first


def test_a_host_programs_run_flag_is_not_read_as_runs_dir(
    app_test, sample_run, monkeypatch, tmp_path
):
    """The app reads ``--runs-dir`` from its arguments with no abbreviations: a program that runs
    it in-process with its own ``--run X`` (a benchmark under AppTest) had X taken as the runs
    folder, and the dashboard analysed the bundled sample into it."""
    import os
    import sys

    monkeypatch.setattr(sys, "argv", ["host", "--run", str(tmp_path)])
    app_test.run()
    assert not app_test.exception, [e.value for e in app_test.exception]
    assert os.environ["ERRORSCOPE_RUNS_DIR"] == str(sample_run.path.parent)
    assert not list(tmp_path.iterdir())  # nothing analysed there
    assert any(sample_run.run_id in c.value.replace("\\", "") for c in app_test.caption)


def test_a_sidebar_link_stays_on_the_sessions_run(sample_run, monkeypatch, tmp_path):
    """A sidebar link carries no query: the next page must show the run the session is on,
    not the newest run in the folder (it did, silently, whenever several runs were there)."""
    import json
    import shutil

    from streamlit.testing.v1 import AppTest

    from .conftest import APP

    shutil.copytree(sample_run.path, tmp_path / sample_run.run_id)
    newer = tmp_path / "newer-run"
    shutil.copytree(sample_run.path, newer)
    mf = json.loads((newer / "manifest.json").read_text())
    mf.update(run_id="newer-run", created="2999-01-01T00:00:00")
    (newer / "manifest.json").write_text(json.dumps(mf))
    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = sample_run.run_id  # the older run, by its link
    at.run()
    open_page(at, "gallery").run()
    assert at.session_state["_run_id"] == sample_run.run_id
    for key in list(at.query_params):  # the sidebar's link to Confusion: no query at all
        del at.query_params[key]
    open_page(at, "confusion").run()
    assert_on_page(at, "confusion")
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["_run_id"] == sample_run.run_id  # not "newer-run"
    assert at.query_params["run"] in (sample_run.run_id, [sample_run.run_id])  # a shareable URL
    # with no session yet (a bare address), the newest run is opened, as before
    fresh = AppTest.from_file(APP, default_timeout=180)
    fresh.run()
    assert fresh.session_state["_run_id"] == "newer-run"
