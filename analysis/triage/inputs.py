"""What triage reads: a run's stored tables and arrays, gathered once and checked once.

:class:`TriageInputs` holds plain tables and arrays, so triage runs the same on a run directory
(:meth:`TriageInputs.from_run`), inside the analysis pipeline (before the run is written) and on
generated worlds in the benchmark. Every optional part may be None; the causes that need it are
then listed as "not tested: needs ...".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import schema


@dataclass(frozen=True, eq=False)
class TriageInputs:
    """Everything triage reads.

    Attributes
    ----------
    samples : DataFrame, N rows
        ``label``, ``pred``, ``correct`` (bool), ``margin``; metadata and property columns; and
        where the sections wrote them ``cluster``, ``is_label_issue``, ``leak_of``,
        ``sample_id``.
    class_names : list of str
    metadata_columns, property_columns : list of str
    reference : DataFrame or None
        The reference (training) set: ``label`` and the same metadata / property columns.
    embeddings, reference_embeddings : array (N, D), (M, D) or None
    slices, discovered : DataFrame or None
        ``slices.parquet``, ``discovered_slices.parquet``.
    robustness : RobustnessResult or None
        The latest stored robustness run (:func:`analysis.stats.robustness.load_robustness`).
    review : DataFrame or None
        :meth:`analysis.store.review.ReviewStore.state` (tags, corrected labels).
    seed : int
    missing : dict
        Section -> why it is absent (a failed section), for "not tested" lines.
    exif_transposed : bool
        The run applied EXIF orientation before the model (then no image counts as rotated).
    run_dir, preprocessing : str, dict or None
        Where cached CAMs are (``<run>/cams/``) and how images were resized and cropped, for the
        CAM mass on the object that supports a shortcut (:mod:`.cam_mass`).
    """

    samples: pd.DataFrame
    class_names: list[str]
    metadata_columns: list[str]
    property_columns: list[str]
    reference: pd.DataFrame | None = None
    embeddings: np.ndarray | None = None
    reference_embeddings: np.ndarray | None = None
    slices: pd.DataFrame | None = None
    discovered: pd.DataFrame | None = None
    robustness: Any = None
    review: pd.DataFrame | None = None
    seed: int = 0
    missing: dict = field(default_factory=dict)
    exif_transposed: bool = False
    run_dir: str | None = None
    preprocessing: dict | None = None

    def __post_init__(self) -> None:
        s = self.samples
        if not isinstance(s, pd.DataFrame):
            raise TypeError(f"samples must be a pandas DataFrame, got {type(s).__name__}")
        need = [schema.LABEL, schema.PRED, schema.CORRECT]
        missing = [c for c in need if c not in s.columns]
        if missing:
            raise ValueError(f"samples is missing column(s) {missing}; triage needs {need}")
        for name in ("metadata_columns", "property_columns"):
            absent = [c for c in getattr(self, name) if c not in s.columns]
            if absent:
                raise ValueError(f"{name} names column(s) {absent} that samples does not have")
        if self.embeddings is not None and len(self.embeddings) != len(s):
            raise ValueError(
                f"embeddings have {len(self.embeddings)} rows but samples has {len(s)}"
            )
        ref, remb = self.reference, self.reference_embeddings
        if ref is not None and schema.LABEL not in ref.columns:
            raise ValueError("reference needs a 'label' column (class ids)")
        if remb is not None and (ref is None or len(remb) != len(ref)):
            raise ValueError("reference_embeddings need a reference table of the same length")

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_run(
        cls, run, *, review: pd.DataFrame | None = None, robustness: Any = "latest"
    ) -> TriageInputs:
        """Gather a run's stored tables (``robustness="latest"`` loads the newest stored
        robustness result; pass None to leave it out, or a result)."""
        rob = robustness
        if isinstance(robustness, str) and robustness == "latest":
            from ..stats.robustness import load_robustness

            try:
                rob = load_robustness(run)
            except (OSError, ValueError, KeyError):  # an unreadable stored result
                rob = None
        emb = run.embeddings
        ref = run.reference
        remb = run.reference_embeddings
        missing = {
            name: sec.get("error") or sec.get("reason") or sec.get("status")
            for name, sec in run.sections.items()
            if sec.get("status") != "ok"
        }
        return cls(
            samples=run.samples,
            class_names=run.class_names,
            metadata_columns=[c for c in run.metadata_columns if c in run.samples.columns],
            property_columns=[c for c in run.property_columns if c in run.samples.columns],
            reference=ref,
            embeddings=None if emb is None else np.asarray(emb),
            reference_embeddings=None if remb is None or ref is None else np.asarray(remb),
            slices=run.table(schema.SLICES),
            discovered=run.table(schema.DISCOVERED),
            robustness=rob,
            review=review,
            seed=int((run.manifest.get("config") or {}).get("seed", 0) or 0),
            missing=missing,
            exif_transposed=bool((run.manifest.get("preprocessing") or {}).get("exif_transpose")),
            run_dir=str(run.path),
            preprocessing=dict(run.manifest.get("preprocessing") or {}),
        )
