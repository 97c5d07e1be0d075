"""Real-browser end-to-end test: Streamlit + Debian's Chromium driven by Playwright.

Waits on page state (elements, texts), never on fixed sleeps. Screenshots of every step go to
test-output/ so a person can look at what the user saw.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from analysis import schema

from .conftest import OUT

pytestmark = pytest.mark.browser


# Streamlit loads some element types (metrics, page links, charts) as separate JS chunks and
# shows a grey skeleton until the chunk arrives: a screenshot taken then shows empty tiles.
_LOADED = (
    "() => !document.querySelector('[data-testid=\"stStatusWidget\"]')"
    " && document.querySelectorAll('[data-stale=\"true\"]').length === 0"
    " && document.querySelectorAll('[data-testid^=\"stSkeleton\"]').length === 0"
)


def _settled(page):
    """Wait until Streamlit has finished running the script (no running indicator, no stale
    element) and every element has been drawn (no loading skeleton)."""
    page.wait_for_selector('[data-testid="stAppViewContainer"]')
    page.wait_for_function(_LOADED, timeout=120_000)


def _shot(page, name, *, top: bool = True):
    """Screenshot of the settled page; Streamlit scrolls inside its main container (not the
    window), so ``full_page`` alone would keep a scrolled-down view: scroll it to the top."""
    OUT.mkdir(exist_ok=True)
    page.wait_for_function(_LOADED, timeout=120_000)
    if top:
        page.evaluate(
            "() => document.querySelectorAll('[data-testid=\"stMain\"], section.main')"
            ".forEach(e => e.scrollTo(0, 0))"
        )
    page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


def test_confusion_cell_to_gallery_to_detail_with_cams(page, app_url, sample_run):
    s = sample_run.samples
    names = sample_run.class_names
    # the largest off-diagonal cell: the worst confusion
    cm = np.zeros((len(names), len(names)), int)
    np.add.at(cm, (s[schema.LABEL], s[schema.PRED]), 1)
    np.fill_diagonal(cm, 0)
    t, p = np.unravel_index(cm.argmax(), cm.shape)
    expected = int(cm[t, p])

    page.goto(f"{app_url}/?run={sample_run.run_id}")
    _settled(page)
    page.get_by_text("Accuracy").first.wait_for()
    page.locator('[data-testid="stMetricValue"]').first.wait_for()
    _shot(page, "01_overview")

    page.goto(f"{app_url}/confusion?run={sample_run.run_id}")
    _settled(page)
    plot = page.locator(".js-plotly-plot").first
    plot.wait_for()
    _shot(page, "02_confusion")
    k = len(names)
    point = page.locator(".js-plotly-plot .scatterlayer .trace").first.locator("path.point")
    point.nth(int(t) * k + int(p)).click(force=True)
    page.wait_for_url(re.compile(r"/gallery\?"), timeout=60_000)
    _settled(page)
    count = page.get_by_text(re.compile(r"[\d,]+ images? match")).first
    count.wait_for()
    shown = int(re.search(r"([\d,]+) images", count.inner_text()).group(1).replace(",", ""))
    assert shown == expected, f"gallery shows {shown}, cell ({names[t]}, {names[p]}) has {expected}"
    assert f"true={t}" in page.url and f"pred={p}" in page.url
    _shot(page, "03_gallery_cell")

    page.locator('[data-testid="stPageLink"] a').filter(
        has_text=f"{names[t]} → {names[p]}"
    ).first.click()
    page.wait_for_url(re.compile(r"/detail\?"), timeout=60_000)
    _settled(page)
    page.get_by_text("Where the model looked").wait_for()
    from analysis.explain.cams import default_method

    method = re.escape(default_method("mobilenet_v3"))  # the sample's family's default
    cams = page.locator('[data-testid="stImage"]').filter(has_text=re.compile(rf"{method} for"))
    cams.first.wait_for(timeout=180_000)
    assert cams.count() == 2, "expected CAMs for the predicted and the given class"
    _shot(page, "04_detail_cams")
