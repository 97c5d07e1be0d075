"""The report as GitHub-flavoured Markdown: tables, no images, no figures.

Every data-derived string goes through :func:`escape_markdown` where it is written: characters
that make inline markup or break a table (``\\ ` * _ [ ] < > | ~ & $``) get a backslash, a leading
``#``, ``+``, ``-``, ``=`` or ``1.`` is escaped, and line breaks become ``<br>``.
"""

from __future__ import annotations

import re
from typing import Any

from ... import schema
from .. import formatting as fmt
from . import tables as tb
from .model import CORRECTED_LABEL, NOTES, REVIEWER, TAGS, WHY, Report, check_report

_MD_ESCAPE = re.compile(r"([\\`*_\[\]<>|~&$])")
# block markers at the start of a text: heading, list item, thematic break, ordered list
_MD_LEADING = re.compile(r"^(\s*)(#{1,6}(?=\s|$)|[+\-=](?=\s|$)|-{3,}|={3,}|\d+[.)](?=\s|$))")
_NEWLINES = re.compile(r"\r\n|\r|\n")


def escape_markdown(x: Any) -> str:
    """Escape a data value for GitHub Markdown: inline markup, table pipes, leading block marks."""
    text = _MD_ESCAPE.sub(r"\\\1", tb.text(x))
    text = _MD_LEADING.sub(lambda m: m.group(1) + re.sub(r"([^\d])", r"\\\1", m.group(2)), text)
    return _NEWLINES.sub("<br>", text)


_md = escape_markdown


def _md_table(table: tb.Table) -> str:
    lines = [
        "| " + " | ".join(_md(h) for h in table.header) + " |",
        "|" + "|".join("---" for _ in table.header) + "|",
    ]
    lines += ["| " + " | ".join(_md(v) for v in row) + " |" for row in table.rows]
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    """The report as GitHub-flavoured Markdown (tables, no images, no figures).

    Every data-derived string is escaped: characters that make inline markup or break a table
    (``\\ ` * _ [ ] < > | ~ & $``) get a backslash, a leading ``#``, ``+``, ``-``, ``=`` or
    ``1.`` is escaped, and line breaks become ``<br>``.
    """
    check_report(report)
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
            _md_table(
                tb.Table(["Metric", "Value (95% CI)"], [[h.name, h.text] for h in report.headline])
            ),
        )
    section(
        "What to look at",
        "\n".join(f"- **{_md(sev)}**: {_md(msg)}" for sev, msg in report.findings)
        or "No warnings.",
    )
    if report.action_plan is not None:
        section("Action plan", *_plan_blocks(report.action_plan))
    if report.per_class is not None and len(report.per_class):
        section("Per-class metrics", _md_table(tb.per_class_rows(report.per_class)))
    if len(report.top_confusions):
        section("Most frequent confusions", _md_table(tb.confusion_rows(report.top_confusions)))
    for heading, table, csv_name in (
        ("Weak slices", report.slices, "slices"),
        ("Discovered slices", report.discovered_slices, "discovered_slices"),
    ):
        if table is None:
            continue
        if table.empty:
            section(heading, "None.")
        else:
            shown = table.head(tb.MAX_ROWS)
            section(
                heading,
                _md_table(tb.slice_rows(shown)),
                _md(tb.more_note(len(table), len(shown), csv_name)),
            )
    if len(report.data_issues):
        blocks = [_md_table(tb.issue_rows(report.data_issues))]
        if report.label_issues is not None and len(report.label_issues):
            shown = report.label_issues.head(tb.MAX_ROWS)
            blocks += [
                "### Suspected label errors",
                *([_md(report.label_words)] if report.label_words else []),
                _md_table(tb.label_issue_rows(shown)),
                _md(tb.more_note(len(report.label_issues), len(shown), "label_issues")),
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
            + ([tb.meta_text(r, cols)] if cols else [])
            for _, r in report.failures.iterrows()
        ]
        section("Representative failures", _md_table(tb.Table(header, rows)))
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
                tb.Table(
                    ["File", "Given", "Predicted", "Tags", "Relabel as", "Notes", "Last reviewer"],
                    rows,
                )
            ),
        )
    else:
        section("Reviewed images", "No image of this run has been reviewed.")
    if len(report.relabel):
        section("Relabel list", _md_table(tb.relabel_rows(report.relabel)))
    else:
        section("Relabel list", "No label was corrected.")
    if report.notes:
        section("Notes", "\n".join(f"- {_md(n)}" for n in report.notes))
    return "\n".join(out).rstrip() + "\n"


def _plan_blocks(plan) -> list[str]:
    """The action plan: one numbered item per group, its causes below with linked numbers."""
    lines = []
    for g in tb.plan_groups(plan):
        link = f" ([open its errors]({_md_url(g.url)}))" if g.url else ""
        lines.append(f"{g.rank}. **{_md(g.group)}** ({_md(g.kind)}) — costs {_md(g.cost)}{link}")
        for c in g.causes:
            head = f"*{_md(c.head)}*" + (f": {_md(c.share)}" if c.share else "")
            head += f", adjusted p {_md(c.p_adj)}" if c.p_adj else ""
            action = "".join(f"[{_md(t)}]({_md_url(u)})" if u else _md(t) for t, u in c.action)
            lines += [f"    - {head}", f"      → {action}"]
        if g.rest:
            lines.append(f"    - tested, not significant: {_md(g.rest)}")
    blocks = [_md(tb.plan_intro(plan)), "\n".join(lines)]
    if plan.not_tested:
        blocks.append("\n".join(f"- {_md(x)}" for x in plan.not_tested))
    blocks.append(_md(plan.note + "."))
    return blocks


def _md_url(url: str) -> str:
    """A URL inside ``(...)``: parentheses and spaces percent-encoded, so the link holds."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29").replace("<", "%3C")
