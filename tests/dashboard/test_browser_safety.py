"""The dashboard as a visitor meets it, in real Chromium, started the way users start it: from
another directory than the checkout. It listens on 127.0.0.1 only, the browser loads nothing
from anywhere else (no usage statistics, no icon font), hostile user text stays text, bad links
get a note and a failing page no traceback.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from analysis import schema
from analysis.present.formatting import short_name

from .conftest import APP, OUT, REPO
from .hostile import LINK, make_hostile_run
from .test_browser import _settled, _shot

pytestmark = pytest.mark.browser

# a CAM's title names its method, the model family's default (Grad-CAM++ for the sample's
# mobilenet, see analysis.explain.cams.DEFAULT_METHODS)
CAM_TITLE = re.compile(
    r"\b(gradcam|gradcam\+\+|xgradcam|hirescam|layercam|eigencam|scorecam|occlusion) for "
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port``, read from /proc/net/tcp{,6}."""
    import ipaddress

    found = set()
    for name, width in (("tcp", 8), ("tcp6", 32)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            addr, hexport = parts[1].split(":")
            if int(hexport, 16) != port or parts[3] != "0A":  # 0A: LISTEN
                continue
            raw = bytes.fromhex(addr)
            # the kernel prints each 32-bit word in host (little-endian) order
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            assert len(addr) == width
            found.add(str(ipaddress.ip_address(raw)))
    return found


def _start(cmd: list[str], *, cwd: Path, env: dict, log: Path, port: int):
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:  # poll the health endpoint: wait on state, not on a fixed sleep
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the dashboard did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _env(runs: Path, db: Path) -> dict:
    env = dict(os.environ, ERRORSCOPE_RUNS_DIR=str(runs), ERRORSCOPE_REVIEW_DB=str(db))
    env["PYTHONPATH"] = str(REPO)  # this checkout's code, whatever is installed
    env.pop("ERRORSCOPE_RAISE", None)  # as a person runs it
    for k in [k for k in env if k.startswith("STREAMLIT_")]:
        env.pop(k)
    return env


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`errorscope dashboard` started from an empty directory, on the hostile run and a broken
    copy of it (its metrics.json cut off)."""
    root = tmp_path_factory.mktemp("served")
    run, db, qid = make_hostile_run(root)
    broken = run.path.parent / "broken-run"
    shutil.copytree(run.path, broken)
    m = json.loads((broken / schema.MANIFEST).read_text())
    m.update(run_id="broken-run", created="2000-01-01T00:00:00")
    (broken / schema.MANIFEST).write_text(json.dumps(m))
    (broken / schema.METRICS).write_text('{"accuracy": {"val')
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    port = _free_port()
    log = OUT / "streamlit-safety.log"
    OUT.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "analysis.cli", "dashboard", "--port", str(port)]
    proc, url = _start(cmd, cwd=elsewhere, env=_env(run.path.parent, db), log=log, port=port)
    yield {"url": url, "port": port, "run": run, "queue": qid, "log": log}
    _stop(proc)


def _visit(page, url):
    page.goto(url)
    page.locator("[data-testid='stMain'] h1").first.wait_for()  # the page's title is drawn
    _settled(page)


def test_errorscope_dashboard_listens_on_localhost_only(served):
    assert listening_addresses(served["port"]) == {"127.0.0.1"}


def test_streamlit_run_from_elsewhere_listens_on_localhost_only(served, tmp_path):
    """`streamlit run /path/to/dashboard/app.py` from another directory reads no checkout
    config from the cwd: the settings next to app.py must hold."""
    port = _free_port()
    run = served["run"]
    cmd = [sys.executable, "-m", "streamlit", "run", APP, "--server.port", str(port)]
    env = _env(run.path.parent, tmp_path / "r.sqlite")
    proc, _ = _start(cmd, cwd=tmp_path, env=env, log=tmp_path / "log.txt", port=port)
    try:
        assert listening_addresses(port) == {"127.0.0.1"}
    finally:
        _stop(proc)


def test_the_browser_loads_nothing_from_the_network(served, browser):
    run = served["run"]
    sid = run.samples[schema.SAMPLE_ID].iloc[0]
    ctx = browser.new_context(viewport={"width": 1500, "height": 1400})
    requests: list[str] = []
    ctx.on("request", lambda r: requests.append(r.url))
    page = ctx.new_page()
    page.set_default_timeout(90_000)
    page.on("websocket", lambda ws: requests.append(ws.url))
    base, rid = served["url"], run.run_id
    try:
        for path in (
            "/",
            "/confusion",
            "/slices",
            "/embeddings",
            "/gallery",
            f"/detail?sample={sid}&",
            "/data_issues",
            "/robustness",
            "/compare",
            f"/review?queue={served['queue']}&",
            "/report",
        ):
            sep = "" if path.endswith("&") else "?"
            _visit(page, f"{base}{path}{sep}run={rid}")
            if path.startswith("/detail"):  # the CAMs (images) are drawn too
                page.get_by_text(CAM_TITLE).first.wait_for(timeout=180_000)
        icon = page.locator("link[rel*=icon]").first.get_attribute("href")
        assert icon and not icon.startswith("http") or icon.startswith(base), icon
    finally:
        ctx.close()
    hosts = {urlsplit(u).netloc for u in requests if urlsplit(u).scheme in ("http", "https", "ws")}
    assert hosts == {f"127.0.0.1:{served['port']}"}, sorted(hosts)
    assert len(requests) > 20


def test_user_text_stays_text_in_the_browser(served, page):
    run = served["run"]
    base, rid = served["url"], run.run_id
    sid = run.samples[schema.SAMPLE_ID].iloc[0]
    for name, path in (
        ("12_hostile_overview", f"/?run={rid}"),
        ("13_hostile_gallery", f"/gallery?run={rid}"),
        ("14_hostile_detail", f"/detail?sample={sid}&run={rid}"),
        ("15_hostile_review_list", f"/review?run={rid}"),
        ("16_hostile_review_queue", f"/review?queue={served['queue']}&pos=0&run={rid}"),
    ):
        _visit(page, base + path)
        if "detail" in name:
            page.get_by_text("Where the model looked").first.wait_for()
        _shot(page, name)
        links = page.eval_on_selector_all(
            "a[href*='phish.example']", "els => els.map(e => e.outerHTML)"
        )
        assert not links, (name, links)
        assert not page.query_selector("main b, main i"), name  # no <b>bold</b> from data
        shown = page.inner_text("body").replace("\u2060", "")  # word joiners are invisible
        # shown, literally (the gallery's captions shorten class names to 22 characters)
        want = short_name(LINK, 22) if "gallery" in name else LINK
        assert want in shown, name


@pytest.mark.parametrize(
    "path,note",
    [
        ("/gallery?page=abc", "page='abc' was ignored"),
        ("/gallery?slice=" + quote('{"bad'), "slice="),
        ("/confusion?norm=" + quote("<script>"), "norm='<script>' was ignored"),
        ("/review?queue={queue}&pos=abc", "pos='abc' was ignored"),
    ],
)
def test_malformed_links_fall_back_with_a_note(served, page, path, note):
    url = served["url"] + path.format(queue=served["queue"]) + f"&run={served['run'].run_id}"
    _visit(page, url)
    page.get_by_text("could not be used").first.wait_for()
    text = page.inner_text("body")
    assert note in text, text[:2000]
    assert "Traceback" not in text and 'File "' not in text


def test_a_broken_run_shows_a_message_and_no_traceback(served, page):
    _visit(page, f"{served['url']}/?run=broken-run")
    page.get_by_text("unexpected problem").first.wait_for()
    _shot(page, "17_broken_run")
    text = page.inner_text("body")
    assert "Traceback" not in text and "JSONDecodeError" not in text and "/tmp" not in text
    log = served["log"].read_text()
    assert "dashboard page failed" in log and "JSONDecodeError" in log  # the server has it
    assert re.search(r"Traceback", log)


def test_overview_opens_at_its_own_path(served, page):
    _visit(page, f"{served['url']}/overview?run={served['run'].run_id}")
    page.get_by_text("What to look at").first.wait_for()
    assert page.locator("[data-testid='stMain'] h1").first.inner_text().strip() == "Overview"
    assert "Page not found" not in page.inner_text("body")


# Streamlit cuts a label that does not fit (overflow hidden, often with an ellipsis):
# "Review th…", "hexagon → triangl"
_CUT = """() => Array.from(document.querySelectorAll(
    '[data-testid="stMain"] button *, [data-testid="stMain"] a *'))
  .filter(e => e.textContent.trim() && e.clientWidth > 0
          && e.scrollWidth > e.clientWidth + 1
          && (getComputedStyle(e).overflowX !== 'visible'
              || getComputedStyle(e).textOverflow === 'ellipsis'))
  .map(e => e.textContent.trim())"""


def test_no_button_or_link_label_is_cut(app_url, page, sample_run):
    """Every page of the sample at the test viewport (1500 px): no truncated label."""
    from analysis.store.review import ReviewStore, default_db_path

    s = sample_run.samples
    wrong = s[~s[schema.CORRECT]]
    db = ReviewStore(default_db_path(sample_run.path.parent))
    queue = db.create_queue(
        sample_run.run_id,
        "wrong ones",
        wrong[schema.SAMPLE_ID].head(3).tolist(),
        wrong[schema.CONTENT_HASH].head(3).tolist(),
        reviewer="Ana",
        query={},
    )
    rid = sample_run.run_id
    sid = wrong[schema.SAMPLE_ID].iloc[0]
    cut = {}
    for name, path in (
        ("overview", f"/?run={rid}"),
        ("confusion", f"/confusion?run={rid}"),
        ("slices", f"/slices?run={rid}"),
        ("embeddings", f"/embeddings?run={rid}"),
        ("gallery", f"/gallery?correct=wrong&run={rid}"),
        ("detail", f"/detail?sample={sid}&correct=wrong&run={rid}"),
        ("data_issues", f"/data_issues?run={rid}"),
        ("robustness", f"/robustness?run={rid}"),
        ("compare", f"/compare?run={rid}"),
        ("review", f"/review?queue={queue.id}&pos=1&run={rid}"),
        ("report", f"/report?run={rid}"),
    ):
        _visit(page, app_url + path)
        if name in ("detail", "review"):
            page.get_by_text(CAM_TITLE).first.wait_for(timeout=180_000)
        _shot(page, f"18_labels_{name}")
        found = page.evaluate(_CUT)
        if found:
            cut[name] = found
    assert not cut, cut
