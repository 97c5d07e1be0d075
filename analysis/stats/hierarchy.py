"""An optional class hierarchy: classes grouped into superclasses, any depth.

Given with ``errorscope analyze --class-hierarchy FILE``: each line maps a class (or a
superclass) to its parent, e.g. CIFAR-100's ``maple_tree -> trees -> flora``, or ImageNet's
WordNet ancestors. Levels are counted from the top: level 1 holds the roots (the coarsest
grouping), level 2 their children, and so on down to the classes. A hierarchy may be ragged: at
a level deeper than a class's ancestry the class stays in its deepest superclass (a class the
file does not mention stands for itself). Each level turns the labels
and predictions into group ids, so every class-level tool (confusion, per-class metrics with
intervals, slices) works per superclass too.

File formats (by extension): ``.json`` an object ``{"child": "parent", ...}``; anything else a
two-column CSV / TSV (``child,parent``; a header row ``class,parent`` or ``child,parent`` is
skipped; blank lines and lines starting with ``#`` are ignored).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import schema

__all__ = [
    "ClassHierarchy",
    "hierarchy_metrics",
    "level_column",
    "load_hierarchy",
    "parse_hierarchy",
]

MAX_FILE_BYTES = 64 << 20  # a WordNet-sized file is ~1 MB; refuse anything absurd
_HEADERS = {("class", "parent"), ("child", "parent")}

# Columns of hierarchy_metrics (defined once).
LEVEL = "level"  # 1 = the coarsest level
GROUP = "group"  # group id within the level, 0..G-1
NAME = "name"  # the superclass name (or the class name where the class stands for itself)
N_CLASSES = "n_classes"  # classes in the group
CLASS_ACCURACY = "class_accuracy"  # exact class right, among the group's images
CLASS_ACCURACY_LOW = "class_accuracy_low"
CLASS_ACCURACY_HIGH = "class_accuracy_high"


def level_column(level: int, *, predicted: bool = False) -> str:
    """samples.parquet column with the given (or predicted) label's group name at ``level``."""
    return f"{'pred_' if predicted else ''}{schema.SUPERCLASS_PREFIX}{int(level)}"


@dataclass(frozen=True, eq=False)
class ClassHierarchy:
    """Classes and their ancestors.

    Attributes
    ----------
    class_names : tuple of str
        The run's classes, in model output order.
    parent : dict of str -> str
        Every node's parent (classes and superclasses); roots have no entry.
    warnings : tuple of str
        Things worth saying about the file (classes it does not mention, ...).
    """

    class_names: tuple[str, ...]
    parent: dict[str, str]
    warnings: tuple[str, ...] = ()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ClassHierarchy):
            return NotImplemented
        return self.class_names == other.class_names and self.parent == other.parent

    __hash__ = None  # type: ignore[assignment]

    @cached_property
    def _paths(self) -> list[list[str]]:
        """Per class: its ancestors from the root down (excluding the class itself)."""
        out = []
        for c in self.class_names:
            chain, node = [], c
            while node in self.parent:
                node = self.parent[node]
                chain.append(node)
            out.append(chain[::-1])
        return out

    @property
    def depth(self) -> int:
        """Number of superclass levels (0 when no class has a parent)."""
        return max((len(p) for p in self._paths), default=0)

    @cached_property
    def _levels(self) -> list[tuple[np.ndarray, tuple[str, ...]]]:
        out = []
        for level in range(1, self.depth + 1):
            # deeper than a class's ancestry: its deepest superclass; no ancestry: itself
            names = [
                (p[min(level, len(p)) - 1] if p else c)
                for p, c in zip(self._paths, self.class_names, strict=True)
            ]
            uniq = tuple(dict.fromkeys(sorted(names, key=str)))
            pos = {n: i for i, n in enumerate(uniq)}
            out.append((np.array([pos[n] for n in names], dtype=np.int64), uniq))
        return out

    def groups(self, level: int) -> np.ndarray:
        """int64 [K]: each class's group id at ``level`` (1 = coarsest, ``depth`` = finest)."""
        return self._levels[self._check_level(level) - 1][0]

    def group_names(self, level: int) -> tuple[str, ...]:
        """Names of the groups at ``level``, indexed by group id (sorted by name)."""
        return self._levels[self._check_level(level) - 1][1]

    def members(self, level: int, group: int) -> np.ndarray:
        """Class ids in ``group`` at ``level``."""
        return np.flatnonzero(self.groups(level) == int(group)).astype(np.int64)

    def children(self, level: int, group: int) -> np.ndarray:
        """Group ids at ``level + 1`` inside ``group`` (at the finest level: class ids)."""
        inside = self.members(level, group)
        if level >= self.depth:
            return inside
        return np.unique(self.groups(level + 1)[inside]).astype(np.int64)

    def _check_level(self, level: int) -> int:
        if isinstance(level, bool) or not isinstance(level, int | np.integer):
            raise TypeError(f"level must be an int, got {type(level).__name__}")
        if not 1 <= level <= self.depth:
            raise ValueError(
                f"level must be in 1..{self.depth} (the hierarchy's depth), got {level}"
            )
        return int(level)

    def aggregate(self, cm: Any, level: int) -> np.ndarray:
        """The (K, K) confusion counts summed into (G, G) groups at ``level``."""
        g = self.groups(level)
        cm = np.asarray(cm, dtype=np.int64)
        out = np.zeros((len(self.group_names(level)),) * 2, dtype=np.int64)
        np.add.at(out, (g[:, None], g[None, :]), cm)
        return out

    def columns(self, labels: Any, preds: Any) -> dict[str, np.ndarray]:
        """samples columns: the given and the predicted label's group name at every level."""
        labels, preds = np.asarray(labels), np.asarray(preds)
        out = {}
        for level in range(1, self.depth + 1):
            names = np.asarray(self.group_names(level), dtype=object)
            g = self.groups(level)
            out[level_column(level)] = names[g[labels]]
            out[level_column(level, predicted=True)] = names[g[preds]]
        return out

    def to_dict(self) -> dict:
        return {
            "kind": "class_hierarchy",
            "version": 1,
            "class_names": list(self.class_names),
            "parent": dict(self.parent),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict) -> ClassHierarchy:
        if d.get("kind") != "class_hierarchy":
            raise ValueError(f"expected a class_hierarchy dict, got kind={d.get('kind')!r}")
        return cls(tuple(d["class_names"]), dict(d["parent"]), tuple(d.get("warnings", ())))


def _read_pairs(text: str, suffix: str, source: str) -> list[tuple[str, str]]:
    if suffix == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"class hierarchy {source}: not valid JSON ({e})") from None
        if not isinstance(obj, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in obj.items()
        ):
            raise ValueError(
                f"class hierarchy {source}: expected a JSON object mapping each class to its"
                ' parent, e.g. {"maple_tree": "trees"}'
            )
        return list(obj.items())
    delim = "\t" if suffix == ".tsv" or ("\t" in text and "," not in text) else ","
    pairs = []
    for lineno, row in enumerate(csv.reader(io.StringIO(text), delimiter=delim), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) != 2 or not all(cells):
            raise ValueError(
                f"class hierarchy {source}, line {lineno}: expected two columns"
                f" 'class{delim}parent', got {row!r}"
            )
        if not pairs and tuple(c.lower() for c in cells) in _HEADERS:
            continue
        pairs.append((cells[0], cells[1]))
    return pairs


def parse_hierarchy(
    pairs: list[tuple[str, str]], class_names: list[str], *, source: str = "hierarchy"
) -> ClassHierarchy:
    """Check ``(child, parent)`` pairs against the run's classes; raise on what cannot be right.

    Raises ``ValueError`` naming the offending entries for: a child given two different
    parents, a cycle, a class that is the parent of another node (classes must be leaves),
    a node that is its own parent, and a file that mentions none of the classes. Classes the
    file does not mention stand for themselves at every level (a warning says which); nodes
    that lead to no class are ignored.
    """
    names = [str(c) for c in class_names]
    classes = set(names)
    parent: dict[str, str] = {}
    for child, par in pairs:
        if child == par:
            raise ValueError(f"class hierarchy {source}: {child!r} is its own parent")
        if child in parent and parent[child] != par:
            raise ValueError(
                f"class hierarchy {source}: {child!r} has two parents, {parent[child]!r} and"
                f" {par!r}; each class or superclass needs exactly one"
            )
        parent[child] = par
    leaf_parents = sorted(classes & set(parent.values()))
    if leaf_parents:
        kids = [c for c, p in parent.items() if p == leaf_parents[0]]
        raise ValueError(
            f"class hierarchy {source}: class {leaf_parents[0]!r} is also the parent of"
            f" {kids[:3]}; classes must be the leaves (give superclasses other names)"
            + (f" ({len(leaf_parents)} such classes)" if len(leaf_parents) > 1 else "")
        )
    for c in names:  # walk up from every class: a cycle shows as a repeated node
        seen, node = [c], c
        while node in parent:
            node = parent[node]
            if node in seen:
                cycle = " -> ".join([*seen[seen.index(node) :], node])
                raise ValueError(f"class hierarchy {source}: cycle {cycle}")
            seen.append(node)
    missing = [c for c in names if c not in parent]
    if len(missing) == len(names):
        raise ValueError(
            f"class hierarchy {source} mentions none of the run's {len(names)} classes (e.g."
            f" {names[:3]}); its first entries are {[p[0] for p in pairs[:3]]}"
        )
    # keep only the nodes on some class's path
    used: dict[str, str] = {}
    for c in names:
        node = c
        while node in parent:
            used[node] = parent[node]
            node = parent[node]
    notes = []
    if missing:
        notes.append(
            f"class hierarchy {source}: {len(missing)} of {len(names)} classes have no parent"
            f" there and stand for themselves at every level (e.g. {missing[:5]})"
        )
    return ClassHierarchy(tuple(names), used, tuple(notes))


def load_hierarchy(path: str | Path, class_names: list[str]) -> ClassHierarchy:
    """Read and check a hierarchy file (see the module docstring for its formats)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"class hierarchy file {p} does not exist or is not a file")
    if p.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(
            f"class hierarchy file {p} is {p.stat().st_size:,} bytes; expected a text file"
            f" under {MAX_FILE_BYTES:,} bytes"
        )
    raw = p.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"class hierarchy file {p} is not UTF-8 text ({e})") from None
    return parse_hierarchy(_read_pairs(text, p.suffix.lower(), str(p)), class_names, source=p.name)


def file_fingerprint(path: str | Path) -> dict:
    """What the manifest records about the hierarchy file."""
    p = Path(path)
    return {
        "path": str(p.resolve()),
        "name": p.name,
        "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
    }


def hierarchy_metrics(
    y_true: Any,
    y_pred: Any,
    hierarchy: ClassHierarchy,
    *,
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Per-superclass metrics with intervals at every level of ``hierarchy``.

    At each level the labels and predictions become group ids and
    :func:`analysis.stats.metrics.per_class_metrics` runs on them: precision and recall of the
    superclass (Wilson), F1 (bootstrap). ``class_accuracy`` adds how often the exact class is
    right among the group's images (Wilson), so "the superclass is right but the fine class is
    not" reads off as ``recall - class_accuracy``.

    Returns
    -------
    DataFrame, one row per (level, group)
        ``level, group, name, n_classes`` followed by per_class_metrics' columns (its
        ``class`` column renamed ``group``) and ``class_accuracy`` with its interval.
    """
    from .intervals import wilson_interval
    from .metrics import per_class_metrics

    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    right = yt == yp
    frames = []
    for level in range(1, hierarchy.depth + 1):
        g = hierarchy.groups(level)
        names = hierarchy.group_names(level)
        n_groups = len(names)
        table = per_class_metrics(
            g[yt], g[yp], n_classes=n_groups, n_boot=n_boot, confidence=confidence, seed=seed
        ).rename(columns={"class": GROUP})
        hits = np.bincount(g[yt], weights=right, minlength=n_groups)
        low, high = wilson_interval(hits, table["support"].to_numpy(), confidence=confidence)
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = hits / table["support"].to_numpy()
        table.insert(0, LEVEL, level)
        table.insert(2, NAME, list(names))
        table.insert(3, N_CLASSES, np.bincount(g, minlength=n_groups).astype(np.int64))
        table[CLASS_ACCURACY] = acc
        table[CLASS_ACCURACY_LOW] = np.asarray(low, dtype=np.float64)
        table[CLASS_ACCURACY_HIGH] = np.asarray(high, dtype=np.float64)
        frames.append(table)
    if not frames:
        return pd.DataFrame(columns=[LEVEL, GROUP, NAME, N_CLASSES])
    return pd.concat(frames, ignore_index=True)
