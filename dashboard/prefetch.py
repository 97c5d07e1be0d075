"""Background CAMs for the images a reviewer opens next.

While people look at one image, the next images of the same selection (the gallery's order, the
review queue) get their maps, faithfulness checks and model-input images computed and cached in
the run's ``cams/`` folder, so *Next* shows them at once instead of after a model pass.

One worker thread per dashboard process, shared by every session (``st.cache_resource``): jobs
are deduplicated by key and run one at a time, most recently asked first (the CAM code locks the
model anyway); a page about to compute a map that is in flight waits for it instead of computing
it a second time. ``ERRORSCOPE_NO_PREFETCH=1`` turns it off (the review benchmark's baseline).
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import streamlit as st
from streamlit.logger import get_logger

log = get_logger("errorscope.prefetch")


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
        self.done = 0  # jobs finished (for tests and the benchmark)
        # A daemon thread killed inside torch at interpreter exit aborts the process
        # ("terminate called without an active exception", exit code 134): at exit, drop what
        # is pending and let the running job finish.
        atexit.register(self.stop)

    def stop(self, timeout: float = 120.0) -> None:
        """Take no more jobs, drop the pending ones and wait for the running one."""
        with self._cv:
            self._stopping = True
            self._pending.clear()
            self._cv.notify_all()
            self._cv.wait_for(lambda: not self._running, timeout)

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
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._work, name="errorscope-prefetch", daemon=True
                )
                self._thread.start()
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
        """Wait until nothing is pending or running (tests, the benchmark); False on timeout."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._pending and not self._running, timeout)

    def _work(self) -> None:
        from streamlit.runtime.scriptrunner import add_script_run_ctx

        while True:
            with self._cv:
                while not self._pending and not self._stopping:
                    self._cv.wait()
                if self._stopping:
                    return
                key, (fn, ctx) = self._pending.popitem(last=True)  # the newest first
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


@st.cache_resource(show_spinner=False)
def prefetcher() -> Prefetcher:
    """The process's prefetcher (shared by every session)."""
    return Prefetcher()


def enabled() -> bool:
    return os.environ.get("ERRORSCOPE_NO_PREFETCH") != "1"
