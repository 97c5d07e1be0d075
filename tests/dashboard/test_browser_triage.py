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
