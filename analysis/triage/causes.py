"""The candidate causes of a failure group: each a small function registered in :data:`CAUSES`.

A cause function takes the shared :class:`Context` and one :class:`~.groups.FailureGroup` and
returns :class:`Finding` rows, one per hypothesis it tests (a quality type, a shortcut candidate,
an under-represented value): its test statistic and one-sided p-value, the share of the group's
errors it accounts for (:mod:`.estimate`), the evidence in words and numbers, the images behind
it and an action with its size. When the run lacks what a cause needs it returns one row with
``status="not tested"`` and ``needs`` saying what is missing, never nothing.

=================  =========================================================================
cause              evidence
=================  =========================================================================
label_noise        the group's errors are suspected (or reviewed, confirmed) label errors more
                   often than errors elsewhere; suspected label errors that a shortcut explains
                   (an image with the shortcut's value predicted as its class) are left to the
                   shortcut: the model's confidence there comes from the shortcut, not the image;
                   for a slice or class, those on a significant confusion pair are left to the
                   pair (a systematic confusion and a wrong label look alike to the model)
under_represented  the group's value is rare in the reference set (see :mod:`.evidence`), and
                   the group's errors sit on its images
shortcut           the reference associates a value with a class; here images with the value
                   are predicted as that class (or the class is missed without it) more often
image_quality      the group holds more degraded images than the rest and degraded images fail
                   more; a robustness run, when there is one, must show the matching
                   perturbation breaking the model at the group's measured level
unfamiliar         the group's correctly classified images lie far from every reference image
                   (beyond the 95th percentile of the distances of correct images of their
                   class) more often than elsewhere; images of an under-represented value,
                   degraded images and images that break an active shortcut are left to those
                   causes (their actions name what to do)
overlapping        (confusion pairs) the two classes are mixed among each other's nearest
                   reference neighbours, and the pair's errors have low margins; annotators'
                   "ambiguous" tags, when reviewed, are shown as support
=================  =========================================================================

Leakage is not a cause of a group's failure but a mis-measurement of the whole set; it is
measured by :func:`leakage` on every image.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import schema
from ..stats.slices import SliceSpec, fisher_worse_p, spec_from_json
from .estimate import Attribution, _fisher, composition, mixture, within
from .evidence import (
    QUALITY_TYPES,
    UNDER_FACTOR,
    UNFAMILIAR_QUANTILE,
    Distances,
    predicate_mask,
)
from .groups import FailureGroup
from .inputs import TriageInputs

CAUSE_WORDS = {
    "label_noise": "label noise",
    "under_represented": "under-represented in training",
    "shortcut": "shortcut (spurious correlation)",
    "image_quality": "image quality",
    "unfamiliar": "unfamiliar inputs",
    "overlapping": "overlapping classes",
    "leakage": "leakage (mis-measurement)",
    "none": "none of these",
}
ACTIONS = {
    "label_noise": "relabel",
    "under_represented": "collect",
    "shortcut": "break_shortcut",
    "image_quality": "augment",
    "unfamiliar": "collect",
    "overlapping": "review_definition",
    "leakage": "deduplicate",
    "none": "model",
}


@dataclass
class Finding:
    """One tested hypothesis (a row of ``triage.parquet`` before correction).

    ``images`` is the bool [N] mask of the images behind the finding (shown by its link);
    ``links`` are ``(text, mask or spec)`` pairs, the numbers of ``recommendation`` (``{0}``,
    ``{1}``, ... in the text) with the images each one stands for.
    """

    cause: str
    detail: str = ""
    status: str = "tested"  # tested | not tested | found
    statistic: float = math.nan
    statistic_name: str = ""
    p_value: float = math.nan
    attribution: Attribution | None = None
    evidence: str = ""
    numbers: dict = field(default_factory=dict)
    images: np.ndarray | None = None
    recommendation: str = ""
    links: list = field(default_factory=list)
    needs: str = ""

    @property
    def action(self) -> str:
        return ACTIONS.get(self.cause, "")


@dataclass(eq=False)
class Context:
    """Run-level evidence shared by every group (built by :func:`.table.build_context`)."""

    inputs: TriageInputs
    wrong: np.ndarray
    label: np.ndarray
    pred: np.ndarray
    quality: dict[str, np.ndarray]
    representation: pd.DataFrame | None
    under: list[tuple[str, np.ndarray]]  # (spec json, eval mask) of under-represented values
    shortcuts: pd.DataFrame | None
    shortcut_masks: list[np.ndarray]  # eval mask of each shortcut candidate's value
    shortcut_active: np.ndarray  # bool per candidate: its eval effect is significant
    distances: Distances | None
    far: np.ndarray | None
    far_threshold: float
    label_noise: np.ndarray | None
    ambiguous: np.ndarray | None
    reviewed: np.ndarray | None
    alpha: float = 0.05
    seed: int = 0
    confirmed: np.ndarray | None = None  # reviewed: the label is wrong
    pair_errors: np.ndarray | None = None  # errors on a significant confusion pair (a group)

    @property
    def samples(self) -> pd.DataFrame:
        return self.inputs.samples

    @property
    def names(self) -> list[str]:
        return self.inputs.class_names

    def pct(self, x: float) -> str:
        if not np.isfinite(x):
            return "—"
        v = 100 * x
        return f"{v:.0f}%" if v >= 10 or v == 0 else f"{v:.1f}%"


def _not_tested(cause: str, needs: str) -> list[Finding]:
    return [Finding(cause, status="not tested", needs=needs)]


def _att_numbers(att: Attribution) -> dict:
    return {k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in
            att.parts.items()}  # fmt: skip


def _estimate(
    ctx: Context,
    g: FailureGroup,
    cause: np.ndarray,
    comparison: np.ndarray,
    *,
    event: np.ndarray | None = None,
    strata: bool = True,
) -> Attribution:
    """Composition for slices, classes and clusters (effect measured within true classes unless
    ``strata`` is False); within-group for confusion pairs."""
    ev = g.event if event is None else event
    if g.kind == "confusion" and int((g.rows & comparison & ~cause).sum()) >= 10:
        return within(g.rows, cause, comparison, ev, seed=ctx.seed)
    # a pair whose images all carry the cause (its class is rare in training) is compared with
    # the other classes: its events beyond their rate of going to b
    return composition(
        g.rows,
        g.baseline,
        cause,
        comparison,
        ev,
        cost=g.cost_kind,
        cost_event=g.event,
        strata=None if strata is False else ctx.label,
        effect_on_all=g.kind == "error_cluster",
        seed=ctx.seed,
    )


def _separable_note(att: Attribution) -> str:
    if att.parts.get("estimator") == "composition" and att.parts.get("coincide", False):
        return (
            " Nearly all of these images are in this group, so the data cannot separate the"
            " cause from the group itself."
        )
    return ""


# ------------------------------------------------------------------------------- label noise


def label_noise(ctx: Context, g: FailureGroup) -> list[Finding]:
    if ctx.label_noise is None:
        why = ctx.inputs.missing.get("label_issues")
        return _not_tested(
            "label_noise",
            "the label-issues section" + (f" (it did not run: {why})" if why else ""),
        )
    flag = ctx.label_noise
    if g.kind != "confusion" and ctx.pair_errors is not None:
        # a confident error on a pair the model systematically confuses is as much the model's
        # confusion as a wrong label: the pair is triaged on its own, and its flags are no
        # evidence that this slice or class is mislabelled (a reviewed decision still is)
        keep = ~ctx.pair_errors
        if ctx.confirmed is not None:
            keep |= ctx.confirmed
        flag = flag & keep
    rare = _rare_class_rows(ctx)
    set_aside = 0
    if rare is not None:
        # a class the model barely saw in training is predicted confidently wrong whatever its
        # labels, and confident errors are what the label-issue detectors flag: in the group
        # the flags cannot tell label noise from rarity, which the under-represented cause
        # tests (a reviewed decision still counts; the whole-set relabel list keeps every
        # flag). Only in the group: taken out of the comparison too, they made every other
        # group look mislabelled against a cleaner elsewhere (precision 89% -> 87% on the
        # planted worlds of bench/bench_triage.py)
        keep = ~(rare & g.rows)
        if ctx.confirmed is not None:
            keep |= ctx.confirmed
        set_aside = int((g.rows & g.event & flag & ~keep).sum())
        flag = flag & keep
    ev = np.where(g.rows, g.event, ctx.wrong)  # the group's failures against errors elsewhere
    att = mixture(g.rows, g.baseline, ev, flag, cost=g.cost_kind, seed=ctx.seed)
    p = att.parts
    images = g.rows & g.event & flag
    n_img = int(images.sum())
    ratio = p["rate_cause"] / p["rate_comparison"] if p["rate_comparison"] else math.inf
    evidence = (
        f"{p['flagged_group']} of the group's {p['events_group']} errors"
        f" ({ctx.pct(p['rate_cause'])}) are suspected label errors, against"
        f" {ctx.pct(p['rate_comparison'])} of the errors elsewhere."
    )
    if set_aside:
        evidence += (
            f" {set_aside} more are flagged but belong to a class under-represented in training,"
            " whose images the model gets confidently wrong whatever their labels: they are"
            " left to that cause (the relabel list keeps them)."
        )
    if ctx.reviewed is not None and (g.rows & ctx.reviewed).any():
        evidence += f" Reviews so far: {int((g.rows & ctx.reviewed).sum())} of its images."
    return [
        Finding(
            "label_noise",
            detail="suspected label errors",
            statistic=float(ratio),
            statistic_name="flagged share of errors, group / elsewhere",
            p_value=att.p_value,
            attribution=att,
            evidence=evidence,
            numbers=_att_numbers(att),
            images=images,
            recommendation="relabel {0} (review them first: the flags are the model's view)",
            links=[(f"these {n_img} images", images)],
        )
    ]


def _rare_class_rows(ctx: Context) -> np.ndarray | None:
    """Images whose given class is under-represented in the reference set, or None."""
    rep = ctx.representation
    if rep is None or rep.empty or not ctx.under:
        return None
    rare = rep["under"].astype(bool) & (rep["column"].astype(str) == schema.LABEL)
    keys = set(rep.loc[rare, "spec"])
    masks = [m for k, m in ctx.under if k in keys]
    return np.logical_or.reduce(masks) if masks else None


# ------------------------------------------------------------------------- under-represented


def _collect_size(row: pd.Series, n_ref: int) -> int:
    """Images to add to bring a value's reference share up to its evaluation share (a class:
    up to a typical class's share when that is larger: the class is rare among classes)."""
    t = float(row["eval_share"])
    if str(row.get("column")) == schema.LABEL:
        t = float(row["target_share"])
    if not 0 < t < 1:
        return 0
    return max(0, int(math.ceil((t * n_ref - row["ref_n"]) / (1 - t))))


def under_represented(ctx: Context, g: FailureGroup) -> list[Finding]:
    if ctx.inputs.reference is None:
        return _not_tested("under_represented", "a reference (training) set (--reference)")
    rep = ctx.representation
    if rep is None or rep.empty:
        return _not_tested("under_represented", "metadata, classes or properties in both sets")
    by_spec = rep.drop_duplicates("spec").set_index("spec")
    candidates: list[str] = []
    for p in g.spec.predicates:
        key = _one(p)
        if key in by_spec.index:
            candidates.append(key)
    for key, m in ctx.under:
        # another under-represented value can explain the group only if it has images there
        if key not in candidates and (g.rows & m).any():
            candidates.append(key)
    out = []
    n_ref = len(ctx.inputs.reference)
    if not candidates:
        return [
            Finding(
                "under_represented",
                detail="no under-represented value",
                evidence="None of the group's conditions, and no value of the run, has less than"
                f" {UNDER_FACTOR:.0%} of its target share of the reference set.",
            )
        ]
    for key in candidates:
        r = by_spec.loc[key]
        mask = predicate_mask(ctx.samples, key)
        by_class = str(r["column"]) == schema.LABEL
        if g.kind == "confusion" and by_class:
            # a rare class spreads its errors over every class; why its images go to b in
            # particular is the pair's question (overlap, shortcut, labels), not its rarity
            continue
        att = _estimate(ctx, g, mask, ~mask, strata=not by_class)
        p = max(float(r["p_value"]), att.p_value) if np.isfinite(att.p_value) else math.nan
        need = _collect_size(r, n_ref)
        images = g.rows & mask
        typical = r["typical_share"]
        vs = (
            f"a typical value has {ctx.pct(typical)}"
            if np.isfinite(typical) and typical > r["eval_share"]
            else f"{ctx.pct(r['eval_share'])} of evaluation"
        )
        evidence = (
            f"{r['description']}: {int(r['ref_n'])} reference images ({ctx.pct(r['ref_share'])}"
            f" of training) against a target of {ctx.pct(r['target_share'])} ({vs});"
            f" under-represented means below {UNDER_FACTOR:.0%} of the target."
            f" The group's images of it fail at {ctx.pct(att.parts.get('rate_cause', math.nan))}"
            f" against {ctx.pct(att.parts.get('rate_comparison', math.nan))}."
            + _separable_note(att)
        )
        numbers = _att_numbers(att) | {
            "ref_n": int(r["ref_n"]),
            "ref_share": float(r["ref_share"]),
            "eval_share": float(r["eval_share"]),
            "typical_share": float(typical),
            "target_share": float(r["target_share"]),
            "p_representation": float(r["p_value"]),
            "collect": need,
        }
        out.append(
            Finding(
                "under_represented",
                detail=str(r["description"]),
                statistic=float(r["ratio"]),
                statistic_name="reference share / target share",
                p_value=p,
                attribution=att,
                evidence=evidence,
                numbers=numbers,
                images=images,
                recommendation=(
                    "collect or augment about {0} more images of "
                    + str(r["description"])
                    + f" ({ctx.pct(r['ref_share'])} of training, {{1}} of evaluation)"
                ),
                links=[
                    (f"{need:,}", images),
                    (ctx.pct(r["eval_share"]), mask),
                ],
            )
        )
    if not out:
        return [
            Finding(
                "under_represented",
                detail="no under-represented value",
                evidence="No value of the pair's images is under-represented in the reference"
                " set (a rare class is its weak-class group's question, not the pair's).",
            )
        ]
    return out


def _one(p) -> str:
    from ..stats.slices import spec_to_json

    return spec_to_json(SliceSpec((p,)))


# -------------------------------------------------------------------------------- shortcut


def _relevant_shortcut(g: FailureGroup, row: pd.Series, mask: np.ndarray) -> bool:
    """Whether a shortcut candidate bears on this group (decided from its definition only)."""
    k = int(row["cls"])
    if g.kind in ("weak_class", "confusion"):
        return k in g.classes
    if g.kind == "error_cluster":
        return True
    col = str(row["column"])
    return col in g.spec.columns


def shortcut(ctx: Context, g: FailureGroup) -> list[Finding]:
    if ctx.inputs.reference is None:
        return _not_tested("shortcut", "a reference (training) set (--reference)")
    if ctx.shortcuts is None:
        return _not_tested("shortcut", "metadata or image properties in the reference set")
    out = []
    label, pred = ctx.label, ctx.pred
    if ctx.shortcuts.empty:
        return [
            Finding(
                "shortcut",
                detail="no candidate shortcut",
                evidence="The reference set associates no metadata value or property bin with a"
                " class strongly enough to be a shortcut (Fisher, BH, P(v | k) at least twice"
                " P(v | other classes)).",
            )
        ]
    for i, row in ctx.shortcuts.iterrows():
        v = ctx.shortcut_masks[i]
        if not _relevant_shortcut(g, row, v):
            continue
        k = int(row["cls"])
        kname = ctx.names[k]
        options = []
        if g.kind == "confusion":
            a, b = g.classes
            if b == k:  # images of a with v go to k
                options.append(("towards", _estimate(ctx, g, v, ~v)))
            if a == k:  # images of k without v are missed (as b)
                options.append(("missed", _estimate(ctx, g, ~v, v)))
        else:
            towards_ev = (pred == k) & (label != k)
            if (g.rows & v & (label != k)).any():
                options.append(
                    (
                        "towards",
                        _estimate(ctx, g, v & (label != k), ~v & (label != k), event=towards_ev),
                    )
                )
            if (g.rows & ~v & (label == k)).any():
                options.append(("missed", _estimate(ctx, g, ~v & (label == k), v & (label == k))))
        options = [(s, a) for s, a in options if np.isfinite(a.p_value)]
        if not options:
            continue
        side, att = min(options, key=lambda o: o[1].p_value)
        p = min(1.0, att.p_value * len(options))  # Bonferroni over the sides tried
        if side == "towards":
            images = g.rows & v & (label != k) & (pred == k)
            what = f"images with {row['description']} predicted as {kname}"
        else:
            images = g.rows & ~v & (label == k) & (pred != k)
            what = f"{kname} images without {row['description']} missed"
        rc, rm = att.parts.get("rate_cause", math.nan), att.parts.get("rate_comparison", math.nan)
        ratio = rc / rm if rm else math.inf
        n_img = int(images.sum())
        evidence = (
            f"In the reference set {ctx.pct(row['ref_p_v_given_k'])} of {kname} images have"
            f" {row['description']}, against {ctx.pct(row['ref_p_v_given_not_k'])} of other"
            f" classes. Here {n_img} {what}: "
            + (
                f"{ctx.pct(rc)} of the non-{kname} images with it are predicted {kname},"
                f" {ctx.pct(rm)} without it."
                if side == "towards"
                else f"{ctx.pct(rc)} of {kname} images without it are missed, {ctx.pct(rm)}"
                " with it."
            )
            + _separable_note(att)
        )
        cam_note, cam_numbers = _cam_support(ctx, images)
        evidence += cam_note
        out.append(
            Finding(
                "shortcut",
                detail=f"{row['description']} → {kname}",
                statistic=float(ratio),
                statistic_name=f"error rate {side} {kname}, with / without the value",
                p_value=p,
                attribution=att,
                evidence=evidence,
                numbers=_att_numbers(att)
                | {
                    "side": side,
                    "cls": k,
                    "value": str(row["description"]),
                    "ref_p_v_given_k": float(row["ref_p_v_given_k"]),
                    "ref_p_v_given_not_k": float(row["ref_p_v_given_not_k"]),
                    "lift": float(row["lift"]),
                }
                | cam_numbers,
                images=images,
                recommendation=(
                    f"break the shortcut: {kname} images show {row['description']} in"
                    " {0} of training images (other classes: "
                    f"{ctx.pct(row['ref_p_v_given_not_k'])}); {{1}} here. Collect {kname}"
                    f" without it and other classes with it, or balance it when sampling"
                ),
                links=[
                    (ctx.pct(row["ref_p_v_given_k"]), v & (label == k)),
                    (f"{n_img} {what}", images),
                ],
            )
        )
    if not out:
        names = ", ".join(dict.fromkeys(ctx.shortcuts["description"].astype(str).head(3)))
        return [
            Finding(
                "shortcut",
                detail="no candidate shortcut for this group",
                evidence=f"The reference's candidate shortcuts ({names}) do not bear on this"
                " group: none of its conditions or classes.",
            )
        ]
    return out


def _cam_support(ctx: Context, images: np.ndarray) -> tuple[str, dict]:
    """Supporting CAM evidence (:mod:`.cam_mass`): where the model looked for these images
    against correctly classified ones, from the maps already cached; never part of the test."""
    from .cam_mass import has_object_geometry, object_mass

    inp = ctx.inputs
    if inp.run_dir is None or not has_object_geometry(ctx.samples):
        return "", {}
    prep = inp.preprocessing or {}
    m_err, n_err = object_mass(inp.run_dir, ctx.samples, images, prep)
    m_ok, n_ok = object_mass(inp.run_dir, ctx.samples, ~ctx.wrong, prep)
    numbers = {"cam_object_mass": m_err, "cam_maps": n_err, "cam_object_mass_correct": m_ok,
               "cam_maps_correct": n_ok}  # fmt: skip
    if n_err == 0:
        return (
            " CAMs (supporting): none cached for these images yet (open them on the image"
            " detail page).",
            numbers,
        )
    return (
        f" CAMs (supporting, not part of the test): {ctx.pct(m_err)} of the predicted class's"
        f" map lies on the object for the {n_err} of these images with a cached map, against"
        f" {ctx.pct(m_ok)} for {n_ok} correctly classified images.",
        numbers,
    )


# --------------------------------------------------------------------------- image quality


_AUGMENT = {
    "dark": "augment with darkening (brightness factor down to {level})",
    "overexposed": "augment with brightening (brightness factor up to {level})",
    "low_contrast": "augment with contrast reduction (factor down to {level})",
    "blurry": "augment with Gaussian blur up to σ = {level} px at 224 px",
    "noisy": "augment with Gaussian noise up to σ = {level} ([0, 1] units)",
    "odd_size": "resize consistently and augment with rescaling (down to 1/{level})",
    "exif_rotated": "apply the EXIF orientation when loading (or augment with rotations)",
}


_PERTURBATION_WORDS = {
    "gaussian_blur": "Gaussian blur",
    "motion_blur": "motion blur",
    "gaussian_noise": "Gaussian noise",
    "brightness_down": "darkening",
    "brightness_up": "brightening",
    "contrast": "contrast reduction",
    "downscale": "downscaling",
    "rotation": "rotation",
}


def robustness_check(
    ctx: Context, g: FailureGroup, qtype: str, name: str | None = None
) -> tuple[float, dict] | None:
    """Whether the perturbation matching ``qtype`` hurts the model on images outside the group.

    Returns ``(p_value, numbers)`` or None when no stored robustness run has a matching
    perturbation. Per severity, the one-sided exact McNemar test on the images outside the
    group (right when clean and wrong when perturbed, against the reverse). ``p_value``: at the
    severity whose parameter is closest to the group's measured level (noise sigma, brightness
    or contrast ratio), when it can be measured and the perturbation is the type's own; else the
    smallest over the severities, Bonferroni-corrected (blur cannot be measured under sensor
    noise, so a noisy group is checked against the blur curve as a whole). ``numbers`` also say
    from which severity the perturbation hurts (``hurts_from``: p < 0.05) and from which it
    brings the images down to the group's own accuracy (``breaks_at``).
    """
    from scipy.stats import binom

    res = ctx.inputs.robustness
    q = QUALITY_TYPES[qtype]
    if res is None:
        return None
    if name is None:
        name = next((p for p in q.perturbations if p in res.perturbations), None)
    if name is None or name not in res.perturbations:
        return None
    from ..stats.robustness import PERTURBATIONS

    levels = PERTURBATIONS[name].levels
    rows = np.asarray(res.rows, dtype=np.int64)
    outside = ~g.rows[rows]
    i = res.perturbations.index(name)
    clean_ok = res.clean_pred == res.labels
    group_acc = float(1.0 - (g.rows & ctx.wrong).sum() / max(g.n, 1))
    curve = []
    for j, sev in enumerate(res.severities):
        pred = res.predictions[i, j].astype(np.int64)
        valid = (pred >= 0) & outside
        ok = pred == res.labels
        n = int(valid.sum())
        worse = int((valid & clean_ok & ~ok).sum())
        better = int((valid & ~clean_ok & ok).sum())
        p = float(binom.sf(worse - 1, worse + better, 0.5)) if worse + better else 1.0
        curve.append(
            {
                "severity": int(sev),
                "parameter": float(levels[int(sev) - 1]),
                "accuracy": float(ok[valid].mean()) if n else math.nan,
                "clean_accuracy": float(clean_ok[valid].mean()) if n else math.nan,
                "n": n,
                "p": p,
            }
        )
    breaks_at = next((c["severity"] for c in curve if c["accuracy"] <= group_acc), None)
    hurts_from = next((c["severity"] for c in curve if c["p"] < ctx.alpha), None)
    level = _level(ctx, g, qtype)
    if level is not None and name == q.perturbations[0]:
        j = int(np.argmin([abs(c["parameter"] - level) for c in curve]))
        p_check, matched = curve[j]["p"], curve[j]["severity"]
    else:
        j = int(np.argmin([c["p"] for c in curve]))
        p_check, matched = min(1.0, curve[j]["p"] * len(curve)), curve[j]["severity"]
    return p_check, {
        "perturbation": name,
        "parameter": PERTURBATIONS[name].parameter,
        "curve": curve,
        "group_accuracy": group_acc,
        "breaks_at": breaks_at,
        "hurts_from": hurts_from,
        "matched_severity": matched,
        "measured_level": level,
        "p_robustness": p_check,
    }


def _param_at(rob: dict, severity: int) -> float:
    return next(c["parameter"] for c in rob["curve"] if c["severity"] == severity)


def _robustness_sentence(ctx: Context, rob: dict) -> str:
    return (
        f" Robustness run: {rob['perturbation']} "
        + (
            f"lowers the accuracy of images outside the group from severity {rob['hurts_from']}"
            if rob["hurts_from"] is not None
            else "does not lower the accuracy of images outside the group"
        )
        + (
            f" and brings it to the group's {ctx.pct(rob['group_accuracy'])} from severity"
            f" {rob['breaks_at']}"
            if rob["breaks_at"] is not None
            else f", never to the group's {ctx.pct(rob['group_accuracy'])}"
        )
        + f" (McNemar p {rob['p_robustness']:.2g} at severity {rob['matched_severity']})."
    )


def _level(ctx: Context, g: FailureGroup, qtype: str) -> float | None:
    """The degradation measured on the group's degraded images against the clean rest."""
    q = QUALITY_TYPES[qtype]
    if q.level is None or q.column not in ctx.samples.columns:
        return None
    x = pd.to_numeric(ctx.samples[q.column], errors="coerce").to_numpy(np.float64)
    mask = ctx.quality[qtype]
    inside = g.rows & mask
    return q.level(x[inside], x[~mask]) if inside.any() and (~mask).any() else None


def image_quality(ctx: Context, g: FailureGroup) -> list[Finding]:
    if not ctx.quality:
        return _not_tested("image_quality", "image-property columns (brightness, noise, ...)")
    out = []
    for name, mask in ctx.quality.items():
        if mask.sum() < 5 or (~mask).sum() < 5:
            continue  # too few degraded images in the run to test anything
        q = QUALITY_TYPES[name]
        att = _estimate(ctx, g, mask, ~mask)
        if not np.isfinite(att.p_value):
            continue
        p = att.p_value
        numbers = _att_numbers(att)
        checks = [robustness_check(ctx, g, name, pert) for pert in q.perturbations]
        checks = [c for c in checks if c is not None]
        # the perturbation that reproduces the measured degradation can veto the cause; the
        # others (blur for a noisy group: noise hides blur) are evidence only
        check = next((c for c in checks if c[1]["perturbation"] == q.perturbations[0]), None)
        level_text = ""
        if check is not None:
            p = max(p, check[0])
        if checks:
            numbers["robustness"] = (check or checks[0])[1]
            numbers["robustness_other"] = [c[1] for c in checks if c is not check]
            top = (check or checks[0])[1]
            if check is not None and (top["breaks_at"] or top["hurts_from"]):
                sev = top["breaks_at"] or top["hurts_from"]
                level_text = f"{_param_at(top, sev):g}"
            rob_text = "".join(_robustness_sentence(ctx, c[1]) for c in checks)
            if check is None:
                rob_text += (
                    f" (No {q.perturbations[0]} run, which would reproduce the measured"
                    " degradation, to confirm it.)"
                )
        else:
            rob_text = (
                " No robustness run with "
                + " or ".join(q.perturbations)
                + " yet to confirm it (`errorscope robustness RUN`)."
            )
        images = g.rows & mask
        n_img = int(images.sum())
        pa = att.parts
        evidence = (
            f"{ctx.pct(pa.get('share_group_cause', math.nan))} of the group's images are"
            f" {q.words}"
            + (
                f", against {ctx.pct(pa['share_baseline_cause'])} elsewhere"
                if "share_baseline_cause" in pa
                else ""
            )
            + f"; they fail at {ctx.pct(pa.get('rate_cause', math.nan))} against"
            f" {ctx.pct(pa.get('rate_comparison', math.nan))}." + _separable_note(att) + rob_text
        )
        if not level_text:
            lv = _level(ctx, g, name)
            level_text = f"{lv:.2g}" if lv is not None else ""
        action = _AUGMENT[name].format(level=level_text or "the group's level")
        for _, rob in checks:
            top = rob["breaks_at"] or rob["hurts_from"]
            if not top:
                continue
            words = _PERTURBATION_WORDS.get(rob["perturbation"], rob["perturbation"])
            if rob["perturbation"] != q.perturbations[0]:
                action += f" and {words} up to {_param_at(rob, top):g} ({rob['parameter']})"
            action += (
                f" ({words} makes other images fail like these from severity {rob['breaks_at']})"
                if rob["breaks_at"]
                else f" ({words} hurts other images from severity {rob['hurts_from']})"
            )
        out.append(
            Finding(
                "image_quality",
                detail=name,
                statistic=float(pa.get("delta", math.nan)),
                statistic_name="error rate of degraded minus other images",
                p_value=p,
                attribution=att,
                evidence=evidence,
                numbers=numbers,
                images=images,
                recommendation=action + " ({0} " + q.words.split(" (")[0] + " in this group)",
                links=[(f"{n_img} images", images)],
            )
        )
    return out


# ------------------------------------------------------------------------------ unfamiliar


def unfamiliar(ctx: Context, g: FailureGroup) -> list[Finding]:
    if ctx.distances is None:
        if ctx.inputs.reference is None:
            return _not_tested("unfamiliar", "a reference (training) set (--reference)")
        return _not_tested("unfamiliar", "embeddings of both sets (a model with a linear head)")
    far = ctx.far
    att = _estimate(ctx, g, far, ~far)
    # A model's errors lie far from its training images whatever their cause (the features of
    # a mistake sit between classes), so any group with more errors holds more far images.
    # The test asks the group's *correctly classified* images instead: if the group's inputs
    # are unlike training, those are far too.
    ok = ~ctx.wrong
    base = g.baseline & ok
    k_g, n_g = int((g.rows & ok & far).sum()), int((g.rows & ok).sum())
    k_b, n_b = int((base & far).sum()), int(base.sum())
    p_ok = _fisher(k_g, n_g, k_g + k_b, n_g + n_b) if n_g and n_b else math.nan
    f_g = k_g / n_g if n_g else math.nan
    f_b = k_b / n_b if n_b else math.nan
    d = ctx.distances.distance
    med_g = float(np.median(d[g.rows & ok])) if n_g else math.nan
    med_b = float(np.median(d[base])) if n_b else math.nan
    images = g.rows & far
    n_img = int(images.sum())
    pa = att.parts
    evidence = (
        f"{ctx.pct(f_g)} of the group's correctly classified images lie farther from every"
        f" reference image than {UNFAMILIAR_QUANTILE:.0%} of correct images of their class do"
        f" (cosine distance, median cut {ctx.far_threshold:.3f}), against {ctx.pct(f_b)}"
        f" elsewhere; its {n_img} far images"
        f" fail at {ctx.pct(pa.get('rate_cause', math.nan))} against"
        f" {ctx.pct(pa.get('rate_comparison', math.nan))}."
    )
    return [
        Finding(
            "unfamiliar",
            detail="far from the reference set",
            statistic=med_g / med_b if med_b else math.nan,
            statistic_name="median nearest-reference distance of correct images, group / rest",
            p_value=p_ok,
            attribution=att,
            evidence=evidence,
            numbers=_att_numbers(att)
            | {
                "threshold": ctx.far_threshold,
                "median_group": med_g,
                "median_elsewhere": med_b,
                "far_correct_group": k_g,
                "correct_group": n_g,
                "far_correct_elsewhere": k_b,
                "correct_elsewhere": n_b,
            },
            images=images,
            recommendation="collect training images like {0}: nothing like them is in training",
            links=[(f"these {n_img}", images)],
        )
    ]


# ----------------------------------------------------------------------------- overlapping


def overlapping(ctx: Context, g: FailureGroup) -> list[Finding]:
    if g.kind != "confusion":
        return []
    if schema.MARGIN not in ctx.samples.columns:
        return _not_tested("overlapping", "prediction margins")
    if ctx.distances is None:
        return _not_tested("overlapping", "embeddings of the reference set")
    a, b = g.classes
    mix, n_ref = ctx.distances.mixing, ctx.distances.ref_class_n
    others = [c for c in range(len(n_ref)) if c not in (a, b)]
    k_a, n_a = int(mix[a, b]), int(n_ref[a])
    k_o, n_o = int(mix[others, b].sum()), int(n_ref[others].sum())
    p_mix = float(fisher_worse_p(k_a, n_a, k_a + k_o, n_a + n_o)) if n_a and n_o else math.nan
    margin = ctx.samples[schema.MARGIN].to_numpy(np.float64)
    errs_else = g.baseline & ctx.wrong
    cut = float(np.median(margin[errs_else])) if errs_else.any() else math.nan
    low = margin < cut
    ev = np.where(g.rows, g.event, ctx.wrong)
    att = mixture(g.rows, g.baseline, ev, low, cost="events", seed=ctx.seed)
    p = max(p_mix, att.p_value) if np.isfinite(p_mix) and np.isfinite(att.p_value) else math.nan
    images = g.rows & g.event
    names = ctx.names
    amb = ""
    numbers = _att_numbers(att) | {
        "ref_mixed_a": k_a,
        "ref_n_a": n_a,
        "ref_mixed_others": k_o,
        "ref_n_others": n_o,
        "margin_cut": cut,
        "p_mixing": p_mix,
    }
    if ctx.ambiguous is not None and ctx.reviewed is not None:
        seen = images & ctx.reviewed
        if seen.any():
            n_amb = int((seen & ctx.ambiguous).sum())
            amb = f" Reviewers tagged {n_amb} of {int(seen.sum())} reviewed ones 'ambiguous'."
            numbers |= {"reviewed": int(seen.sum()), "ambiguous": n_amb}
    evidence = (
        f"{ctx.pct(k_a / n_a if n_a else math.nan)} of {names[a]} training images have a"
        f" {names[b]} among their nearest reference neighbours, against"
        f" {ctx.pct(k_o / n_o if n_o else math.nan)} of other classes' images;"
        f" {ctx.pct(att.parts['rate_cause'])} of the pair's errors have a margin below the"
        f" median of other errors ({cut:.2f})." + amb
    )
    return [
        Finding(
            "overlapping",
            detail=f"{names[a]} / {names[b]}",
            statistic=(k_a / n_a) / (k_o / n_o) if n_a and n_o and k_o else math.nan,
            statistic_name="neighbour mixing, this pair / other classes",
            p_value=p,
            attribution=att,
            evidence=evidence,
            numbers=numbers,
            images=images,
            recommendation=(
                f"review the definition of classes {names[a]} and {names[b]} with the"
                " annotators ({0} confused)"
            ),
            links=[(f"{int(images.sum())} images", images)],
        )
    ]


#: name -> cause function, in the order rows are written.
CAUSES: dict[str, Callable[[Context, FailureGroup], list[Finding]]] = {
    "label_noise": label_noise,
    "under_represented": under_represented,
    "shortcut": shortcut,
    "image_quality": image_quality,
    "unfamiliar": unfamiliar,
    "overlapping": overlapping,
}


# ------------------------------------------------------------------------ whole-set findings


def leakage(ctx: Context) -> Finding | None:
    """Accuracy with and without the evaluation images copied from the reference set.

    ``found`` when the duplicate search found leaked images (a detection, not a hypothesis);
    the p-value is the one-sided Fisher exact test that leaked images are right more often
    than the rest (the accuracy is inflated), the statistic the inflation in accuracy points.
    """
    s = ctx.samples
    if schema.LEAK_OF not in s.columns:
        if ctx.inputs.reference is None:
            return Finding("leakage", status="not tested", needs="a reference set (--reference)")
        return Finding("leakage", status="not tested", needs="the duplicates section")
    leaked = s[schema.LEAK_OF].notna().to_numpy()
    n_leak = int(leaked.sum())
    if n_leak == 0:
        return None
    ok = ~ctx.wrong
    n = len(s)
    acc_all = float(ok.mean())
    acc_clean = float(ok[~leaked].mean()) if (~leaked).any() else math.nan
    acc_leak = float(ok[leaked].mean())
    p = float(fisher_worse_p(int(ok[leaked].sum()), n_leak, int(ok.sum()), n))
    return Finding(
        "leakage",
        detail="evaluation images copied from the reference set",
        status="found",
        statistic=acc_all - acc_clean,
        statistic_name="accuracy with minus without leaked images",
        p_value=p,
        evidence=(
            f"{n_leak} evaluation images are near-copies of reference images; accuracy is"
            f" {ctx.pct(acc_all)} with them and {ctx.pct(acc_clean)} without"
            f" ({ctx.pct(acc_leak)} on the leaked images themselves)."
        ),
        numbers={
            "n_leaked": n_leak,
            "accuracy_all": acc_all,
            "accuracy_without": acc_clean,
            "accuracy_leaked": acc_leak,
        },
        images=leaked,
        recommendation="deduplicate the splits: remove {0} from the evaluation set"
        " (or from training) and measure again",
        links=[(f"{n_leak} leaked images", leaked)],
    )


def label_noise_overall(ctx: Context) -> Finding | None:
    """Every suspected label error of the run: the relabel list, whatever the groups."""
    if ctx.label_noise is None:
        return None
    flag = ctx.label_noise & ctx.wrong
    n_flag = int(flag.sum())
    if n_flag == 0:
        return None
    n_err = int(ctx.wrong.sum())
    return Finding(
        "label_noise",
        detail="suspected label errors",
        status="found",
        statistic=n_flag / n_err if n_err else math.nan,
        statistic_name="share of all errors",
        evidence=(
            f"{n_flag} of the {n_err} errors ({ctx.pct(n_flag / n_err)}) are suspected label"
            " errors: the model gives their label a low probability and prefers another class"
            " (suspected errors that a shortcut explains are left out)."
        ),
        numbers={"n_flagged": n_flag, "n_errors": n_err},
        images=flag,
        recommendation="relabel {0} (review them first: the list is the model's suspicion)",
        links=[(f"these {n_flag} images", flag)],
    )


def spec_mask(samples: pd.DataFrame, spec_json: str) -> np.ndarray:
    from ..stats.slices import apply_slice

    return apply_slice(samples, spec_from_json(spec_json))
