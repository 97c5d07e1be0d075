"""Threads for numpy work that releases the GIL (sorts, reductions, fancy indexing): how many,
and a map over independent blocks.

The analysis runs one section at a time; a section whose work splits into independent blocks
(classes' columns, blocks of rows) uses every core the process may use, at most
:data:`MAX_THREADS`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

MAX_THREADS = 8


def cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS says), 1..MAX_THREADS."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(MAX_THREADS, n))


def run_blocks(fn: Callable[[int], None], starts: Iterable[int]) -> None:
    """``fn(start)`` for every start, on :func:`cores` threads (inline with one core).

    Each call must write only its own block of the outputs. Every call runs to its end; a
    failure is re-raised for the first failing start in order (the error a plain loop raises).
    """
    starts = list(starts)
    if cores() == 1 or len(starts) < 2:
        for s in starts:
            fn(s)
        return
    with ThreadPoolExecutor(max_workers=min(cores(), len(starts))) as pool:
        futures = [pool.submit(fn, s) for s in starts]
    for f in futures:
        f.result()
