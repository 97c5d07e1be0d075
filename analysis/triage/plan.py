"""The action plan: what to do on Monday, read off the triage table, with every number's images.

One item per claimed cause (significant after correction, or a whole-set data issue found),
groups by the errors they cost, and one "none of these" item per group no cause explains. A
recommendation keeps its numbers as ``{0}``, ``{1}``, ... with a link each (the gallery query of
the images behind the number); :func:`fill` renders them as Markdown links, HTML anchors or plain
text, so the page, the report and the terminal say the same thing.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Callable

import pandas as pd

from . import table as T

PLAN_COLUMNS = [
    "rank", "group", "group_kind", "cost", "cause", "detail", "status", "share", "share_low",
    "share_high", "p_adj", "action", "recommendation", "evidence", "n_images", "query",
    "group_query",
]  # fmt: skip


def _pct(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{100 * x:.0f}%"


def share_text(row) -> str:
    """ "accounts for 85% [64–100%] of its 50 excess errors" (or "" when there is no share)."""
    s = row.get(T.SHARE)
    if s is None or not math.isfinite(s):
        return ""
    what = "errors" if row.get(T.GROUP_KIND) == "confusion" else "excess errors"
    cost = row.get(T.GROUP_COST, math.nan)
    return (
        f"accounts for {_pct(s)} [{_pct(row.get(T.SHARE_LOW))}–{_pct(row.get(T.SHARE_HIGH))}]"
        f" of its {cost:.0f} {what}"
    )


def cost_text(row) -> str:
    """ "52 excess errors (394 images, 111 wrong, 59 expected)"."""
    kind = row.get(T.GROUP_KIND)
    cost = row.get(T.GROUP_COST, math.nan)
    if kind == "whole_set":
        n = int(row.get(T.GROUP_N, 0))
        if cost and math.isfinite(cost) and cost > 0:
            return f"{cost:.0f} suspected label errors among its {n:,} images"
        return f"the measurement of all {n:,} images"
    if kind == "confusion":
        return f"{cost:.0f} images of {int(row[T.GROUP_N]):,} in the class"
    return (
        f"{cost:.0f} excess errors ({int(row[T.GROUP_N]):,} images, {row[T.GROUP_ERRORS]:.0f}"
        f" wrong where the rest's rate gives {row[T.GROUP_EXPECTED]:.0f})"
    )


def links_of(row) -> list[dict]:
    try:
        return list(json.loads(row.get(T.LINKS) or "[]"))
    except (TypeError, json.JSONDecodeError):
        return []


def fill(row, link: Callable[[str, dict], str], text: Callable[[str], str] = str) -> str:
    """The recommendation with each ``{i}`` replaced by ``link(text, query)`` (or its escaped
    text when the query is empty); the rest of the sentence goes through ``text`` (escaping)."""
    rec = str(row.get(T.RECOMMENDATION) or "")
    links = links_of(row)
    out, i = [], 0
    import re

    for m in re.finditer(r"\{(\d+)\}", rec):
        out.append(text(rec[i : m.start()]))
        k = int(m.group(1))
        if k < len(links):
            lk = links[k]
            q = lk.get("query") or {}
            out.append(link(str(lk.get("text", "")), q) if q else text(str(lk.get("text", ""))))
        i = m.end()
    out.append(text(rec[i:]))
    return "".join(out)


def action_plan(table: pd.DataFrame) -> pd.DataFrame:
    """Claimed causes and "none of these" items, costliest group first (:data:`PLAN_COLUMNS`)."""
    if table is None or table.empty:
        return pd.DataFrame(columns=PLAN_COLUMNS)
    t = table[table[T.STATUS].isin(["significant", "found", "none"])]
    rows = []
    for _, r in t.iterrows():
        rows.append(
            {
                "rank": int(r[T.GROUP_RANK]),
                "group": r[T.GROUP],
                "group_kind": r[T.GROUP_KIND],
                "cost": float(r[T.GROUP_COST]),
                "cause": r[T.CAUSE_LABEL],
                "detail": r[T.DETAIL],
                "status": r[T.STATUS],
                "share": r[T.SHARE],
                "share_low": r[T.SHARE_LOW],
                "share_high": r[T.SHARE_HIGH],
                "p_adj": r[T.P_ADJ],
                "action": r[T.ACTION],
                "recommendation": fill(r, lambda s, q: s),
                "evidence": r[T.EVIDENCE],
                "n_images": int(r[T.N_IMAGES]),
                "query": r[T.QUERY],
                "group_query": r[T.GROUP_QUERY],
            }
        )
    return pd.DataFrame(rows, columns=PLAN_COLUMNS)


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(df: pd.DataFrame) -> str:
    """CSV of a table whose text may come from the data (class names, metadata values): a cell
    a spreadsheet would run as a formula is prefixed with a quote (OWASP CSV injection)."""

    def safe(x):
        return "'" + x if isinstance(x, str) and x.startswith(_FORMULA_START) else x

    return df.map(safe).to_csv(index=False)


def not_tested(table: pd.DataFrame) -> list[str]:
    """ "unfamiliar inputs: not tested, needs ..." once per (cause, need)."""
    if table is None or table.empty:
        return []
    t = table[table[T.STATUS] == "not tested"]
    seen = dict.fromkeys(f"{r[T.CAUSE_LABEL]}: not tested, needs {r[T.NEEDS]}" for _, r in
                         t.iterrows())  # fmt: skip
    return list(seen)


def plan_text(table: pd.DataFrame, info: dict | None = None, *, width: int = 100) -> str:
    """The action plan for a terminal (``errorscope triage RUN``)."""
    import textwrap

    if table is None or table.empty:
        return "No failure group: nothing to triage (no weak class, slice, cluster or pair).\n"
    out = []
    for rank, g in table.groupby(T.GROUP_RANK, sort=True):
        first = g.iloc[0]
        out.append(f"{rank}. {first[T.GROUP]} [{first[T.GROUP_KIND].replace('_', ' ')}]")
        out.append(f"   costs {cost_text(first)}")
        claimed = g[g[T.STATUS].isin(["significant", "found", "none"])]
        for _, r in claimed.iterrows():
            head = r[T.CAUSE_LABEL] + (f" ({r[T.DETAIL]})" if r[T.DETAIL] else "")
            st = share_text(r)
            p = r[T.P_ADJ]
            stat = f", adjusted p {p:.2g}" if isinstance(p, float) and math.isfinite(p) else ""
            out.append(f"   - {head}{': ' + st if st else ''}{stat}")
            out += textwrap.wrap(
                "→ " + fill(r, lambda s, q: s), width, initial_indent="     ",
                subsequent_indent="       ",
            )  # fmt: skip
        others = g[g[T.STATUS] == "not significant"]
        if len(others):
            names = sorted(set(others[T.CAUSE_LABEL]))
            out.append(f"     tested, not significant: {', '.join(names)}")
        out.append("")
    for line in not_tested(table):
        out.append(line)
    if info:
        out.append(T._n_tested_note(info))
    return "\n".join(out) + "\n"


def plan_markdown(table: pd.DataFrame, link: Callable[[str, dict], str]) -> str:
    """The action plan as Markdown; ``link(text, query)`` makes each number a link."""
    if table is None or table.empty:
        return "No failure group: nothing to triage.\n"
    out = []
    for rank, g in table.groupby(T.GROUP_RANK, sort=True):
        first = g.iloc[0]
        out.append(f"{rank}. **{md_escape(first[T.GROUP])}** — costs {md_escape(cost_text(first))}")
        for _, r in g[g[T.STATUS].isin(["significant", "found", "none"])].iterrows():
            head = md_escape(r[T.CAUSE_LABEL] + (f" ({r[T.DETAIL]})" if r[T.DETAIL] else ""))
            st = share_text(r)
            out.append(f"    - *{head}*{': ' + md_escape(st) if st else ''}")
            out.append(f"      → {fill(r, link, md_escape)}")
    nt = not_tested(table)
    if nt:
        out.append("")
        out += [f"- {md_escape(x)}" for x in nt]
    return "\n".join(out) + "\n"


def md_escape(x: str) -> str:
    """Markdown-escape plain text (brackets, emphasis, pipes)."""
    import re

    return re.sub(r"([\\`*_\[\]<>|~])", r"\\\1", str(x))


def html_escape(x: str) -> str:
    return html.escape(str(x))
