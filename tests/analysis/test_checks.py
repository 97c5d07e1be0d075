"""The shared input checks: one message per mistake, and the modules really use them."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from analysis.checks import (
    check_bootstrap,
    check_confidence,
    check_embeddings,
    check_int,
    check_seed,
)
from tests.conftest import REPO


def test_confidence():
    assert check_confidence(0.9) == 0.9 and isinstance(check_confidence(np.float32(0.5)), float)
    with pytest.raises(TypeError, match="confidence must be a float in .0, 1., got str"):
        check_confidence("0.95")
    with pytest.raises(TypeError, match="got bool"):
        check_confidence(True)
    for bad in (0, 1, 95, -0.1):
        with pytest.raises(
            ValueError, match=rf"confidence must be in \(0, 1\) \(e.g. 0.95\), got {bad}"
        ):
            check_confidence(bad)


def test_int():
    assert check_int(np.int64(3), "k", minimum=1) == 3
    assert check_int(None, "k", minimum=1, allow_none=True) is None
    with pytest.raises(TypeError, match=r"^k must be an int in 1..3, got 2.0$"):
        check_int(2.0, "k", minimum=1, maximum=3)
    with pytest.raises(TypeError, match=r"^k must be an int >= 1 or None, got True$"):
        check_int(True, "k", minimum=1, allow_none=True)
    with pytest.raises(TypeError, match=r"^k must be an int, got None$"):
        check_int(None, "k")
    with pytest.raises(ValueError, match=r"^k must be in 1..3, got 4$"):
        check_int(4, "k", minimum=1, maximum=3)
    with pytest.raises(ValueError, match=r"^k must be <= 3, got 4$"):
        check_int(4, "k", maximum=3)


def test_seed_and_bootstrap():
    assert check_seed(None) is None and check_seed(7) == 7
    with pytest.raises(TypeError, match="seed must be an int >= 0, got None"):
        check_seed(None, allow_none=False)
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        check_seed(-1)
    assert check_bootstrap(np.int32(10), None) == (10, None)
    with pytest.raises(ValueError, match="n_boot must be >= 1, got 0"):
        check_bootstrap(0, 1)


def test_embeddings():
    x = np.ones((3, 2), np.float16)
    assert check_embeddings(x, dtype=None) is x  # no copy of a large array to check it
    out = check_embeddings(x)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    assert check_embeddings([]).shape == (0, 0)
    assert check_embeddings(np.arange(6).reshape(3, 2)).dtype == np.float32
    with pytest.raises(TypeError, match=r"^emb must be a real array \[N, D\], got dtype bool$"):
        check_embeddings(np.ones((2, 2), bool), "emb")
    with pytest.raises(TypeError, match="got dtype object"):
        check_embeddings(np.array([[None]]))
    with pytest.raises(ValueError, match=r"embeddings must be 2-D \[N, D\], got shape \(3,\)"):
        check_embeddings(np.ones(3))
    with pytest.raises(ValueError, match="at least one feature column"):
        check_embeddings(np.ones((3, 0)))
    bad = np.ones((40_000, 2), np.float32)  # more than one chunk: every chunk is counted
    bad[[5, 20_000, 39_999], 1] = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match=r"must be finite, got NaN or inf in 3 row\(s\)"):
        check_embeddings(bad, dtype=None)


@pytest.mark.parametrize(
    "module",
    [
        "stats/intervals.py",
        "stats/metrics.py",
        "stats/compare.py",
        "stats/drift.py",
        "data_issues/duplicates.py",
        "explain/embeddings.py",
    ],
)
def test_no_module_keeps_its_own_copy(module):
    """The checks that were written three times each live only in analysis/checks.py now."""
    tree = ast.parse((REPO / "analysis" / module).read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    copies = defined & {"_check_confidence", "_check_embeddings", "_check_int", "_check_seed"}
    assert not copies, f"{module} defines its own {sorted(copies)}; use analysis.checks"
