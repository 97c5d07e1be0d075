"""What errorscope says about suspected label errors, in the same words on every screen.

Probabilities alone cannot tell a wrong label from a confident model mistake: on a weak model
most flags are the model's own errors. So the words are "suspected, to review", and the share of
such flags that were real label errors on problems like this run (its accuracy and calibration
error, on the table ``bench/bench_label_issues.py`` measures) is quoted, not guessed. The
dashboard's Data issues page and Overview, the report and the CLI all read
:func:`label_issue_summary`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import schema
from ..store.runstore import Run

__all__ = ["LabelIssueSummary", "label_issue_summary", "ranking_explanation"]

#: Plain words for each ranking score (the registry keys of ``label_issues.QUALITY_SCORES``).
_SCORE_WORDS = {
    "normalized_margin": (
        "how far the model prefers another class over the given label (the given label's"
        " probability minus the best other class's)"
    ),
    "self_confidence": "how little probability the model gives the given label",
}


def ranking_explanation(score: str, *, evidence: bool) -> str:
    """One sentence: how the suspected label errors are ordered.

    Parameters
    ----------
    score : str
        The label-quality score (``label_issues.QUALITY_SCORES`` key).
    evidence : bool, keyword-only
        Whether neighbour labels from the reference set were weighed in.
    """
    what = _SCORE_WORDS.get(score, score.replace("_", " "))
    text = f"Most suspicious first: ranked by {what}"
    if evidence:
        text += (
            ", averaged with how few of the image's 10 nearest reference (training) images carry"
            " its label; an image whose neighbours mostly share its label is not flagged (the"
            " model is then more likely wrong than the label), nor one whose near-copy in the"
            " reference set has the same label"
        )
    return text + "."


@dataclass(frozen=True)
class LabelIssueSummary:
    """Numbers and sentences about a run's suspected label errors.

    Attributes
    ----------
    n_flagged, n : int
        Flagged images and all images.
    evidence : bool
        The flags weighed evidence from the labelled reference set.
    accuracy, ece : float
        The run's accuracy and calibration error (NaN when the metrics section failed).
    expected : ExpectedPrecision or None
        Share of such flags that were real label errors on problems like this one.
    headline : str
        "N images (x%) are suspected label errors, to review: ...".
    expectation : str
        The measured share in words, or why there is none.
    ranking : str
        :func:`ranking_explanation`.
    """

    n_flagged: int
    n: int
    evidence: bool
    accuracy: float
    ece: float
    expected: object
    headline: str
    expectation: str
    ranking: str


def _images(n: int) -> str:
    return "1 image" if n == 1 else f"{n:,} images"


def label_issue_summary(run: Run) -> LabelIssueSummary | None:
    """The words for a run's suspected label errors; None when the section did not run."""
    from ..data_issues.label_issues import (
        COPY_LABEL,
        DEFAULT_SCORE,
        NEIGHBOUR_AGREEMENT,
        expected_precision,
    )
    from .findings import load_metrics

    s = run.samples
    if schema.IS_LABEL_ISSUE not in s.columns:
        return None
    n = len(s)
    k = int(s[schema.IS_LABEL_ISSUE].fillna(False).astype(bool).sum())
    table = run.table(schema.LABEL_ISSUES)
    evidence = False
    if table is not None:
        if NEIGHBOUR_AGREEMENT in table.columns:
            evidence |= bool(np.isfinite(table[NEIGHBOUR_AGREEMENT].to_numpy(float)).any())
        if COPY_LABEL in table.columns:
            evidence |= bool((table[COPY_LABEL].to_numpy() >= 0).any())
    m = load_metrics(run)
    acc = float(m.accuracy.value) if m is not None else math.nan
    ece = float(m.ece.value) if m is not None else math.nan
    expected = expected_precision(acc, ece, evidence=evidence)
    share = f" ({k / n:.1%})" if n else ""
    if k == 0:
        headline = "No image is a suspected label error."
    else:
        verb = "is a suspected label error" if k == 1 else "are suspected label errors"
        headline = (
            f"{_images(k)}{share} {verb}, to review: the model confidently prefers another"
            " class to the given label. A wrong label explains that, and so does a confident"
            " mistake of the model."
        )
    if expected is None:
        expectation = (
            "How many of them are real label errors is not known for this run (no accuracy or"
            " calibration to compare with)."
        )
    else:
        lo, hi = expected.low, expected.high
        spread = f"{lo:.0%}" if round(lo, 2) == round(hi, 2) else f"between {lo:.0%} and {hi:.0%}"
        expectation = (
            f"On synthetic problems with a model of similar accuracy ({acc:.0%}) and calibration"
            f" error ({ece:.0%}), about {expected.pooled:.0%} of such flags were real label"
            f" errors ({spread} from problem to problem, with 0-10% label noise); the rest were"
            " the model's own mistakes."
        )
    return LabelIssueSummary(
        n_flagged=k,
        n=n,
        evidence=evidence,
        accuracy=acc,
        ece=ece,
        expected=expected,
        headline=headline,
        expectation=expectation,
        ranking=ranking_explanation(DEFAULT_SCORE, evidence=evidence),
    )
