"""Exportable slice reports: one data model, three renderers (HTML, Markdown, CSV).

Evidently's split: :func:`build_report` gathers what a review meeting takes away from a run into a
frozen :class:`Report` (``model.py``: data only, no formatting); each renderer only formats what
the report holds, and no number is computed there:

- :func:`to_html` (``render_html.py`` + ``templates/``): one self-contained page from Jinja2
  templates that autoescape everything; opens offline, makes no network request.
- :func:`to_markdown` (``render_markdown.py``): GitHub-flavoured Markdown with tables.
- :func:`to_csv_tables` (``render_csv.py``): name -> CSV text, for spreadsheets and relabelling.
- :func:`write_report` (``export.py``): writes ``report.html``, ``report.md``, ``csv/*.csv`` and
  ``relabel_list.csv``.

The HTML and Markdown renderers share their tables (``tables.py``: one number style).

Escaping, the one rule: every string that comes from data (class names, file paths, metadata,
slice descriptions, tags, notes, reviewer names, the title) is escaped by the renderer, by
default, at the point where it is written out: HTML by the template engine (and once more, for
Plotly's pseudo-HTML labels, where a string goes into a chart); Markdown with backslashes
(``|`` in tables included) and ``<br>`` for line breaks; CSV as data, except that a cell a
spreadsheet would run as a formula gets a leading ``'``.
"""

from __future__ import annotations

from .export import FORMATS, write_report
from .model import CSV_DIR, RELABEL_CSV, REPORT_HTML, REPORT_MD, Headline, Report, build_report
from .render_csv import to_csv_tables
from .render_html import to_html
from .render_markdown import to_markdown

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
