"""Exportable slice reports: one result object, three renderers (HTML, Markdown, CSV).

:func:`build_report` gathers what a review meeting wants to take away from a run into a frozen
:class:`Report`: headline metrics with 95% intervals, per-class metrics, confusion counts and the
top confusions, weak and discovered slices, data-issue counts, the reviewed images with their tags,
notes and decisions, the relabel list and representative failures. A section the run does not
have (it failed, was skipped, or the run predates it) is simply absent and explained in
``Report.notes``. The renderers only format what the report holds; no number is computed there.

- :func:`to_html`: one self-contained file that opens offline. Plotly figures inline with
  plotly.js included once, images as base64 ``data:`` URIs, inline CSS, and a Content-Security-
  Policy that forbids every network request.
- :func:`to_markdown`: GitHub-flavoured Markdown with tables.
- :func:`to_csv_tables`: name -> CSV text, for spreadsheets and relabelling tools.
- :func:`write_report`: writes ``report.html``, ``report.md``, ``csv/*.csv`` and
  ``relabel_list.csv``.

Escaping, the one rule: every string that comes from data (class names, file paths, metadata,
slice descriptions, tags, notes, reviewer names, the title) is escaped by the renderer, by
default, at the point where it is written out:

- HTML: ``html.escape`` for text and attributes. Strings given to Plotly are escaped too, because
  Plotly renders its labels as pseudo-HTML; it decodes the entities back for display, so a class
  named ``<b>x</b>`` is shown as that text and never as markup.
- Markdown: backslash escapes for the characters that make markup (``|`` in tables included);
  line breaks become ``<br>``.
- CSV: values are written as they are (CSV is data), except that a text cell that starts with
  ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so that a spreadsheet
  does not evaluate it as a formula (OWASP's CSV-injection advice).
"""

from __future__ import annotations

import base64
import html
import io
import math
import numbers
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..store.runstore import Run
from . import formatting as fmt

__all__ = [
    "CSV_DIR",
    "FORMATS",
    "Headline",
    "RELABEL_CSV",
    "REPORT_HTML",
    "REPORT_MD",
    "Report",
    "build_report",
    "to_csv_tables",
    "to_html",
    "to_markdown",
    "write_report",
]

# Output names (write_report)
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
CSV_DIR = "csv"
RELABEL_CSV = "relabel_list.csv"

# Columns of the report's own tables (names of run columns come from analysis.schema)
NAME = "name"  # per_class: the class name
TRUE_NAME = "true_name"  # top_confusions
PRED_NAME_COL = "pred_name"
WHY = "why"  # failures: why the image was picked
TAGS = "tags"  # reviewed: tuple of tags
NOTES = "notes"  # reviewed: tuple of (reviewer, text)
CORRECTED_LABEL = "corrected_label"  # reviewed: a class name, "" = no decision
REVIEWED = "reviewed"  # reviewed: marked reviewed in a queue
REVIEWER = "reviewer"  # reviewed: who touched it last
ISSUE = "issue"  # data_issues
IMAGES = "images"
SHARE = "share"
DETAIL = "detail"
DATA_ISSUE_COLUMNS = [ISSUE, IMAGES, SHARE, DETAIL]
REVIEW_STATE_COLUMNS = ("content_hash", "tags", "notes", "corrected_label", "last_reviewer")
RELABEL_COLUMNS = [
    "path",
    "relpath",
    "given_label",
    "corrected_label",
    "reviewer",  # who set the corrected label (not who touched the image last)
    "labelled_at",  # when, seconds since the epoch
]

WHY_LOSS = "highest loss"
SLICE_EXAMPLES = 4  # at most this many failures come from the top slice (and max_examples // 3)
MAX_FIGURE_CLASSES = 30  # figures with more classes show a readable subset (tables keep all)
MAX_HTML_ROWS = 50  # rows of long tables shown in HTML / Markdown; the CSV has every row
MAX_HTML_CARDS = 200  # reviewed images shown as cards in HTML
TOP_CONFUSIONS = 8

# Sections of the run the report reads, with their titles (for the notes on missing ones)
_SECTION_TITLES = {
    "metrics": "Headline and per-class metrics",
    "slices": "Weak slices",
    "discovered_slices": "Discovered slices",
    "label_issues": "Suspected label errors",
    "duplicates": "Near-duplicates and leakage",
    "outliers": "Property outliers",
}

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SAMPLE_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


# ==============================================================================================
# The result


@dataclass(frozen=True)
class Headline:
    """One headline metric: its name, the estimate with its interval, and how to show it."""

    name: str
    estimate: Any  # analysis.stats.intervals.Estimate
    as_pct: bool = True
    help: str = ""

    @property
    def text(self) -> str:
        """``'87.3% (95% CI 85.2–89.1%)'``: the one number style of the project."""
        return fmt.estimate(self.estimate, as_pct=self.as_pct)


@dataclass(frozen=True, eq=False)
class Report:
    """Everything a report shows, as data. Build it with :func:`build_report`.

    Attributes
    ----------
    title, run_id, created, generated : str
        ``created`` is when the run was analysed, ``generated`` when this report was built.
    model, data : str
        Names of the model and evaluation-set inputs.
    n_samples, n_skipped : int
    overall_error : float
        1 - accuracy (NaN for an empty run): the reference line of the slice charts.
    class_names : tuple of str
    metadata_columns : tuple of str
        Metadata columns of the run (shown with each image).
    headline : tuple of Headline
        Empty when the metrics section is missing.
    findings : tuple of (severity, message)
        :func:`analysis.present.findings.findings`, most important first.
    per_class : DataFrame or None
        The metrics' per-class table (``class, support, precision, precision_low, ...``) with
        ``name`` after ``class``. None without metrics.
    confusion : int ndarray [K, K] or None
        Counts, rows = given label, columns = prediction.
    reliability : DataFrame or None
        Calibration bins (``analysis.stats.metrics``).
    top_confusions : DataFrame
        ``true, true_name, pred, pred_name, count, share_of_true_class``, most frequent first.
    slices : DataFrame or None
        Significant rows of ``slices.parquet`` with a positive gap (columns
        ``analysis.stats.slices.SLICE_COLUMNS``); None when the run has no slices table.
    n_slices_tested : int
        Rows of ``slices.parquet`` (every slice tested).
    discovered_slices : DataFrame or None
        ``discovered_slices.parquet`` (only significant, non-redundant conjunctions).
    data_issues : DataFrame
        ``issue, images, share, detail``: one row per issue type the run checked.
    label_issues : DataFrame or None
        Flagged images, most suspicious first: ``sample_id, relpath, given, suggested,
        label_quality, reason``.
    reviewed : DataFrame
        Reviewed images of this run: ``sample_id, relpath, path, content_hash, label_name,
        pred_name, correct, confidence``, metadata columns, ``tags`` (tuple), ``notes`` (tuple of
        (reviewer, text)), ``corrected_label``, ``reviewed``, ``reviewer``.
    relabel : DataFrame
        :func:`analysis.store.review.relabel_list`: ``path, relpath, given_label, corrected_label,
        reviewer``.
    failures : DataFrame
        Representative failures: ``sample_id, relpath, path, label_name, pred_name, confidence,
        loss``, metadata columns, ``why``.
    notes : tuple of str
        Sections that are absent and why, and anything that could not be built.
    """

    title: str
    run_id: str
    created: str
    generated: str
    model: str
    data: str
    n_samples: int
    n_skipped: int
    overall_error: float
    class_names: tuple[str, ...]
    metadata_columns: tuple[str, ...]
    headline: tuple[Headline, ...]
    findings: tuple[tuple[str, str], ...]
    per_class: pd.DataFrame | None
    confusion: np.ndarray | None
    reliability: pd.DataFrame | None
    top_confusions: pd.DataFrame
    slices: pd.DataFrame | None
    n_slices_tested: int
    discovered_slices: pd.DataFrame | None
    data_issues: pd.DataFrame
    label_issues: pd.DataFrame | None
    reviewed: pd.DataFrame
    relabel: pd.DataFrame
    failures: pd.DataFrame
    notes: tuple[str, ...] = ()

    __hash__ = None  # type: ignore[assignment]  # holds DataFrames


# ==============================================================================================
# Building


def build_report(
    run: Run,
    *,
    review_state: pd.DataFrame | None,
    title: str | None = None,
    max_examples: int = 12,
) -> Report:
    """Gather a run's results and a meeting's review data into a :class:`Report`.

    Parameters
    ----------
    run : Run
        An opened run (:func:`analysis.store.runstore.open_run`).
    review_state : DataFrame or None, keyword-only
        :meth:`analysis.store.review.ReviewStore.state` (one row per content hash: ``tags``, ``notes``,
        ``corrected_label``, ``last_reviewer``, ...), or None for a report without review data.
        Rows of images that are not in this run are ignored.
    title : str, keyword-only, optional
        Defaults to ``"Error analysis: <run id>"``.
    max_examples : int, keyword-only
        Representative failures to include (>= 0): the highest-loss wrong images, with up to
        ``min(4, max_examples // 3)`` of them taken from the top weak slice instead.

    Returns
    -------
    Report

    Raises
    ------
    TypeError, ValueError
        Naming the bad argument and what was expected.
    """
    if not isinstance(run, Run):
        raise TypeError(
            f"run must be an analysis.store.runstore.Run (use open_run(path)), got {type(run).__name__}"
        )
    if review_state is not None:
        if not isinstance(review_state, pd.DataFrame):
            raise TypeError(
                "review_state must be a DataFrame (ReviewStore.state()) or None, got "
                f"{type(review_state).__name__}"
            )
        missing = [c for c in REVIEW_STATE_COLUMNS if c not in review_state.columns]
        if missing:
            raise ValueError(
                f"review_state lacks column(s) {missing}; expected ReviewStore.state()'s columns "
                f"{list(REVIEW_STATE_COLUMNS)}, got {list(review_state.columns)}"
            )
    if title is not None and not isinstance(title, str):
        raise TypeError(f"title must be a str or None, got {type(title).__name__}")
    if isinstance(max_examples, bool) or not isinstance(max_examples, numbers.Integral):
        raise TypeError(f"max_examples must be an int >= 0, got {type(max_examples).__name__}")
    if max_examples < 0:
        raise ValueError(f"max_examples must be >= 0, got {max_examples}")
    return _build_core(run, review_state, title, int(max_examples))


def _guard(notes: list[str], what: str, fn: Callable[[], Any], default: Any = None) -> Any:
    """Run one part of the report; a failure becomes a note instead of losing the report."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
        notes.append(f"{what} could not be built: {type(exc).__name__}: {exc}")
        return default


def _build_core(run: Run, state: pd.DataFrame | None, title: str | None, k: int) -> Report:
    from ..store.runstore import now_iso
    from .findings import findings, load_metrics

    notes: list[str] = []
    manifest = run.manifest
    names = tuple(str(c) for c in run.class_names)
    samples = run.samples
    meta_cols = tuple(c for c in run.metadata_columns if c in samples.columns)
    metrics = _guard(notes, "The metrics", lambda: load_metrics(run))
    if metrics is None:
        notes.append(_missing_note(run, "metrics"))
    inputs = manifest.get("inputs", {}) or {}
    slices = _guard(notes, "The weak-slice table", lambda: _weak_slices(run))
    discovered = _guard(notes, "The discovered-slice table", lambda: run.table(schema.DISCOVERED))
    for name, table in (("slices", slices), ("discovered_slices", discovered)):
        if table is None:
            notes.append(_missing_note(run, name))
    label_issues = _guard(notes, "The label-issue table", lambda: _label_issues(run, notes))
    data_issues = _guard(
        notes,
        "The data-issue summary",
        lambda: _data_issues(run, notes),
        default=pd.DataFrame(columns=DATA_ISSUE_COLUMNS),
    )
    if state is None:
        notes.append("No review data was given: the report has no tags, notes or decisions.")
    reviewed = _guard(
        notes,
        "The reviewed-image list",
        lambda: _reviewed(samples, state, meta_cols),
        default=_reviewed(pd.DataFrame(), None, meta_cols),
    )
    relabel = _guard(
        notes,
        "The relabel list",
        lambda: _relabel(samples, state),
        default=pd.DataFrame(columns=RELABEL_COLUMNS),
    )
    top_slice = _top_slice(discovered, slices)
    failures = _guard(
        notes,
        "The representative failures",
        lambda: _failures(samples, top_slice, meta_cols, k, notes),
        default=pd.DataFrame(columns=[*_FAILURE_COLUMNS, *meta_cols, WHY]),
    )
    if metrics is not None:
        overall_error = 1.0 - float(metrics.accuracy.value)
    else:
        n_right = samples[schema.CORRECT].astype(bool).sum() if len(samples) else 0
        overall_error = 1.0 - n_right / len(samples) if len(samples) else math.nan
    return Report(
        title=title if title is not None else f"Error analysis: {run.run_id}",
        run_id=str(run.run_id),
        created=str(manifest.get("created", "")),
        generated=now_iso(),
        model=str((inputs.get("model") or inputs.get("predictions") or {}).get("name", "")),
        data=str((inputs.get("data") or {}).get("name", "")),
        n_samples=int(len(samples)),
        n_skipped=int(manifest.get("n_skipped", 0) or 0),
        overall_error=float(overall_error),
        class_names=names,
        metadata_columns=meta_cols,
        headline=() if metrics is None else _headline(metrics),
        findings=tuple(
            _guard(
                notes,
                "The findings",
                lambda: [(f.severity, f.message) for f in findings(run)],
                default=[],
            )
        ),
        per_class=None if metrics is None else _per_class(metrics.per_class, names),
        confusion=None if metrics is None else np.asarray(metrics.confusion, dtype=np.int64),
        reliability=None if metrics is None else metrics.reliability.copy(),
        top_confusions=_guard(
            notes,
            "The top confusions",
            lambda: _top_confusions(run, names),
            default=_top_confusions_empty(),
        ),
        slices=slices,
        n_slices_tested=_guard(notes, "The slice count", lambda: _n_tested(run), default=0),
        discovered_slices=discovered,
        data_issues=data_issues,
        label_issues=label_issues,
        reviewed=reviewed,
        relabel=relabel,
        failures=failures,
        notes=tuple(notes),
    )


def _missing_note(run: Run, name: str) -> str:
    title = _SECTION_TITLES.get(name, name)
    sec = run.sections.get(name)
    if not sec:
        return f"{title}: not in this run (the section was not computed)."
    status = sec.get("status", "unknown")
    why = sec.get("error") or sec.get("reason") or ""
    return f"{title}: not in this run (section {status}{': ' + str(why) if why else ''})."


def _headline(m) -> tuple[Headline, ...]:
    out = [
        Headline("Accuracy", m.accuracy, True, "Share of images predicted as labelled"),
        Headline(
            "Balanced accuracy",
            m.balanced_accuracy,
            True,
            "Mean recall over classes: robust to class imbalance",
        ),
        Headline("Macro F1", m.macro_f1, True, "Unweighted mean F1 over classes"),
        Headline("Weighted F1", m.weighted_f1, True, "F1 averaged with class support as weight"),
        Headline(
            "Weighted precision",
            m.weighted_precision,
            True,
            "Precision averaged with class support as weight",
        ),
        Headline(
            "Weighted recall",
            m.weighted_recall,
            True,
            "Recall averaged with class support as weight (equals accuracy)",
        ),
    ]
    if 2 in m.top_k:
        out.append(
            Headline(
                "Top-2 accuracy",
                m.top_k[2],
                True,
                "Share of images whose label is among the two most probable",
            )
        )
    out += [
        Headline(
            "ECE", m.ece, True, "Expected calibration error: mean |confidence − accuracy| over bins"
        ),
        Headline("Log loss", m.log_loss, False, "Mean cross-entropy of the given label, nats"),
        Headline("Macro ROC-AUC", m.macro_auc, False, "One-vs-rest ROC-AUC averaged over classes"),
    ]
    return tuple(out)


def _per_class(pc: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    out = pc.copy()
    out.insert(
        1, NAME, [names[int(c)] if 0 <= int(c) < len(names) else str(c) for c in out["class"]]
    )
    return out.reset_index(drop=True)


def _top_confusions_empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "true": pd.Series(dtype="int64"),
            TRUE_NAME: pd.Series(dtype=object),
            "pred": pd.Series(dtype="int64"),
            PRED_NAME_COL: pd.Series(dtype=object),
            "count": pd.Series(dtype="int64"),
            "share_of_true_class": pd.Series(dtype=float),
        }
    )


def _top_confusions(run: Run, names: tuple[str, ...]) -> pd.DataFrame:
    from .findings import top_confusion_pairs

    pairs = top_confusion_pairs(run, k=TOP_CONFUSIONS)
    if pairs.empty:
        return _top_confusions_empty()
    out = pairs[["true", "pred", "count", "share_of_true_class"]].reset_index(drop=True)
    out.insert(1, TRUE_NAME, [names[int(t)] for t in out["true"]])
    out.insert(3, PRED_NAME_COL, [names[int(p)] for p in out["pred"]])
    return out


def _weak_slices(run: Run) -> pd.DataFrame | None:
    from ..stats.slices import GAP, SIGNIFICANT

    table = run.table(schema.SLICES)
    if table is None:
        return None
    weak = table[table[SIGNIFICANT].astype(bool) & (table[GAP] > 0)]
    return weak.reset_index(drop=True)


def _n_tested(run: Run) -> int:
    table = run.table(schema.SLICES)
    return 0 if table is None else int(len(table))


def _top_slice(discovered: pd.DataFrame | None, slices: pd.DataFrame | None):
    """(spec json, description) of the worst significant slice, discovered ones first."""
    for table in (discovered, slices):
        if table is None or table.empty:
            continue
        sig = table[table["significant"].astype(bool) & (table["gap"] > 0)]
        if len(sig):
            return str(sig["spec"].iloc[0]), str(sig["description"].iloc[0])
    return None


def _label_issues(run: Run, notes: list[str]) -> pd.DataFrame | None:
    from ..data_issues.label_issues import GIVEN_LABEL, INDEX, REASON

    table = run.table(schema.LABEL_ISSUES)
    if table is None:
        notes.append(_missing_note(run, "label_issues"))
        return None
    s = run.samples
    names = run.class_names
    flagged = table[table[schema.IS_LABEL_ISSUE].astype(bool)]
    flagged = flagged.sort_values(schema.LABEL_ISSUE_SCORE, kind="mergesort")
    rows = flagged[INDEX].to_numpy(dtype=np.int64)
    return pd.DataFrame(
        {
            schema.SAMPLE_ID: s[schema.SAMPLE_ID].to_numpy()[rows],
            schema.RELPATH: s[schema.RELPATH].to_numpy()[rows],
            "given": [names[int(i)] for i in flagged[GIVEN_LABEL]],
            "suggested": [names[int(i)] for i in flagged[schema.SUGGESTED_LABEL]],
            schema.LABEL_ISSUE_SCORE: flagged[schema.LABEL_ISSUE_SCORE].to_numpy(dtype=float),
            "reason": flagged[REASON].astype(str).to_numpy(),
        }
    )


def _data_issues(run: Run, notes: list[str]) -> pd.DataFrame:

    s = run.samples
    n = len(s)
    rows: list[tuple[str, int, str]] = []
    issues = run.table(schema.LABEL_ISSUES)
    if issues is not None:
        k = int(issues[schema.IS_LABEL_ISSUE].astype(bool).sum())
        rows.append(
            (
                "suspected label errors",
                k,
                "confident learning: the model gives the label a low probability and prefers"
                " another class",
            )
        )
    if run.manifest.get("inputs", {}).get("reference") is None:
        notes.append("No reference (training) set was given: train/test leakage was not checked.")
    elif schema.LEAK_OF in s.columns:
        from ..data_issues.duplicates import leakage_impact

        leaked = s[schema.LEAK_OF].notna().to_numpy()
        imp = leakage_impact(s[schema.CORRECT].to_numpy(dtype=bool), leaked)
        rows.append(
            (
                "leaked from the reference set",
                imp.n_leaked,
                f"accuracy {fmt.estimate(imp.accuracy)} with them,"
                f" {fmt.estimate(imp.accuracy_clean)} without",
            )
        )
    pairs = run.table(schema.DUPLICATES)
    if pairs is None:
        notes.append(_missing_note(run, "duplicates"))
    else:
        within = pairs[pairs["scope"] == "within"] if len(pairs) else pairs
        if schema.DUPLICATE_OF in s.columns:
            k = int(s[schema.DUPLICATE_OF].notna().sum())
        else:
            k = len(set(within["i"].tolist()) | set(within["j"].tolist())) if len(within) else 0
        exact = int((within["kind"] == "exact").sum()) if len(within) else 0
        rows.append(
            (
                "near-duplicates inside the set",
                k,
                f"{len(within)} pairs ({exact} exact, {len(within) - exact} near)",
            )
        )
    summary = run.table(schema.OUTLIER_SUMMARY)
    found = run.table(schema.OUTLIERS)
    if summary is not None:
        for _, r in summary.iterrows():
            detail = (
                "no image"
                if not r["n"]
                else (
                    f"error rate {fmt.pct(r['error_rate'])}"
                    f" ({fmt.interval(r['error_low'], r['error_high'])}) vs"
                    f" {fmt.pct(r['rest_error_rate'])} elsewhere, p {fmt.p_value(r['p_value'])}"
                )
            )
            rows.append((f"outlier: {r['type']}", int(r["n"]), detail))
    elif found is not None:
        for kind, count in found["type"].value_counts(sort=False).items():
            rows.append((f"outlier: {kind}", int(count), ""))
    else:
        notes.append(_missing_note(run, "outliers"))
    out = pd.DataFrame(rows, columns=[ISSUE, IMAGES, DETAIL])
    out[IMAGES] = out[IMAGES].astype("int64")
    out.insert(2, SHARE, out[IMAGES] / n if n else math.nan)
    return out[DATA_ISSUE_COLUMNS]


def _reviewed(
    samples: pd.DataFrame, state: pd.DataFrame | None, meta_cols: tuple[str, ...]
) -> pd.DataFrame:
    base = [
        schema.SAMPLE_ID,
        schema.RELPATH,
        schema.PATH,
        schema.CONTENT_HASH,
        schema.LABEL_NAME,
        schema.PRED_NAME,
        schema.CORRECT,
        schema.CONFIDENCE,
        *meta_cols,
    ]
    columns = [*base, TAGS, NOTES, CORRECTED_LABEL, REVIEWED, REVIEWER]
    if state is None or state.empty or samples.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    st = pd.DataFrame(
        {
            schema.CONTENT_HASH: state["content_hash"].astype(str).to_numpy(),
            TAGS: [
                tuple(str(t) for t in (v if isinstance(v, (list, tuple, np.ndarray)) else ()))
                for v in state["tags"]
            ],
            NOTES: [
                tuple(
                    (str(d.get("reviewer", "")), str(d.get("text", "")))
                    for d in (v if isinstance(v, (list, tuple, np.ndarray)) else ())
                    if isinstance(d, dict)
                )
                for v in state["notes"]
            ],
            CORRECTED_LABEL: state["corrected_label"].fillna("").astype(str).to_numpy(),
            REVIEWED: (
                state["reviewed"].fillna(False).astype(bool).to_numpy()
                if "reviewed" in state.columns
                else False
            ),
            REVIEWER: state["last_reviewer"].fillna("").astype(str).to_numpy(),
        }
    ).drop_duplicates(schema.CONTENT_HASH, keep="last")
    merged = samples[base].merge(st, on=schema.CONTENT_HASH, how="inner")
    touched = (
        merged[TAGS].map(len).gt(0)
        | merged[NOTES].map(len).gt(0)
        | merged[CORRECTED_LABEL].ne("")
        | merged[REVIEWED]
    )
    merged = merged[touched].sort_values(schema.RELPATH, kind="mergesort")
    return merged[columns].reset_index(drop=True)


def _relabel(samples: pd.DataFrame, state: pd.DataFrame | None) -> pd.DataFrame:
    from ..store.review import relabel_list

    if state is None or state.empty or samples.empty:
        return pd.DataFrame(columns=RELABEL_COLUMNS)
    st = state.assign(corrected_label=state["corrected_label"].fillna("").astype(str))
    out = relabel_list(samples, st)
    return out.reindex(columns=RELABEL_COLUMNS).reset_index(drop=True)


_FAILURE_COLUMNS = [
    schema.SAMPLE_ID,
    schema.RELPATH,
    schema.PATH,
    schema.LABEL_NAME,
    schema.PRED_NAME,
    schema.CONFIDENCE,
    schema.LOSS,
]


def _failures(
    samples: pd.DataFrame,
    top_slice: tuple[str, str] | None,
    meta_cols: tuple[str, ...],
    k: int,
    notes: list[str],
) -> pd.DataFrame:
    mask = None
    if top_slice is not None and len(samples):
        from ..stats.slices import apply_slice, spec_from_json

        try:
            mask = apply_slice(samples, spec_from_json(top_slice[0]))
        except (TypeError, ValueError) as exc:
            notes.append(
                f"The top slice could not be applied to the samples ({exc}): the"
                " representative failures are the highest-loss ones only."
            )
    rows, why = _select_failures(
        samples[schema.CORRECT].to_numpy(dtype=bool),
        samples[schema.LOSS].to_numpy(dtype=float),
        slice_mask=mask,
        slice_description=None if top_slice is None else top_slice[1],
        max_examples=k,
    )
    out = samples[[*_FAILURE_COLUMNS, *meta_cols]].iloc[rows].reset_index(drop=True)
    out[WHY] = pd.Series(why, dtype=object)
    return out


def _select_failures(
    correct: np.ndarray,
    loss: np.ndarray,
    *,
    slice_mask: np.ndarray | None,
    slice_description: str | None,
    max_examples: int,
) -> tuple[np.ndarray, list[str]]:
    """Row positions of representative failures and why each was picked.

    The highest-loss wrong rows, except that up to ``min(SLICE_EXAMPLES, max_examples // 3)``
    places go to the highest-loss wrong rows of the top slice that are not already picked (the
    rest of those places go back to highest loss when the slice has fewer). Order: the
    highest-loss picks by loss, then the slice picks by loss.
    """
    wrong = np.flatnonzero(~correct)
    order = wrong[np.argsort(-np.nan_to_num(loss[wrong], nan=-np.inf), kind="stable")]
    n_slice = 0
    if slice_mask is not None and slice_description is not None and max_examples:
        n_slice = min(SLICE_EXAMPLES, max_examples // 3)
    n_loss = max_examples - n_slice
    by_loss = list(order[:n_loss])
    from_slice: list[int] = []
    if n_slice:
        taken = set(by_loss)
        from_slice = [int(i) for i in order if slice_mask[i] and i not in taken][:n_slice]
        if len(from_slice) < n_slice:  # give the unused places back to highest loss
            extra = [int(i) for i in order[n_loss:] if i not in set(from_slice)]
            by_loss += extra[: n_slice - len(from_slice)]
    rows = np.asarray([*by_loss, *from_slice], dtype=np.int64)
    why = [WHY_LOSS] * len(by_loss) + [f"top slice: {slice_description}"] * len(from_slice)
    return rows, why


# ==============================================================================================
# Escaping helpers


class _Html(str):
    """Markup this module built itself (its data parts already escaped); written as is."""


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def _text(x: Any) -> str:
    """A data value as display text; missing -> '—'."""
    return "—" if _missing(x) else str(x)


def _e(x: Any) -> str:
    """HTML-escape anything except markup built here."""
    if isinstance(x, _Html):
        return str(x)
    return html.escape(_text(x), quote=True)


_MD_ESCAPE = re.compile(r"([\\`*_\[\]<>|~&$])")
# block markers at the start of a text: heading, list item, thematic break, ordered list
_MD_LEADING = re.compile(r"^(\s*)(#{1,6}(?=\s|$)|[+\-=](?=\s|$)|-{3,}|={3,}|\d+[.)](?=\s|$))")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def _md(x: Any) -> str:
    """Escape a data value for GitHub Markdown: inline markup, table pipes, leading block marks."""
    text = _MD_ESCAPE.sub(r"\\\1", _text(x))
    text = _MD_LEADING.sub(lambda m: m.group(1) + re.sub(r"([^\d])", r"\\\1", m.group(2)), text)
    return _NEWLINES.sub("<br>", text)


def _csv_cell(x: Any) -> Any:
    if isinstance(x, str) and x.startswith(_FORMULA_START):
        return "'" + x
    return x


def _csv_text(df: pd.DataFrame) -> str:
    out = df.copy()
    out.columns = [_csv_cell(str(c)) for c in out.columns]
    for c in out.columns:
        col = out[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col):
            out[c] = col.map(_csv_cell)
    return out.to_csv(index=False, lineterminator="\n")


# ==============================================================================================
# Shared formatting of rows (one number style for every renderer)


def _pct_ci(value: Any, low: Any, high: Any) -> str:
    """'34.0% (21.3–49.5%)'; just the value when there is no interval; '—' when undefined."""
    if _missing(value):
        return "—"
    ci = fmt.interval(low, high)
    return fmt.pct(value) if ci == "—" else f"{fmt.pct(value)} ({ci})"


def _rate_cell(r: pd.Series) -> str:
    return _pct_ci(r["error_rate"], r["error_rate_low"], r["error_rate_high"])


def _gap_cell(gap: Any) -> str:
    return "—" if _missing(gap) else f"{100 * float(gap):+.1f} pts"


def _slice_rows(df: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = [
        "Slice",
        "Images",
        "Errors",
        "Error rate (95% CI)",
        "Elsewhere",
        "Gap",
        "Adjusted p",
        "Top confusion",
    ]
    rows = [
        [
            r["description"],
            int(r["n"]),
            int(r["errors"]),
            _rate_cell(r),
            fmt.pct(r["rest_error_rate"]),
            _gap_cell(r["gap"]),
            fmt.p_value(r["p_adj"]),
            r.get("top_confusion"),
        ]
        for _, r in df.iterrows()
    ]
    return header, rows


def _per_class_rows(pc: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = [
        "Class",
        "Images",
        "Predicted",
        "Precision (95% CI)",
        "Recall (95% CI)",
        "F1 (95% CI)",
        "ROC-AUC (95% CI)",
        "Average precision (95% CI)",
    ]

    def est(r, m):
        return _pct_ci(r[m], r[m + "_low"], r[m + "_high"])

    def score(r, m):  # AUC and AP are scores in [0, 1], shown as such, not as percentages
        if m not in r or _missing(r[m]):
            return "—"
        ci = fmt.interval(r.get(m + "_low"), r.get(m + "_high"), as_pct=False)
        return fmt.num(r[m]) if ci == "—" else f"{fmt.num(r[m])} ({ci})"

    rows = [
        [
            r[NAME],
            int(r["support"]),
            int(r["n_pred"]),
            est(r, "precision"),
            est(r, "recall"),
            est(r, "f1"),
            score(r, "roc_auc"),
            score(r, "average_precision"),
        ]
        for _, r in pc.iterrows()
    ]
    return header, rows


def _confusion_rows(tc: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = ["Given", "Predicted", "Images", "Share of the given class"]
    rows = [
        [r[TRUE_NAME], r[PRED_NAME_COL], int(r["count"]), fmt.pct(r["share_of_true_class"])]
        for _, r in tc.iterrows()
    ]
    return header, rows


def _issue_rows(di: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = ["Issue", "Images", "Share", "Detail"]
    rows = [[r[ISSUE], int(r[IMAGES]), fmt.pct(r[SHARE]), r[DETAIL]] for _, r in di.iterrows()]
    return header, rows


def _label_issue_rows(li: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = ["File", "Given", "Suggested", "Label quality", "Why"]
    rows = [
        [
            r[schema.RELPATH],
            r["given"],
            r["suggested"],
            fmt.num(r[schema.LABEL_ISSUE_SCORE]),
            r["reason"],
        ]
        for _, r in li.iterrows()
    ]
    return header, rows


def _relabel_rows(rl: pd.DataFrame) -> tuple[list[str], list[list[Any]]]:
    header = ["File", "Given label", "Corrected label", "Reviewer"]
    rows = [
        [r["relpath"], r["given_label"], r["corrected_label"], r["reviewer"]]
        for _, r in rl.iterrows()
    ]
    return header, rows


def _meta_text(r: pd.Series, cols: Sequence[str]) -> str:
    return "; ".join(f"{c}: {_text(r[c])}" for c in cols)


def _more(n_total: int, n_shown: int, csv_name: str) -> str:
    return (
        ""
        if n_total <= n_shown
        else (f"Showing {n_shown} of {n_total} rows; every row is in {CSV_DIR}/{csv_name}.csv.")
    )


# ==============================================================================================
# HTML

_CSS = """
:root { --ink:#1d2433; --muted:#5c6475; --line:#e3e6ec; --ok:#2a9d8f; --err:#e76f51;
        --accent:#264653; --bg:#fafbfc; }
* { box-sizing: border-box; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 Inter, "Helvetica Neue", Helvetica, Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 24px 64px; }
h1 { font-size: 28px; margin: 0 0 4px; }
h2 { font-size: 20px; margin: 36px 0 12px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 16px; margin: 20px 0 8px; }
.meta, .caption, .note { color: var(--muted); font-size: 13px; }
nav.toc { margin: 14px 0 0; font-size: 13px; }
nav.toc a { color: var(--accent); margin-right: 14px; text-decoration: none; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 12px; }
.metric { background:#fff; border:1px solid var(--line); border-radius:8px; padding:12px 14px; }
.metric .label { font-size: 13px; color: var(--muted); }
.metric .est { font-size: 17px; font-weight: 600; margin: 4px 0; }
.metric .help { font-size: 12px; color: var(--muted); }
table { border-collapse: collapse; width: 100%; background:#fff; font-size: 13px; margin: 8px 0; }
th, td { border-bottom: 1px solid var(--line); padding: 6px 8px; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f1f3f6; font-weight: 600; }
td.num, th.num { text-align: right; white-space: nowrap; }
ul.findings { padding-left: 0; list-style: none; }
ul.findings li { background:#fff; border:1px solid var(--line); border-left-width:4px;
                 border-radius:6px; padding:8px 12px; margin: 6px 0; }
ul.findings li.high { border-left-color: var(--err); }
ul.findings li.medium { border-left-color: #f4a261; }
ul.findings li.info { border-left-color: #457b9d; }
.sev { font-size: 11px; font-weight: 700; text-transform: uppercase; color: var(--muted);
       margin-right: 6px; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(230px, 1fr)); gap: 12px; }
figure.card { margin:0; background:#fff; border:1px solid var(--line); border-radius:8px;
              padding:8px; break-inside: avoid; page-break-inside: avoid; }
figure.card img { width: 100%; height: 170px; object-fit: contain; background:#f1f3f6;
                  border-radius: 4px; display:block; }
figure.card .noimg { height: 170px; display:flex; align-items:center; justify-content:center;
                     background:#f1f3f6; color: var(--muted); font-size: 12px; }
figcaption { font-size: 12.5px; margin-top: 6px; }
figcaption .path { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11.5px;
                   overflow-wrap: anywhere; }
.wrong { color: var(--err); font-weight: 600; }
.tag { display:inline-block; background:#e9f5f3; color:#1b6b61; border-radius: 10px;
       padding: 0 8px; margin: 2px 4px 2px 0; font-size: 11.5px; }
.decision { font-weight: 600; color: var(--accent); }
blockquote { margin: 6px 0; padding: 4px 8px; border-left: 3px solid var(--line);
             white-space: pre-wrap; overflow-wrap: anywhere; }
blockquote cite { display:block; color: var(--muted); font-style: normal; font-size: 11.5px; }
.figure { background:#fff; border:1px solid var(--line); border-radius:8px; padding:6px;
          margin: 8px 0; break-inside: avoid; page-break-inside: avoid; }
footer { margin-top: 48px; color: var(--muted); font-size: 12px; }
@media print {
  body { background: #fff; font-size: 12px; }
  main { max-width: none; padding: 0; }
  nav.toc { display: none; }
  h2 { break-after: avoid; page-break-after: avoid; }
  .metric, .figure, figure.card, tr { break-inside: avoid; page-break-inside: avoid; }
  a { color: inherit; text-decoration: none; }
}
"""

# Every network request is forbidden: the file must open offline and leak nothing when opened.
_CSP = (
    "default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline' 'unsafe-eval'; font-src data:; connect-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


def _html_table(
    header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()
) -> str:
    num = set(numeric)

    def cell(tag: str, i: int, v: Any) -> str:
        return f'<{tag} class="num">{_e(v)}</{tag}>' if i in num else f"<{tag}>{_e(v)}</{tag}>"

    head = "".join(cell("th", i, h) for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(cell("td", i, v) for i, v in enumerate(row)) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class _Figures:
    """Renders Plotly figures inline; plotly.js goes into the first one only."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fig) -> str:
        out = fig.to_html(
            full_html=False,
            include_plotlyjs=self.count == 0,
            config=_PLOTLY_CONFIG,
            div_id=f"figure-{self.count}",
        )
        self.count += 1
        return f'<div class="figure">{out}</div>'


def _image_data_uri(run: Run, sample_id: Any, path: Any) -> str | None:
    """The run's thumbnail, else a small JPEG made from the image file, as a data URI."""
    data = None
    sid = str(sample_id)
    if _SAMPLE_ID_OK.match(sid):
        try:
            data = run.thumbnail(sid)
        except OSError:
            data = None
    if data is None and isinstance(path, str) and path:
        try:
            from PIL import Image

            from ..loading.images import decode_image
            from ..loading.inference import THUMB_SIZE

            im = Image.fromarray(decode_image(path).rgb)
            im.thumbnail((THUMB_SIZE, THUMB_SIZE))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            data = buf.getvalue()
        except Exception:  # noqa: BLE001 - a missing or unreadable image shows a placeholder
            data = None
    if not data:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _card(run: Run, r: pd.Series, meta_cols: Sequence[str], extra: str = "") -> str:
    uri = _image_data_uri(run, r[schema.SAMPLE_ID], r[schema.PATH])
    img = (
        f'<img src="{uri}" alt="{_e(r[schema.RELPATH])}">'
        if uri
        else '<div class="noimg">image not available</div>'
    )
    wrong = r[schema.LABEL_NAME] != r[schema.PRED_NAME]
    pred = (
        f'<span class="wrong">{_e(r[schema.PRED_NAME])}</span>'
        if wrong
        else _e(r[schema.PRED_NAME])
    )
    lines = [
        f'<div class="path">{_e(r[schema.RELPATH])}</div>',
        f"<div>given <b>{_e(r[schema.LABEL_NAME])}</b> → predicted {pred}"
        f" · confidence {_e(fmt.pct(r[schema.CONFIDENCE]))}"
        + (f" · loss {_e(fmt.num(r[schema.LOSS], 2))}" if schema.LOSS in r else "")
        + "</div>",
    ]
    if meta_cols:
        lines.append(f'<div class="meta">{_e(_meta_text(r, meta_cols))}</div>')
    return f'<figure class="card">{img}<figcaption>{"".join(lines)}{extra}</figcaption></figure>'


def _review_extra(r: pd.Series) -> str:
    parts = []
    if r[TAGS]:
        parts.append(
            "<div>" + "".join(f'<span class="tag">{_e(t)}</span>' for t in r[TAGS]) + "</div>"
        )
    if r[CORRECTED_LABEL]:
        parts.append(f'<div class="decision">decision: relabel as {_e(r[CORRECTED_LABEL])}</div>')
    for who, text in r[NOTES]:
        parts.append(f"<blockquote>{_e(text)}<cite>— {_e(who)}</cite></blockquote>")
    parts.append(
        f'<div class="meta">last reviewer: {_e(r[REVIEWER])}'
        + (" · marked reviewed" if bool(r[REVIEWED]) else "")
        + "</div>"
    )
    return "".join(parts)


def _escaped_names(names: Sequence[str]) -> list[str]:
    return [html.escape(str(n), quote=True) for n in names]


def _figure_classes(cm: np.ndarray) -> np.ndarray:
    """Classes shown in the confusion figure: all, or those most involved in errors."""
    k = cm.shape[0]
    if k <= MAX_FIGURE_CLASSES:
        return np.arange(k)
    off = cm.astype(np.int64).copy()
    np.fill_diagonal(off, 0)
    involvement = off.sum(axis=0) + off.sum(axis=1)
    return np.sort(np.argsort(-involvement, kind="stable")[:MAX_FIGURE_CLASSES])


def to_html(report: Report, run: Run) -> str:
    """The report as one self-contained HTML page (opens offline, makes no network request).

    Parameters
    ----------
    report : Report
    run : Run
        The run the report was built from: its thumbnails (or image files) are embedded.

    Returns
    -------
    str
        A complete HTML document. plotly.js is inlined once (about 4.8 MB); images are base64
        JPEG data URIs; every data-derived string is escaped (see the module docstring).
    """
    _check_report(report)
    if not isinstance(run, Run):
        raise TypeError(f"run must be an analysis.store.runstore.Run, got {type(run).__name__}")
    if str(run.run_id) != report.run_id:
        raise ValueError(
            f"report was built from run {report.run_id!r} but run is {run.run_id!r}; pass the"
            " same run (its images are embedded)"
        )
    return _html_core(report, run)


def _html_core(report: Report, run: Run) -> str:
    from . import figures

    fig = _Figures()
    esc_names = _escaped_names(report.class_names)
    sections: list[tuple[str, str, str]] = []  # (anchor, heading, body)

    # headline
    if report.headline:
        cards = "".join(
            f'<div class="metric"><div class="label">{_e(h.name)}</div>'
            f'<div class="est">{_e(h.text)}</div><div class="help">{_e(h.help)}</div></div>'
            for h in report.headline
        )
        sections.append(("headline", "Headline metrics", f'<div class="cards">{cards}</div>'))

    # findings
    if report.findings:
        items = "".join(
            f'<li class="{_e(sev)}"><span class="sev">{_e(sev)}</span>{_e(msg)}</li>'
            for sev, msg in report.findings
        )
        body = f'<ul class="findings">{items}</ul>'
    else:
        body = '<p class="note">No warnings: no weak class, slice, label or leakage problem.</p>'
    sections.append(("findings", "What to look at", body))

    # classes
    if report.per_class is not None and len(report.per_class):
        pc = report.per_class
        support = pc["support"].to_numpy(dtype=np.int64)
        errors = support - pc["tp"].to_numpy(dtype=np.int64)
        body = fig(figures.class_distribution_figure(support, errors, esc_names))
        shown = pc
        caption = ""
        if len(pc) > MAX_FIGURE_CLASSES:
            shown = pc.nsmallest(MAX_FIGURE_CLASSES, "recall")
            caption = (
                f'<p class="caption">The {len(shown)} classes with the lowest recall of'
                f" {len(pc)}; the table has every class.</p>"
            )
        body += "<h3>Precision, recall and F1 with 95% intervals</h3>" + caption
        body += fig(figures.per_class_figure(shown, esc_names))
        header, rows = _per_class_rows(pc)
        body += _html_table(header, rows, numeric=(1, 2, 6))
        sections.append(("classes", "Classes", body))

    # confusions
    body = ""
    if report.confusion is not None and report.confusion.size:
        idx = _figure_classes(report.confusion)
        if len(idx) < report.confusion.shape[0]:
            body += (
                f'<p class="caption">The {len(idx)} classes most involved in errors of'
                f" {report.confusion.shape[0]}; the full matrix is in"
                f" {CSV_DIR}/confusion.csv.</p>"
            )
        sub = report.confusion[np.ix_(idx, idx)]
        body += fig(figures.confusion_figure(sub, [esc_names[i] for i in idx]))
    if len(report.top_confusions):
        header, rows = _confusion_rows(report.top_confusions)
        body += "<h3>Most frequent confusions</h3>" + _html_table(header, rows, numeric=(2, 3))
    elif report.n_samples:
        body += '<p class="note">No errors.</p>'
    if body:
        sections.append(("confusions", "Confusions", body))

    # calibration
    rel = report.reliability
    if rel is not None and len(rel) and (rel["count"] > 0).any():
        sections.append(
            (
                "calibration",
                "Calibration",
                '<p class="caption">Accuracy per confidence bin with 95% intervals; the'
                " dashed line is perfect calibration.</p>" + fig(figures.reliability_figure(rel)),
            )
        )

    # slices
    for anchor, heading, table, csv_name, intro in (
        (
            "slices",
            "Weak slices",
            report.slices,
            "slices",
            f"Single-condition slices with significantly more errors than the rest"
            f" ({report.n_slices_tested} slices tested, Benjamini-Hochberg adjusted).",
        ),
        (
            "discovered",
            "Discovered slices",
            report.discovered_slices,
            "discovered_slices",
            "Conjunctions of up to three conditions found by slice discovery, significant after"
            " correction for every candidate tested.",
        ),
    ):
        if table is None:
            continue
        body = f'<p class="caption">{_e(intro)}</p>'
        if table.empty:
            body += '<p class="note">None.</p>'
        else:
            shown = table.head(MAX_HTML_ROWS)
            esc = shown.assign(
                description=[html.escape(str(d), quote=True) for d in shown["description"]]
            )
            chart = figures.slice_interval_figure(esc, overall_error=report.overall_error)
            chart.update_layout(margin=dict(t=36))  # room for the "overall" label on top
            body += fig(chart)
            header, rows = _slice_rows(shown)
            body += _html_table(header, rows, numeric=(1, 2, 3, 4, 5, 6))
            more = _more(len(table), len(shown), csv_name)
            if more:
                body += f'<p class="note">{_e(more)}</p>'
        sections.append((anchor, heading, body))

    # data issues
    body = ""
    if len(report.data_issues):
        header, rows = _issue_rows(report.data_issues)
        body += _html_table(header, rows, numeric=(1, 2))
    if report.label_issues is not None and len(report.label_issues):
        shown = report.label_issues.head(MAX_HTML_ROWS)
        header, rows = _label_issue_rows(shown)
        body += "<h3>Suspected label errors, most suspicious first</h3>"
        body += _html_table(header, rows, numeric=(3,))
        more = _more(len(report.label_issues), len(shown), "label_issues")
        if more:
            body += f'<p class="note">{_e(more)}</p>'
    if body:
        sections.append(("data-issues", "Data issues", body))

    # failures
    if len(report.failures):
        cards = "".join(
            _card(run, r, report.metadata_columns, f'<div class="meta">{_e(r[WHY])}</div>')
            for _, r in report.failures.iterrows()
        )
        body = (
            '<p class="caption">The most confidently wrong images, and some from the top'
            f' slice.</p><div class="gallery">{cards}</div>'
        )
    else:
        body = '<p class="note">No misclassified images.</p>'
    sections.append(("failures", "Representative failures", body))

    # reviewed
    rv = report.reviewed
    if len(rv):
        shown = rv.head(MAX_HTML_CARDS)
        cards = "".join(
            _card(run, r, report.metadata_columns, _review_extra(r)) for _, r in shown.iterrows()
        )
        body = f'<div class="gallery">{cards}</div>'
        more = _more(len(rv), len(shown), "reviewed")
        if more:
            body += f'<p class="note">{_e(more)}</p>'
    else:
        body = '<p class="note">No image of this run has been reviewed.</p>'
    sections.append(("reviewed", "Reviewed images", body))

    # relabel list
    if len(report.relabel):
        header, rows = _relabel_rows(report.relabel)
        body = (
            '<p class="caption">Images whose label a reviewer corrected (also in'
            f" {RELABEL_CSV}).</p>" + _html_table(header, rows)
        )
    else:
        body = '<p class="note">No label was corrected.</p>'
    sections.append(("relabel", "Relabel list", body))

    if report.notes:
        items = "".join(f"<li>{_e(n)}</li>" for n in report.notes)
        sections.append(("notes", "Notes", f'<ul class="note">{items}</ul>'))

    toc = "".join(f'<a href="#{a}">{_e(h)}</a>' for a, h, _ in sections)
    main = "".join(f'<section id="{a}"><h2>{_e(h)}</h2>{b}</section>' for a, h, b in sections)
    meta = " · ".join(
        _e(x)
        for x in (
            f"run {report.run_id}",
            f"model {report.model or '—'}",
            f"data {report.data or '—'}",
            f"{report.n_samples:,} images",
            f"{len(report.class_names)} classes",
            *([f"{report.n_skipped} files skipped"] if report.n_skipped else []),
            f"analysed {report.created or '—'}",
            f"report generated {report.generated}",
        )
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_e(_CSP)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="generator" content="errorscope">'
        f"<title>{_e(report.title)}</title><style>{_CSS}</style></head>\n"
        f'<body><main><header><h1>{_e(report.title)}</h1><div class="meta">{meta}</div>'
        f'<nav class="toc">{toc}</nav></header>\n{main}\n'
        "<footer>Generated by errorscope. Intervals are 95% (Wilson for proportions, bootstrap"
        " for averages); “—” marks a value that is undefined.</footer>"
        "</main></body></html>\n"
    )


# ==============================================================================================
# Markdown


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = [
        "| " + " | ".join(_md(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown (tables, no images, no figures).

    Every data-derived string is escaped: characters that make inline markup or break a table
    (``\\ ` * _ [ ] < > | ~ & $``) get a backslash, a leading ``#``, ``+``, ``-``, ``=`` or
    ``1.`` is escaped, and line breaks become ``<br>``.
    """
    _check_report(report)
    out: list[str] = [f"# {_md(report.title)}", ""]
    meta = [
        f"run {report.run_id}",
        f"model {report.model or '—'}",
        f"data {report.data or '—'}",
        f"{report.n_samples:,} images",
        f"{len(report.class_names)} classes",
    ]
    if report.n_skipped:
        meta.append(f"{report.n_skipped} files skipped")
    meta += [f"analysed {report.created or '—'}", f"report generated {report.generated}"]
    out += [" · ".join(_md(m) for m in meta), ""]

    def section(heading: str, *blocks: str) -> None:
        out.extend([f"## {heading}", ""])
        for b in blocks:
            if b:
                out.extend([b, ""])

    if report.headline:
        section(
            "Headline metrics",
            _md_table(["Metric", "Value (95% CI)"], [[h.name, h.text] for h in report.headline]),
        )
    section(
        "What to look at",
        "\n".join(f"- **{_md(sev)}**: {_md(msg)}" for sev, msg in report.findings)
        or "No warnings.",
    )
    if report.per_class is not None and len(report.per_class):
        section("Per-class metrics", _md_table(*_per_class_rows(report.per_class)))
    if len(report.top_confusions):
        section("Most frequent confusions", _md_table(*_confusion_rows(report.top_confusions)))
    for heading, table, csv_name in (
        ("Weak slices", report.slices, "slices"),
        ("Discovered slices", report.discovered_slices, "discovered_slices"),
    ):
        if table is None:
            continue
        if table.empty:
            section(heading, "None.")
        else:
            shown = table.head(MAX_HTML_ROWS)
            section(
                heading,
                _md_table(*_slice_rows(shown)),
                _md(_more(len(table), len(shown), csv_name)),
            )
    if len(report.data_issues):
        blocks = [_md_table(*_issue_rows(report.data_issues))]
        if report.label_issues is not None and len(report.label_issues):
            shown = report.label_issues.head(MAX_HTML_ROWS)
            blocks += [
                "### Suspected label errors",
                _md_table(*_label_issue_rows(shown)),
                _md(_more(len(report.label_issues), len(shown), "label_issues")),
            ]
        section("Data issues", *blocks)
    if len(report.failures):
        cols = report.metadata_columns
        header = ["File", "Given", "Predicted", "Confidence", "Loss", "Why"]
        header += ["Metadata"] if cols else []
        rows = [
            [
                r[schema.RELPATH],
                r[schema.LABEL_NAME],
                r[schema.PRED_NAME],
                fmt.pct(r[schema.CONFIDENCE]),
                fmt.num(r[schema.LOSS], 2),
                r[WHY],
            ]
            + ([_meta_text(r, cols)] if cols else [])
            for _, r in report.failures.iterrows()
        ]
        section("Representative failures", _md_table(header, rows))
    else:
        section("Representative failures", "No misclassified images.")
    if len(report.reviewed):
        rows = [
            [
                r[schema.RELPATH],
                r[schema.LABEL_NAME],
                r[schema.PRED_NAME],
                "; ".join(r[TAGS]),
                r[CORRECTED_LABEL] or "—",
                "\n".join(f"{who}: {text}" for who, text in r[NOTES]) or "—",
                r[REVIEWER],
            ]
            for _, r in report.reviewed.iterrows()
        ]
        section(
            "Reviewed images",
            _md_table(
                ["File", "Given", "Predicted", "Tags", "Relabel as", "Notes", "Last reviewer"], rows
            ),
        )
    else:
        section("Reviewed images", "No image of this run has been reviewed.")
    if len(report.relabel):
        section("Relabel list", _md_table(*_relabel_rows(report.relabel)))
    else:
        section("Relabel list", "No label was corrected.")
    if report.notes:
        section("Notes", "\n".join(f"- {_md(n)}" for n in report.notes))
    return "\n".join(out).rstrip() + "\n"


# ==============================================================================================
# CSV


def to_csv_tables(report: Report) -> dict[str, str]:
    """The report's tables as CSV text, by name.

    Returns
    -------
    dict of str -> str
        ``headline, per_class, confusion, top_confusions, slices, discovered_slices,
        data_issues, label_issues, failures, reviewed, relabel_list``; a table the run does not
        have (no metrics, no slices, no label issues) is left out. Numbers are unformatted;
        ``reviewed`` joins tags with ``"; "`` and notes as ``"reviewer: text"`` lines. Text cells
        that a spreadsheet would run as a formula get a leading ``'``.
    """
    _check_report(report)
    out: dict[str, pd.DataFrame] = {}
    if report.headline:
        out["headline"] = pd.DataFrame(
            [
                {
                    "metric": h.name,
                    "value": h.estimate.value,
                    "low": h.estimate.low,
                    "high": h.estimate.high,
                    "method": h.estimate.method,
                    "n": h.estimate.n,
                }
                for h in report.headline
            ]
        )
    if report.per_class is not None:
        out["per_class"] = report.per_class
    if report.confusion is not None:
        names = list(report.class_names)
        cm = pd.DataFrame(report.confusion, columns=names)
        cm.insert(0, "given \\ predicted", names)
        out["confusion"] = cm
    out["top_confusions"] = report.top_confusions
    if report.slices is not None:
        out["slices"] = report.slices
    if report.discovered_slices is not None:
        out["discovered_slices"] = report.discovered_slices
    out["data_issues"] = report.data_issues
    if report.label_issues is not None:
        out["label_issues"] = report.label_issues
    out["failures"] = report.failures
    rv = report.reviewed.copy()
    rv[TAGS] = rv[TAGS].map(lambda t: "; ".join(t)).astype(object)
    rv[NOTES] = rv[NOTES].map(lambda ns: "\n".join(f"{w}: {t}" for w, t in ns)).astype(object)
    out["reviewed"] = rv
    out["relabel_list"] = report.relabel
    return {name: _csv_text(df) for name, df in out.items()}


# ==============================================================================================
# Writing


def _write_html(report: Report, run: Run, out_dir: Path) -> list[Path]:
    p = out_dir / REPORT_HTML
    p.write_text(to_html(report, run), encoding="utf-8")
    return [p]


def _write_md(report: Report, run: Run, out_dir: Path) -> list[Path]:
    p = out_dir / REPORT_MD
    p.write_text(to_markdown(report), encoding="utf-8")
    return [p]


def _write_csv(report: Report, run: Run, out_dir: Path) -> list[Path]:
    tables = to_csv_tables(report)
    d = out_dir / CSV_DIR
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in tables.items():
        p = d / f"{name}.csv"
        p.write_text(text, encoding="utf-8", newline="")
        paths.append(p)
    p = out_dir / RELABEL_CSV
    p.write_text(tables["relabel_list"], encoding="utf-8", newline="")
    paths.append(p)
    return paths


#: format name -> writer ``(report, run, out_dir) -> written paths``
FORMATS: dict[str, Callable[[Report, Run, Path], list[Path]]] = {
    "html": _write_html,
    "md": _write_md,
    "csv": _write_csv,
}


def write_report(
    report: Report, run: Run, out_dir: str | Path, formats: Sequence[str] = ("html", "md", "csv")
) -> list[Path]:
    """Write the report in the given formats into ``out_dir`` (created if needed).

    ``html`` -> ``report.html``; ``md`` -> ``report.md``; ``csv`` -> ``csv/<table>.csv`` plus
    ``relabel_list.csv`` at the top. Existing files of the same names are replaced.

    Returns
    -------
    list of Path
        The files written, in format order.
    """
    _check_report(report)
    if isinstance(formats, str):
        formats = (formats,)
    formats = list(dict.fromkeys(formats))
    if not formats:
        raise ValueError(f"formats must name at least one of {list(FORMATS)}, got none")
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown report format(s) {unknown}; valid formats: {list(FORMATS)}")
    if "html" in formats:  # validate before writing anything
        if not isinstance(run, Run):
            raise TypeError(f"run must be an analysis.store.runstore.Run, got {type(run).__name__}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for f in formats:
        written += FORMATS[f](report, run, out)
    return written


def _check_report(report: Any) -> None:
    if not isinstance(report, Report):
        raise TypeError(
            f"report must be a Report (build_report(run, ...)), got {type(report).__name__}"
        )
