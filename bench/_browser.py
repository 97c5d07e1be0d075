"""Shared by the browser benchmarks: start the real dashboard, drive Debian's Chromium, and know
when a page is ready (Streamlit finished its run and drew every element)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "dashboard" / "app.py")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: Streamlit has finished the script run (no running indicator), no element is stale (left from
#: the previous run) and every element type's code has arrived (no loading skeleton).
READY = (
    "() => document.querySelector('[data-testid=\"stAppViewContainer\"]')"
    " && !document.querySelector('[data-testid=\"stStatusWidget\"]')"
    " && document.querySelectorAll('[data-stale=\"true\"]').length === 0"
    " && document.querySelectorAll('[data-testid^=\"stSkeleton\"]').length === 0"
    ' && document.querySelector(\'[data-testid="stMain"] h1, [data-testid="stMain"] h3\')'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_dashboard(runs_dir: Path, *, log: Path, env: dict | None = None, cwd: Path | None = None):
    """``errorscope dashboard`` on a free port; returns (process, base URL) once it answers."""
    port = free_port()
    e = dict(os.environ, ERRORSCOPE_RUNS_DIR=str(runs_dir), PYTHONPATH=str(ROOT))
    e.update(env or {})
    cmd = [sys.executable, "-m", "analysis.cli", "dashboard", "--port", str(port)]
    proc = subprocess.Popen(
        cmd, cwd=cwd or runs_dir, env=e, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the dashboard did not start: {log.read_text()[-2000:]}")
        time.sleep(0.1)


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
