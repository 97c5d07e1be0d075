"""run_blocks: every block runs once, and a failure is the one a plain loop would raise."""

from __future__ import annotations

import numpy as np
import pytest

from analysis import threads


@pytest.mark.parametrize("n_cores", [1, 2, 4])
def test_every_block_runs_once_and_the_first_failure_in_order_is_raised(monkeypatch, n_cores):
    monkeypatch.setattr(threads, "cores", lambda: n_cores)
    out = np.zeros(100, dtype=np.int64)

    def fill(s: int) -> None:
        out[s : s + 10] += np.arange(s, s + 10)

    threads.run_blocks(fill, range(0, 100, 10))
    np.testing.assert_array_equal(out, np.arange(100))  # each block once

    seen = []

    def fail(s: int) -> None:
        seen.append(s)
        if s in (30, 70):
            raise ValueError(f"bad block {s}")

    with pytest.raises(ValueError, match="bad block 30"):
        threads.run_blocks(fail, range(0, 100, 10))
    if n_cores > 1:
        assert sorted(seen) == list(range(0, 100, 10))  # the others still ran to their end


def test_cores_is_within_bounds():
    assert 1 <= threads.cores() <= threads.MAX_THREADS
