"""Writing a report to files: ``report.html``, ``report.md``, ``csv/<table>.csv`` and
``relabel_list.csv``, by a registry of formats."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ...store.runstore import Run
from .model import CSV_DIR, RELABEL_CSV, REPORT_HTML, REPORT_MD, Report, check_report
from .render_csv import to_csv_tables
from .render_html import to_html
from .render_markdown import to_markdown


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
    check_report(report)
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
