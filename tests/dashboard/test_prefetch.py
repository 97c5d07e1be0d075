"""The background prefetch of the next images' CAMs: one worker, newest first, no duplicates,
and the detail page and review queue hand it the next images of their selection."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from analysis import schema
from dashboard.prefetch import Prefetcher

from .conftest import APP, open_page


def test_jobs_run_newest_first_once_each():
    p = Prefetcher(max_pending=3)
    started, gate, ran = threading.Event(), threading.Event(), []

    def block():
        started.set()
        gate.wait()

    # hold the worker while the queue fills; it starts only after its quiet time, so wait for
    # it to be running (else "block" is itself one of the pending jobs the queue drops)
    p.submit("block", block)
    assert started.wait(30)
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


def test_asked_jobs_come_before_the_fill_which_runs_when_nothing_is_asked():
    p = Prefetcher()
    gate, ran = threading.Event(), []
    p.submit("block", gate.wait)
    p.fill("f", iter([("f1", lambda: ran.append("f1")), ("f2", lambda: ran.append("f2"))]))
    p.fill("f", iter([("f1", lambda: ran.append("twice"))]))  # the same fill: unchanged
    p.submit("asked", lambda: ran.append("asked"))
    gate.set()
    assert p.idle(30)
    assert ran == ["asked", "f1", "f2"]


def test_background_work_waits_while_a_page_is_drawn(monkeypatch):
    """No job starts until no page has run for QUIET_S (a frozen clock: never)."""
    from dashboard import prefetch

    now = [1000.0]
    monkeypatch.setattr(prefetch.time, "monotonic", lambda: now[0])
    p = Prefetcher()
    p.touch()
    ran = threading.Event()
    p.submit("job", ran.set)
    assert not p.idle(0.3) and not ran.is_set()  # the page is (still) being drawn
    now[0] += prefetch.QUIET_S + 1
    assert p.idle(30) and ran.is_set()


@pytest.mark.skipif(not hasattr(os, "setpriority"), reason="thread priorities are Linux's")
def test_the_worker_runs_at_a_lower_cpu_priority():
    from dashboard import prefetch

    p = Prefetcher()
    seen = []
    p.submit(
        "nice", lambda: seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
    )
    assert p.idle(30)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    assert seen == [min(mine + prefetch.BACKGROUND_NICE, 19)]


def test_an_idle_dashboard_fills_in_the_maps_a_review_opens_first(tmp_path, monkeypatch):
    """Opening a run starts the fill: the images of precompute_order get their maps, checks
    and model input with the default method and layer, one image per job, without a click."""
    from streamlit.testing.v1 import AppTest

    from analysis.explain.cam_views import precompute_order, stored_layers
    from analysis.loading.models import Preprocessing
    from dashboard.prefetch import prefetcher
    from dashboard.views.cam_panel import FILL_MAX

    from .hostile import make_hostile_run

    run, db, _ = make_hostile_run(tmp_path)
    cams = run.path / schema.CAMS_DIR
    prep = Preprocessing.from_dict(run.manifest["preprocessing"])
    layer = stored_layers(run.path, prep)[1]
    s = run.samples
    order = precompute_order(s)[:FILL_MAX]
    ids = s[schema.SAMPLE_ID].to_numpy()
    for f in cams.iterdir():  # what the analysis precomputed, but the layer list it stored
        if f.name != "layers.json":
            f.unlink()
    assert not any(_cached(run, r, layer) for r in order)
    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(run.path.parent))
    monkeypatch.setenv("ERRORSCOPE_REVIEW_DB", str(db))
    monkeypatch.setenv("ERRORSCOPE_PREFETCH_FILL", "1")
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = run.run_id
    at.run()  # the Overview: no CAM on it
    assert not at.exception, [e.value for e in at.exception]
    assert prefetcher().idle(300)
    for r in order:
        assert _cached(run, r, layer), ids[r]
    assert len(list(cams.glob("*__input.png"))) == len(order)  # nothing beyond the fill


def _cached(run, row, layer) -> bool:
    from analysis.explain.cam_views import is_cached

    s = run.samples.iloc[int(row)]
    classes = [int(s[schema.PRED]), int(s[schema.LABEL])]
    return is_cached(run.path, s[schema.SAMPLE_ID], method="gradcam", layer=layer, classes=classes)
