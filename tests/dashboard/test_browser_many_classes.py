"""Real-browser test of a 1,000-class run (issue 17): the Overview's class chart and top-5, a
readable Confusion sub-matrix whose cell opens exactly its images, a class search, a superclass
level whose cell opens its images. Screenshots go to test-output/ (look at them)."""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

import numpy as np
import pytest

from analysis.present import classes as cv
from analysis.present.findings import load_metrics

from .test_browser import _settled, _shot

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def app_url(thousand_class_run):
    """A real `streamlit run dashboard/app.py` on the 1,000-class run's folder."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from .conftest import APP, OUT, REPO, _free_port

    port = _free_port()
    env = dict(os.environ, ERRORSCOPE_RUNS_DIR=str(thousand_class_run[0].path.parent))
    OUT.mkdir(exist_ok=True)
    with open(OUT / "streamlit_1000_classes.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", APP, "--server.port", str(port)]
            + ["--server.headless", "true", "--server.address", "127.0.0.1"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:  # poll the health endpoint: wait on state, not on a fixed sleep
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("streamlit did not start; see streamlit_1000_classes.log")
            time.sleep(0.2)
        yield url
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _goto_run(page, url: str, run) -> None:
    page.goto(url)
    page.get_by_text(re.compile(r"1,?000 classes")).first.wait_for()  # this run's sidebar
    _settled(page)


def _click_cell_and_count(page, view: cv.MatrixView, i: int, j: int) -> int:
    """Click cell (row i, column j) of the drawn grid; return the gallery's image count."""
    k = len(view.ids)
    point = page.locator(".js-plotly-plot .scatterlayer .trace").first.locator("path.point")
    assert point.count() == k * k, f"{point.count()} markers drawn, expected {k * k}"
    point.nth(i * k + j).click(force=True)
    page.wait_for_url(re.compile(r"/gallery\?"), timeout=60_000)
    _settled(page)
    # "1 image matches" or "12 images match" (the largest cell of a 2-image-per-class run
    # can hold one image)
    count = page.get_by_text(re.compile(r"[\d,]+ images? match")).first
    count.wait_for()
    return int(re.search(r"([\d,]+) images?", count.inner_text()).group(1).replace(",", ""))


def _largest_error_cell(cm: np.ndarray) -> tuple[int, int]:
    off = cm - np.diag(np.diag(cm))
    i, j = np.unravel_index(int(np.argmax(off)), off.shape)
    return int(i), int(j)


def test_thousand_classes_overview_and_confusion(thousand_class_run, page, app_url) -> None:
    run = thousand_class_run[0]
    m = load_metrics(run)
    names = run.class_names
    _goto_run(page, f"{app_url}/?run={run.run_id}", run)
    page.get_by_text("Top-5 accuracy").first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    _shot(page, "11_overview_1000_classes")

    _goto_run(page, f"{app_url}/confusion?run={run.run_id}", run)
    page.locator(".js-plotly-plot").first.wait_for()
    page.get_by_text("Top confusion pairs").wait_for()
    _shot(page, "12_confusion_1000_classes")
    view = cv.class_matrix(m.confusion, names)
    i, j = _largest_error_cell(view.cm)
    shown = _click_cell_and_count(page, view, i, j)
    assert shown == view.cm[i, j] > 0
    assert f"true={view.ids[i]}" in page.url and f"pred={view.ids[j]}" in page.url
    _shot(page, "13_gallery_from_1000_class_cell")


def test_thousand_classes_search_and_superclass(thousand_class_run, page, app_url) -> None:
    run = thousand_class_run[0]
    m = load_metrics(run)
    target = int(np.argmax(m.confusion.sum(1) - np.diag(m.confusion)))
    _goto_run(page, f"{app_url}/confusion?run={run.run_id}&view=class&cls={target}", run)
    page.locator(".js-plotly-plot").first.wait_for()
    page.get_by_text(re.compile("classes it is most confused with")).wait_for()
    _shot(page, "14_confusion_one_class")

    h = cv.load_hierarchy(run)
    view = cv.level_matrix(m.confusion, h, 2)
    _goto_run(page, f"{app_url}/confusion?run={run.run_id}&level=2", run)
    page.get_by_text("Superclasses at level 2", exact=True).wait_for()
    _shot(page, "15_confusion_superclasses")
    i, j = _largest_error_cell(view.cm)
    shown = _click_cell_and_count(page, view, i, j)
    assert shown == view.cm[i, j] > 0
    link = unquote_plus(page.url)
    assert "superclass_2" in link and view.names[i] in link and view.names[j] in link
    _shot(page, "16_gallery_from_superclass_cell")
