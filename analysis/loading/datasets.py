"""Loading a labelled image set: an ImageFolder tree or a CSV/Parquet manifest.

The result is a table with one row per image (relative and absolute path, integer label, metadata
columns) plus the ordered class names. Nothing here decodes images: that happens once, in the
analysis pass, where a bad file is skipped with its reason instead of failing the load. A file
whose name is not valid UTF-8 is skipped here, with its name shown escaped.

Labels that are class names are mapped by name, never by position: with digit class names
("9", ..., "0") and a label column of digits, the two readings can differ, and then loading stops
and shows both until ``labels_are`` ("names" or "indices", the CLI's ``--labels-are``) says which.
"""

from __future__ import annotations

import hashlib
import io
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
    schema.EXIF_ORIENTATION,
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
        Things the user should know (renamed columns, classes taken from where, images outside
        the data folder).
    skipped : list of dict
        ``{"relpath", "reason"}`` of files left out while listing (a name that is not valid
        UTF-8, shown escaped); the pass adds the files it cannot read.
    outside : list of str
        Relative paths (as given) of the images that lie outside ``root``: absolute paths,
        ``../`` or symlinks that lead out of the data folder.
    """

    table: pd.DataFrame
    class_names: list[str]
    root: str
    source: str
    kind: str
    metadata_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)

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


LABELS_ARE = ("names", "indices")


def escaped_name(name: str) -> str:
    """A file name for people: bytes that are not UTF-8 shown as ``\\xff`` escapes."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def _utf8_ok(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def read_text_file(path: str | os.PathLike, what: str) -> str:
    """A UTF-8 text file (a byte-order mark is allowed); a file that is not UTF-8 is an error
    naming the file, the line and the byte."""
    raw = Path(path).read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise ValueError(
            f"{what} {path} is not UTF-8 text: line {line}, column {column} has the byte"
            f" 0x{raw[e.start]:02x}; save it as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


def read_class_file(path: str | os.PathLike) -> list[str]:
    """Class names, one per line (blank lines and ``#`` comments ignored), or a JSON list."""
    text = read_text_file(path, "class file")
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


def load_image_set(
    source: str | os.PathLike,
    *,
    class_names: list[str] | None = None,
    labels_are: str | None = None,
) -> ImageSet:
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
    labels_are : {"names", "indices"}, optional
        How to read a manifest's label column of whole numbers: as class names or as positions
        in ``class_names``. Needed only when both readings are possible and differ (digit class
        names); without it such a manifest is an error that shows both readings.
    """
    if labels_are is not None and labels_are not in LABELS_ARE:
        raise ValueError(f"labels_are must be one of {LABELS_ARE}, got {labels_are!r}")
    src = Path(source).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"data source {str(src)!r} does not exist")
    if src.is_dir():
        return _load_imagefolder(src, class_names)
    suffix = src.suffix.lower()
    if suffix in (".csv", ".parquet", ".pq"):
        return _load_manifest(src, class_names, labels_are)
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
    bad = [escaped_name(f) for f in folders if not _utf8_ok(f)]
    if bad:
        raise ValueError(
            f"class folder name(s) {bad[:5]} of {escaped_name(str(root))} are not valid UTF-8:"
            " rename them (a class name is shown on every page and stored in the run)"
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
    rows, skipped, outside = [], [], []
    for cls in folders:
        # os.walk does not follow symlinked folders below the class folder; a symlinked class
        # folder or file can still lead out of the data folder
        linked_dir = os.path.islink(root / cls)
        for dirpath, _dirs, files in os.walk(root / cls):
            for fn in files:
                if fn.lower().endswith(IMAGE_EXTENSIONS) and not fn.startswith("."):
                    full = Path(dirpath) / fn
                    rel = full.relative_to(root).as_posix()
                    if not _utf8_ok(rel):
                        skipped.append(
                            {"relpath": escaped_name(rel), "reason": "file name is not valid UTF-8"}
                        )
                        continue
                    if (linked_dir or os.path.islink(full)) and not _inside(str(full), root):
                        outside.append(rel)
                    rows.append((rel, str(full), index[cls], cls))
    table = pd.DataFrame(rows, columns=[schema.RELPATH, schema.PATH, schema.LABEL, "label_name"])
    if table.empty and skipped:
        raise ValueError(
            f"no usable images in {root}: all {len(skipped)} have file names that are not valid"
            f" UTF-8, e.g. {[x['relpath'] for x in skipped[:3]]}"
        )
    return _finish(
        table, class_names, root, str(root), "imagefolder", [], notes, skipped, sorted(outside)
    )


def _inside(path: str, root: Path) -> bool:
    """Does ``path``, with every symlink followed, lie inside the (resolved) folder ``root``?"""
    real, top = os.path.realpath(path), os.path.realpath(root)
    try:
        return os.path.commonpath([real, top]) == top
    except ValueError:  # different drives
        return False


def _read_manifest(path: Path) -> pd.DataFrame:
    """The manifest as a table; an empty, non-UTF-8 or malformed file is an error naming it."""
    if path.suffix.lower() != ".csv":
        try:
            df = pd.read_parquet(path)
        except Exception as e:
            raise ValueError(f"manifest {path} cannot be read as Parquet: {e}") from None
    else:
        text = read_text_file(path, "manifest")
        if not text.strip():
            raise ValueError(
                f"manifest {path} is empty: expected a header line with at least 'path' and"
                " 'label', then one line per image"
            )
        try:
            df = pd.read_csv(io.StringIO(text), keep_default_na=True)
        except pd.errors.ParserError as e:
            raise ValueError(f"manifest {path} is not valid CSV: {e}".strip()) from None
    if df.empty:
        raise ValueError(
            f"manifest {path} has a header ({', '.join(map(str, list(df.columns)[:10]))}) but no"
            " rows: no images found"
        )
    return df


def _load_manifest(path: Path, class_names: list[str] | None, labels_are: str | None) -> ImageSet:
    path = path.resolve()
    df = _read_manifest(path)
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
    label_idx, how = _label_indices(labels, class_names, labels_are, path)
    if how:
        notes.append(how)
    rel = df["path"].astype(str).map(lambda p: Path(p).as_posix())
    absolute = rel.map(lambda p: str(Path(p) if os.path.isabs(p) else (root / p).resolve()))
    outside = sorted(r for r, a in zip(rel, absolute, strict=True) if not _inside(a, root))
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
    return _finish(
        table, class_names, root, str(path), "manifest", list(meta.columns), notes, [], outside
    )


def _label_indices(
    labels: pd.Series, class_names: list[str], labels_are: str | None, path: Path
) -> tuple[np.ndarray, str]:
    """Label column -> int64 class indices, and a note saying how whole numbers were read.

    Text labels are class names. Whole numbers are read as class names when every one of them
    is a class name, as positions when every one is a valid position; when both readings are
    possible and disagree, ``labels_are`` must decide (else a ValueError shows both)."""
    index = {n: i for i, n in enumerate(class_names)}
    strs = labels.astype(str)
    known = strs.isin(index.keys()).to_numpy()
    k = len(class_names)
    if not pd.api.types.is_integer_dtype(labels):
        if labels_are == "indices":
            raise ValueError(
                f"manifest {path}: --labels-are indices, but the label column holds text such as"
                f" {strs[~strs.str.fullmatch(r'-?[0-9]+')].head(3).tolist()}"
            )
        if not known.all():
            counts = strs[~known].value_counts().head(5)
            listed = ", ".join(f"{v!r} ({c}x)" for v, c in counts.items())
            raise ValueError(
                f"manifest {path}: {int((~known).sum())} label(s) are not in the class list:"
                f" {listed}; classes are {class_names[:20]}"
            )
        return strs.map(index).to_numpy(np.int64), ""
    ints = labels.to_numpy().astype(np.int64)
    in_range = (ints >= 0) & (ints < k)
    if labels_are == "names":
        if not known.all():
            bad = sorted(set(ints[~known].tolist()))[:5]
            raise ValueError(
                f"manifest {path}: --labels-are names, but labels {bad} are not class names;"
                f" classes are {class_names[:20]}"
            )
        return strs.map(index).to_numpy(np.int64), "labels read as class names (--labels-are)"
    if labels_are == "indices" or not known.all():
        if not in_range.all():
            raise ValueError(
                f"manifest {path}: label indices {sorted(set(ints[~in_range].tolist()))[:5]} are"
                f" outside 0..{k - 1} ({k} classes)"
            )
        return ints, "labels read as positions in the class list" if known.any() else ""
    by_name = strs.map(index).to_numpy(np.int64)
    if not in_range.all() or (by_name == ints).all():
        return by_name, ""  # only the name reading is possible, or both agree
    differ = by_name != ints
    examples = []
    for v in sorted(set(ints[differ].tolist()))[:3]:
        examples.append(
            f"label {v}: as a name, class {str(v)!r} (output {index[str(v)]}); as a position,"
            f" output {v}, class {class_names[v]!r}"
        )
    raise ValueError(
        f"manifest {path}: the labels are numbers and so are the class names, and the two"
        f" readings differ for {int(differ.sum())} of {len(ints)} rows ("
        + "; ".join(examples)
        + f"; classes in output order: {class_names[:12]}). Say which with --labels-are names"
        " (each label is a class name) or --labels-are indices (each label is an output"
        " position in the class list)"
    )


def _finish(
    table, class_names, root, source, kind, metadata_columns, notes, skipped, outside
) -> ImageSet:
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
    if outside:
        shown = ", ".join(outside[:5]) + (
            f" and {len(outside) - 5} more" if len(outside) > 5 else ""
        )
        notes.append(
            f"{len(outside)} image path(s) lead outside the data folder {root} (absolute paths,"
            f" '../' or symlinks): {shown}; check that these are the images you mean"
        )
    return ImageSet(
        table=table,
        class_names=list(class_names),
        root=str(root),
        source=source,
        kind=kind,
        metadata_columns=list(metadata_columns),
        warnings=list(notes),
        skipped=list(skipped),
        outside=list(outside),
    )
