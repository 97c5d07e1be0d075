"""``kill -9`` of ``errorscope analyze`` must take its DataLoader workers with it (issue 11 §5).

A real CLI process analyses a set big enough that its workers have batches waiting for the busy
main process; the main process is killed with SIGKILL and every worker must be gone within a
deadline. Process state is polled (``/proc``), nothing sleeps for a fixed time and asserts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, make_image_folder, save_tiny_resnet

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="reads process state from /proc (Linux)"
)


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, parent pid) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            st = _stat(int(d.name))
            if st is not None and st[1] == pid and st[0] != "Z":
                out.append(int(d.name))
    return out


def _alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"  # a zombie has exited; only its entry is left


def _wait_for(predicate, deadline_s: float, what: str, poll_s: float = 0.1):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out after {deadline_s:.0f} s waiting for {what}")


@pytest.mark.timeout(300)
def test_workers_exit_when_the_analysis_is_killed(tmp_path):
    data = make_image_folder(tmp_path / "data", n_per_class=110, size=64)
    model = save_tiny_resnet(tmp_path / "m.pt")
    runs = tmp_path / "runs"
    log = open(tmp_path / "log.txt", "w")  # noqa: SIM115 - closed below
    cmd = [sys.executable, "-m", "analysis.cli", "analyze", "--data", str(data)]
    cmd += ["--model", str(model), "--arch", "resnet18", "--resize", "224", "--no-crop"]
    cmd += ["--workers", "2", "--batch-size", "64", "--no-umap", "--out", str(runs)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        workers = _wait_for(
            lambda: (w := _children(proc.pid)) and len(w) >= 2 and w,
            120,
            "two DataLoader workers",
        )

        def thumbs() -> int:  # workers write one per image: they are ahead of the model
            return sum(1 for _ in runs.glob(".tmp-*/thumbs/*.jpg"))

        _wait_for(lambda: thumbs() >= 192, 120, "three batches decoded by the workers")
        assert proc.poll() is None, "the analysis finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        _wait_for(
            lambda: not any(_alive(w) for w in workers),
            30,
            f"workers {workers} to exit after their parent was killed",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:  # never leave a stray process behind, even when the test fails
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        log.close()
