"""Loading a labelled image set: an ImageFolder tree or a CSV/Parquet manifest.

The result is a table with one row per image (relative and absolute path, integer label, metadata
columns) plus the ordered class names. Nothing here decodes images: that happens once, in the
analysis pass, where a bad file is skipped with its reason instead of failing the load.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema
from .images import IMAGE_EXTENSIONS, file_fingerprint

#: Column names a manifest may not use for metadata (they are computed); such columns are renamed.
RESERVED = set(schema.CORE_COLUMNS + schema.PROPERTY_COLUMNS) | {
    schema.UMAP_X,
    schema.UMAP_Y,
    schema.CLUSTER,
    schema.LATENCY_MS,
    schema.LABEL_ISSUE_SCORE,
    schema.IS_LABEL_ISSUE,
    schema.SUGGESTED_LABEL,
    schema.DUPLICATE_OF,
    schema.LEAK_OF,
    schema.LEAK_SIMILARITY,
}


@dataclass(frozen=True)
class ImageSet:
    """A labelled image set, ready for the analysis pass.

    Attributes
    ----------
    table : pd.DataFrame
        One row per image with ``sample_id``, ``relpath``, ``path`` (absolute), ``label`` (int,
        0..C-1), ``label_name`` and the metadata columns, in a stable order (sorted by relpath).
    class_names : list[str]
        Index i is the name of label i (and of model output i).
    root : str
        Absolute folder the relative paths are relative to.
    source : str
        What the user pointed at (folder or manifest file).
    kind : str
        ``"imagefolder"`` or ``"manifest"``.
    metadata_columns : list[str]
    warnings : list[str]
        Things the user should know (renamed columns, classes taken from where).
    """

    table: pd.DataFrame
    class_names: list[str]
    root: str
    source: str
    kind: str
    metadata_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.table)

    def fingerprint(self) -> str:
        """sha256 of the table, class list and every file's (size, mtime): cheap, no image reads."""
        h = hashlib.sha256()
        h.update("\n".join(self.class_names).encode())
        cols = [schema.RELPATH, schema.LABEL, *self.metadata_columns]
        h.update(pd.util.hash_pandas_object(self.table[cols], index=False).values.tobytes())
        for p in self.table[schema.PATH]:
            h.update(repr(file_fingerprint(p)).encode())
        return h.hexdigest()


def sample_id_for(relpath: str) -> str:
    """Stable id of an image: ``"s"`` + 12 hex digits of sha1 of its relative path (posix form)."""
    return "s" + hashlib.sha1(relpath.replace(os.sep, "/").encode()).hexdigest()[:12]


def read_class_file(path: str | os.PathLike) -> list[str]:
    """Class names, one per line (blank lines and ``#`` comments ignored), or a JSON list."""
    text = Path(path).read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        import json

        names = [str(x) for x in json.loads(text)]
    else:
        names = [ln.strip() for ln in text.splitlines()]
        names = [n for n in names if n and not n.startswith("#")]
    if not names:
        raise ValueError(f"class file {path} lists no classes")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"class file {path} lists these classes twice: {dupes}")
    return names


def load_image_set(source: str | os.PathLike, *, class_names: list[str] | None = None) -> ImageSet:
    """Load an ImageFolder tree (``root/<class>/<image>``) or a CSV/Parquet manifest.

    Parameters
    ----------
    source : path
        A folder (ImageFolder layout) or a ``.csv``/``.parquet`` manifest with columns ``path``
        (relative to the manifest's folder, or absolute) and ``label`` (class name or index); every
        other column is metadata.
    class_names : list of str, optional
        The class order of the model's outputs. Without it: a ``classes.txt`` beside the manifest,
        else the sorted folder names / label strings (torchvision's ImageFolder convention).
    """
    src = Path(source).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"data source {str(src)!r} does not exist")
    if src.is_dir():
        return _load_imagefolder(src, class_names)
    suffix = src.suffix.lower()
    if suffix in (".csv", ".parquet", ".pq"):
        return _load_manifest(src, class_names)
    raise ValueError(
        f"data source {str(src)!r} is neither a folder nor a .csv/.parquet manifest"
        f" (got suffix {suffix!r})"
    )


def _load_imagefolder(root: Path, class_names: list[str] | None) -> ImageSet:
    root = root.resolve()
    folders = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise ValueError(
            f"{root} has no class sub-folders; expected the ImageFolder layout root/<class>/<image>"
        )
    notes = []
    if class_names is None:
        class_names = folders
        notes.append(f"classes taken from the {len(folders)} sub-folder names, sorted")
    unknown = [f for f in folders if f not in class_names]
    if unknown:
        raise ValueError(
            f"folders {unknown[:5]} of {root} are not in the class list {class_names[:20]}"
        )
    index = {n: i for i, n in enumerate(class_names)}
    rows = []
    for cls in folders:
        for dirpath, _dirs, files in os.walk(root / cls):
            for fn in files:
                if fn.lower().endswith(IMAGE_EXTENSIONS) and not fn.startswith("."):
                    full = Path(dirpath) / fn
                    rel = full.relative_to(root).as_posix()
                    rows.append((rel, str(full), index[cls], cls))
    table = pd.DataFrame(rows, columns=[schema.RELPATH, schema.PATH, schema.LABEL, "label_name"])
    return _finish(table, class_names, root, str(root), "imagefolder", [], notes)


def _load_manifest(path: Path, class_names: list[str] | None) -> ImageSet:
    path = path.resolve()
    if path.suffix.lower() == ".csv":
        df = pd.read_csv(path, keep_default_na=True)
    else:
        df = pd.read_parquet(path)
    missing = [c for c in ("path", "label") if c not in df.columns]
    if missing:
        raise ValueError(
            f"manifest {path} lacks column(s) {missing}; found columns {list(df.columns)}"
            " (expected at least 'path' and 'label')"
        )
    notes = []
    root = path.parent
    if class_names is None and (root / "classes.txt").exists():
        class_names = read_class_file(root / "classes.txt")
        notes.append(f"classes taken from {root / 'classes.txt'}")
    if df["path"].isna().any():
        rows = (np.flatnonzero(df["path"].isna().to_numpy()) + 2).tolist()[:5]
        raise ValueError(f"manifest {path}: empty 'path' on line(s) {rows}")
    labels = df["label"]
    if labels.isna().any():
        rows = (np.flatnonzero(labels.isna().to_numpy()) + 2).tolist()[:5]
        raise ValueError(f"manifest {path}: empty 'label' on line(s) {rows}")
    is_int = pd.api.types.is_integer_dtype(labels)
    if class_names is None:
        if is_int:
            class_names = [str(i) for i in range(int(labels.max()) + 1)]
            notes.append(
                "labels are integers and no class names were given: classes named 0..K-1"
                " (pass --classes to name them)"
            )
        else:
            class_names = sorted(labels.astype(str).unique().tolist())
            notes.append(f"classes taken from the {len(class_names)} label values, sorted")
    if is_int:
        ints = labels.to_numpy()
        bad = (ints < 0) | (ints >= len(class_names))
        if bad.any():
            raise ValueError(
                f"manifest {path}: label indices {sorted(set(ints[bad].tolist()))[:5]} are outside"
                f" 0..{len(class_names) - 1} ({len(class_names)} classes)"
            )
        label_idx = ints.astype(np.int64)
    else:
        index = {n: i for i, n in enumerate(class_names)}
        strs = labels.astype(str)
        unknown = strs[~strs.isin(index.keys())]
        if len(unknown):
            counts = unknown.value_counts().head(5)
            listed = ", ".join(f"{k!r} ({v}x)" for k, v in counts.items())
            raise ValueError(
                f"manifest {path}: {len(unknown)} label(s) are not in the class list: {listed};"
                f" classes are {class_names[:20]}"
            )
        label_idx = strs.map(index).to_numpy(np.int64)
    rel = df["path"].astype(str).map(lambda p: Path(p).as_posix())
    absolute = rel.map(lambda p: str(Path(p) if os.path.isabs(p) else (root / p).resolve()))
    meta = df.drop(columns=["path", "label"])
    renames = {c: f"meta_{c}" for c in meta.columns if c in RESERVED}
    if renames:
        meta = meta.rename(columns=renames)
        notes.append(f"metadata columns renamed to avoid computed names: {renames}")
    table = pd.DataFrame(
        {
            schema.RELPATH: rel.to_numpy(),
            schema.PATH: absolute.to_numpy(),
            schema.LABEL: label_idx,
            "label_name": [class_names[i] for i in label_idx],
        }
    )
    table = pd.concat([table, meta.reset_index(drop=True)], axis=1)
    return _finish(table, class_names, root, str(path), "manifest", list(meta.columns), notes)


def _finish(table, class_names, root, source, kind, metadata_columns, notes) -> ImageSet:
    if table.empty:
        raise ValueError(f"no images found in {source}")
    dup = table[schema.PATH].duplicated(keep=False)
    if dup.any():
        examples = table.loc[dup, schema.RELPATH].drop_duplicates().head(5).tolist()
        raise ValueError(
            f"{int(dup.sum())} rows of {source} point at the same file more than once,"
            f" e.g. {examples}; each image must appear once"
        )
    table = table.sort_values(schema.RELPATH, kind="stable").reset_index(drop=True)
    table.insert(0, schema.SAMPLE_ID, table[schema.RELPATH].map(sample_id_for))
    if table[schema.SAMPLE_ID].duplicated().any():  # sha1 prefix collision: astronomically rare
        warnings.warn("sample_id collision; falling back to longer ids", stacklevel=2)
        table[schema.SAMPLE_ID] = table[schema.RELPATH].map(
            lambda r: "s" + hashlib.sha1(r.encode()).hexdigest()
        )
    table = table.rename(columns={"label_name": schema.LABEL_NAME})
    return ImageSet(
        table=table,
        class_names=list(class_names),
        root=str(root),
        source=source,
        kind=kind,
        metadata_columns=list(metadata_columns),
        warnings=list(notes),
    )
