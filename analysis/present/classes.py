"""Class-level views that stay readable from 2 to 10,000 classes.

The Confusion page, the Overview and the report ask the same questions of a run's confusion
matrix and per-class table: which part of the matrix to draw, which rows of the per-class table
to show, and what a click on a cell opens. The answers are computed here from the stored
metrics (no image is read), so every renderer shows the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import schema
from ..stats import confusion as cf
from ..stats.hierarchy import ClassHierarchy, level_column
from ..store.runstore import Run
from .query import ImageQuery

#: Up to this many rows / columns a confusion matrix is drawn whole with a number in every cell;
#: beyond it cells are too small to read or click, and a sub-matrix is drawn instead.
MATRIX_MAX = 30
#: Default and largest size of the "most confused classes" sub-matrix.
SUBMATRIX_DEFAULT = 20
SUBMATRIX_MAX = 40
#: From this many classes on, top-5 accuracy is shown beside top-1 (the number people compare
#: at hundreds of classes); below it, top-2.
MANY_CLASSES = 20

#: Per-class table sort keys: column -> words. Worst first means low values first.
PER_CLASS_SORTS = {
    "recall": "recall",
    "f1": "F1",
    "precision": "precision",
    "support": "images",
}


@dataclass(frozen=True)
class MatrixView:
    """What a confusion figure shows.

    Attributes
    ----------
    cm : int [k, k]
        The counts drawn (rows = given, columns = predicted).
    ids : int [k]
        Class ids (``level`` None) or group ids at ``level`` of the rows / columns.
    names : list of str
        Their names.
    level : int or None
        Hierarchy level of the groups, or None for classes.
    focus : int or None
        Position of the searched class in ``ids``.
    note : str
        One sentence saying what part of the whole matrix this is.
    """

    cm: np.ndarray
    ids: np.ndarray
    names: list[str]
    level: int | None = None
    focus: int | None = None
    note: str = ""

    def cell_query(self, true_id: int, pred_id: int) -> ImageQuery:
        """The images of the cell (given ``true_id``, predicted ``pred_id``) of this view."""
        if self.level is None:
            return ImageQuery(true=(int(true_id),), pred=(int(pred_id),))
        pos = {int(g): i for i, g in enumerate(self.ids)}
        given, pred = self.names[pos[int(true_id)]], self.names[pos[int(pred_id)]]
        return ImageQuery(
            where=(
                (level_column(self.level), given),
                (level_column(self.level, predicted=True), pred),
            )
        )


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.0%}" if whole else "—"


def class_matrix(
    cm: np.ndarray,
    class_names: list[str],
    *,
    n: int = SUBMATRIX_DEFAULT,
    focus: int | None = None,
    pairs: pd.DataFrame | None = None,
) -> MatrixView:
    """The whole matrix when it is small; else the ``n`` most confused classes, or, with
    ``focus``, that class and the ``n - 1`` classes it is most confused with (its row and
    column then hold every error it takes part in, largest first).

    ``pairs``: the matrix's :func:`~analysis.stats.confusion.confusion_pairs` (every pair),
    when already made; then no step scans the whole matrix (at 10,000 classes each scan of its
    100 million cells cost ~0.1 s of every change of view), and ``cm`` is trusted as checked.
    """
    cm = np.asarray(cm)
    k = cm.shape[0]
    if pairs is not None:
        errors = int(pairs[cf.COUNT].sum())
    else:
        cm = cm.astype(np.int64, copy=False)
        errors = int(cm.sum() - np.trace(cm))
    if focus is None and k <= MATRIX_MAX:
        return MatrixView(cm, np.arange(k), list(class_names), note="")
    n = int(min(max(2, n), SUBMATRIX_MAX, k))

    def sub(ids: np.ndarray) -> np.ndarray:
        return cm[np.ix_(ids, ids)].astype(np.int64) if pairs is not None else cf.submatrix(cm, ids)

    if focus is not None:
        ids = cf.class_partners(cm, int(focus), n, checked=pairs is not None)
        own = int(cm[focus].sum() + cm[:, focus].sum() - 2 * cm[focus, focus])
        shown = int(cm[focus, ids].sum() + cm[ids, focus].sum() - 2 * cm[focus, focus])
        note = (
            f"{class_names[focus]!s} and the {ids.size - 1} classes it is most confused with"
            f" (either way): {shown:,} of the {own:,} errors it takes part in"
            f" ({_share(shown, own)})."
        )
        return MatrixView(sub(ids), ids, [class_names[i] for i in ids], focus=0, note=note)
    ids = cf.most_confused_in(pairs, n) if pairs is not None else cf.most_confused_classes(cm, n)
    if ids.size < 2:
        ids = np.arange(min(k, n))
    part = sub(ids)
    inside = int(part.sum() - np.trace(part))
    note = (
        f"{ids.size} of {k:,} classes, taken from the largest confusion pairs down (partners"
        f" side by side): {inside:,} of all {errors:,} errors ({_share(inside, errors)}) are"
        " between them."
    )
    return MatrixView(part, ids, [class_names[i] for i in ids], note=note)


def hierarchy_levels(h: ClassHierarchy) -> list[int]:
    """Levels worth a matrix: those that group at least two classes together."""
    return [lv for lv in range(1, h.depth + 1) if len(h.group_names(lv)) < len(h.class_names)]


def level_matrix(
    cm: np.ndarray, h: ClassHierarchy, level: int, *, n: int = SUBMATRIX_DEFAULT
) -> MatrixView:
    """The matrix aggregated to the superclasses of ``level`` (most confused ones if many)."""
    agg = h.aggregate(cm, level)
    names = list(h.group_names(level))
    g = agg.shape[0]
    if g <= MATRIX_MAX:
        return MatrixView(
            agg, np.arange(g), names, level=level, note=f"{g} superclasses at level {level}."
        )
    ids = cf.most_confused_classes(agg, min(n, SUBMATRIX_MAX))
    if ids.size < 2:
        ids = np.arange(min(g, n))
    note = f"The {ids.size} of {g:,} superclasses at level {level} with the most errors."
    return MatrixView(cf.submatrix(agg, ids), ids, [names[i] for i in ids], level=level, note=note)


def drill_down(
    cm: np.ndarray, h: ClassHierarchy, level: int, group: int, *, n: int = SUBMATRIX_DEFAULT
) -> MatrixView:
    """Inside superclass ``group`` of ``level``: the matrix of its children, one level down
    (skipping levels where it has a single child), down to its classes; a child's errors to
    classes outside the group are not in this matrix (the note says how many there are)."""
    name = h.group_names(level)[group]
    members = h.members(level, group)
    lv = level
    while lv < h.depth and np.unique(h.groups(lv + 1)[members]).size == 1:
        lv += 1
    inside_all = int(cm[np.ix_(members, members)].sum())
    made = int(cm[members].sum())
    out_note = (
        f" {made - inside_all:,} of its {made:,} images are predicted outside {name}"
        f" ({_share(made - inside_all, made)})."
    )
    if lv >= h.depth:  # its classes
        sub = cf.submatrix(cm, members)
        if members.size > MATRIX_MAX:
            keep = cf.most_confused_classes(sub, min(n, SUBMATRIX_MAX))
            members, sub = members[keep], cf.submatrix(sub, keep)
        note = f"The {members.size} classes of {name}." + out_note
        return MatrixView(sub, members, [h.class_names[i] for i in members], note=note)
    child = lv + 1
    agg = h.aggregate(cm, child)
    ids = np.unique(h.groups(child)[members])
    names = [h.group_names(child)[i] for i in ids]
    note = f"{name} split into its {ids.size} superclasses at level {child}." + out_note
    return MatrixView(cf.submatrix(agg, ids), ids, names, level=child, note=note)


def pair_table(
    cm: np.ndarray,
    class_names: list[str],
    *,
    classes=None,
    k: int = 200,
    pairs: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The top confusion pairs for display: names, count, rate with its interval, shares.

    ``pairs``: the matrix's every pair (:func:`~analysis.stats.confusion.confusion_pairs`),
    when already made: filtered instead of scanning the matrix (the order and the numbers are
    the same: the filter keeps the pairs' order)."""
    if pairs is None:
        pairs = cf.confusion_pairs(cm, k=k, classes=classes)
    else:
        if classes is not None:
            wanted = np.asarray(classes)
            pairs = pairs[
                np.isin(pairs[cf.TRUE].to_numpy(), wanted)
                | np.isin(pairs[cf.PRED].to_numpy(), wanted)
            ]
        pairs = pairs.head(k).reset_index(drop=True)
    names = np.asarray([str(c) for c in class_names], dtype=object)
    return pairs.assign(
        given=names[pairs[cf.TRUE].to_numpy()] if len(pairs) else [],
        predicted=names[pairs[cf.PRED].to_numpy()] if len(pairs) else [],
    )


def find_classes(class_names: list[str], text: str) -> np.ndarray:
    """Ids of the classes whose name contains ``text`` (case-insensitive; all for "")."""
    needle = text.strip().lower()
    if not needle:
        return np.arange(len(class_names), dtype=np.int64)
    return np.array(
        [i for i, c in enumerate(class_names) if needle in str(c).lower()], dtype=np.int64
    )


def per_class_rows(
    per_class: pd.DataFrame,
    class_names: list[str],
    *,
    sort: str = "recall",
    worst_first: bool = True,
    search: str = "",
) -> pd.DataFrame:
    """The per-class table's rows to show, in order: filtered by ``search`` (a name
    substring), sorted by ``sort`` worst (lowest) first or best first. Undefined values
    (a class never predicted has no precision) sort last either way."""
    if sort not in PER_CLASS_SORTS:
        raise ValueError(f"unknown sort {sort!r}; valid: {sorted(PER_CLASS_SORTS)}")
    keep = find_classes(class_names, search)
    rows = per_class[per_class["class"].isin(keep)]
    return rows.sort_values(
        [sort, "support", "class"],
        ascending=[worst_first, False, True],
        na_position="last",
        kind="stable",
    )


def load_hierarchy(run: Run) -> ClassHierarchy | None:
    """The run's checked class hierarchy, or None when it was analysed without one."""
    d = run.json(schema.HIERARCHY)
    return None if d is None else ClassHierarchy.from_dict(d)


def largest_noise_entries(noise, *, k: int = 50) -> pd.DataFrame:
    """The ``k`` largest off-diagonal entries of an estimated noise matrix (a ``(C, C)`` array,
    or the table :func:`noise_entries` made of it), largest first: at hundreds of classes the
    matrix is unreadable as a picture; these rows are what it says."""
    from ..data_issues.label_checks import noise_entries

    table = noise if isinstance(noise, pd.DataFrame) else noise_entries(noise)
    return (
        table.sort_values(["rate", "given", "true"], ascending=[False, True, True])
        .head(k)
        .reset_index(drop=True)
    )
