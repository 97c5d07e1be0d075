"""Reading and writing run directories (the contract between analysis and every reader).

A run is written into a temporary folder beside its final place and renamed into place when
complete, so an interrupted analysis never leaves a half run. Once written it is immutable, except
for caches that are derived on demand (``cams/``, ``thumbs/``, ``robustness/``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..version import is_current


class RunError(Exception):
    """A run directory that cannot be read; the message says what to do."""


DEFAULT_RUNS_DIR = "runs"


def runs_dir_from_env(explicit: str | os.PathLike | None = None) -> Path:
    """The runs folder: ``explicit`` (a command-line ``--out``) if given, else
    ``$ERRORSCOPE_RUNS_DIR`` if set, else ``./runs``. What the user typed wins over the
    environment."""
    return Path(explicit or os.environ.get("ERRORSCOPE_RUNS_DIR") or DEFAULT_RUNS_DIR)


@dataclass
class Run:
    """A run directory opened for reading. Tables are read lazily and kept.

    Attributes
    ----------
    path : Path
    manifest : dict
        The parsed ``manifest.json``.
    """

    path: Path
    manifest: dict = field(repr=False)

    @property
    def run_id(self) -> str:
        return self.manifest["run_id"]

    @property
    def class_names(self) -> list[str]:
        return list(self.manifest["class_names"])

    @property
    def n_classes(self) -> int:
        return len(self.manifest["class_names"])

    @property
    def metadata_columns(self) -> list[str]:
        return list(self.manifest.get("metadata_columns", []))

    @property
    def property_columns(self) -> list[str]:
        return list(self.manifest.get("property_columns", schema.PROPERTY_COLUMNS))

    @property
    def sections(self) -> dict:
        return dict(self.manifest.get("sections", {}))

    def section_ok(self, name: str) -> bool:
        return self.sections.get(name, {}).get("status") == "ok"

    @cached_property
    def samples(self) -> pd.DataFrame:
        """samples.parquet: one row per analysed image, row i matching ``probs[i]``."""
        return pd.read_parquet(self.path / schema.SAMPLES)

    @cached_property
    def probs(self) -> np.ndarray:
        """float32 [N, C], memory-mapped."""
        return np.load(self.path / schema.PROBS, mmap_mode="r")

    @cached_property
    def embeddings(self) -> np.ndarray | None:
        """float16 [N, D] or None when the model gave none (TorchScript, predictions file)."""
        p = self.path / schema.EMBEDDINGS
        return np.load(p, mmap_mode="r") if p.exists() else None

    @cached_property
    def reference(self) -> pd.DataFrame | None:
        p = self.path / schema.REFERENCE_SAMPLES
        return pd.read_parquet(p) if p.exists() else None

    @cached_property
    def reference_embeddings(self) -> np.ndarray | None:
        p = self.path / schema.REFERENCE_EMBEDDINGS
        return np.load(p, mmap_mode="r") if p.exists() else None

    def table(self, name: str) -> pd.DataFrame | None:
        """An optional parquet table of the run (``schema.SLICES`` etc.), or None if absent."""
        p = self.path / name
        return pd.read_parquet(p) if p.exists() else None

    def array(self, name: str) -> np.ndarray | None:
        p = self.path / name
        return np.load(p) if p.exists() else None

    def json(self, name: str) -> Any:
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else None

    def cache_dir(self, name: str) -> Path:
        """A derived-data cache folder inside the run (created on first use)."""
        d = self.path / name
        d.mkdir(parents=True, exist_ok=True)
        return d


def open_run(path: str | os.PathLike) -> Run:
    """Open a run directory, checking that it is complete and of a schema this code reads."""
    path = Path(path)
    mf = path / schema.MANIFEST
    if not mf.exists():
        raise RunError(f"{path} is not an errorscope run (no {schema.MANIFEST})")
    try:
        manifest = json.loads(mf.read_text())
    except json.JSONDecodeError as e:
        raise RunError(f"{mf} is not valid JSON: {e}") from None
    version = manifest.get("schema_version")
    if version != schema.SCHEMA_VERSION:
        raise RunError(
            f"run {path.name} was written with run schema version {version}; this errorscope reads"
            f" version {schema.SCHEMA_VERSION}. Re-run `errorscope analyze` on the same inputs to"
            " rebuild it (review tags and notes are kept: they live outside runs)."
        )
    for f in (schema.SAMPLES, schema.PROBS):
        if not (path / f).exists():
            raise RunError(f"run {path.name} is incomplete: {f} is missing")
    return Run(path=path, manifest=manifest)


def list_runs(runs_dir: str | os.PathLike) -> list[dict]:
    """Summaries of the readable runs under ``runs_dir``, newest first."""
    out = []
    root = Path(runs_dir)
    if not root.exists():
        return out
    for d in root.iterdir():
        mf = d / schema.MANIFEST
        if d.name.startswith(".") or not mf.exists():
            continue
        try:
            m = json.loads(mf.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        out.append(
            {
                "run_id": m.get("run_id", d.name),
                "path": str(d),
                "created": m.get("created", ""),
                "n_samples": m.get("n_samples"),
                "model": (m.get("inputs", {}).get("model") or {}).get("name", ""),
                "data": (m.get("inputs", {}).get("data") or {}).get("name", ""),
                "schema_version": m.get("schema_version"),
                "data_source": (m.get("inputs", {}).get("data") or {}).get("source", ""),
                # made by this analysis code? (analysis.version; False = re-analyse to refresh)
                "current": is_current(m),
            }
        )
    out.sort(key=lambda r: r["created"], reverse=True)
    return out


class RunWriter:
    """Writes a run into ``<runs_dir>/.tmp-<id>-*`` and renames it into place on ``commit``.

    Use as a context manager: leaving the block with an exception deletes the temporary folder.
    Starting one also removes the ``.tmp-*`` folders of killed analyses and the ``.old-*`` ones
    of interrupted ``--force`` replacements (nothing in them changed for
    :attr:`STALE_TMP_AGE_S`); their paths are in :attr:`removed_stale` and logged.
    """

    #: A temporary folder with nothing written in it for this long belongs to a killed analysis:
    #: a live one writes thumbnails and section files far more often than that.
    STALE_TMP_AGE_S = 24 * 3600

    def __init__(self, runs_dir: str | os.PathLike, run_id: str):
        self.runs_dir = Path(runs_dir)
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.run_id = run_id
        self.final = self.runs_dir / run_id
        self.removed_stale = self._remove_stale_tmp()
        self.tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{run_id}-", dir=self.runs_dir))
        # mkdtemp makes the folder 0700 whatever the umask; the run it becomes is shared like
        # any folder the user makes (a team's runs folder, a dashboard run by another account)
        os.chmod(self.tmp, 0o777 & ~current_umask())

    def _remove_stale_tmp(self) -> list[Path]:
        import logging

        log = logging.getLogger(__name__)
        cutoff = time.time() - self.STALE_TMP_AGE_S
        removed = []
        # .tmp-*: a killed analysis; .old-*: a replaced run whose deletion was interrupted
        leftovers = [*self.runs_dir.glob(".tmp-*"), *self.runs_dir.glob(".old-*")]
        for d in sorted(leftovers):
            try:
                if d.is_symlink() or not d.is_dir() or self._newest_mtime(d) >= cutoff:
                    continue
                shutil.rmtree(d)
            except FileNotFoundError:  # another writer removed it first
                continue
            except OSError as e:
                log.warning("could not remove stale temporary folder %s: %s", d, e)
                continue
            log.info("removed %s, left by an interrupted analysis", d)
            removed.append(d)
        return removed

    @staticmethod
    def _newest_mtime(folder: Path) -> float:
        """Latest modification time of ``folder`` and the folders inside it (each new file bumps
        its folder's time), so a run still writing thumbnails deep inside counts as fresh."""
        newest = folder.stat().st_mtime
        for root, dirs, _files in os.walk(folder):
            for name in dirs:
                try:
                    newest = max(newest, os.stat(os.path.join(root, name)).st_mtime)
                except FileNotFoundError:
                    continue
        return newest

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)
        return False

    def write_table(self, name: str, df: pd.DataFrame) -> None:
        df.to_parquet(self.tmp / name, index=False)

    def write_array(self, name: str, arr: np.ndarray) -> None:
        np.save(self.tmp / name, arr)

    def write_json(self, name: str, obj: Any) -> None:
        (self.tmp / name).write_text(json.dumps(obj, indent=2, default=_json_default))

    def commit(self, manifest: dict, *, replace: bool = False) -> Path:
        """Write the manifest last, then atomically rename the folder into place.

        With ``replace`` an existing run of the same id is swapped out (``--force``); without it
        an existing complete run wins (a concurrent analysis of the same inputs finished first).
        """
        manifest = {**manifest, "run_id": self.run_id, "schema_version": schema.SCHEMA_VERSION}
        self.write_json(schema.MANIFEST, manifest)
        if replace and self.final.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".old-{self.run_id}-", dir=self.runs_dir))
            os.rename(self.final, trash / "run")
            os.rename(self.tmp, self.final)
            shutil.rmtree(trash, ignore_errors=True)
            return self.final
        try:
            os.rename(self.tmp, self.final)
        except OSError:
            if (self.final / schema.MANIFEST).exists():  # someone finished the same run first
                shutil.rmtree(self.tmp, ignore_errors=True)
                return self.final
            if self.final.exists():  # a broken leftover without manifest: replace it
                shutil.rmtree(self.final)
                os.rename(self.tmp, self.final)
            else:
                raise
        return self.final


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux's
    /proc/self/status); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if np.isnan(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def as_run(run: Run | str | os.PathLike, *, name: str = "run") -> Run:
    """``run`` itself, or the run opened from a path; TypeError for anything else."""
    if isinstance(run, str) or hasattr(run, "__fspath__"):
        run = open_run(run)
    if not isinstance(run, Run):
        raise TypeError(f"{name} must be a Run or a run directory path, got {type(run).__name__}")
    return run
