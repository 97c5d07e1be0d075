"""Which code made a result: fingerprints of functions and of the modules they import.

A run is a cache of what the analysis code computed from its inputs. When that code changes (a
fixed detector, a new default), the part of a run it made is stale even though the inputs are the
same. :mod:`analysis.pipeline.versions` records, for the model pass and for every derived section,
the fingerprint this module computes, so an upgrade redoes only the parts whose code changed.

A fingerprint is 12 hex digits of SHA-256 over the source that can change a result, found from
the import graph (read with ``ast``, imports inside functions included, as
``tests/test_architecture.py`` reads it): the given functions' own source, the module-level
helpers they use (transitively), and every ``analysis`` module any of those import, transitively.
Computed, not declared: a version number is only as good as the discipline of bumping it, and a
forgotten bump leaves users reading numbers an old detector computed. The import graph cannot
forget; see :mod:`analysis.pipeline.versions` for what that costs.

``schema.py`` is read more narrowly: it names every column, so a new column name would otherwise
make every run stale. Of it, only the definitions that the code in the closure uses
(``schema.NAME`` or ``from ..schema import NAME``) count, with the definitions those refer to.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

__all__ = ["CodeFingerprint", "function_code", "module_closure", "module_file", "modules_code"]

ROOT = Path(__file__).resolve().parent  # the analysis package
#: Modules of named constants: a fingerprint includes only the definitions it uses.
NARROW = ("analysis.schema",)
Reader = Callable[[Path], str]


def read_source(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def module_file(module: str, root: Path = ROOT) -> Path | None:
    """``analysis.stats.slices`` -> ``<root>/stats/slices.py`` (a package: its ``__init__.py``);
    None for anything that is not a module of the analysis package."""
    parts = module.split(".")
    if parts[0] != "analysis":
        return None
    base = root.joinpath(*parts[1:])
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _imports(node: ast.AST, module: str, root: Path) -> set[str]:
    """``analysis`` modules imported anywhere inside ``node`` (part of module ``module``)."""
    path = module_file(module, root)
    parts = module.split(".")
    package = parts if path is not None and path.name == "__init__.py" else parts[:-1]
    found: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Import):
            names = [a.name for a in sub.names]
        elif isinstance(sub, ast.ImportFrom):
            if sub.level:
                base = ".".join(package[: len(package) - sub.level + 1])
                mod = f"{base}.{sub.module}" if sub.module else base
            else:
                mod = sub.module or ""
            # "from .slices import f": the module; "from .. import schema": the module named,
            # not the package it is taken from
            subs = [f"{mod}.{a.name}" for a in sub.names]
            names = subs if all(module_file(n, root) for n in subs) else [mod, *subs]
        else:
            continue
        found.update(n for n in names if module_file(n, root) is not None)
    return found


@lru_cache(maxsize=512)
def _parse(text: str) -> ast.Module:
    """Parsed source, kept: fingerprinting every section reads the same modules again."""
    return ast.parse(text)


@lru_cache(maxsize=512)
def _module_imports(module: str, text: str, root: Path) -> frozenset[str]:
    return frozenset(_imports(_parse(text), module, root))


def module_closure(
    modules: Iterable[str], *, read: Reader = read_source, root: Path = ROOT
) -> list[str]:
    """``modules`` and every ``analysis`` module they import, transitively, sorted."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        m = todo.pop()
        path = module_file(m, root)
        if m in seen or path is None:
            continue
        seen.add(m)
        todo += sorted(_module_imports(m, read(path), root) - seen)
    return sorted(seen)


def _names(node: ast.AST) -> set[str]:
    """Names ``node`` uses, leaving out annotations (they change no result)."""
    skip: set[int] = set()
    for sub in ast.walk(node):
        notes = []
        if isinstance(sub, ast.AnnAssign):
            notes.append(sub.annotation)
        elif isinstance(sub, ast.arg) and sub.annotation is not None:
            notes.append(sub.annotation)
        elif isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and sub.returns is not None:
            notes.append(sub.returns)
        for n in notes:
            skip.update(id(x) for x in ast.walk(n))
    return {sub.id for sub in ast.walk(node) if isinstance(sub, ast.Name) and id(sub) not in skip}


def _definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """Name -> defining statement, for a module's functions, classes and assignments."""
    out: dict[str, ast.stmt] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out.update((t.id, node) for t in targets if isinstance(t, ast.Name))
    return out


@dataclass(frozen=True)
class CodeFingerprint:
    """What a result depends on: ``fingerprint`` over the source of ``functions`` (with the
    helpers of their module they use) and of ``modules`` (their import closure)."""

    fingerprint: str
    functions: tuple[str, ...]
    modules: tuple[str, ...]


def function_code(
    module: str,
    names: Sequence[str],
    *,
    also: Sequence[str] = (),
    read: Reader = read_source,
    root: Path = ROOT,
) -> CodeFingerprint:
    """Fingerprint of the functions ``names`` of ``module`` and of everything they use.

    Parameters
    ----------
    module : str
        Dotted name, e.g. ``"analysis.pipeline.sections"``.
    names : sequence of str
        Top-level functions or classes of that module.
    also : sequence of str, keyword-only
        Whole modules that count too (with their imports), e.g. a package's every module.
    read : callable, keyword-only
        ``Path -> source text``; tests pass one that edits a file in memory.

    Returns
    -------
    CodeFingerprint
        12 hex digits of SHA-256 over: the source of ``names`` and of the module's top-level
        definitions they refer to (transitively), then every ``analysis`` module those import
        (imports inside the functions, and module-level imports of a name they use) and
        ``also``, transitively (of :data:`NARROW` modules only the definitions used).
    """
    path = module_file(module, root)
    if path is None:
        raise ValueError(f"{module!r} is not a module of the analysis package")
    source = read(path)
    tree = _parse(source)
    defs = _definitions(tree)
    missing = [n for n in names if n not in defs]
    if missing:
        raise ValueError(f"{module} has no top-level definition {missing}")
    by_name: dict[str, set[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            mods = _imports(node, module, root)
            for a in node.names:
                by_name.setdefault((a.asname or a.name).split(".")[0], set()).update(mods)
    used: set[str] = set()
    modules: set[str] = set(also)
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        node = defs[name]
        modules |= _imports(node, module, root)
        for ref in _names(node):
            if ref in defs and ref not in used:
                todo.append(ref)
            modules |= by_name.get(ref, set())
    modules.discard(module)  # its used definitions are counted one by one, not the whole file
    own = [(f"{module}:{n}", _segment(source, defs[n])) for n in sorted(used)]
    closure = [m for m in module_closure(sorted(modules), read=read, root=root) if m != module]
    return _fingerprint(own, closure, tuple(sorted(used)), read, root)


def modules_code(
    modules: Sequence[str], *, read: Reader = read_source, root: Path = ROOT
) -> CodeFingerprint:
    """Fingerprint of whole ``modules`` and their import closure (see :func:`function_code`)."""
    return _fingerprint([], module_closure(modules, read=read, root=root), (), read, root)


def _fingerprint(own, closure, functions, read: Reader, root: Path) -> CodeFingerprint:
    wide = [(m, read(module_file(m, root))) for m in closure if m not in NARROW]
    narrow = [
        _narrow_part(m, [text for _, text in (*own, *wide)], read, root)
        for m in closure
        if m in NARROW
    ]
    h = hashlib.sha256()
    for name, text in (*own, *wide, *narrow):
        h.update(f"{name}\0{text}\0".encode())
    return CodeFingerprint(h.hexdigest()[:12], functions, tuple(closure))


@lru_cache(maxsize=1024)
def _refs_to(alias: str, text: str) -> frozenset[str]:
    """Names ``text`` takes from module ``alias``: ``alias.NAME`` or ``from ..alias import NAME``."""
    found: set[str] = set()
    for node in ast.walk(_parse(text)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == alias
        ):
            found.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").endswith(alias):
            found.update(a.name for a in node.names)
    return frozenset(found)


@lru_cache(maxsize=64)
def _lines(text: str) -> tuple[str, ...]:
    return tuple(text.splitlines())


def _segment(text: str, node: ast.stmt) -> str:
    """The source lines of a top-level statement (decorators included)."""
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return "\n".join(_lines(text)[first - 1 : node.end_lineno])


def _narrow_part(module: str, users: Sequence[str], read: Reader, root: Path) -> tuple[str, str]:
    """The definitions of ``module`` that the source texts ``users`` refer to, transitively."""
    alias = module.rsplit(".", 1)[-1]
    wanted: set[str] = set()
    for text in users:
        wanted |= _refs_to(alias, text)
    path = module_file(module, root)
    source = read(path)
    defs = _definitions(_parse(source))
    used: set[str] = set()
    todo = sorted(wanted & set(defs))
    while todo:
        name = todo.pop()
        if name in used:
            continue
        used.add(name)
        refs = {n.id for n in ast.walk(defs[name]) if isinstance(n, ast.Name)}
        todo += sorted((refs & set(defs)) - used)
    seen_nodes: list[int] = []
    parts = []
    for name in sorted(used):
        if id(defs[name]) not in seen_nodes:  # a, b = ... defines two names in one statement
            seen_nodes.append(id(defs[name]))
            parts.append(_segment(source, defs[name]))
    return f"{module}:narrow", "\n".join(parts)
