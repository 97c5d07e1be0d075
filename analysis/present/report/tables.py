"""Display tables shared by the HTML and Markdown renderers: one number style for both.

Each function turns one of the report's DataFrames into a :class:`Table` of display values
(formatted numbers, data strings as they are). Escaping is the renderer's job, at the point where
it writes a cell out; nothing here is escaped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ... import schema
from .. import formatting as fmt
from .model import (
    CSV_DIR,
    DETAIL,
    IMAGES,
    ISSUE,
    NAME,
    PRED_NAME_COL,
    SHARE,
    TRUE_NAME,
)

MAX_ROWS = 50  # rows of long tables shown in HTML / Markdown; the CSV has every row


@dataclass(frozen=True)
class Table:
    """A table to show: column headings, rows of display values, right-aligned column indices."""

    header: Sequence[str]
    rows: Sequence[Sequence[Any]]
    numeric: tuple[int, ...] = ()


def missing(x: Any) -> bool:
    """None, NaN, NaT or pd.NA."""
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def text(x: Any) -> str:
    """A data value as display text; missing -> '—'."""
    return "—" if missing(x) else str(x)


def _pct_ci(value: Any, low: Any, high: Any) -> str:
    """'34.0% (21.3–49.5%)'; just the value when there is no interval; '—' when undefined."""
    if missing(value):
        return "—"
    ci = fmt.interval(low, high)
    return fmt.pct(value) if ci == "—" else f"{fmt.pct(value)} ({ci})"


def _rate_cell(r: pd.Series) -> str:
    return _pct_ci(r["error_rate"], r["error_rate_low"], r["error_rate_high"])


def _gap_cell(gap: Any) -> str:
    return "—" if missing(gap) else f"{100 * float(gap):+.1f} pts"


def slice_rows(df: pd.DataFrame) -> Table:
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
    return Table(header, rows, (1, 2, 3, 4, 5, 6))


def per_class_rows(pc: pd.DataFrame) -> Table:
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
        if m not in r or missing(r[m]):
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
        for r in pc.to_dict("records")  # plain dicts: iterrows cost 2 s at 10,000 classes
    ]
    return Table(header, rows, (1, 2, 6))


def confusion_rows(tc: pd.DataFrame) -> Table:
    header = ["Given", "Predicted", "Images", "Share of the given class"]
    rows = [
        [r[TRUE_NAME], r[PRED_NAME_COL], int(r["count"]), fmt.pct(r["share_of_true_class"])]
        for _, r in tc.iterrows()
    ]
    return Table(header, rows, (2, 3))


def issue_rows(di: pd.DataFrame) -> Table:
    header = ["Issue", "Images", "Share", "Detail"]
    rows = [[r[ISSUE], int(r[IMAGES]), fmt.pct(r[SHARE]), r[DETAIL]] for _, r in di.iterrows()]
    return Table(header, rows, (1, 2))


def label_issue_rows(li: pd.DataFrame) -> Table:
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
    return Table(header, rows, (3,))


def relabel_rows(rl: pd.DataFrame) -> Table:
    header = ["File", "Given label", "Corrected label", "Reviewer"]
    rows = [
        [r["relpath"], r["given_label"], r["corrected_label"], r["reviewer"]]
        for _, r in rl.iterrows()
    ]
    return Table(header, rows)


def meta_text(r: pd.Series, cols: Sequence[str]) -> str:
    return "; ".join(f"{c}: {text(r[c])}" for c in cols)


def more_note(n_total: int, n_shown: int, csv_name: str) -> str:
    return (
        ""
        if n_total <= n_shown
        else (f"Showing {n_shown} of {n_total} rows; every row is in {CSV_DIR}/{csv_name}.csv.")
    )


# ---------------------------------------------------------------------------------- action plan


@dataclass(frozen=True)
class PlanCause:
    """One item of the action plan: a claimed cause (or "none of these") of a group.

    ``action`` is the recommendation as ``(text, url)`` parts: each number with the dashboard
    URL of its images, the words between them with ``url=None``.
    """

    head: str
    share: str
    p_adj: str
    action: tuple[tuple[str, str | None], ...]
    evidence: str
    row: Any  # the triage row (its evidence chart)


@dataclass(frozen=True)
class PlanGroup:
    rank: int
    group: str
    kind: str
    cost: str
    url: str | None  # the group's errors
    causes: tuple[PlanCause, ...]
    rest: str  # causes tested, not significant


def plan_groups(plan) -> list[PlanGroup]:
    """The action plan (:class:`.model.ActionPlan`) as groups of items, costliest first."""
    import json
    import math

    from ...triage import plan as tp
    from ...triage import table as T

    def query(text) -> dict:
        try:
            q = json.loads(text or "{}")
        except (TypeError, ValueError):
            return {}
        return q if isinstance(q, dict) else {}

    out = []
    for rank, g in plan.causes.groupby(T.GROUP_RANK, sort=True):
        first = g.iloc[0]
        causes = []
        for _, r in g.iterrows():
            parts = _action_parts(r, plan)
            p = r[T.P_ADJ]
            causes.append(
                PlanCause(
                    head=str(r[T.CAUSE_LABEL]) + (f" ({r[T.DETAIL]})" if r[T.DETAIL] else ""),
                    share=tp.share_text(r),
                    p_adj=fmt.p_value(p) if isinstance(p, float) and math.isfinite(p) else "",
                    action=tuple((s, u) for s, u in parts if s),
                    evidence=str(r[T.EVIDENCE] or ""),
                    row=r,
                )
            )
        kind = str(first[T.GROUP_KIND])
        out.append(
            PlanGroup(
                rank=int(rank),
                group=str(first[T.GROUP]),
                kind=kind.replace("_", " "),
                cost=tp.cost_text(first),
                url=None if kind == "whole_set" else plan.url(query(first[T.GROUP_QUERY])),
                causes=tuple(causes),
                rest=", ".join(plan.rest.get(int(rank), ())),
            )
        )
    return out


def _action_parts(row, plan) -> list[tuple[str, str | None]]:
    """The recommendation's words and numbers in order, each number with its images' URL."""
    from ...triage import plan as tp

    parts: list[tuple[str, str | None]] = []
    tp.fill(
        row,
        lambda s, q: parts.append((s, plan.url(q))) or "",
        lambda s: parts.append((s, None)) or "",
    )
    return parts


def plan_intro(plan) -> str:
    return (
        "For each failure group, costliest first: the causes that survive correction over every"
        " (group, cause) hypothesis tested, the share of the group's excess errors each accounts"
        " for (95% interval), and what to do. Each number links to its images in the dashboard"
        f" ({plan.dashboard_url}, run {plan.run_id})."
    )
