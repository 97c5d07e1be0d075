"""Query parameters read defensively: a value a page cannot use falls back to its default with a
visible note, never an exception (links get pasted, cut off and edited by hand).

Every page reads its parameters through these functions, after its title: the note then stands
under the title of the page it concerns.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st

from analysis.present.query import ImageQuery, load_selection
from analysis.store.runstore import Run
from dashboard.components import safe


def note(problems: Sequence[str]) -> None:
    """One warning listing what the link held that this page could not use."""
    if problems:
        st.warning(
            "Part of this link could not be used and was left out:  \n"
            + "  \n".join(f"· {safe(p)}" for p in problems),
            icon=":material/link_off:",
        )


def raw(name: str) -> str | None:
    """The parameter's text (the last one if repeated), or None."""
    v = st.query_params.get(name)
    return None if v is None else str(v)


def image_query(run: Run) -> ImageQuery:
    """The image set named by the link, with a note for every filter that does not apply."""
    q, problems = ImageQuery.parse(
        st.query_params.to_dict(), n_classes=run.n_classes, samples=run.samples
    )
    problems = list(problems)
    if q.sel and load_selection(run.path, q.sel) is None:
        problems.append(f"sel={q.sel!r} was ignored: no saved selection of this run has this id")
        q = q.with_(sel="")
    note(problems)
    return q


def int_param(name: str, *, default: int, lo: int, hi: int, what: str) -> int:
    """A whole number in ``[lo, hi]``; a bad or out-of-range value gives ``default`` (clamped)
    with a note saying what ``what`` (e.g. "page") can be."""
    text = raw(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        note([f"{name}={text[:60]!r} was ignored: expected a {what} number from {lo} to {hi}"])
        return default
    if not lo <= value <= hi:
        clamped = min(max(value, lo), hi)
        note([f"{name}={value} is out of range: there are {what}s {lo} to {hi}; showing {clamped}"])
        return clamped
    return value


def choice_param(name: str, choices: Sequence[str], *, default: str) -> str:
    """One of ``choices``; anything else gives ``default`` with a note listing the choices."""
    text = raw(name)
    if text is None:
        return default
    if text in choices:
        return text
    note([f"{name}={text[:60]!r} was ignored: expected one of {', '.join(choices)}"])
    return default
