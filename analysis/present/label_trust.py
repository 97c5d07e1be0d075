"""How far a run's suspected label errors can be trusted, in words (issue 17 §3).

Reads the run's samples table (confidence, correctness, flags, the probability of each given
label) and turns :mod:`analysis.data_issues.label_checks` into sentences the Data issues page,
the Overview and the report can show as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import schema
from ..data_issues import label_checks as lc
from ..store.runstore import Run

__all__ = ["LabelTrust", "label_trust"]


@dataclass(frozen=True)
class LabelTrust:
    """The two checks and what they mean for this run.

    Attributes
    ----------
    check : NoiseRateCheck
    thresholds : DataFrame
        :func:`analysis.data_issues.label_checks.threshold_check`'s table.
    n_too_few : int
        Classes with images whose threshold rests on too few of them.
    flagged_in_too_few : int
        Flagged images labelled with such a class.
    noise_sentence, threshold_sentence : str
        Plain words ("" when there is nothing to say).
    """

    check: lc.NoiseRateCheck
    thresholds: pd.DataFrame
    n_too_few: int
    flagged_in_too_few: int
    noise_sentence: str
    threshold_sentence: str

    @property
    def sentences(self) -> list[str]:
        return [s for s in (self.noise_sentence, self.threshold_sentence) if s]

    @property
    def short(self) -> str:
        """One clause for the Overview: only when the flags are implausibly many."""
        c = self.check
        if c.verdict != lc.IMPLAUSIBLE:
            return ""
        return (
            f"That is implausibly many: the model's own confidence explains at most"
            f" {c.bound_high:.1%} label noise, so at most about {c.max_real_share:.0%} of the"
            " flags can be real label errors."
        )


def _noise_sentence(c: lc.NoiseRateCheck) -> str:
    said = (
        f"the model is {c.mean_confidence:.0%} confident on average and {c.accuracy:.0%}"
        " accurate against the given labels"
    )
    if c.verdict == lc.IMPLAUSIBLE:
        return (
            f"Implausibly many flags: {c.flagged_share:.1%} of the images are flagged, more than"
            f" the label noise this model's own confidence can explain (at most"
            f" {c.bound_high:.1%}; {said}). At most about {c.max_real_share:.0%} of the flags"
            " can be real label errors; the rest are the model's confident mistakes."
        )
    if c.verdict == lc.INDISTINGUISHABLE:
        return (
            f"Label noise or overconfidence? {said[0].upper() + said[1:]}. That gap is what"
            f" {c.bound:.0%} wrong labels would cause, and also what an overconfident model"
            " causes; predictions alone cannot tell which, so the"
            f" {c.flagged_share:.1%} flagged may be real label errors or the model's confident"
            " mistakes. Check the model's calibration on images whose labels you trust, or"
            " review a sample of the flags, before relabelling."
        )
    return ""


def label_trust(run: Run) -> LabelTrust | None:
    """The checks for ``run``; None when its label issues were not computed."""
    s = run.samples
    if schema.IS_LABEL_ISSUE not in s.columns:
        return None
    flagged = s[schema.IS_LABEL_ISSUE].fillna(False).to_numpy(bool)
    check = lc.noise_rate_check(
        s[schema.CORRECT].to_numpy(bool), s[schema.CONFIDENCE].to_numpy(float), flagged
    )
    labels = s[schema.LABEL].to_numpy()
    t = lc.threshold_check(labels, s[schema.TRUE_PROB].to_numpy(float), n_classes=run.n_classes)
    few = t[lc.TOO_FEW].to_numpy(bool)
    n_few = int(few.sum())
    in_few = int((flagged & few[labels]).sum())
    sentence = ""
    if n_few:
        sentence = (
            f"{n_few:,} of {run.n_classes:,} classes have too few images for a stable threshold"
            f" (its 95% interval is wider than ±{lc.MAX_HALF_WIDTH:.2f}): flags in them rest on a"
            " per-class threshold the data barely pin down"
            + (f" ({in_few:,} of the {int(flagged.sum()):,} flags)." if flagged.any() else ".")
        )
    return LabelTrust(check, t, n_few, in_few, _noise_sentence(check), sentence)
