"""More real-browser journeys: embedding selection, the review meeting and its report, robustness
and compare drill-downs. Same rules as test_browser.py: wait on page state, screenshot each step.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import schema

from .conftest import OUT
from .test_browser import _settled, _shot

pytestmark = pytest.mark.browser
COUNT = re.compile(r"([\d,]+) images? match")


def _gallery_count(page) -> int:
    el = page.get_by_text(COUNT).first
    el.wait_for()
    return int(COUNT.search(el.inner_text()).group(1).replace(",", ""))


def test_embedding_box_selection_reaches_the_gallery(page, app_url, sample_run):
    page.goto(f"{app_url}/embeddings?run={sample_run.run_id}")
    _settled(page)
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    plot.hover()
    page.locator('.modebar-btn[data-val="select"]').first.click()
    box = plot.locator(".nsewdrag").first.bounding_box()
    x0, y0 = box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.4, y0 + box["height"] * 0.5, steps=12)
    page.mouse.up()
    sel = page.get_by_text(re.compile(r"Selection: [\d,]+ images"))
    sel.wait_for(timeout=60_000)
    n = int(re.search(r"([\d,]+) images", sel.inner_text()).group(1).replace(",", ""))
    assert n > 0
    _shot(page, "05_embeddings_selection")
    page.get_by_role("button", name=re.compile(r"Open these [\d,]+ images")).click()
    page.wait_for_url(re.compile(r"/gallery\?"), timeout=60_000)
    _settled(page)
    assert _gallery_count(page) == n
    _shot(page, "06_gallery_from_selection")


def test_review_tag_survives_reload_and_lands_in_the_offline_report(
    page, app_url, browser, sample_run
):
    s = sample_run.samples
    page.goto(f"{app_url}/gallery?correct=wrong&run={sample_run.run_id}")
    _settled(page)
    name_box = page.get_by_role("textbox", name="Your name (for review notes)")
    name_box.fill("Ana")
    name_box.press("Enter")
    _settled(page)
    _shot(page, "06b_gallery_before_review")
    page.get_by_role("button", name=re.compile("Review these")).click()
    page.wait_for_url(re.compile(r"/review\?"), timeout=60_000)
    _settled(page)
    page.get_by_role("button", name="Start the review").click()
    page.wait_for_url(re.compile(r"queue="), timeout=60_000)
    _settled(page)
    page.get_by_text(re.compile(r"0 of \d+ reviewed")).wait_for()
    first = s.iloc[
        int(
            np.flatnonzero(~s[schema.CORRECT].to_numpy())[
                np.argsort(
                    -s[schema.LOSS].to_numpy()[~s[schema.CORRECT].to_numpy()], kind="stable"
                )[0]
            ]
        )
    ]
    # the queue keeps the gallery's order: worst (highest loss) first
    page.get_by_text(first[schema.RELPATH], exact=True).first.wait_for(timeout=60_000)
    page.get_by_role("button", name="label error").first.click()
    page.get_by_role("textbox", name="Note", exact=True).fill(
        "the label is wrong: clearly a different shape"
    )
    page.get_by_role("button", name=re.compile("Save and next")).click()
    page.get_by_text(re.compile(r"1 of \d+ reviewed")).wait_for(timeout=60_000)
    _shot(page, "07_review_queue")
    queue_url = re.sub(r"pos=\d+", "pos=0", page.url)
    page.goto(queue_url)  # a reload: a new session reads the tag back from SQLite
    _settled(page)
    page.get_by_text("the label is wrong: clearly a different shape").wait_for(timeout=60_000)
    page.get_by_text(re.compile(r"Current tags: .*label error")).wait_for(timeout=60_000)
    _shot(page, "08_review_after_reload")

    page.goto(f"{app_url}/report?run={sample_run.run_id}")
    _settled(page)
    with page.expect_download(timeout=120_000) as dl:
        page.get_by_role("button", name="HTML report").click()
    path = Path(OUT) / "report.html"
    dl.value.save_as(path)
    ctx = browser.new_context(offline=True, viewport={"width": 1300, "height": 1000})
    offline = ctx.new_page()
    requests = []
    offline.on("request", lambda r: requests.append(r.url))
    offline.goto(path.resolve().as_uri())
    offline.wait_for_load_state("load")
    offline.screenshot(path=str(OUT / "09_report_offline.png"), full_page=True)
    text = offline.inner_text("body")
    # the tag and the note are in the report's reviewed-images section, with the reviewer
    reviewed = text[text.index("Reviewed images") :]
    assert first[schema.RELPATH] in reviewed, reviewed[:2000]
    assert "label error" in reviewed and "the label is wrong: clearly a different shape" in reviewed
    assert "Ana" in reviewed
    top = sample_run.table(schema.DISCOVERED)
    assert top["description"].iloc[0] in text
    assert all(u.startswith(("file:", "data:", "about:")) for u in requests), requests
    ctx.close()


def test_robustness_cell_reaches_flipped_images(page, app_url, sample_run):
    from analysis.stats.robustness import run_robustness

    res = run_robustness(
        sample_run, perturbations=["gaussian_blur", "brightness_down"], subset=300, seed=0
    )
    page.goto(f"{app_url}/robustness?run={sample_run.run_id}")
    _settled(page)
    page.locator(".js-plotly-plot").first.wait_for()
    summ = res.summary.reset_index(drop=True)
    k = int(np.argmax(summ["flipped"].to_numpy()))
    point = page.locator(".js-plotly-plot").first.locator(".scatterlayer .trace path.point")
    point.nth(k).click(force=True)
    head = page.get_by_text(re.compile(r"\d+ images? flipped under"))
    head.wait_for(timeout=60_000)
    n = int(re.match(r"(\d+)", head.inner_text()).group(1))
    assert n == int(summ["flipped"].iloc[k])
    _shot(page, "10_robustness_flips")
    page.get_by_text(re.compile("Open (them|it) in the gallery")).click()
    page.wait_for_url(re.compile(r"/gallery\?"), timeout=60_000)
    _settled(page)
    assert _gallery_count(page) == n


def test_compare_flip_cell_reaches_its_images(page, app_url, sample_run, tmp_path):
    """Run B = the same images, predictions copied from A with 30 right answers made wrong."""
    from analysis.pipeline.engine import AnalysisConfig, analyze

    s = sample_run.samples
    probs = np.asarray(sample_run.probs).copy()
    right = np.flatnonzero(s[schema.CORRECT].to_numpy())[:30]
    for r in right:
        wrong = (int(s[schema.LABEL].iloc[r]) + 1) % sample_run.n_classes
        probs[r] = 0.0
        probs[r, wrong] = 1.0
    preds = pd.DataFrame(probs, columns=sample_run.class_names).assign(
        path=s[schema.RELPATH].to_numpy()
    )
    preds.to_csv(tmp_path / "preds_b.csv", index=False)
    cfg = AnalysisConfig(
        data=sample_run.manifest["inputs"]["data"]["source"],
        predictions=str(tmp_path / "preds_b.csv"),
        umap=False,
    )
    run_b = analyze(cfg, runs_dir=sample_run.path.parent)
    try:
        _compare_journey(page, app_url, sample_run, run_b)
    finally:  # other tests expect the sample run alone in its runs folder
        import shutil

        shutil.rmtree(run_b.path, ignore_errors=True)


def _compare_journey(page, app_url, sample_run, run_b):
    page.goto(f"{app_url}/compare?run={sample_run.run_id}&b={run_b.run_id}")
    _settled(page)
    link = page.get_by_text(re.compile(r"right in A, wrong in B: \d+ images"))
    link.wait_for(timeout=120_000)
    assert re.search(r"wrong in B: 30 images", link.inner_text())
    _shot(page, "11_compare")
    link.click()
    page.wait_for_url(re.compile(r"/gallery\?"), timeout=60_000)
    _settled(page)
    assert _gallery_count(page) == 30


def test_transformer_cams_in_the_browser(page, app_url, sample_vit_run):
    """The sample's ViT in Chromium: token-grid CAMs (its family's default method) for the
    predicted and the given class of a misclassified image, each with its faithfulness and its
    sanity check."""
    from analysis.explain.cams import default_method

    method = re.escape(default_method("vit-tokens"))
    s = sample_vit_run.samples
    sid = s.loc[~s[schema.CORRECT], schema.SAMPLE_ID].iloc[0]
    page.goto(f"{app_url}/detail?run={sample_vit_run.run_id}&sample={sid}")
    _settled(page)
    page.get_by_text("Where the model looked").wait_for()
    cams = page.locator('[data-testid="stImage"]').filter(has_text=re.compile(rf"{method} for"))
    cams.first.wait_for(timeout=180_000)
    assert cams.count() == 2, "expected CAMs for the predicted and the given class"
    page.get_by_text(re.compile(r"Sanity check: with the \d+ layers above it")).first.wait_for()
    # the caption's Markdown `code` renders without its backticks
    where = rf"Method {method} at layer cls_attn_blocks\.1\.norm1 \(7×7 map\)"
    page.get_by_text(re.compile(where)).first.wait_for()
    _shot(page, "10_vit_detail_cams")


def test_a_hidden_tab_or_closed_expander_is_built_when_opened(page, app_url, sample_run):
    """Only the open tab and opened expanders are built (their charts would cost every browser
    showing the page): clicking a tab or an expander builds it, with its chart."""
    page.goto(f"{app_url}/slices?run={sample_run.run_id}")
    _settled(page)
    main = page.get_by_test_id("stMain")
    main.locator(".js-plotly-plot").first.wait_for()
    assert main.locator(".js-plotly-plot").count() == 1  # the Discovered tab's chart only
    page.get_by_role("tab", name="All slices").click()
    page.wait_for_url(re.compile(r"tab=All"), timeout=60_000)
    _settled(page)
    main.get_by_text("Defined by the model's own output").wait_for()
    main.locator(".js-plotly-plot").nth(1).wait_for()
    assert main.get_by_role("tab", name="All slices").get_attribute("aria-selected") == "true"
    # the inputs' slices and the model-output ones; the Discovered tab's chart is gone
    assert main.locator(".js-plotly-plot").count() == 2
    _shot(page, "19_slices_all_tab")
    page.goto(f"{app_url}/confusion?run={sample_run.run_id}")
    _settled(page)
    main.locator(".js-plotly-plot").nth(1).wait_for()  # the matrix and the per-class bars
    n = main.locator(".js-plotly-plot").count()
    main.get_by_text(re.compile(r"^Reliability — ECE")).click()
    main.locator(".js-plotly-plot").nth(n).wait_for(timeout=60_000)
    _settled(page)
    assert main.locator(".js-plotly-plot").count() == n + 1
    _shot(page, "20_confusion_reliability_opened")
