"""The report's data model: :class:`Report`, gathered from a run by :func:`build_report`.

Everything a review meeting takes away from a run, as data: headline metrics with 95% intervals,
per-class metrics, confusion counts and the top confusions, weak and discovered slices,
data-issue counts, the reviewed images with their tags, notes and decisions, the relabel list and
representative failures. A section the run does not have (it failed, was skipped, or the run
predates it) is simply absent and explained in ``Report.notes``. Nothing here formats for a
medium: the renderers (``render_html``, ``render_markdown``, ``render_csv``) do that.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ... import schema
from ...store.runstore import Run
from .. import formatting as fmt

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

#: Where the report's action-plan numbers link to (the dashboard's default address); the
#: dashboard's own Report page passes the address it is served at.
DEFAULT_DASHBOARD_URL = "http://127.0.0.1:8501"

WHY_LOSS = "highest loss"
SLICE_EXAMPLES = 4  # at most this many failures come from the top slice (and max_examples // 3)
TOP_CONFUSIONS = 8

# Sections of the run the report reads, with their titles (for the notes on missing ones)
_SECTION_TITLES = {
    "metrics": "Headline and per-class metrics",
    "slices": "Weak slices",
    "discovered_slices": "Discovered slices",
    "label_issues": "Suspected label errors",
    "duplicates": "Near-duplicates and leakage",
    "outliers": "Property outliers",
    "triage": "Action plan (root-cause triage)",
}


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
class ActionPlan:
    """The root-cause triage's action plan (:mod:`analysis.triage.plan`), as the report shows it.

    Attributes
    ----------
    causes : DataFrame
        Rows of the triage table (:data:`analysis.triage.table.TRIAGE_COLUMNS`) that the plan
        lists: claimed causes (significant after correction), whole-set issues found, and one
        "none of these" row per group no cause explains; costliest group first.
    rest : dict of int -> tuple of str
        Per group rank, the causes tested and not significant.
    not_tested : tuple of str
        "unfamiliar inputs: not tested, needs ..." lines.
    note : str
        How many hypotheses were tested and the false-discovery rate.
    run_id, dashboard_url : str
        Each number links to ``<dashboard_url>/gallery?run=<run_id>&...``: its images.
    """

    causes: pd.DataFrame
    rest: dict
    not_tested: tuple[str, ...]
    note: str
    run_id: str
    dashboard_url: str

    __hash__ = None  # type: ignore[assignment]  # holds a DataFrame

    def url(self, query: dict | None) -> str | None:
        """The dashboard gallery URL of a stored query (None when the query is empty)."""
        from urllib.parse import urlencode

        from ..query import P_RUN, ImageQuery

        if not query:
            return None
        params = ImageQuery.from_params({k: str(v) for k, v in query.items()}).to_params()
        params[P_RUN] = self.run_id
        return f"{self.dashboard_url.rstrip('/')}/gallery?{urlencode(params)}"


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
    action_plan : ActionPlan or None
        The root-cause triage's action plan (None when the run has no triage).
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
    label_words: str = ""  # label_words.label_issue_summary: expectation and ranking, plain words
    action_plan: ActionPlan | None = None

    __hash__ = None  # type: ignore[assignment]  # holds DataFrames


# ==============================================================================================
# Building


def build_report(
    run: Run,
    *,
    review_state: pd.DataFrame | None,
    title: str | None = None,
    max_examples: int = 12,
    dashboard_url: str = DEFAULT_DASHBOARD_URL,
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
    dashboard_url : str, keyword-only
        The dashboard's address: each number of the action plan links to its images there.

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
    if not isinstance(dashboard_url, str) or not dashboard_url.startswith(("http://", "https://")):
        raise ValueError(
            f"dashboard_url must be an http(s) address such as {DEFAULT_DASHBOARD_URL!r}, got"
            f" {dashboard_url!r}"
        )
    return _build_core(run, review_state, title, int(max_examples), dashboard_url)


def _guard(notes: list[str], what: str, fn: Callable[[], Any], default: Any = None) -> Any:
    """Run one part of the report; a failure becomes a note instead of losing the report."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others
        notes.append(f"{what} could not be built: {type(exc).__name__}: {exc}")
        return default


def _build_core(
    run: Run, state: pd.DataFrame | None, title: str | None, k: int, dashboard_url: str
) -> Report:
    from ...store.runstore import now_iso
    from ..findings import findings, load_metrics

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
    label_words = _guard(notes, "The label-issue words", lambda: _label_words(run), default="")
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
    plan = _guard(notes, "The action plan", lambda: _action_plan(run, state, dashboard_url))
    if plan is None and not any(n.startswith("The action plan") for n in notes):
        notes.append(_missing_note(run, "triage"))
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
        label_words=label_words,
        action_plan=plan,
    )


def _action_plan(run: Run, state: pd.DataFrame | None, dashboard_url: str) -> ActionPlan | None:
    """The triage's plan: the stored one, recomputed when reviews or a robustness run came
    later (:func:`analysis.triage.runs.load_triage`); None for a run whose triage is absent."""
    from ...triage import table as T
    from ...triage.plan import not_tested
    from ...triage.runs import load_triage, stored_triage

    if run.table(schema.TRIAGE) is None:
        return None  # an older run, or the section failed: said in the notes
    res = load_triage(run, review=state)
    if res is None:
        res = stored_triage(run)
    t = res.table
    causes = t[t[T.STATUS].isin(["significant", "found", "none"])].reset_index(drop=True)
    rest = {
        int(rank): tuple(dict.fromkeys(g[T.CAUSE_LABEL]))
        for rank, g in t[t[T.STATUS] == "not significant"].groupby(T.GROUP_RANK)
    }
    return ActionPlan(
        causes=causes,
        rest=rest,
        not_tested=tuple(not_tested(t)),
        note=T._n_tested_note(res.info),
        run_id=str(run.run_id),
        dashboard_url=dashboard_url,
    )


def _label_words(run: Run) -> str:
    from ..label_words import label_issue_summary

    words = label_issue_summary(run)
    return "" if words is None or not words.n_flagged else f"{words.expectation} {words.ranking}"


def _outlier_verdict(r) -> str:
    """A type's test in words: one-sided, corrected over the types (older runs: the raw p)."""
    if "p_adj" not in r or pd.isna(r["p_adj"]):
        return f"p {fmt.p_value(r['p_value'])}"
    word = "significantly worse" if bool(r.get("significant", False)) else "not significantly worse"
    return f"{word} (adjusted p {fmt.p_value(r['p_adj'])})"


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
    from ..findings import top_confusion_pairs

    pairs = top_confusion_pairs(run, k=TOP_CONFUSIONS)
    if pairs.empty:
        return _top_confusions_empty()
    out = pairs[["true", "pred", "count", "share_of_true_class"]].reset_index(drop=True)
    out.insert(1, TRUE_NAME, [names[int(t)] for t in out["true"]])
    out.insert(3, PRED_NAME_COL, [names[int(p)] for p in out["pred"]])
    return out


def _weak_slices(run: Run) -> pd.DataFrame | None:
    from ...stats.slices import GAP, SIGNIFICANT

    table = run.table(schema.SLICES)
    if table is None:
        return None
    weak = table[table[SIGNIFICANT].astype(bool) & (table[GAP] > 0)]
    if "model_output" in weak.columns:  # slices on the model's own output are not weak slices
        weak = weak[~weak["model_output"].astype(bool)]
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
        if "model_output" in sig.columns:
            sig = sig[~sig["model_output"].astype(bool)]
        if len(sig):
            return str(sig["spec"].iloc[0]), str(sig["description"].iloc[0])
    return None


def _label_issues(run: Run, notes: list[str]) -> pd.DataFrame | None:
    from ...data_issues.label_issues import GIVEN_LABEL, INDEX, REASON

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
        from ...data_issues.duplicates import leakage_impact

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
                    f" {fmt.pct(r['rest_error_rate'])} elsewhere,"
                    f" {_outlier_verdict(r)}"
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
    from ...store.review import relabel_list

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
        from ...stats.slices import apply_slice, spec_from_json

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


def check_report(report: Any) -> None:
    """Raise ``TypeError`` unless ``report`` is a :class:`Report` (every renderer's first line)."""
    if not isinstance(report, Report):
        raise TypeError(
            f"report must be a Report (build_report(run, ...)), got {type(report).__name__}"
        )
