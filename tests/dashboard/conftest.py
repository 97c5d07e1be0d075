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
