"""The report as one self-contained HTML page, rendered from Jinja2 templates.

The templates live in ``templates/`` and ship in the wheel as package data: ``report.html.j2``
lays out the page, ``sections/<anchor>.html.j2`` one section each, ``macros.html.j2`` the table
and the image card, ``report.css`` the style. Python decides what each section holds
(:data:`SECTIONS`: a heading and a function that returns the section's values, or None when the
report has nothing for it); the templates only lay those values out.

The page opens offline and makes no network request: plotly.js is inlined once, images are
base64 JPEG ``data:`` URIs, and a Content-Security-Policy forbids every request.

Escaping, the one rule: the environment autoescapes every template whatever its file name
(``autoescape=True``, not chosen by extension), so every ``{{ value }}`` is HTML-escaped, in the
templates here and in any added later. Nothing is marked safe except the Plotly figures, which
Plotly serialises itself: its JSON writes ``<``, ``>`` and ``/`` as ``\\u003c``, ``\\u003e``,
``\\u002f``, so no string can close the ``<script>`` it sits in. Strings handed to Plotly are
escaped once, for Plotly, by the figure builders (:func:`analysis.present.figures.plotly_text`): it renders labels as pseudo-HTML, so ``&``, ``<`` and ``>`` become
entities, which it decodes for display; quotes are left as they are, because Plotly does not
decode ``&quot;`` (a class named ``say "hi"`` would read ``say &quot;hi&quot;`` on the chart).
"""

from __future__ import annotations

import base64
import functools
import io
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ... import schema
from ...store.runstore import Run
from .. import formatting as fmt
from . import tables as tb
from .model import (
    CORRECTED_LABEL,
    NOTES,
    RELABEL_CSV,
    REVIEWED,
    REVIEWER,
    TAGS,
    WHY,
    Report,
    check_report,
)

MAX_FIGURE_CLASSES = 30  # figures with more classes show a readable subset (tables keep all)
MAX_CARDS = 200  # reviewed images shown as cards
_SAMPLE_ID_OK = re.compile(r"^[A-Za-z0-9_-]{1,128}$")

#: Every network request is forbidden: the file must open offline and leak nothing when opened.
CSP = (
    "default-src 'none'; img-src data: blob:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline' 'unsafe-eval'; font-src data:; connect-src 'none'; "
    "base-uri 'none'; form-action 'none'"
)
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


# ==============================================================================================
# The template environment


def make_environment(loader):
    """A Jinja2 environment with the report's rules, over any template ``loader``.

    Every template it loads autoescapes, whatever its name; an undefined variable is an error,
    not an empty string.
    """
    import jinja2

    env = jinja2.Environment(
        loader=loader,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["text"] = tb.text  # missing -> "—"
    return env


@functools.cache
def environment():
    """The report's environment over the templates shipped in this package."""
    import jinja2

    return make_environment(jinja2.PackageLoader(__package__, "templates"))


# ==============================================================================================
# Figures and images


class _Figures:
    """Renders Plotly figures inline, in page order; plotly.js goes into the first one only."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fig):
        from markupsafe import Markup

        out = fig.to_html(
            full_html=False,
            include_plotlyjs=self.count == 0,
            config=_PLOTLY_CONFIG,
            div_id=f"figure-{self.count}",
        )
        self.count += 1
        return Markup(out)  # noqa: S704 - Plotly's own serialisation (see the module docstring)


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

            from ...loading.images import decode_image, run_decode_limits
            from ...loading.inference import THUMB_SIZE

            # as the model saw it: the run's EXIF setting and limits, never a viewer's rotation
            transpose = bool((run.manifest.get("preprocessing") or {}).get("exif_transpose"))
            limits = run_decode_limits(run.manifest)
            im = Image.fromarray(decode_image(path, exif_transpose=transpose, **limits).rgb)
            im.thumbnail((THUMB_SIZE, THUMB_SIZE))
            buf = io.BytesIO()
            im.save(buf, format="JPEG", quality=85)
            data = buf.getvalue()
        except Exception:  # noqa: BLE001 - a missing or unreadable image shows a placeholder
            data = None
    if not data:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(data).decode("ascii")


def _card(run: Run, r: pd.Series, meta_cols: Sequence[str], **extra: Any) -> dict:
    """One image card's values (``macros.html.j2``'s ``card``)."""
    return dict(
        uri=_image_data_uri(run, r[schema.SAMPLE_ID], r[schema.PATH]),
        relpath=r[schema.RELPATH],
        label=r[schema.LABEL_NAME],
        pred=r[schema.PRED_NAME],
        wrong=r[schema.LABEL_NAME] != r[schema.PRED_NAME],
        confidence=fmt.pct(r[schema.CONFIDENCE]),
        loss=fmt.num(r[schema.LOSS], 2) if schema.LOSS in r else None,
        meta=tb.meta_text(r, meta_cols) if meta_cols else None,
        why=extra.get("why"),
        review=extra.get("review"),
    )


def _review(r: pd.Series) -> dict:
    return dict(
        tags=tuple(r[TAGS]),
        decision=r[CORRECTED_LABEL],
        notes=tuple(r[NOTES]),
        reviewer=r[REVIEWER],
        reviewed=bool(r[REVIEWED]),
    )


def _figure_classes(cm: np.ndarray) -> np.ndarray:
    """Classes shown in the confusion figure: all, or those most involved in errors."""
    k = cm.shape[0]
    if k <= MAX_FIGURE_CLASSES:
        return np.arange(k)
    # sums of the matrix minus twice its diagonal: no copy of it (800 MB at 10,000 classes)
    diag = np.diagonal(cm).astype(np.int64)
    involvement = cm.sum(axis=0, dtype=np.int64) + cm.sum(axis=1, dtype=np.int64) - 2 * diag
    return np.sort(np.argsort(-involvement, kind="stable")[:MAX_FIGURE_CLASSES])


# ==============================================================================================
# What each section holds: (report, run, figures) -> values for its template, or None (absent)


def _headline(report: Report, run: Run, fig: _Figures) -> dict | None:
    return {"cards": report.headline} if report.headline else None


def _findings(report: Report, run: Run, fig: _Figures) -> dict:
    return {"entries": report.findings}


def _classes(report: Report, run: Run, fig: _Figures) -> dict | None:
    from .. import figures

    pc = report.per_class
    if pc is None or not len(pc):
        return None
    names = list(report.class_names)  # the figure builders escape text for Plotly
    support = pc["support"].to_numpy(dtype=np.int64)
    errors = support - pc["tp"].to_numpy(dtype=np.int64)
    distribution = fig(figures.class_distribution_figure(support, errors, names))
    shown = pc if len(pc) <= MAX_FIGURE_CLASSES else pc.nsmallest(MAX_FIGURE_CLASSES, "recall")
    return {
        "distribution": distribution,
        "n_shown": len(shown),
        "n_classes": len(pc),
        "per_class": fig(figures.per_class_figure(shown, names)),
        "table": tb.per_class_rows(pc),
    }


def _confusions(report: Report, run: Run, fig: _Figures) -> dict | None:
    from .. import figures

    cm = report.confusion
    out: dict[str, Any] = {"figure": None, "n_shown": 0, "n_classes": 0, "table": None}
    if cm is not None and cm.size:
        idx = _figure_classes(cm)
        names = [report.class_names[i] for i in idx]
        out.update(
            figure=fig(figures.confusion_figure(cm[np.ix_(idx, idx)], names)),
            n_shown=len(idx),
            n_classes=cm.shape[0],
        )
    if len(report.top_confusions):
        out["table"] = tb.confusion_rows(report.top_confusions)
    out["no_errors"] = out["table"] is None and bool(report.n_samples)
    return out if out["figure"] is not None or out["table"] or out["no_errors"] else None


def _calibration(report: Report, run: Run, fig: _Figures) -> dict | None:
    from .. import figures

    rel = report.reliability
    if rel is None or not len(rel) or not (rel["count"] > 0).any():
        return None
    return {"figure": fig(figures.reliability_figure(rel))}


def _slice_section(table: pd.DataFrame | None, csv_name: str, intro: str, report, fig):
    from .. import figures

    if table is None:
        return None
    out: dict[str, Any] = {"intro": intro, "figure": None, "table": None, "more": ""}
    if len(table):
        shown = table.head(tb.MAX_ROWS)
        chart = figures.slice_interval_figure(shown, overall_error=report.overall_error)
        chart.update_layout(margin=dict(t=36))  # room for the "overall" label on top
        out.update(
            figure=fig(chart),
            table=tb.slice_rows(shown),
            more=tb.more_note(len(table), len(shown), csv_name),
        )
    return out


def _slices(report: Report, run: Run, fig: _Figures) -> dict | None:
    return _slice_section(
        report.slices,
        "slices",
        "Single-condition slices with significantly more errors than the rest"
        f" ({report.n_slices_tested} slices tested, Benjamini-Hochberg adjusted).",
        report,
        fig,
    )


def _discovered(report: Report, run: Run, fig: _Figures) -> dict | None:
    return _slice_section(
        report.discovered_slices,
        "discovered_slices",
        "Conjunctions of up to three conditions found by slice discovery, significant after"
        " correction for every candidate tested.",
        report,
        fig,
    )


def _data_issues(report: Report, run: Run, fig: _Figures) -> dict | None:
    out: dict[str, Any] = {"table": None, "label_issues": None, "more": "", "words": ""}
    if len(report.data_issues):
        out["table"] = tb.issue_rows(report.data_issues)
    li = report.label_issues
    if li is not None and len(li):
        shown = li.head(tb.MAX_ROWS)
        out["label_issues"] = tb.label_issue_rows(shown)
        out["words"] = report.label_words
        out["more"] = tb.more_note(len(li), len(shown), "label_issues")
    return out if out["table"] or out["label_issues"] else None


def _failures(report: Report, run: Run, fig: _Figures) -> dict:
    cols = report.metadata_columns
    return {
        "cards": [_card(run, r, cols, why=r[WHY]) for _, r in report.failures.iterrows()],
    }


def _reviewed(report: Report, run: Run, fig: _Figures) -> dict:
    shown = report.reviewed.head(MAX_CARDS)
    cols = report.metadata_columns
    return {
        "cards": [_card(run, r, cols, review=_review(r)) for _, r in shown.iterrows()],
        "more": tb.more_note(len(report.reviewed), len(shown), "reviewed"),
    }


def _relabel(report: Report, run: Run, fig: _Figures) -> dict:
    table = tb.relabel_rows(report.relabel) if len(report.relabel) else None
    return {"table": table, "file": RELABEL_CSV}


def _action_plan(report: Report, run: Run, fig: _Figures) -> dict | None:
    from ..triage_figures import cause_figure

    plan = report.action_plan
    if plan is None:
        return None
    groups = []
    for g in tb.plan_groups(plan):
        causes = []
        for c in g.causes:
            chart = cause_figure(c.row)  # the builders escape text for Plotly
            if chart is not None:  # half the page's width: room for the axes' labels
                chart.update_layout(margin=dict(l=56, r=10, t=44, b=56), height=300)
            causes.append({**c.__dict__, "figure": None if chart is None else fig(chart)})
        groups.append({**g.__dict__, "causes": causes})
    return {
        "intro": tb.plan_intro(plan),
        "groups": groups,
        "not_tested": plan.not_tested,
        "note": plan.note,
    }


def _notes(report: Report, run: Run, fig: _Figures) -> dict | None:
    return {"entries": report.notes} if report.notes else None


#: anchor -> (heading, what the section holds); the page shows them in this order, each from
#: ``templates/sections/<anchor>.html.j2``.
SECTIONS: dict[str, tuple[str, Callable[[Report, Run, _Figures], dict | None]]] = {
    "headline": ("Headline metrics", _headline),
    "findings": ("What to look at", _findings),
    "action-plan": ("Action plan", _action_plan),
    "classes": ("Classes", _classes),
    "confusions": ("Confusions", _confusions),
    "calibration": ("Calibration", _calibration),
    "slices": ("Weak slices", _slices),
    "discovered": ("Discovered slices", _discovered),
    "data-issues": ("Data issues", _data_issues),
    "failures": ("Representative failures", _failures),
    "reviewed": ("Reviewed images", _reviewed),
    "relabel": ("Relabel list", _relabel),
    "notes": ("Notes", _notes),
}


# ==============================================================================================
# The page


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
    check_report(report)
    if not isinstance(run, Run):
        raise TypeError(f"run must be an analysis.store.runstore.Run, got {type(run).__name__}")
    if str(run.run_id) != report.run_id:
        raise ValueError(
            f"report was built from run {report.run_id!r} but run is {run.run_id!r}; pass the"
            " same run (its images are embedded)"
        )
    fig = _Figures()
    sections = []
    for anchor, (heading, values) in SECTIONS.items():
        v = values(report, run, fig)
        if v is not None:
            sections.append({"anchor": anchor, "heading": heading, "v": v})
    meta = [
        f"run {report.run_id}",
        f"model {report.model or '—'}",
        f"data {report.data or '—'}",
        f"{report.n_samples:,} images",
        f"{len(report.class_names)} classes",
        *([f"{report.n_skipped} files skipped"] if report.n_skipped else []),
        f"analysed {report.created or '—'}",
        f"report generated {report.generated}",
    ]
    page = environment().get_template("report.html.j2")
    return page.render(report=report, sections=sections, meta=meta, csp=CSP)
