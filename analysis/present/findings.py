"""What a run says first: its headline metrics and the failures worth a look, each with a target.

A :class:`Finding` is a sentence plus where it leads (a page and an image query), so the overview,
the HTML report and the CLI say the same thing and every warning is one click from its images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import pandas as pd

from .. import schema
from ..store.runstore import Run
from .formatting import plural
from .query import ImageQuery

METRICS_FILE = schema.METRICS


@dataclass(frozen=True)
class Finding:
    """One thing the team should look at.

    ``severity`` is "high", "medium" or "info"; ``page`` is a dashboard url path; ``query`` the
    images it is about (None when it is about the run, not images).
    """

    kind: str
    severity: str
    message: str
    page: str = "gallery"
    query: ImageQuery | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Banner:
    """A warning that belongs above everything else on the Overview (and in the CLI).

    ``facts`` say what was measured, ``causes`` what usually produces it, ``settings`` the
    preprocessing the run used and where each value came from."""

    title: str
    facts: tuple[str, ...]
    causes: tuple[str, ...]
    settings: str


def chance_banner(run: Run) -> Banner | None:
    """The banner of a run whose model is no better than the majority-class rate, or whose
    confidence is near uniform (:func:`analysis.stats.sanity.chance_check`); None otherwise."""
    from ..loading.models import Preprocessing
    from ..stats.sanity import ChanceCheck

    m = run.manifest
    d = m.get("chance_check")
    if not d or d.get("ok", True):
        return None
    c = ChanceCheck.from_dict(d)
    names = run.class_names
    facts = []
    if not c.better_than_chance:
        facts.append(
            f"Accuracy is {c.accuracy:.1%} (95% CI {c.accuracy_low:.1%}–{c.accuracy_high:.1%},"
            f" {c.n_correct:,} of {c.n:,}): not above the {c.majority_rate:.1%} of always"
            f" answering the most frequent class, {names[c.majority_class]!r} (one-sided"
            f" binomial test, p = {c.p_value:.2g})."
        )
    if c.near_uniform:
        facts.append(
            f"The confidence is near uniform: the median image's prediction has"
            f" {c.median_entropy:.0%} of the maximum entropy, as an untrained model's has."
        )
    facts.append(
        f"It predicts {names[c.top_pred_class]!r} for {c.top_pred_share:.0%} of the images."
    )
    classes = ", ".join(names[:6]) + (", …" if len(names) > 6 else "")
    if m.get("has_model", True):
        causes = (
            "Preprocessing: the images are not prepared as in training (size, crop, mean/std,"
            " EXIF orientation). Compare the settings below with your training transform.",
            f"Class order: the class list ({classes}) is not the order of the model's outputs,"
            " or the labels are read by position where they are names.",
            "Wrong checkpoint: another model's weights, or untrained ones.",
        )
    else:
        causes = (
            "The predictions file's rows or probability columns do not belong to these images.",
            f"Class order: the probability columns or the class list ({classes}) are in another"
            " order than the labels.",
        )
    prep = m.get("preprocessing")
    settings = "—"
    if prep:
        settings = Preprocessing.from_dict(prep).describe()
        sources = m.get("preprocessing_sources") or {}
        if sources:
            by: dict[str, list[str]] = {}
            for key, where in sources.items():
                by.setdefault(where, []).append(key.replace("_", " "))
            settings += " (" + "; ".join(f"{', '.join(k)} from {w}" for w, k in by.items()) + ")"
    return Banner(
        "This model is no better than chance on these images: every number below is suspect",
        tuple(facts),
        causes,
        settings,
    )


def load_metrics(run: Run):
    """The run's :class:`analysis.stats.metrics.MetricsSummary`, or None if that section failed.

    Shared, never mutate it: the last two files read are remembered by path, size and change
    time (a report asks four times; at 10,000 classes each parse builds an 800 MB matrix)."""
    from ..stats.metrics import MetricsSummary

    folder = getattr(run, "path", None)
    if folder is None:  # a run-like object without files: read it as it says
        d = run.json(METRICS_FILE)
        return None if d is None else MetricsSummary.from_dict(d)
    path = Path(folder) / METRICS_FILE
    try:
        st = path.stat()
    except OSError:
        return None
    return _load_metrics(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=2)
def _load_metrics(path: str, size: int, mtime_ns: int):
    import json

    from ..stats.metrics import MetricsSummary

    return MetricsSummary.from_dict(json.loads(Path(path).read_text()))


def top_confusion_pairs(run: Run, k: int = 8) -> pd.DataFrame:
    """The k most frequent (given, predicted) error pairs: count, share of the given class with
    its 95% Wilson interval (``rate_low``, ``rate_high``), and whether the pair is significantly
    more frequent than the other classes' images are predicted as that class
    (:func:`analysis.stats.class_flags.confusion_pairs`, BH over every ordered pair)."""
    from ..stats.class_flags import confusion_pairs

    cols = ["true", "pred", "count", "share_of_true_class", "rate_low", "rate_high"]
    cols += ["p_adj", "significant"]
    s = run.samples
    if s.empty:
        return pd.DataFrame(columns=cols)
    pairs = confusion_pairs(
        s[schema.LABEL].to_numpy(), s[schema.PRED].to_numpy(), n_classes=len(run.class_names)
    )
    pairs = pairs.sort_values(["count", "rate"], ascending=False, kind="mergesort").head(k)
    pairs = pairs.rename(columns={"rate": "share_of_true_class"})
    return pairs[cols].reset_index(drop=True)


def findings(run: Run) -> list[Finding]:
    """Every warning of the run, most important first."""
    out: list[Finding] = []
    s = run.samples
    m = load_metrics(run)
    if m is not None and m.imbalance:
        out.append(Finding("imbalance", "medium", m.imbalance, page="confusion"))
    if len(s) and {schema.LABEL, schema.PRED} <= set(s.columns):
        out += _weak_class_findings(run)
    if schema.IS_LABEL_ISSUE in s.columns:
        from .label_trust import label_trust
        from .label_words import label_issue_summary

        words = label_issue_summary(run)
        if words is not None and words.n_flagged:
            likely = words.expected is not None and words.expected.pooled >= 0.5
            trust = label_trust(run)  # more flags than the model's confidence allows?
            short = trust.short if trust is not None else ""
            out.append(
                Finding(
                    "label_issues",
                    "high" if likely and not short else "medium",
                    f"{words.headline} {words.expectation}" + (f" {short}" if short else ""),
                    page="data_issues",
                    query=ImageQuery(issue="label", sort="label_quality", desc=False),
                    extra={"ranking": words.ranking},
                )
            )
    if schema.LEAK_OF in s.columns:
        from ..data_issues.duplicates import leakage_impact

        impact = leakage_impact(
            s[schema.CORRECT].to_numpy(bool), s[schema.LEAK_OF].notna().to_numpy()
        )
        if impact.n_leaked:
            out.append(
                Finding(
                    "leakage",
                    "high",
                    f"{plural(impact.n_leaked, 'evaluation image')}"
                    f" {'is a near-copy' if impact.n_leaked == 1 else 'are near-copies'} of"
                    f" reference (training) images; accuracy is {_with_ci(impact.accuracy)}"
                    f" with {'it' if impact.n_leaked == 1 else 'them'} and"
                    f" {_with_ci(impact.accuracy_clean)} without",
                    page="data_issues",
                    query=ImageQuery(issue="leak"),
                )
            )
    slices = run.table(schema.DISCOVERED)
    if slices is None or slices.empty:
        slices = run.table(schema.SLICES)
    if slices is not None and not slices.empty and "significant" in slices.columns:
        sig = slices[slices["significant"].astype(bool)]
        if "gap" in sig.columns:
            sig = sig[sig["gap"] > 0]
        if "model_output" in sig.columns:  # "predicted class is 9" restates the confusion matrix
            sig = sig[~sig["model_output"].astype(bool)]
        for _, row in sig.head(3).iterrows():
            out.append(
                Finding(
                    "weak_slice",
                    "high",
                    f"{row['description']}: error rate {row['error_rate']:.0%} (95% CI"
                    f" {row['error_rate_low']:.0%}-{row['error_rate_high']:.0%}) vs"
                    f" {row['rest_error_rate']:.0%} elsewhere ({plural(int(row['n']), 'image')},"
                    f" adjusted p {row['p_adj']:.2g})",
                    query=ImageQuery(slice=row["spec"]),
                    extra={"spec": row["spec"]},
                )
            )
    clusters = run.table(schema.CLUSTERS)
    if clusters is not None and not clusters.empty and "significant" in clusters.columns:
        worst = clusters[clusters["significant"].astype(bool)]
        if len(worst):
            c = worst.iloc[0]  # sorted by the interval's lower bound: the surest worst first
            rest = _rest_rate(int(c["errors"]), int(c["size"]), s)
            out.append(
                Finding(
                    "error_cluster",
                    "medium",
                    f"Embedding cluster {int(c['cluster'])} ({_n_images(int(c['size']))},"
                    f" {c.get('description', '')}) has error rate {c['error_rate']:.0%}"
                    f" (95% CI {c['error_rate_low']:.0%}-{c['error_rate_high']:.0%}) against"
                    f" {rest:.0%} elsewhere (adjusted p {c['p_adj']:.2g}; {len(worst)} of"
                    f" {int((clusters['cluster'] != -1).sum())} clusters significantly worse)",
                    query=ImageQuery(cluster=int(c["cluster"])),
                )
            )
    exif = exif_rotation_finding(run)
    if exif is not None:
        out.append(exif)
    out += _outside_findings(run)
    n_skip = run.manifest.get("n_skipped", 0)
    if n_skip:
        out.append(
            Finding(
                "skipped",
                "info",
                f"{plural(n_skip, 'file')} could not be read and"
                f" {'was' if n_skip == 1 else 'were'} skipped (listed below)",
                page="overview",
            )
        )
    for name, sec in run.sections.items():
        if sec.get("status") == "failed":
            out.append(
                Finding(
                    "section_failed",
                    "info",
                    f"The {name} section failed: {sec.get('error', '')}",
                    page="overview",
                )
            )
    order = {"high": 0, "medium": 1, "info": 2}
    return sorted(out, key=lambda f: order.get(f.severity, 3))


def exif_rotation_finding(run: Run) -> Finding | None:
    """Images whose EXIF orientation makes people see them otherwise than the model did, with
    their error rate against the rest (95% Wilson intervals, one-sided Fisher test as the slices
    use); None when no image carries such a tag."""
    from ..stats.sanity import subset_error_effect
    from .image_view import run_exif_transpose

    s = run.samples
    if schema.EXIF_ORIENTATION not in s.columns or s.empty:
        return None
    tagged = s[schema.EXIF_ORIENTATION].fillna(0).to_numpy() > 1
    n = int(tagged.sum())
    if not n:
        return None
    eff = subset_error_effect(s[schema.CORRECT].to_numpy(bool), tagged)

    def rate(r: float, lo: float, hi: float) -> str:
        return "—" if r != r else f"{r:.0%} (95% CI {lo:.0%}–{hi:.0%})"

    rates = (
        f"Their error rate is {rate(eff.error_rate, eff.low, eff.high)} against"
        f" {rate(eff.rest_error_rate, eff.rest_low, eff.rest_high)} for the other"
        f" {eff.rest_n:,} images"
        + ("" if eff.p_value != eff.p_value else f" (one-sided Fisher p = {eff.p_value:.2g})")
    )
    images = f"{n:,} image{'s' if n != 1 else ''} carr{'y' if n != 1 else 'ies'}"
    if run_exif_transpose(run):
        return Finding(
            "exif_rotation",
            "info",
            f"{images} an EXIF rotation; the run turned them upright before the model saw them"
            f" (--exif-transpose), as people see them. {rates}.",
            query=ImageQuery(issue="exif"),
            extra={"n": n, "p_value": eff.p_value},
        )
    significant = eff.p_value == eff.p_value and eff.p_value < 0.05
    return Finding(
        "exif_rotation",
        "high" if significant else "medium",
        f"{images} an EXIF rotation: people see them upright, the model sees them rotated."
        f" {rates}. The model was given the pixels as stored, as torchvision's default loader"
        " gives them; if your pipeline rotates photos by their tag, analyse again with"
        " --exif-transpose.",
        query=ImageQuery(issue="exif"),
        extra={"n": n, "p_value": eff.p_value},
    )


def _outside_findings(run: Run) -> list[Finding]:
    """Images whose paths lead out of their data folder (absolute, ``../``, symlinks): a manifest
    can point anywhere on the machine, so say how many and which."""
    out = []
    inputs = run.manifest.get("inputs") or {}
    for key, what in (("data", "evaluation"), ("reference", "reference")):
        info = (inputs.get(key) or {}).get("outside_folder") or {}
        n = int(info.get("n") or 0)
        if not n:
            continue
        paths = list(info.get("paths") or [])
        shown = ", ".join(paths[:5]) + (f" and {n - 5} more" if n > 5 else "")
        out.append(
            Finding(
                "outside_data_folder",
                "medium",
                f"{n} {what} image{'s' if n != 1 else ''} {'lies' if n == 1 else 'lie'} outside"
                " the data folder"
                f" {info.get('root', '')} (absolute paths, '../' or symlinks): {shown}. Check"
                " that these are the files you mean; all are listed in the run's manifest.json"
                f" (inputs.{key}.outside_folder)",
                page="overview",
                extra={"paths": paths, "n": n},
            )
        )
    return out


def _with_ci(est) -> str:
    """``81.2% (95% CI 78.9%-83.3%)`` for an Estimate; the value alone when it has no interval."""
    if est.low != est.low or est.high != est.high:
        return f"{est.value:.1%}"
    return f"{est.value:.1%} (95% CI {est.low:.1%}-{est.high:.1%})"


def _n_images(n: int) -> str:
    return "1 image" if n == 1 else f"{n:,} images"


def _rest_rate(errors: int, n: int, samples: pd.DataFrame) -> float:
    total = len(samples)
    total_errors = int((~samples[schema.CORRECT].astype(bool)).sum())
    return (total_errors - errors) / (total - n) if total > n else float("nan")


#: Weak classes raised on the Overview (the rest are on the Confusion page's per-class table).
MAX_WEAK_CLASSES = 3


def weak_class_table(run: Run) -> pd.DataFrame:
    """:func:`analysis.stats.class_flags.weak_classes` for the run (recall with interval, the
    one-sided test against the other classes, Benjamini-Hochberg over the classes)."""
    from ..stats.class_flags import weak_classes

    s = run.samples
    return weak_classes(
        s[schema.LABEL].to_numpy(), s[schema.PRED].to_numpy(), n_classes=len(run.class_names)
    )


def _weak_class_findings(run: Run) -> list[Finding]:
    names = run.class_names
    table = weak_class_table(run)
    weak = table[table["significant"].astype(bool)]
    out = []
    for _, r in weak.head(MAX_WEAK_CLASSES).iterrows():
        k = int(r["class"])
        out.append(
            Finding(
                "weak_class",
                "high",
                f"Class {names[k]!r} has recall {r['recall']:.0%} (95% CI"
                f" {r['recall_low']:.0%}-{r['recall_high']:.0%}, {_n_images(int(r['support']))})"
                f" against {r['rest_recall']:.0%} for the other classes (adjusted p"
                f" {r['p_adj']:.2g})",
                query=ImageQuery(true=(k,), correct="wrong"),
                extra={"class": k, "significant_classes": int(len(weak))},
            )
        )
    return out


def image_flags(run: Run, row: int) -> list[tuple[str, str]]:
    """Data-issue flags of one image as (kind, why) pairs, for the image detail page."""
    s = run.samples.iloc[int(row)]
    out: list[tuple[str, str]] = []
    if bool(s.get(schema.IS_LABEL_ISSUE, False)):
        issues = run.table(schema.LABEL_ISSUES)
        reason = ""
        if issues is not None:
            hit = issues[issues["index"] == int(row)]
            reason = str(hit["reason"].iloc[0]) if len(hit) else ""
        out.append(("suspected label error", reason or "flagged by confident learning"))
    leak = s.get(schema.LEAK_OF)
    if isinstance(leak, str) and leak:
        out.append(
            (
                "leaked",
                f"near-copy of reference image {leak} (cosine similarity"
                f" {float(s.get(schema.LEAK_SIMILARITY, float('nan'))):.3f})",
            )
        )
    dup = s.get(schema.DUPLICATE_OF)
    if isinstance(dup, str) and dup:
        out.append(("near-duplicate", f"of evaluation image {dup}"))
    outl = run.table(schema.OUTLIERS)
    if outl is not None and len(outl):
        for _, r in outl[outl["index"] == int(row)].iterrows():
            out.append((f"outlier: {r['type']}", str(r["reason"])))
    return out
