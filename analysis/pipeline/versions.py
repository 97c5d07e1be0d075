"""Which parts of a run the code installed now would compute differently.

A run records the fingerprint (:func:`analysis.version.function_code`) of the code behind each
of its parts: ``versions.pass_code`` for the model pass, ``sections.<name>.code`` for every
derived section. Comparing them with the code installed now says what an upgrade must redo:

- the pass code changed (or the run predates these fingerprints): analyse again in full;
- some sections' code changed: recompute only those, from the pass outputs stored in the run
  (probabilities, embeddings, signatures, the samples table), plus the sections that read their
  columns (``sections.NEEDS``); the model pass is not run;
- nothing changed: the run is current. Presentation code (``present/``: figures, findings,
  formatting, the report and its templates; ``dashboard/``; the CLI) is never imported by the pass
  or a section (the layers forbid it), so changing it never makes a run stale.

What counts, computed from the import graph rather than declared (a forgotten version bump would
leave old numbers on screen silently; the graph cannot forget):

- the pass: :data:`PASS_FUNCTIONS` of ``pipeline/engine.py`` with the helpers they use, every
  module of ``loading/`` (datasets, images, models, inference, fingerprints), and their imports;
- a section: its function in ``pipeline/sections.py`` with the helpers it uses and
  ``SectionContext``, and the modules they import, transitively (``sections.metrics`` depends on
  ``stats/metrics.py``, ``stats/intervals.py``, ``checks.py`` and the schema names it uses).

The cost of computing over the graph is the other direction: a change to a module many sections
import (``checks.py``, ``stats/intervals.py``) recomputes all of them, which is right whenever the
change can alter a number. ``tests/analysis/test_versions.py`` checks both directions on the real
code: a figure or template edit leaves every fingerprint alone; an edit to one section's module
changes that section's only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from .. import schema
from .. import version as _version
from ..version import ROOT, CodeFingerprint, function_code, modules_code, read_source

__all__ = [
    "CACHES",
    "PASS_FUNCTIONS",
    "Staleness",
    "is_current",
    "list_runs_with_status",
    "pass_code",
    "section_code",
    "staleness",
]

ENGINE = "analysis.pipeline.engine"
SECTIONS_MODULE = "analysis.pipeline.sections"
#: The functions of ``engine.py`` that make the pass outputs (the rest of the module decides
#: whether to run them and writes the manifest).
PASS_FUNCTIONS = ("model_pass", "_preprocessing", "_class_names")


#: Caches a run fills on demand (folder -> the modules that compute what is in it): a refresh
#: keeps one only while its code is unchanged.
CACHES = {
    schema.CAMS_DIR: ("analysis.explain.cams",),
    schema.ROBUSTNESS_DIR: ("analysis.stats.robustness",),
}


def _read(path):
    return read_source(path)  # looked up at call time: tests edit the source in memory


def forget_current_code() -> None:
    """Forget the fingerprints of the installed code (computed once per process otherwise)."""
    for f in (_current_pass, _current_section, current_cache_codes, _remembered):
        f.cache_clear()


# Fingerprinting the installed code parses every module in the sections' import graph: about 1 s
# of the first page of a fresh dashboard process (the run selector says which runs are stale),
# and of every `errorscope` command that opens a run. The result depends only on the source
# files, so it is kept on disk, under a stamp of every analysis module's path, size and
# modification time: any edit, upgrade or checkout changes the stamp and the fingerprints are
# computed again.
_MEMO_FILE = "code_fingerprints.json"


def _memo_path() -> Path:
    root = os.environ.get("ERRORSCOPE_CACHE") or os.path.join("~", ".cache", "errorscope")
    return Path(root).expanduser() / _MEMO_FILE


def _source_stamp(root: Path = ROOT) -> str:
    h = hashlib.sha256(str(root).encode())
    for p in sorted(root.rglob("*.py")):
        st = p.stat()
        h.update(f"\0{p.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()


@cache
def _remembered() -> tuple[str, dict]:
    """(this installation's source stamp, the fingerprints stored for it: possibly empty)."""
    stamp = _source_stamp()
    try:
        stored = json.loads(_memo_path().read_text())
    except (OSError, ValueError):
        return stamp, {}
    if not isinstance(stored, dict) or stored.get("stamp") != stamp:
        return stamp, {}
    return stamp, dict(stored.get("fingerprints") or {})


def _memo(key: str, compute):
    """``compute()``, read from or added to the on-disk memo of the installed code."""
    if _version.read_source is not _READ_SOURCE or read_source is not _READ_SOURCE:
        return compute()  # a test reads edited source from memory: never mix it with the files
    stamp, known = _remembered()
    if key in known:
        return known[key]
    value = known[key] = compute()
    path = _memo_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"stamp": stamp, "fingerprints": known}))
        os.replace(tmp, path)  # two processes writing at once: the last complete file wins
    except OSError:
        pass  # a read-only home: computed again next time, nothing else changes
    return value


_READ_SOURCE = read_source


def _loading_modules(root=ROOT) -> tuple[str, ...]:
    return tuple(
        sorted(
            "analysis.loading." + p.stem
            for p in (root / "loading").glob("*.py")
            if p.stem != "__init__"
        )
    )


def pass_code(*, read=None, root=ROOT) -> CodeFingerprint:
    """Fingerprint of the model pass: :data:`PASS_FUNCTIONS`, ``loading/`` and their imports."""
    return function_code(
        ENGINE, PASS_FUNCTIONS, also=_loading_modules(root), read=read or _read, root=root
    )


def section_code(name: str, *, read=None, root=ROOT) -> CodeFingerprint:
    """Fingerprint of section ``name``: its function, the helpers and modules it uses."""
    from .sections import SECTIONS

    if name not in SECTIONS:
        raise ValueError(f"unknown section {name!r}; valid: {list(SECTIONS)}")
    fn = SECTIONS[name].__name__
    return function_code(SECTIONS_MODULE, (fn, "SectionContext"), read=read or _read, root=root)


def cache_codes(*, read=None, root=ROOT) -> dict[str, str]:
    """Fingerprint of the code behind each on-demand cache folder (:data:`CACHES`)."""
    return {
        name: modules_code(mods, read=read or _read, root=root).fingerprint
        for name, mods in CACHES.items()
    }


@cache
def current_cache_codes() -> dict[str, str]:
    return _memo("caches", cache_codes)


@cache
def _current_pass() -> str:
    return _memo("pass", lambda: pass_code().fingerprint)


@cache
def _current_section(name: str) -> str:
    return _memo(f"section:{name}", lambda: section_code(name).fingerprint)


@dataclass(frozen=True)
class Staleness:
    """What of a run the code installed now would compute differently.

    Attributes
    ----------
    pass_stale : bool
        The model pass changed, or the run predates code fingerprints: analyse again in full.
    sections : tuple of str
        Sections to recompute from the stored pass outputs, in registry order: those whose code
        changed, those the run lacks, and those that read a recomputed one's columns.
    caches : tuple of str
        On-demand cache folders (CAMs, robustness) whose code changed: dropped by a refresh,
        filled again when next asked for.
    """

    pass_stale: bool
    sections: tuple[str, ...]
    caches: tuple[str, ...] = ()

    @property
    def current(self) -> bool:
        return not self.pass_stale and not self.sections and not self.caches

    def describe(self) -> str:
        """What is out of date, for people."""
        if self.pass_stale:
            return "its model pass was made by other analysis code"
        if self.sections:
            return f"{', '.join(self.sections)} computed by other analysis code"
        if self.caches:
            return f"cached {', '.join(self.caches)} made by other analysis code"
        return "current"


def staleness(manifest: dict) -> Staleness:
    """Compare a run's manifest with the code installed now."""
    from .sections import NEEDS, OPTIONAL, SECTIONS

    versions = manifest.get("versions") or {}
    if versions.get("pass_code") != _current_pass():
        return Staleness(True, tuple(SECTIONS), tuple(CACHES))
    made = versions.get("caches") or {}
    caches = tuple(n for n, code in current_cache_codes().items() if made.get(n) != code)
    recorded = manifest.get("sections") or {}
    stale: list[str] = []
    for name in SECTIONS:
        if name in OPTIONAL and name not in recorded:
            continue  # not asked for when the run was made (a refresh has not its input either)
        code = (recorded.get(name) or {}).get("code")
        if code != _current_section(name) or any(n in stale for n in NEEDS.get(name, ())):
            stale.append(name)
    return Staleness(False, tuple(stale), caches)


def is_current(manifest: dict) -> bool:
    """True when the code installed now would compute nothing of the run differently."""
    return staleness(manifest).current


def list_runs_with_status(runs_dir) -> list[dict]:
    """:func:`analysis.store.runstore.list_runs`, each with ``current`` (bool) and ``stale`` (what
    an upgrade would redo, in words) in place of the manifest."""
    from ..store.runstore import list_runs

    out = []
    for r in list_runs(runs_dir):
        st = staleness(r.pop("manifest"))
        out.append({**r, "current": st.current, "stale": "" if st.current else st.describe()})
    return out
