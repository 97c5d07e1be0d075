"""Fixtures for page tests (AppTest) and the real-browser test (Streamlit + Debian Chromium)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
APP = str(REPO / "dashboard" / "app.py")
OUT = REPO / "test-output"
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def app_test(sample_run, monkeypatch):
    """An AppTest of the dashboard on the sample run; call .run() yourself."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(sample_run.path.parent))
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = sample_run.run_id  # other tests may add newer runs beside it
    return at


def open_page(at, url: str):
    """Switch an AppTest (run at least once) to the page with ``url_path`` ``url``; not run yet.

    The pages are callables (``st.Page(view.page)``), and ``AppTest.switch_page`` only takes a
    page file, so this sets the page hash the way ``switch_page`` does (Streamlit hashes a
    page's ``url_path``). If a Streamlit upgrade renames these internals, this raises, or
    :func:`assert_on_page` (called by the page tests) sees the wrong page: never a silent pass.
    """
    from streamlit.util import calc_hash

    if not at._registered_pages:
        raise RuntimeError("run the AppTest once before opening a page")
    page_hash = calc_hash(url)  # st.Page's hash of its url_path (the default page's too)
    if page_hash not in at._registered_pages:
        urls = sorted(str(i.get("url_pathname")) for i in at._registered_pages.values())
        raise ValueError(f"no page {url!r} (or Streamlit hashes pages differently); got {urls}")
    at._page_hash = page_hash
    return at


def assert_on_page(at, url: str) -> None:
    """The last run rendered page ``url`` (so a broken :func:`open_page` cannot pass unnoticed)."""
    from streamlit.util import calc_hash

    assert at._finished_page_script_hash == calc_hash(url), f"AppTest is not on page {url!r}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_url(sample_run):
    """A real `streamlit run dashboard/app.py` on a free localhost port."""
    port = _free_port()
    env = dict(os.environ, ERRORSCOPE_RUNS_DIR=str(sample_run.path.parent))
    OUT.mkdir(exist_ok=True)
    log = open(OUT / "streamlit.log", "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            APP,
            "--server.port",
            str(port),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
        ],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

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
            pytest.fail(f"streamlit did not start; see {OUT / 'streamlit.log'}")
        time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser):
    # tall enough that a page's main content (the detail page's CAMs) is in the screenshots
    ctx = browser.new_context(viewport={"width": 1500, "height": 1400})
    pg = ctx.new_page()
    pg.set_default_timeout(90_000)
    yield pg
    ctx.close()
