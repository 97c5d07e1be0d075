"""Triage of a run: every failure group against every candidate cause, corrected once.

:func:`triage` runs every cause of :data:`.causes.CAUSES` on every group of
:func:`.groups.failure_groups`, adds the whole-set findings (suspected label errors, leakage),
adjusts the p-values of every (group, cause) hypothesis tested with Benjamini-Hochberg at
``alpha`` (one family), and says "none of these" plainly for a group no cause explains. The
result is one row per hypothesis (:data:`TRIAGE_COLUMNS`), written to ``triage.parquet``, and a
small ``triage.json`` (settings, the representation and shortcut tables the causes used).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import schema
from ..stats.slices import apply_slice, bh_adjust, spec_from_json, spec_to_json
from .causes import (
    CAUSE_WORDS,
    CAUSES,
    Context,
    Finding,
    label_noise_overall,
    leakage,
)
from .estimate import _mantel_haenszel_p, point_estimates
from .evidence import (
    UNFAMILIAR_QUANTILE,
    predicate_mask,
    quality_masks,
    reference_distances,
    representation_table,
    shortcut_candidates,
)
from .groups import FailureGroup, failure_groups, group_record
from .inputs import TriageInputs

ALPHA = 0.05

# Columns of triage.parquet, one row per (group, cause, detail) -----------------------------
GROUP_RANK = "group_rank"  # 1 = costliest; the whole set ranks by its suspected label errors
GROUP_KEY = "group_key"  # stable id of the group
GROUP_KIND = "group_kind"  # weak_class, confusion, slice, discovered, error_cluster, whole_set
GROUP = "group"  # the group in words
GROUP_N = "group_n"  # images in the group
GROUP_ERRORS = "group_errors"  # its failures (for a pair: images of a predicted b)
GROUP_EXPECTED = "group_expected"  # failures expected at the rate of the rows compared with
GROUP_COST = "group_cost"  # errors it costs: excess errors (a pair: its images)
GROUP_P_ADJ = "group_p_adj"  # the test that made it a failure group
GROUP_SPEC = "group_spec"  # slice spec JSON of the group's rows
GROUP_EVENT_SPEC = "group_event_spec"  # slice spec JSON of its failing images
GROUP_ALSO = "group_also"  # JSON list: near-copies of the group that were merged into it
GROUP_QUERY = "group_query"  # JSON: gallery query parameters of the group's failing images
CAUSE = "cause"  # registry name (label_noise, under_represented, ..., leakage, none)
CAUSE_LABEL = "cause_label"  # in words
DETAIL = "detail"  # which variant: a quality type, a shortcut "value → class", a value
STATUS = "status"  # significant | not significant | not tested | found | none
STATISTIC = "statistic"  # the cause's test statistic (see statistic_name)
STATISTIC_NAME = "statistic_name"
P_VALUE = "p_value"  # one-sided, the cause's test
P_ADJ = "p_adj"  # Benjamini-Hochberg over every (group, cause, detail) tested
SIGNIFICANT = "significant"  # p_adj < alpha
SHARE = "share"  # share of the group's cost the cause accounts for, [0, 1]
SHARE_LOW = "share_low"  # 95% bootstrap interval
SHARE_HIGH = "share_high"
EXPLAINED = "explained"  # errors accounted for (share * cost, unclipped estimate)
EVIDENCE = "evidence"  # one paragraph with the numbers
NUMBERS = "numbers"  # JSON: the numbers behind the evidence (for charts)
N_IMAGES = "n_images"  # images behind the finding
QUERY = "query"  # JSON: gallery query parameters of those images
RECOMMENDATION = "recommendation"  # action text, numbers as {0}, {1}, ...
LINKS = "links"  # JSON list of {"text", "query"}: the numbers and their images
ACTION = "action"  # relabel, collect, break_shortcut, augment, review_definition, ...
NEEDS = "needs"  # for "not tested": what the run lacks

TRIAGE_COLUMNS = [
    GROUP_RANK, GROUP_KEY, GROUP_KIND, GROUP, GROUP_N, GROUP_ERRORS, GROUP_EXPECTED,
    GROUP_COST, GROUP_P_ADJ, GROUP_SPEC, GROUP_EVENT_SPEC, GROUP_ALSO, GROUP_QUERY,
    CAUSE, CAUSE_LABEL, DETAIL, STATUS, STATISTIC, STATISTIC_NAME, P_VALUE, P_ADJ, SIGNIFICANT,
    SHARE, SHARE_LOW, SHARE_HIGH, EXPLAINED, EVIDENCE, NUMBERS, N_IMAGES, QUERY,
    RECOMMENDATION, LINKS, ACTION, NEEDS,
]  # fmt: skip

NONE_TEXT = "a genuine model error; more capacity or more data of this kind"


@dataclass(frozen=True, eq=False)
class TriageResult:
    """The triage table and what it was computed with.

    Attributes
    ----------
    table : DataFrame
        :data:`TRIAGE_COLUMNS`, groups by rank, in each group significant causes first.
    info : dict
        ``alpha``, ``n_tests``, ``seed``, the thresholds used, ``representation`` and
        ``shortcuts`` (records), ``timings_s``, ``robustness`` (key or None).
    distance : float32 [N] or None
        Nearest-reference distance per image (the ``reference_distance`` samples column).
    """

    table: pd.DataFrame
    info: dict = field(default_factory=dict)
    distance: np.ndarray | None = None

    def claimed(self) -> pd.DataFrame:
        """Rows a cause is claimed for (significant) or found (whole-set data issues)."""
        t = self.table
        return t[t[STATUS].isin(["significant", "found"])]


# ----------------------------------------------------------------------------------- context


def _review_masks(samples: pd.DataFrame, review: pd.DataFrame | None, names: list[str]):
    """(confirmed label errors, confirmed right labels, ambiguous, reviewed) bool [N] or Nones."""
    if review is None or review.empty or schema.CONTENT_HASH not in samples.columns:
        return None, None, None, None
    st = review.drop_duplicates("content_hash", keep="last").set_index("content_hash")
    idx = st.index.get_indexer(samples[schema.CONTENT_HASH].astype(str))
    has = idx >= 0
    n = len(samples)
    given = (
        samples[schema.LABEL_NAME].astype(str).to_numpy()
        if schema.LABEL_NAME in samples.columns
        else np.asarray(names, dtype=object)[samples[schema.LABEL].to_numpy(np.int64)]
    )
    corrected = np.full(n, "", dtype=object)
    tags = [()] * n
    reviewed = np.zeros(n, dtype=bool)
    cl = st["corrected_label"].astype(str).to_numpy() if "corrected_label" in st else None
    tg = st["tags"].to_numpy() if "tags" in st else None
    rv = st["reviewed"].to_numpy(bool) if "reviewed" in st else None
    for i in np.flatnonzero(has):
        j = idx[i]
        if cl is not None:
            corrected[i] = cl[j]
        if tg is not None and tg[j] is not None:
            tags[i] = tuple(tg[j])
        reviewed[i] = bool(rv[j]) if rv is not None else True
    tagged = np.array([bool(t) for t in tags])
    confirmed = ((corrected != "") & (corrected != given)) | np.array(
        ["label error" in t for t in tags]
    )
    cleared = (corrected != "") & (corrected == given)
    ambiguous = np.array(["ambiguous" in t for t in tags])
    return confirmed, cleared, ambiguous, reviewed | tagged | (corrected != "")


def build_context(inputs: TriageInputs, *, alpha: float = ALPHA, outliers=None) -> Context:
    """Run-level evidence (:mod:`.evidence`) for the causes."""
    s = inputs.samples
    label = s[schema.LABEL].to_numpy(np.int64)
    pred = s[schema.PRED].to_numpy(np.int64)
    wrong = ~s[schema.CORRECT].to_numpy(bool)
    if outliers is None and inputs.property_columns:
        from ..data_issues.outliers import find_outliers

        props = [c for c in schema.PROPERTY_COLUMNS if c in s.columns]
        try:
            outliers = find_outliers(s[props].reset_index(drop=True)) if props else None
        except (ValueError, TypeError):
            outliers = None
    quality = quality_masks(s, outliers, exif_transposed=getattr(inputs, "exif_transposed", False))
    ref = inputs.reference
    rep = shortcuts = None
    under: list[tuple[str, np.ndarray]] = []
    masks: list[np.ndarray] = []
    active = np.zeros(0, dtype=bool)
    if ref is not None and len(ref):
        rep = representation_table(
            s,
            ref,
            metadata_columns=inputs.metadata_columns,
            property_columns=inputs.property_columns,
            class_names=inputs.class_names,
        )
        under = [(k, predicate_mask(s, k)) for k in rep.loc[rep["under"], "spec"]]
        shortcuts = shortcut_candidates(
            s,
            ref,
            metadata_columns=inputs.metadata_columns,
            property_columns=inputs.property_columns,
            class_names=inputs.class_names,
            alpha=alpha,
        )
        masks = [predicate_mask(s, k) for k in shortcuts["spec"]]
        act = []
        for m, k in zip(masks, shortcuts["cls"].to_numpy(np.int64), strict=True):
            # active: other classes' images with the value are predicted k more, class by class
            other = label != k
            where = np.zeros((2, 2, inputs.n_classes), dtype=np.int64)
            np.add.at(where, (m[other].astype(int), (pred == k)[other].astype(int),
                              label[other]), 1)  # fmt: skip
            act.append(bool(_mantel_haenszel_p(where) < alpha))
        active = np.asarray(act, dtype=bool)
    distances = far = None
    thr = math.nan
    if (
        inputs.embeddings is not None
        and inputs.reference_embeddings is not None
        and ref is not None
        and len(ref) > 1
    ):
        distances = reference_distances(
            inputs.embeddings,
            inputs.reference_embeddings,
            ref[schema.LABEL].to_numpy(np.int64),
            inputs.n_classes,
            seed=inputs.seed,
        )
        thr, far = _far(distances.distance, label, ~wrong, inputs.n_classes)
        # "unfamiliar" is what no measured property explains: an image of an under-represented
        # value, a degraded one, or one that breaks an active shortcut is left to that cause
        # (whose action names what to do)
        for _, m in under:
            far &= ~m
        for m in quality.values():
            far &= ~m
        if shortcuts is not None:  # images that break an active shortcut are rare in training
            for m, k, on in zip(masks, shortcuts["cls"].to_numpy(np.int64), active, strict=True):
                if on:
                    far &= ~((m & (label != k)) | (~m & (label == k)))
    confirmed, cleared, ambiguous, reviewed = _review_masks(s, inputs.review, inputs.class_names)
    noise = None
    if schema.IS_LABEL_ISSUE in s.columns:
        noise = s[schema.IS_LABEL_ISSUE].fillna(False).to_numpy(bool).copy()
        if shortcuts is not None:
            for m, k, on in zip(masks, shortcuts["cls"].to_numpy(np.int64), active, strict=True):
                if on:  # the model's confidence there comes from the shortcut
                    noise &= ~(m & (pred == k) & (label != k))
        if cleared is not None:
            noise = (noise & ~cleared) | confirmed
    elif confirmed is not None and confirmed.any():
        noise = confirmed
    return Context(
        inputs=inputs,
        wrong=wrong,
        label=label,
        pred=pred,
        quality=quality,
        representation=rep,
        under=under,
        shortcuts=shortcuts,
        shortcut_masks=masks,
        shortcut_active=active,
        distances=distances,
        far=far,
        far_threshold=thr,
        label_noise=noise,
        confirmed=confirmed,
        ambiguous=ambiguous,
        reviewed=reviewed,
        alpha=alpha,
        seed=inputs.seed,
    )


def _far(d: np.ndarray, label: np.ndarray, ok: np.ndarray, n_classes: int):
    """(median threshold, bool [N]): beyond the :data:`UNFAMILIAR_QUANTILE` of the distances of
    correctly classified images *of the same class* (a class with fewer than 20 correct images
    uses every correct image). Classes differ in how densely training covers them (a rare class
    has fewer neighbours), so one global cut would call a rare class unfamiliar."""
    base = d[ok] if ok.any() else d
    glob = float(np.quantile(base, UNFAMILIAR_QUANTILE)) if len(base) else math.nan
    thr = np.full(n_classes, glob)
    for c in range(n_classes):
        dc = d[ok & (label == c)]
        if len(dc) >= 20:
            thr[c] = float(np.quantile(dc, UNFAMILIAR_QUANTILE))
    per_row = thr[np.clip(label, 0, n_classes - 1)]
    return float(np.nanmedian(thr)), d > per_row


# ------------------------------------------------------------------------------------- table


Selector = Callable[[np.ndarray], dict]


def _no_query(mask: np.ndarray) -> dict:
    return {}


def make_selector(samples: pd.DataFrame, save: Callable[[list[str]], str] | None) -> Selector:
    """mask -> gallery query parameters: a stored selection of the images (``sel``)."""
    if save is None or schema.SAMPLE_ID not in samples.columns:
        return _no_query
    ids = samples[schema.SAMPLE_ID].astype(str).to_numpy()

    def select(mask: np.ndarray) -> dict:
        m = np.asarray(mask, dtype=bool)
        if not m.any():
            return {}
        return {"sel": save(ids[m].tolist())}

    return select


def _spec_query(samples: pd.DataFrame, spec_json: str, select: Selector) -> dict:
    """The slice itself when it applies to the samples table, else a stored selection."""
    try:
        mask = apply_slice(samples, spec_from_json(spec_json))
    except (ValueError, TypeError):
        return {}
    if select is _no_query:
        return {}
    return {"slice": spec_json} if mask.any() else {}


def _row(g: dict, f: Finding, i: int) -> dict:
    """A table row of a finding; its queries are filled in later, for claimed rows only."""
    att = f.attribution
    links = [{"text": str(text), "query": {}} for text, _ in f.links]
    return {
        "_i": i,
        **g,
        CAUSE: f.cause,
        CAUSE_LABEL: CAUSE_WORDS.get(f.cause, f.cause),
        DETAIL: f.detail,
        STATUS: f.status,
        STATISTIC: float(f.statistic),
        STATISTIC_NAME: f.statistic_name,
        P_VALUE: float(f.p_value),
        SHARE: float(att.share) if att else math.nan,
        SHARE_LOW: float(att.share_low) if att else math.nan,
        SHARE_HIGH: float(att.share_high) if att else math.nan,
        EXPLAINED: float(att.explained) if att else math.nan,
        EVIDENCE: f.evidence,
        NUMBERS: json.dumps(_jsonable(f.numbers), allow_nan=True),
        N_IMAGES: int(f.images.sum()) if f.images is not None else 0,
        QUERY: "{}",
        RECOMMENDATION: f.recommendation,
        LINKS: json.dumps(links),
        ACTION: f.action,
        NEEDS: f.needs,
    }


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(float(x)) else None
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def _whole_set(n: int, cost: float) -> dict:
    return {
        GROUP_RANK: 0,  # placed among the groups by its cost in _finish
        GROUP_KEY: "whole_set",
        GROUP_KIND: "whole_set",
        GROUP: "all evaluation images",
        GROUP_N: n,
        GROUP_ERRORS: math.nan,
        GROUP_EXPECTED: math.nan,
        GROUP_COST: cost,
        GROUP_P_ADJ: math.nan,
        GROUP_SPEC: "[]",
        GROUP_EVENT_SPEC: spec_to_json(spec_from_json(json.dumps([[schema.CORRECT, "==", False]]))),
        GROUP_ALSO: "[]",
    }


def triage(
    inputs: TriageInputs,
    *,
    alpha: float = ALPHA,
    save_selection: Callable[[list[str]], str] | None = None,
    outliers: pd.DataFrame | None = None,
    groups: list[FailureGroup] | None = None,
) -> TriageResult:
    """Triage a run's failures (module docstring).

    Parameters
    ----------
    inputs : TriageInputs
    alpha : float, keyword-only
        False-discovery rate over every (group, cause) hypothesis tested.
    save_selection : callable, optional, keyword-only
        ``save_selection(sample_ids) -> id``: stores the images behind each number so links can
        reopen them (``sel=<id>``); without it the ``query`` columns are empty.
    outliers : DataFrame, optional, keyword-only
        The run's ``outliers.parquet`` (else computed from the property columns).
    groups : list of FailureGroup, optional, keyword-only
        Groups to triage instead of :func:`.groups.failure_groups` (tests, benchmarks).

    Returns
    -------
    TriageResult
    """
    import time

    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    t0 = time.perf_counter()
    s = inputs.samples
    if len(s) == 0:
        return TriageResult(table=_finish([], [], alpha, None), info={"alpha": alpha, "n_tests": 0})
    ctx = build_context(inputs, alpha=alpha, outliers=outliers)
    t_ctx = time.perf_counter() - t0
    if groups is None:
        groups = failure_groups(
            s, class_names=inputs.class_names, slices=inputs.slices, discovered=inputs.discovered
        )
    pairs = [g for g in groups if g.kind == "confusion"]
    if pairs:
        ctx.pair_errors = np.logical_or.reduce([g.rows & g.event for g in pairs])
    select = make_selector(s, save_selection)
    rows: list[dict] = []
    found: list[Finding] = []
    with point_estimates():  # intervals only for what is claimed, below
        for rank, g in enumerate(groups, start=1):
            rec = group_record(g) | {GROUP_RANK: rank}
            rec[GROUP_QUERY] = json.dumps(_spec_query(s, rec[GROUP_EVENT_SPEC], select))
            for fn in CAUSES.values():
                for f in fn(ctx, g):
                    rows.append(_row(rec, f, len(found)))
                    found.append(f)
    whole = [f for f in (label_noise_overall(ctx), leakage(ctx)) if f is not None]
    if whole:
        flagged = next((f for f in whole if f.cause == "label_noise"), None)
        cost = float(flagged.images.sum()) if flagged is not None else 0.0
        rec = _whole_set(len(s), cost)
        rec[GROUP_QUERY] = json.dumps({"correct": "wrong"} if select is not _no_query else {})
        for f in whole:
            rows.append(_row(rec, f, len(found)))
            found.append(f)
    table = _finish(rows, groups, alpha, whole_cost=rec[GROUP_COST] if whole else None)
    table = _intervals(table, found, ctx, groups)
    table = _link(table, found, select)
    info = {
        "alpha": alpha,
        "n_tests": int(table[P_ADJ].notna().sum()) if len(table) else 0,
        "n_groups": len(groups),
        "seed": inputs.seed,
        "unfamiliar_threshold": ctx.far_threshold,
        "unfamiliar_quantile": UNFAMILIAR_QUANTILE,
        "representation": [] if ctx.representation is None else _records(ctx.representation),
        "shortcuts": [] if ctx.shortcuts is None else _records(ctx.shortcuts),
        "search_dims": None if ctx.distances is None else ctx.distances.dims,
        "reference_searched": None if ctx.distances is None else int(len(ctx.distances.ref_rows)),
        "robustness": None
        if inputs.robustness is None
        else getattr(inputs.robustness, "key", None),
        "reviewed": None if ctx.reviewed is None else int(ctx.reviewed.sum()),
        "timings_s": {
            "evidence": round(t_ctx, 3),
            "total": round(time.perf_counter() - t0, 3),
        },
    }
    return TriageResult(
        table=table, info=info, distance=None if ctx.distances is None else ctx.distances.distance
    )


def _intervals(
    t: pd.DataFrame, found: list[Finding], ctx: Context, groups: list[FailureGroup]
) -> pd.DataFrame:
    """Bootstrap the shares of the claimed rows: each claimed (group, cause) is estimated again
    with its interval (the same arithmetic, so the point value does not move)."""
    if "_i" not in t.columns or not len(t):
        return t
    t = t.copy()
    by_key = {g.key: g for g in groups}
    claimed = t[t[STATUS] == "significant"]
    for (key, cause), rows in claimed.groupby([GROUP_KEY, CAUSE], sort=False):
        g = by_key.get(key)
        if g is None or cause not in CAUSES:
            continue
        fresh = {f.detail: f for f in CAUSES[cause](ctx, g)}
        for pos in rows.index:
            f = fresh.get(t.at[pos, DETAIL])
            if f is None or f.attribution is None:
                continue
            att = f.attribution
            t.at[pos, SHARE] = float(att.share)
            t.at[pos, SHARE_LOW] = float(att.share_low)
            t.at[pos, SHARE_HIGH] = float(att.share_high)
            found[int(t.at[pos, "_i"])] = f
    return t


def _link(t: pd.DataFrame, found: list[Finding], select: Selector) -> pd.DataFrame:
    """Store the images of each claimed row (and of its numbers) and write their queries;
    rows not claimed keep none (a selection per hypothesis tested would cost disk for links
    nobody is shown)."""
    if "_i" not in t.columns:
        return t
    t = t.copy()
    for pos in np.flatnonzero(t[STATUS].isin(["significant", "found"]).to_numpy()):
        f = found[int(t["_i"].iat[pos])]
        if f.images is not None:
            t.iat[pos, t.columns.get_loc(QUERY)] = json.dumps(select(f.images))
        links = [{"text": str(text), "query": select(m) if m is not None else {}}
                 for text, m in f.links]  # fmt: skip
        t.iat[pos, t.columns.get_loc(LINKS)] = json.dumps(links)
    return t.drop(columns=["_i"])


def _records(df: pd.DataFrame) -> list[dict]:
    return [_jsonable(r) for r in df.to_dict(orient="records")]


def _finish(
    rows: list[dict], groups: list[FailureGroup], alpha: float, whole_cost: float | None
) -> pd.DataFrame:
    if not rows and not groups:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in TRIAGE_COLUMNS})
    t = pd.DataFrame(rows)
    if t.empty:
        t = pd.DataFrame(columns=TRIAGE_COLUMNS)
    tested = (t[STATUS] == "tested") & t[P_VALUE].notna() if len(t) else pd.Series(dtype=bool)
    p_adj = np.full(len(t), np.nan)
    if tested.any():
        p_adj[tested.to_numpy()] = bh_adjust(t.loc[tested, P_VALUE].to_numpy())
    t[P_ADJ] = p_adj
    t[SIGNIFICANT] = (t[P_ADJ] < alpha).fillna(False).astype(bool)
    t.loc[tested & t[SIGNIFICANT], STATUS] = "significant"
    t.loc[tested & ~t[SIGNIFICANT], STATUS] = "not significant"
    # a tested hypothesis without a p-value (nothing to compare) is untestable here
    t.loc[(t[STATUS] == "tested"), STATUS] = "not significant"
    extra = []
    for rank, g in enumerate(groups, start=1):
        mine = t[t[GROUP_KEY] == g.key]
        if not (mine[STATUS] == "significant").any():
            base = mine.iloc[0].to_dict() if len(mine) else group_record(g) | {GROUP_RANK: rank}
            # "a genuine model error" is a conclusion only from causes that were tested
            untested = list(dict.fromkeys(mine.loc[mine[STATUS] == "not tested", CAUSE_LABEL]))
            if untested and not (mine[STATUS] == "not significant").any():
                why = "no candidate cause could be tested on this run (see 'not tested')"
                evidence, action = why[0].upper() + why[1:] + ".", "look at {0}: " + why
            else:
                note = f" (not tested: {', '.join(untested)})" if untested else ""
                evidence = (
                    f"No candidate cause tested is significant for this group after correction"
                    f"{note}: {NONE_TEXT}."
                )
                action = "look at {0}: " + NONE_TEXT + (" as far as the tests tell" * bool(note))
            extra.append(
                {
                    **{k: base[k] for k in base if k.startswith("group")},
                    CAUSE: "none",
                    CAUSE_LABEL: CAUSE_WORDS["none"],
                    DETAIL: "",
                    STATUS: "none",
                    STATISTIC: math.nan,
                    STATISTIC_NAME: "",
                    P_VALUE: math.nan,
                    P_ADJ: math.nan,
                    SIGNIFICANT: False,
                    SHARE: math.nan,
                    SHARE_LOW: math.nan,
                    SHARE_HIGH: math.nan,
                    EXPLAINED: math.nan,
                    EVIDENCE: evidence,
                    NUMBERS: "{}",
                    N_IMAGES: g.events,
                    QUERY: base.get(GROUP_QUERY, "{}"),
                    RECOMMENDATION: action,
                    LINKS: json.dumps(
                        [
                            {
                                "text": f"its {g.events} errors",
                                "query": json.loads(base.get(GROUP_QUERY, "{}") or "{}"),
                            }
                        ]
                    ),  # fmt: skip
                    ACTION: "model",
                    NEEDS: "",
                    "_i": -1,
                }
            )
    if extra:
        t = pd.concat([t, pd.DataFrame(extra)], ignore_index=True)
    # whole-set rows rank among the groups by their cost
    if whole_cost is not None:
        others = t[t[GROUP_KIND] != "whole_set"].drop_duplicates(GROUP_RANK)
        pos = 1 + int((others[GROUP_COST] >= whole_cost).sum())
        t.loc[t[GROUP_RANK] >= pos, GROUP_RANK] += 1
        t.loc[t[GROUP_KIND] == "whole_set", GROUP_RANK] = pos
    order = {"significant": 0, "found": 0, "none": 1, "not significant": 2, "not tested": 3}
    t["_o"] = t[STATUS].map(order)
    t["_s"] = -t[SHARE].fillna(-1)
    t = t.sort_values([GROUP_RANK, "_o", "_s", P_VALUE], kind="mergesort").drop(
        columns=["_o", "_s"]
    )
    t[GROUP_RANK] = t[GROUP_RANK].astype(np.int64)
    keep = [*TRIAGE_COLUMNS, "_i"] if "_i" in t.columns else TRIAGE_COLUMNS
    return t[keep].reset_index(drop=True)


def _dtype(c: str):
    if c in (GROUP_RANK, GROUP_N, N_IMAGES):
        return "int64"
    if c == SIGNIFICANT:
        return bool
    if c in (
        GROUP_ERRORS, GROUP_EXPECTED, GROUP_COST, GROUP_P_ADJ, STATISTIC, P_VALUE, P_ADJ,
        SHARE, SHARE_LOW, SHARE_HIGH, EXPLAINED,
    ):  # fmt: skip
        return "float64"
    return "object"


def _n_tested_note(info: dict) -> str:
    return f"{info.get('n_tests', 0)} hypotheses tested, BH at {info.get('alpha', ALPHA)}"


_ = (predicate_mask,)  # re-exported for callers building masks from stored specs
