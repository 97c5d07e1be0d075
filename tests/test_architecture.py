"""The package's shape: analysis/ never imports streamlit, and no lower layer imports a higher one.

Imports are read with ``ast`` (including those inside functions, which a runtime check would
miss), so a lazy import that breaks the layering fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

ANALYSIS = REPO / "analysis"

#: The layers, bottom first. A module may import its own subpackage and any lower rank; two
#: subpackages of the same rank (findings about the data, explanations) stay independent.
RANKS = {
    "schema": 0,
    "version": 0,
    "checks": 0,
    "threads": 0,
    "store": 1,
    "loading": 2,
    "stats": 3,
    "data_issues": 4,
    "explain": 4,
    "triage": 5,
    "pipeline": 6,
    "present": 6,
    "cli": 7,
    "__init__": 7,
}


def _modules() -> list[Path]:
    return sorted(ANALYSIS.rglob("*.py"))


def _top(path: Path, root: Path = REPO) -> str:
    """First component under analysis/: the layer a file belongs to ('stats', 'schema', ...)."""
    rel = path.relative_to(root / "analysis")
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imported(path: Path, root: Path = REPO) -> list[tuple[int, str]]:
    """(line, dotted module under analysis) of every import in ``path``, resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = list(path.relative_to(root).with_suffix("").parts[:-1])  # e.g. ["analysis", "stats"]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg[: len(pkg) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if node.module is None or mod == "analysis":  # "from .. import schema"
                out += [(node.lineno, f"{mod}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, mod))
    return out


def test_every_module_belongs_to_a_layer():
    unknown = sorted({_top(p) for p in _modules()} - set(RANKS))
    assert not unknown, f"add these to RANKS (and to the README's layout): {unknown}"


def _upward(path: Path, root: Path = REPO) -> list[str]:
    me = _top(path, root)
    bad = []
    for line, mod in _imported(path, root):
        parts = mod.split(".")
        if parts[0] != "analysis" or len(parts) < 2:
            continue
        other = parts[1]
        if other == me:
            continue
        if RANKS.get(other, 99) >= RANKS[me]:
            bad.append(f"line {line}: {mod} ({other}, rank {RANKS.get(other)})")
    return bad


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ANALYSIS)))
def test_no_lower_layer_imports_a_higher_one(path):
    bad = _upward(path)
    me = _top(path)
    assert not bad, f"{path.relative_to(REPO)} ({me}, rank {RANKS[me]}) imports upward: {bad}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ANALYSIS)))
def test_analysis_never_imports_streamlit(path):
    found = [(line, m) for line, m in _imported(path) if m.split(".")[0] == "streamlit"]
    assert not found, f"{path.relative_to(REPO)} imports streamlit: {found}"


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself: upward imports inside a function, relative or not, are caught."""
    fake = tmp_path / "analysis" / "stats" / "probe.py"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        "from .. import schema\nfrom .slices import x\n"
        "def f():\n    from ..pipeline.engine import analyze\n    import streamlit\n"
        "    from analysis.present import figures\n"
    )
    found = _imported(fake, tmp_path)
    assert (1, "analysis.schema") in found and (2, "analysis.stats.slices") in found
    assert (4, "analysis.pipeline.engine") in found and (5, "streamlit") in found
    assert [b.split(":")[0] for b in _upward(fake, tmp_path)] == ["line 4", "line 6"]
