"""The background prefetch of the next images' CAMs: one worker, newest first, no duplicates,
and the detail page and review queue hand it the next images of their selection."""

from __future__ import annotations

import threading

import numpy as np

from analysis import schema
from dashboard.prefetch import Prefetcher

from .conftest import APP, open_page


def test_jobs_run_newest_first_once_each():
    p = Prefetcher(max_pending=3)
    gate, ran = threading.Event(), []
    p.submit("block", gate.wait)  # holds the worker while the queue fills
    for k in "abcde":
        p.submit(k, lambda k=k: ran.append(k))
    p.submit("e", lambda: ran.append("e again"))  # pending already: replaced, not doubled
    gate.set()
    assert p.idle(30)
    assert ran == ["e again", "d", "c"]  # newest first; a and b dropped (max_pending=3)


def test_wait_takes_a_pending_job_off_and_waits_for_a_running_one():
    p = Prefetcher()
    started, release, ran = threading.Event(), threading.Event(), []

    def slow():
        started.set()
        release.wait()
        ran.append("slow")

    p.submit("slow", slow)
    assert started.wait(30)
    p.submit("later", lambda: ran.append("later"))  # queued behind the running one
    p.wait("later")  # pending: dropped, the caller computes it itself
    threading.Timer(0.05, release.set).start()
    p.wait("slow")  # running: returns once it is done
    assert ran == ["slow"]
    assert p.idle(30) and ran == ["slow"]


def test_a_failing_job_does_not_stop_the_worker():
    p = Prefetcher()
    ran = []
    p.submit("bad", lambda: 1 / 0)
    p.submit("good", lambda: ran.append(1))
    assert p.idle(30) and ran == [1]


def test_the_detail_page_prefetches_the_next_images(tmp_path, monkeypatch):
    """Open an image of a selection: the next two get their maps in the background."""
    from streamlit.testing.v1 import AppTest

    from analysis.explain.cam_views import _input_path
    from dashboard.prefetch import prefetcher

    from .hostile import make_hostile_run

    run, db, _ = make_hostile_run(tmp_path)
    cams = run.path / schema.CAMS_DIR
    for p in cams.glob("*"):  # nothing precomputed: all from the prefetch
        p.unlink()
    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(run.path.parent))
    monkeypatch.setenv("ERRORSCOPE_REVIEW_DB", str(db))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = run.run_id
    at.run()
    s = run.samples
    order = np.argsort(-s[schema.LOSS].to_numpy(), kind="stable")  # the gallery's default order
    ids = s[schema.SAMPLE_ID].to_numpy()[order]
    at.query_params["sample"] = ids[0]
    open_page(at, "detail").run()
    assert not at.exception, [e.value for e in at.exception]
    assert prefetcher().idle(120)
    for sid in ids[1:3]:
        assert _input_path(run.path, sid).is_file(), sid
        assert len(list(cams.glob(f"{sid}__gradcam__*.json"))) >= 1, sid
    assert not _input_path(run.path, ids[3]).is_file()  # only the next two
