"""What a run says first: its headline metrics and the failures worth a look, each with a target.

A :class:`Finding` is a sentence plus where it leads (a page and an image query), so the overview,
the HTML report and the CLI say the same thing and every warning is one click from its images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import schema
from ..store.runstore import Run
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


def load_metrics(run: Run):
    """The run's :class:`analysis.stats.metrics.MetricsSummary`, or None if that section failed."""
    from ..stats.metrics import MetricsSummary

    d = run.json(METRICS_FILE)
    return None if d is None else MetricsSummary.from_dict(d)


def top_confusion_pairs(run: Run, k: int = 8) -> pd.DataFrame:
    """The k most frequent (given, predicted) error pairs with counts and their image query."""
    from ..stats.metrics import top_confusions

    s = run.samples
    if s.empty:
        return pd.DataFrame(columns=["true", "pred", "count", "share_of_true_class"])
    return top_confusions(
        s[schema.LABEL].to_numpy(), s[schema.PRED].to_numpy(), n_classes=run.n_classes, k=k
    )


def findings(run: Run) -> list[Finding]:
    """Every warning of the run, most important first."""
    out: list[Finding] = []
    names = run.class_names
    s = run.samples
    m = load_metrics(run)
    if m is not None and m.imbalance:
        out.append(Finding("imbalance", "medium", m.imbalance, page="confusion"))
    if m is not None and len(m.per_class):
        pc = m.per_class
        rec = pc["recall"].to_numpy(float)
        if np.isfinite(rec).any():
            worst = int(np.nanargmin(rec))
            acc = m.accuracy.value
            if rec[worst] < acc - 0.15:
                out.append(
                    Finding(
                        "weak_class",
                        "high",
                        f"Class {names[worst]!r} has recall {rec[worst]:.0%} "
                        f"({int(pc['support'].iloc[worst])} images) against {acc:.0%} overall",
                        query=ImageQuery(true=(worst,), correct="wrong"),
                    )
                )
    if schema.IS_LABEL_ISSUE in s.columns:
        n = int(s[schema.IS_LABEL_ISSUE].fillna(False).sum())
        if n:
            out.append(
                Finding(
                    "label_issues",
                    "high",
                    f"{n} images ({n / len(s):.1%}) look mislabelled: the model gives their label"
                    " a low probability and prefers another class",
                    page="data_issues",
                    query=ImageQuery(issue="label", sort="label_quality", desc=False),
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
                    f"{impact.n_leaked} evaluation images are near-copies of reference (training)"
                    f" images; accuracy is {impact.accuracy.value:.1%} with them and"
                    f" {impact.accuracy_clean.value:.1%} without",
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
        for _, row in sig.head(3).iterrows():
            out.append(
                Finding(
                    "weak_slice",
                    "high",
                    f"{row['description']}: error rate {row['error_rate']:.0%} vs"
                    f" {row['rest_error_rate']:.0%} elsewhere ({int(row['n'])} images,"
                    f" adjusted p {row['p_adj']:.2g})",
                    query=ImageQuery(slice=row["spec"]),
                    extra={"spec": row["spec"]},
                )
            )
    clusters = run.table(schema.CLUSTERS)
    if clusters is not None and not clusters.empty:
        c = clusters.iloc[0]
        if c.get("error_rate", 0) > (1 - (m.accuracy.value if m else 1)) * 1.5:
            out.append(
                Finding(
                    "error_cluster",
                    "medium",
                    f"Embedding cluster {int(c['cluster'])} ({int(c['size'])} images,"
                    f" {c.get('description', '')}) has error rate {c['error_rate']:.0%}",
                    query=ImageQuery(cluster=int(c["cluster"])),
                )
            )
    out += _outside_findings(run)
    n_skip = run.manifest.get("n_skipped", 0)
    if n_skip:
        out.append(
            Finding(
                "skipped",
                "info",
                f"{n_skip} files could not be read and were skipped (listed below)",
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
                f"{n} {what} image{'s' if n != 1 else ''} lie outside the data folder"
                f" {info.get('root', '')} (absolute paths, '../' or symlinks): {shown}. Check"
                " that these are the files you mean; all are listed in the run's manifest.json"
                f" (inputs.{key}.outside_folder)",
                page="overview",
                extra={"paths": paths, "n": n},
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
