"""The report's tables as CSV text: data for spreadsheets and relabelling tools.

Values are written as they are (CSV is data, so no HTML or Markdown escaping), except that a text
cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``
so that a spreadsheet does not evaluate it as a formula (OWASP's CSV-injection advice).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from .model import NOTES, TAGS, Report, check_report

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(x: Any) -> Any:
    """``x``, with a leading ``'`` if it is text a spreadsheet would run as a formula."""
    if isinstance(x, str) and x.startswith(_FORMULA_START):
        return "'" + x
    return x


def csv_text(df: pd.DataFrame) -> str:
    """``df`` as CSV text (``\\n`` line ends, no index), formulas defused in cells and headers."""
    out = df.copy()
    out.columns = [csv_cell(str(c)) for c in out.columns]
    for c in out.columns:
        col = out[c]
        if col.dtype == object or pd.api.types.is_string_dtype(col):
            out[c] = col.map(csv_cell)
    return out.to_csv(index=False, lineterminator="\n")


#: Classes up to which the confusion CSV is the matrix; beyond, one row per non-zero cell (at
#: 10,000 classes the matrix was 200 MB of mostly zeros).
CONFUSION_MATRIX_CSV_MAX = 100


def confusion_table(cm: np.ndarray, class_names) -> pd.DataFrame:
    """The confusion counts for a spreadsheet: the matrix (rows = given, columns = predicted)
    up to :data:`CONFUSION_MATRIX_CSV_MAX` classes; beyond, ``given, predicted, count`` for
    every non-zero cell (diagonal included), given then predicted in class order."""
    names = [str(c) for c in class_names]
    cm = np.asarray(cm)
    if len(names) <= CONFUSION_MATRIX_CSV_MAX:
        out = pd.DataFrame(cm, columns=names)
        out.insert(0, "given \\ predicted", names)
        return out
    t, p = np.nonzero(cm)
    arr = np.asarray(names, dtype=object)
    return pd.DataFrame({"given": arr[t], "predicted": arr[p], "count": cm[t, p].astype(np.int64)})


def to_csv_tables(report: Report) -> dict[str, str]:
    """The report's tables as CSV text, by name.

    Returns
    -------
    dict of str -> str
        ``headline, per_class, confusion (:func:`confusion_table`), top_confusions, slices,
        discovered_slices,
        data_issues, label_issues, action_plan, failures, reviewed, relabel_list``; a table the
        run does not have (no metrics, no slices, no label issues, no triage) is left out.
        ``action_plan`` has the URL of each item's images (``images_url``) and of its group's
        errors (``group_url``) in the dashboard. Numbers are unformatted;
        ``reviewed`` joins tags with ``"; "`` and notes as ``"reviewer: text"`` lines. Text cells
        that a spreadsheet would run as a formula get a leading ``'``.
    """
    check_report(report)
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
        out["confusion"] = confusion_table(report.confusion, report.class_names)
    out["top_confusions"] = report.top_confusions
    if report.slices is not None:
        out["slices"] = report.slices
    if report.discovered_slices is not None:
        out["discovered_slices"] = report.discovered_slices
    out["data_issues"] = report.data_issues
    if report.label_issues is not None:
        out["label_issues"] = report.label_issues
    if report.action_plan is not None:
        out["action_plan"] = _plan_table(report.action_plan)
    out["failures"] = report.failures
    rv = report.reviewed.copy()
    rv[TAGS] = rv[TAGS].map(lambda t: "; ".join(t)).astype(object)
    rv[NOTES] = rv[NOTES].map(lambda ns: "\n".join(f"{w}: {t}" for w, t in ns)).astype(object)
    out["reviewed"] = rv
    out["relabel_list"] = report.relabel
    return {name: csv_text(df) for name, df in out.items()}


def _plan_table(plan) -> pd.DataFrame:
    import json

    from ...triage.plan import action_plan

    def url(text):
        try:
            q = json.loads(text or "{}")
        except (TypeError, ValueError):
            return ""
        return (plan.url(q) or "") if isinstance(q, dict) else ""

    t = action_plan(plan.causes)
    t["images_url"] = t["query"].map(url).astype(object)
    t["group_url"] = [
        "" if k == "whole_set" else url(q)
        for k, q in zip(t["group_kind"], t["group_query"], strict=True)
    ]
    return t
