"""Real-browser journey through the triage: the Triage page, a number's link to its images, the
Overview's lead. Same rules as test_browser.py: wait on page state, screenshot each step."""

from __future__ import annotations

import json
import re

import pytest

from analysis.triage.runs import stored_triage

from .test_browser import _settled, _shot

pytestmark = pytest.mark.browser
COUNT = re.compile(r"([\d,]+) images match")


def test_triage_page_number_opens_its_images(page, app_url, sample_run):
    t = stored_triage(sample_run).table
    row = t[(t["group"] == "camera is cam_c") & (t["status"] == "significant")].iloc[0]
    n = json.loads(row["links"])[0]["text"]  # "394 images"
    page.goto(f"{app_url}/triage?run={sample_run.run_id}")
    _settled(page)
    page.get_by_text(re.compile(r"accounts for \d+%")).first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    _shot(page, "10_triage")
    page.locator('[data-testid="stPageLink"] a').filter(has_text=f"{n} →").first.click()
    page.wait_for_url(re.compile(r"/gallery\?"), timeout=60_000)
    _settled(page)
    count = page.get_by_text(COUNT).first
    count.wait_for()
    shown = int(COUNT.search(count.inner_text()).group(1).replace(",", ""))
    assert shown == int(n.split()[0])
    _shot(page, "11_gallery_from_triage")


def test_overview_leads_with_the_triage(page, app_url, sample_run):
    page.goto(f"{app_url}/?run={sample_run.run_id}")
    _settled(page)
    page.get_by_text("Triage: why the model fails and what to do").wait_for()
    page.locator('[data-testid="stMetricValue"]').first.wait_for()
    _shot(page, "12_overview_triage_lead")
    page.locator('[data-testid="stPageLink"] a').filter(
        has_text=re.compile(r"Open the triage of \d+ failure groups")
    ).first.click()
    page.wait_for_url(re.compile(r"/triage\?"), timeout=60_000)
    _settled(page)
    page.get_by_role("heading", name="Triage").wait_for()


def test_report_action_plan_numbers_open_their_images(page, app_url, browser, sample_run):
    """The HTML report downloaded from the Report page: its Action plan lists the causes with
    their charts, and a number's link opens exactly its images on the dashboard it came from."""
    from pathlib import Path

    from .conftest import OUT

    t = stored_triage(sample_run).table
    row = t[(t["group"] == "background is stripes") & (t["status"] == "significant")].iloc[0]
    n = json.loads(row["links"])[1]["text"]  # "49 images with background is stripes ..."
    page.goto(f"{app_url}/report?run={sample_run.run_id}")
    _settled(page)
    with page.expect_download(timeout=180_000) as dl:
        page.get_by_role("button", name="HTML report").click()
    path = Path(OUT) / "report_action_plan.html"
    dl.value.save_as(path)
    ctx = browser.new_context(viewport={"width": 1300, "height": 1000})
    rp = ctx.new_page()
    rp.goto(path.resolve().as_uri())
    rp.wait_for_load_state("load")
    sec = rp.locator("#action-plan")
    sec.locator(".js-plotly-plot").first.wait_for()
    box = sec.bounding_box()
    rp.screenshot(
        path=str(OUT / "13_report_action_plan.png"),
        full_page=True,
        clip={"x": 0, "y": box["y"] - 10, "width": 1300, "height": min(box["height"], 1500)},
    )
    assert "break the shortcut" in sec.inner_text()
    link = sec.locator("a", has_text=n).first
    href = link.get_attribute("href")
    assert href.startswith(f"{app_url}/gallery?") and f"run={sample_run.run_id}" in href
    link.click()
    rp.wait_for_url(re.compile(r"/gallery\?"), timeout=60_000)
    _settled(rp)
    count = rp.get_by_text(COUNT).first
    count.wait_for()
    assert int(COUNT.search(count.inner_text()).group(1).replace(",", "")) == int(n.split()[0])
    _shot(rp, "14_gallery_from_report")
    ctx.close()
