"""Background CAMs for the images a reviewer opens next.

While people look at one image, the next images of the same selection (the gallery's order, the
review queue) get their maps, faithfulness checks and model-input images computed and cached in
the run's ``cams/`` folder, so *Next* shows them at once instead of after a model pass.

One worker thread per dashboard process, shared by every session (``st.cache_resource``): jobs
are deduplicated by key and run one at a time, most recently asked first (the CAM code locks the
model anyway); a page about to compute a map that is in flight waits for it instead of computing
it a second time. ``ERRORSCOPE_NO_PREFETCH=1`` turns it off (the review benchmark's baseline).

Background work must not slow the page people are looking at: the worker runs at a lower CPU
priority (its torch threads inherit it), and starts a job only once no page has run for
``QUIET_S`` seconds (the page's last messages are on their way to the browser, which renders
them on the same CPUs). When nothing is asked, it works through a *fill*: the maps of the
images a review is likely to open next (set by the CAM panel, one image per job), so a meeting
that discusses an image finds the following ones ready; ``ERRORSCOPE_PREFETCH_FILL=0`` turns
the fill off (the test suite does, so tests see only what they ask for).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator

import streamlit as st
from streamlit.logger import get_logger

log = get_logger("errorscope.prefetch")

#: Seconds without a page run before background work starts (or resumes between jobs).
QUIET_S = 0.4
#: How much lower the worker's CPU priority is (Linux nice levels; 0 turns it off).
BACKGROUND_NICE = 5


class Prefetcher:
    """A single background worker with a small LIFO of pending jobs.

    Parameters
    ----------
    max_pending : int
        Older pending jobs are dropped beyond this (a reviewer who skips ahead does not need the
        maps of everything skipped).
    """

    def __init__(self, max_pending: int = 6) -> None:
        self.max_pending = max_pending
        self._cv = threading.Condition()
        self._pending: OrderedDict[Hashable, tuple[Callable[[], object], object]] = OrderedDict()
        self._running: dict[Hashable, threading.Event] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._fill: tuple[Hashable, Iterator[tuple[Hashable, Callable[[], object]]], object] | None
        self._fill = None  # (key, jobs, the Streamlit context they run in)
        self._last_page = 0.0  # time.monotonic() of the last page run (touch)
        self.done = 0  # jobs finished (for tests and the benchmark)
        # A daemon thread killed inside torch at interpreter exit aborts the process
        # ("terminate called without an active exception", exit code 134): at exit, drop what
        # is pending and let the running job finish.
        atexit.register(self.stop)

    def stop(self, timeout: float = 120.0) -> None:
        """Take no more jobs, drop the pending ones and the fill, wait for the running one."""
        with self._cv:
            self._stopping = True
            self._pending.clear()
            self._fill = None
            self._cv.notify_all()
            self._cv.wait_for(lambda: not self._running, timeout)

    def touch(self) -> None:
        """A page is running: background work waits until it has been quiet a while."""
        self._last_page = time.monotonic()

    def fill(self, key: Hashable, jobs: Iterator[tuple[Hashable, Callable[[], object]]]) -> None:
        """Work through ``jobs`` ((key, fn) pairs) whenever nothing else is asked; a fill with
        another ``key`` replaces this one, the same ``key`` again changes nothing."""
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        with self._cv:
            if self._stopping or (self._fill is not None and self._fill[0] == key):
                return
            self._fill = (key, jobs, get_script_run_ctx(suppress_warning=True))
            self._start()
            self._cv.notify()

    def _start(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._work, name="errorscope-prefetch", daemon=True
            )
            self._thread.start()

    def submit(self, key: Hashable, fn: Callable[[], object]) -> None:
        """Run ``fn()`` in the background unless ``key`` is pending or running already."""
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        with self._cv:
            if key in self._running or self._stopping:
                return
            self._pending.pop(key, None)
            self._pending[key] = (fn, get_script_run_ctx(suppress_warning=True))
            while len(self._pending) > self.max_pending:
                self._pending.popitem(last=False)
            self._start()
            self._cv.notify()

    def wait(self, key: Hashable, timeout: float = 60.0) -> None:
        """If ``key`` is being computed, wait until it is done (then read it from the cache);
        a pending job that has not started yet is taken off the queue: the caller computes it."""
        with self._cv:
            self._pending.pop(key, None)
            event = self._running.get(key)
        if event is not None:
            event.wait(timeout)

    def idle(self, timeout: float = 60.0) -> bool:
        """Wait until nothing is pending, running or left to fill (tests, the benchmark);
        False on timeout."""
        with self._cv:
            return self._cv.wait_for(
                lambda: not self._pending and not self._running and self._fill is None, timeout
            )

    def _next(self):
        """(key, fn, context) of the next job (asked ones first, newest first, then the fill),
        or None when stopping. Called with the lock held; waits for work and for quiet."""
        while True:
            if self._stopping:
                return None
            if not self._pending and self._fill is None:
                self._cv.wait()
                continue
            quiet = time.monotonic() - self._last_page
            if quiet < QUIET_S:  # a page is being drawn: let it have the CPUs
                self._cv.wait(QUIET_S - quiet)
                continue
            if self._pending:
                key, (fn, ctx) = self._pending.popitem(last=True)  # the newest first
                return key, fn, ctx
            fill_key, jobs, ctx = self._fill
            for key, fn in jobs:
                if key not in self._running:
                    return key, fn, ctx
            if self._fill is not None and self._fill[0] == fill_key:
                self._fill = None  # done with this fill
                self._cv.notify_all()

    def _work(self) -> None:
        from streamlit.runtime.scriptrunner import add_script_run_ctx

        _lower_priority()
        while True:
            with self._cv:
                job = self._next()
                if job is None:
                    return
                key, fn, ctx = job
                event = self._running[key] = threading.Event()
            try:
                if ctx is not None:  # cached loaders (the model) see a Streamlit context
                    add_script_run_ctx(threading.current_thread(), ctx)
                fn()
            except Exception:  # a prefetch never breaks anything: the page computes it
                log.exception("prefetch %s failed", key)
            finally:
                with self._cv:
                    self._running.pop(key, None)
                    self.done += 1
                    self._cv.notify_all()
                event.set()


def _lower_priority() -> None:
    """Lower the calling thread's CPU priority by BACKGROUND_NICE (Linux: a thread is a task
    with its own nice value; the threads torch starts from it inherit it). Best effort."""
    if not BACKGROUND_NICE or not hasattr(os, "setpriority"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE)
    except OSError:
        pass


@st.cache_resource(show_spinner=False)
def prefetcher() -> Prefetcher:
    """The process's prefetcher (shared by every session)."""
    return Prefetcher()


def enabled() -> bool:
    return os.environ.get("ERRORSCOPE_NO_PREFETCH") != "1"


def fill_enabled() -> bool:
    return enabled() and os.environ.get("ERRORSCOPE_PREFETCH_FILL", "1") != "0"
