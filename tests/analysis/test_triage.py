"""Root-cause triage on small hand-built inputs with known causes (analysis/triage)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import fisher_exact

from analysis import schema
from analysis.stats.slices import Predicate, SliceSpec, compute_slices, spec_to_json
from analysis.triage.estimate import composition, mixture, within
from analysis.triage.evidence import representation_table, shortcut_candidates
from analysis.triage.groups import confusion_pairs, failure_groups
from analysis.triage.inputs import TriageInputs
from analysis.triage.plan import action_plan, fill, plan_text
from analysis.triage.table import TRIAGE_COLUMNS, triage

NAMES = ["ant", "bee", "cat", "dog"]


# ----------------------------------------------------------------------------- estimators


def _fisher_greater(a, b, c, d) -> float:
    return float(fisher_exact([[a, b], [c, d]], alternative="greater")[1])


def test_composition_tests_match_scipy_and_recover_a_planted_composition():
    rng = np.random.default_rng(0)
    n = 6000
    group = rng.random(n) < 0.2
    # the cause is common in the group (60%) and rare elsewhere (10%); it alone raises errors
    cause = np.where(group, rng.random(n) < 0.6, rng.random(n) < 0.1)
    event = rng.random(n) < np.where(cause, 0.5, 0.1)
    att = composition(group, ~group, cause, ~cause, event)
    p = att.parts
    ga, g = int((group & cause).sum()), int(group.sum())
    ba, b = int((~group & cause).sum()), int((~group).sum())
    assert p["p_enrich"] == pytest.approx(_fisher_greater(ga, g - ga, ba, b - ba), rel=1e-6)
    ea, na = int((~group & cause & event).sum()), int((~group & cause).sum())
    ec, nc = int((~group & ~cause & event).sum()), int((~group & ~cause).sum())
    assert p["separable"]
    assert p["p_effect"] == pytest.approx(_fisher_greater(ea, na - ea, ec, nc - ec), rel=1e-6)
    assert att.p_value == max(p["p_enrich"], p["p_effect"])
    # the whole excess comes from the composition: the share is about 1, interval around it
    assert att.share > 0.8 and att.share_low <= att.share <= att.share_high
    # the same group worse for a reason unrelated to the cause: no share, not significant
    event2 = rng.random(n) < np.where(group, 0.3, 0.1)
    cause2 = rng.random(n) < 0.3
    att2 = composition(group, ~group, cause2, ~cause2, event2)
    assert att2.share < 0.15 and att2.p_value > 0.05


def test_composition_is_not_separable_when_the_cause_is_the_group():
    rng = np.random.default_rng(1)
    n = 3000
    group = rng.random(n) < 0.3
    event = rng.random(n) < np.where(group, 0.4, 0.1)
    att = composition(group, ~group, group, ~group, event)
    assert not att.parts["separable"]
    assert att.share == pytest.approx(1.0)


def test_within_and_mixture_match_scipy():
    rng = np.random.default_rng(2)
    n = 4000
    group = rng.random(n) < 0.3
    cause = rng.random(n) < 0.4
    event = rng.random(n) < np.where(cause, 0.35, 0.15)
    att = within(group, cause, ~cause, event)
    a = int((group & cause & event).sum())
    na = int((group & cause).sum())
    c = int((group & ~cause & event).sum())
    nc = int((group & ~cause).sum())
    assert att.p_value == pytest.approx(_fisher_greater(a, na - a, c, nc - c), rel=1e-6)
    assert att.explained == pytest.approx(a - na * c / nc)
    flag = rng.random(n) < np.where(group, 0.5, 0.2)
    m = mixture(group, ~group, event, flag)
    kg = int((group & event & flag).sum())
    eg = int((group & event).sum())
    kb = int((~group & event & flag).sum())
    eb = int((~group & event).sum())
    assert m.p_value == pytest.approx(_fisher_greater(kg, eg - kg, kb, eb - kb), rel=1e-6)
    fg, fb = kg / eg, kb / eb
    assert m.explained == pytest.approx(eg * (fg - fb) / (1 - fb))


def test_estimators_on_empty_inputs_return_nan_not_errors():
    z = np.zeros(0, dtype=bool)
    for att in (composition(z, z, z, z, z), within(z, z, z, z), mixture(z, z, z, z)):
        assert np.isnan(att.share) and np.isnan(att.p_value)


# ------------------------------------------------------------------------------- a world


def _world(n=4000, seed=0, *, reference=True, embeddings=False):
    """Four classes; planted: 'night' rare in the reference and failing, 'stripes' -> bee in
    the reference (a shortcut the model took), a noisy camera 'c', flipped labels at site s3
    (flagged as suspected label errors), and errors at site s4 with no cause (a genuine model
    error)."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 4, n)
    light = rng.choice(["day", "night"], n, p=[0.85, 0.15])
    bg = rng.choice(["plain", "stripes"], n, p=[0.8, 0.2])
    cam = rng.choice(["a", "b", "c"], n)
    site = rng.choice(["s1", "s2", "s3", "s4"], n)
    noise = np.where(cam == "c", rng.uniform(12, 25, n), rng.uniform(0.5, 2, n))
    bright = rng.uniform(0.3, 0.7, n)
    p_err = np.full(n, 0.08)
    p_err[light == "night"] = 0.45
    p_err[cam == "c"] = np.maximum(p_err[cam == "c"], 0.3)
    p_err[site == "s4"] = np.maximum(p_err[site == "s4"], 0.3)
    err = rng.random(n) < p_err
    pred = np.where(err, (label + rng.integers(1, 4, n)) % 4, label)
    # the shortcut: non-bee images on stripes are taken for bees
    sc = (bg == "stripes") & (label != 1) & (rng.random(n) < 0.45)
    pred = np.where(sc, 1, pred)
    # flipped labels at site s3: the model predicts the true class, the given label is another
    flip = (site == "s3") & (rng.random(n) < 0.15)
    given = np.where(flip, (label + rng.integers(1, 4, n)) % 4, label)
    pred = np.where(flip, label, pred)
    wrong = given != pred
    flagged = wrong & (rng.random(n) < np.where(flip, 0.8, 0.15))
    label = given
    samples = pd.DataFrame(
        {
            schema.SAMPLE_ID: [f"s{i:05d}" for i in range(n)],
            schema.LABEL: label,
            schema.PRED: pred,
            schema.CORRECT: label == pred,
            schema.MARGIN: rng.uniform(0, 1, n),
            schema.IS_LABEL_ISSUE: flagged,
            "lighting": light,
            "background": bg,
            "camera": cam,
            "site": site,
            schema.BRIGHTNESS: bright,
            schema.NOISE: noise,
        }
    )
    ref = None
    if reference:
        m = 6000
        rl = rng.integers(0, 4, m)
        rbg = np.where(
            rl == 1,
            rng.choice(["plain", "stripes"], m, p=[0.15, 0.85]),
            rng.choice(["plain", "stripes"], m, p=[0.95, 0.05]),
        )
        ref = pd.DataFrame(
            {
                schema.LABEL: rl,
                "lighting": rng.choice(["day", "night"], m, p=[0.98, 0.02]),
                "background": rbg,
                "camera": rng.choice(["a", "b", "c"], m),
                "site": rng.choice(["s1", "s2", "s3", "s4"], m),
                schema.BRIGHTNESS: rng.uniform(0.3, 0.7, m),
                schema.NOISE: np.where(
                    rng.random(m) < 1 / 3, rng.uniform(12, 25, m), rng.uniform(0.5, 2, m)
                ),
            }
        )
    meta = ["lighting", "background", "camera", "site"]
    props = [schema.BRIGHTNESS, schema.NOISE]
    slices = compute_slices(samples, metadata_columns=meta, property_columns=[], class_names=NAMES)
    emb = remb = None
    if embeddings:
        emb = rng.normal(size=(n, 8)).astype(np.float32)
        remb = rng.normal(size=(len(ref), 8)).astype(np.float32)
    return TriageInputs(
        samples=samples,
        class_names=NAMES,
        metadata_columns=meta,
        property_columns=props,
        reference=ref,
        embeddings=emb,
        reference_embeddings=remb,
        slices=slices,
    )


def _claimed(t: pd.DataFrame, group: str) -> set[str]:
    g = t[(t["group"] == group) & (t["status"] == "significant")]
    return set(g["cause"])


def test_each_planted_cause_is_attributed_and_nothing_else():
    res = triage(_world())
    t = res.table
    assert list(t.columns) == TRIAGE_COLUMNS
    assert _claimed(t, "lighting is night") == {"under_represented"}
    assert _claimed(t, "background is stripes") == {"shortcut"}
    stripes = t[(t["group"] == "background is stripes") & (t["cause"] == "shortcut")]
    assert (stripes["detail"] == "background is stripes → bee").any()
    assert _claimed(t, "camera is c") == {"image_quality"}
    noisy = t[(t["group"] == "camera is c") & (t["status"] == "significant")]
    assert noisy["detail"].tolist() == ["noisy"]
    assert _claimed(t, "site is s3") == {"label_noise"}
    assert _claimed(t, "site is s4") == set()
    none = t[(t["group"] == "site is s4") & (t["cause"] == "none")]
    assert len(none) == 1 and "genuine model error" in none["evidence"].iloc[0]


def _rare_class_world(seed=0):
    """Class 3 ('dog') is rare in the reference (1% against 33% for the others) and the model,
    which barely saw it, gets half of its images confidently wrong: the label-issue detector
    flags them, though no label is wrong."""
    rng = np.random.default_rng(seed)
    w = _world(seed=seed)
    s = w.samples.copy()
    label = s[schema.LABEL].to_numpy()
    dog = label == 3
    wrong_dog = dog & (rng.random(len(s)) < 0.5)
    s[schema.PRED] = np.where(wrong_dog, (label + 1) % 4, s[schema.PRED])
    s[schema.CORRECT] = s[schema.LABEL] == s[schema.PRED]
    s[schema.IS_LABEL_ISSUE] = s[schema.IS_LABEL_ISSUE] | wrong_dog
    s[schema.CONTENT_HASH] = [f"h{i}" for i in range(len(s))]
    ref = w.reference.copy()
    keep = (ref[schema.LABEL] != 3) | (rng.random(len(ref)) < 0.03)
    ref = ref[keep].reset_index(drop=True)
    sl = compute_slices(s, metadata_columns=w.metadata_columns, property_columns=[],
                        class_names=NAMES)  # fmt: skip
    from dataclasses import replace

    return replace(w, samples=s, reference=ref, slices=sl), wrong_dog


def _no_pairs(w: TriageInputs):
    """The run's failure groups without confusion pairs (whose own rule would set the rare
    class's confident errors aside first)."""
    gs = failure_groups(w.samples, class_names=NAMES, slices=w.slices, discovered=None)
    return [g for g in gs if g.kind != "confusion"]


def test_a_rare_classs_confident_errors_are_not_taken_for_label_noise():
    w, wrong_dog = _rare_class_world()
    t = triage(w, groups=_no_pairs(w)).table
    assert _claimed(t, "true class is dog") == {"under_represented"}
    row = t[(t["group"] == "true class is dog") & (t["cause"] == "label_noise")].iloc[0]
    assert row["status"] == "not significant"
    assert "left to that cause (the relabel list keeps them)" in row["evidence"]
    # the whole-set relabel list still holds every flag
    whole = t[(t["group_kind"] == "whole_set") & (t["cause"] == "label_noise")].iloc[0]
    assert whole["n_images"] >= int(wrong_dog.sum())
    # a reviewer's confirmed label errors on the rare class still count as label noise
    s = w.samples
    picked = np.flatnonzero(wrong_dog)[: int(wrong_dog.sum() * 0.8)]
    review = pd.DataFrame(
        {
            "content_hash": s[schema.CONTENT_HASH].to_numpy()[picked],
            "tags": [["label error"]] * len(picked),
            "corrected_label": [""] * len(picked),
            "reviewed": [True] * len(picked),
        }
    )
    from dataclasses import replace

    t = triage(replace(w, review=review), groups=_no_pairs(w)).table
    assert "label_noise" in _claimed(t, "true class is dog")


def test_shares_and_p_values_are_well_formed():
    t = triage(_world(seed=3)).table
    tested = t[t["status"].isin(["significant", "not significant"])]
    p = tested["p_adj"].dropna()
    assert ((p >= 0) & (p <= 1)).all()
    assert (tested["p_adj"].dropna() >= tested.loc[p.index, "p_value"] - 1e-12).all()
    s = t.dropna(subset=["share", "share_low", "share_high"])
    assert ((s["share"] >= 0) & (s["share"] <= 1)).all()
    assert (s["share_low"] <= s["share"] + 1e-9).all() and (
        s["share"] <= s["share_high"] + 1e-9
    ).all()
    # costliest group first
    costs = t.drop_duplicates("group_rank").sort_values("group_rank")
    costs = costs[costs["group_kind"] != "whole_set"]["group_cost"].to_numpy()
    assert (np.diff(costs) <= 1e-9).all()


def test_without_a_reference_the_reference_causes_say_not_tested():
    t = triage(_world(reference=False)).table
    nt = t[t["status"] == "not tested"]
    for cause in ("under_represented", "shortcut", "unfamiliar"):
        rows = nt[nt["cause"] == cause]
        assert len(rows) and rows["needs"].str.contains("reference").all()
    assert "not tested, needs a reference" in plan_text(t)


def test_no_cause_is_silently_absent_when_the_run_lacks_what_it_needs():
    """Every group lists every candidate cause: tested, or 'not tested: needs ...' naming what
    the run lacks (no reference set, no embeddings, no label-issues section, no properties)."""
    from analysis.triage.causes import CAUSES

    w = _world(reference=False)
    s = w.samples.drop(columns=[schema.IS_LABEL_ISSUE, schema.BRIGHTNESS, schema.NOISE])
    bare = TriageInputs(s, NAMES, w.metadata_columns, [], slices=w.slices,
                        missing={"label_issues": "failed: boom"})  # fmt: skip
    t = triage(bare).table
    groups = t[t["group_kind"] != "whole_set"]
    assert groups["group"].nunique() >= 3
    needs = {
        "label_noise": "the label-issues section (it did not run: failed: boom)",
        "under_represented": "a reference (training) set (--reference)",
        "shortcut": "a reference (training) set (--reference)",
        "image_quality": "image-property columns (brightness, noise, ...)",
        "unfamiliar": "a reference (training) set (--reference)",
        "overlapping": "embeddings of the reference set",
    }
    for _, g in groups.groupby("group_key"):
        pair = g["group_kind"].iloc[0] == "confusion"
        expected = set(CAUSES) - (set() if pair else {"overlapping"})
        nt = g[g["status"] == "not tested"].set_index("cause")["needs"].to_dict()
        assert set(nt) == expected, g["group"].iloc[0]
        assert nt == {c: needs[c] for c in expected}
        # nothing claimed without evidence, not even "a genuine model error"
        assert set(g["status"]) == {"not tested", "none"}
        none = g[g["status"] == "none"].iloc[0]
        assert "no candidate cause could be tested on this run" in none["recommendation"]
        assert "genuine model error" not in none["evidence"] + none["recommendation"]
    whole = t[t["group_kind"] == "whole_set"].set_index("cause")
    assert whole.loc["leakage", "needs"] == "a reference set (--reference)"
    text = plan_text(t)
    for cause in ("label_noise", "under_represented", "shortcut", "image_quality", "unfamiliar"):
        words = t.loc[t["cause"] == cause, "cause_label"].iloc[0]
        assert f"{words}: not tested, needs {needs[cause]}" in text
    assert "leakage (mis-measurement): not tested, needs a reference set (--reference)" in text

    # a reference set but no embeddings: only the embedding causes are untested
    w = _world(reference=True)
    t = triage(w).table
    nt = t[t["status"] == "not tested"]
    needs = nt.groupby("cause")["needs"].unique().map(list).to_dict()
    assert needs.pop("leakage") == ["the duplicates section"]  # no leak_of column here
    assert set(needs) <= {"unfamiliar", "overlapping"} and needs
    assert all("embeddings" in n for v in needs.values() for n in v)
    none = t[(t["group"] == "site is s4") & (t["status"] == "none")].iloc[0]
    assert "(not tested: unfamiliar inputs): a genuine model error" in none["evidence"]
    assert none["recommendation"].endswith("more data of this kind as far as the tests tell")


def test_on_a_null_world_no_cause_is_claimed():
    rng = np.random.default_rng(5)
    w = _world()
    s = w.samples.copy()
    # errors independent of every column: no group, so nothing to claim
    err = rng.random(len(s)) < 0.15
    s[schema.PRED] = np.where(err, (s[schema.LABEL] + 1) % 4, s[schema.LABEL])
    s[schema.CORRECT] = s[schema.LABEL] == s[schema.PRED]
    sl = compute_slices(s, metadata_columns=w.metadata_columns, property_columns=[],
                        class_names=NAMES)  # fmt: skip
    t = triage(
        TriageInputs(s, NAMES, w.metadata_columns, w.property_columns, w.reference, slices=sl)
    ).table
    assert not (t["status"] == "significant").any()


def test_empty_input_gives_an_empty_table():
    w = _world(n=200)
    s = w.samples.iloc[:0]
    t = triage(TriageInputs(s, NAMES, w.metadata_columns, w.property_columns)).table
    assert t.empty and list(t.columns) == TRIAGE_COLUMNS


def test_inputs_are_checked_once_with_clear_messages():
    w = _world(n=100)
    with pytest.raises(ValueError, match="missing column"):
        TriageInputs(w.samples.drop(columns=[schema.PRED]), NAMES, [], [])
    with pytest.raises(ValueError, match="metadata_columns names"):
        TriageInputs(w.samples, NAMES, ["nope"], [])
    with pytest.raises(ValueError, match="alpha"):
        triage(w, alpha=1.5)


# ------------------------------------------------------------------------------ evidence


def test_representation_marks_only_values_well_below_their_target():
    rng = np.random.default_rng(7)
    n, m = 3000, 3000
    ev = pd.DataFrame(
        {
            schema.LABEL: rng.integers(0, 2, n),
            schema.PRED: 0,
            schema.CORRECT: True,
            "v": rng.choice(["rare", "half", "x", "y"], n, p=[0.1, 0.3, 0.3, 0.3]),
        }
    )
    ref = pd.DataFrame(
        {
            schema.LABEL: rng.integers(0, 2, m),
            # 'rare': 1% against 10% in evaluation (10x less); 'half': 15% against 30% (2x)
            "v": rng.choice(["rare", "half", "x", "y"], m, p=[0.01, 0.15, 0.42, 0.42]),
        }
    )
    rep = representation_table(ev, ref, metadata_columns=["v"], property_columns=[],
                               class_names=["a", "b"]).set_index("description")  # fmt: skip
    assert bool(rep.loc["v is rare", "under"])
    assert not bool(rep.loc["v is half", "under"])
    assert rep.loc["v is rare", "ratio"] < 0.25 < rep.loc["v is half", "ratio"]


def test_shortcut_candidates_come_from_the_reference_contingency_table():
    w = _world()
    sc = shortcut_candidates(w.samples, w.reference, metadata_columns=w.metadata_columns,
                             property_columns=[], class_names=NAMES)  # fmt: skip
    top = sc.iloc[0]
    assert (top["description"], top["cls_name"]) == ("background is stripes", "bee")
    assert top["ref_p_v_given_k"] == pytest.approx(0.85, abs=0.03)
    assert not ((sc["column"] == "camera") | (sc["column"] == "site")).any()


def test_confusion_pairs_are_tested_against_other_classes():
    s = pd.DataFrame({schema.LABEL: [0] * 50 + [1] * 50 + [2] * 50, schema.PRED: 0})
    s[schema.PRED] = s[schema.LABEL]
    s.loc[:19, schema.PRED] = 1  # 20 of 50 'ant' predicted 'bee'
    s.loc[100:102, schema.PRED] = 1  # 3 of 50 'cat' predicted 'bee'
    pairs = confusion_pairs(s, 3)
    top = pairs.iloc[0]
    assert (top["a"], top["b"], top["count"]) == (0, 1, 20)
    assert top["p_value"] == pytest.approx(_fisher_greater(20, 30, 3, 47), rel=1e-6)


def test_failure_groups_merge_near_copies():
    w = _world()
    s = w.samples.assign(lighting2=w.samples["lighting"])
    sl = compute_slices(s, metadata_columns=[*w.metadata_columns, "lighting2"],
                        property_columns=[], class_names=NAMES)  # fmt: skip
    groups = failure_groups(s, class_names=NAMES, slices=sl, discovered=None)
    night = [g for g in groups if "night" in g.description]
    assert len(night) == 1 and "night" in night[0].also[0]


# ------------------------------------------------------------------------------ the plan


def test_action_plan_fills_every_number_with_its_link():
    saved = {}

    def save(ids):
        key = f"k{len(saved)}"
        saved[key] = ids
        return key

    res = triage(_world(), save_selection=save)
    plan = action_plan(res.table)
    assert len(plan) and set(plan["status"]) <= {"significant", "found", "none"}
    row = res.table[
        (res.table["group"] == "lighting is night") & (res.table["status"] == "significant")
    ].iloc[0]
    links = json.loads(row["links"])
    assert all(lk["query"].get("sel") in saved for lk in links)
    md = fill(row, lambda s, q: f"[{s}]({q['sel']})")
    assert md.count("](k") == len(links) and "{0}" not in md
    # the images behind the first number are night images of the group
    ids = saved[links[0]["query"]["sel"]]
    s = _world().samples.set_index(schema.SAMPLE_ID)
    assert (s.loc[ids, "lighting"] == "night").all()


def test_group_specs_select_the_groups_failing_images():
    w = _world()
    res = triage(w, save_selection=lambda ids: "x")
    from analysis.stats.slices import apply_slice, spec_from_json

    for _, r in res.table.drop_duplicates("group_key").iterrows():
        if r["group_kind"] == "whole_set":
            continue
        mask = apply_slice(w.samples, spec_from_json(r["group_event_spec"]))
        assert int(mask.sum()) == int(r["group_errors"])


def test_a_group_given_by_hand_is_triaged():
    w = _world()
    from analysis.triage.groups import FailureGroup

    spec = SliceSpec((Predicate("lighting", "==", "night"),))
    rows = w.samples["lighting"].eq("night").to_numpy()
    g = FailureGroup(
        kind="slice",
        key="slice:" + spec_to_json(spec),
        description="night by hand",
        spec=spec,
        rows=rows,
        event=~w.samples[schema.CORRECT].to_numpy(),
        baseline=~rows,
    )
    t = triage(w, groups=[g]).table
    assert _claimed(t, "night by hand") == {"under_represented"}


def test_the_triage_columns_are_the_documented_ones():
    from analysis.schema import TRIAGE_COLUMNS as DOCUMENTED

    assert TRIAGE_COLUMNS == list(DOCUMENTED)


def test_plan_csv_defuses_formulas_from_the_data():
    from analysis.triage.plan import csv_text

    df = pd.DataFrame({"group": ["=HYPERLINK(1)", "camera is a", "-2+3"], "n": [1, 2, 3]})
    text = csv_text(df)
    assert "'=HYPERLINK(1)" in text and "'-2+3" in text and ",camera is a," not in text
    assert "camera is a" in text


def _robustness(w: TriageInputs, *, breaks: bool):
    """A stored-robustness stand-in: gaussian_noise flips clean-correct images outside the noisy
    camera from severity 2 on (``breaks``) or never."""
    import pandas as pd

    from analysis.stats.robustness import RobustnessResult

    s = w.samples
    rows = np.arange(len(s))
    labels = s[schema.LABEL].to_numpy()
    clean = s[schema.PRED].to_numpy()
    sev = (1, 2, 3, 4, 5)
    preds = np.repeat(clean[None, None, :], len(sev), axis=1).astype(np.int32)
    if breaks:
        rng = np.random.default_rng(0)
        for j, frac in enumerate((0.0, 0.3, 0.5, 0.7, 0.8)):
            flip = rng.random(len(s)) < frac
            preds[0, j, flip] = (labels[flip] + 1) % 4
    return RobustnessResult(
        key="k1",
        perturbations=("gaussian_noise",),
        severities=sev,
        rows=rows,
        sample_ids=s[schema.SAMPLE_ID].to_numpy(),
        labels=labels,
        clean_pred=clean,
        predictions=preds,
        summary=pd.DataFrame(),
        per_class=pd.DataFrame(),
    )


@pytest.mark.parametrize("breaks", [True, False])
def test_a_robustness_run_confirms_or_vetoes_image_quality(breaks):
    from dataclasses import replace

    w = _world()
    t = triage(replace(w, robustness=_robustness(w, breaks=breaks))).table
    row = t[
        (t["group"] == "camera is c") & (t["cause"] == "image_quality") & (t["detail"] == "noisy")
    ]
    row = row.iloc[0]
    rob = json.loads(row["numbers"])["robustness"]
    assert rob["perturbation"] == "gaussian_noise"
    # the camera's noise (12-25 grey levels) is the parameter closest to severity 2 or 3
    assert rob["matched_severity"] in (2, 3)
    assert "Robustness run: gaussian_noise" in row["evidence"]
    if breaks:
        assert row["status"] == "significant" and rob["breaks_at"] in (2, 3)
        assert "augment with Gaussian noise up to σ = " in row["recommendation"]
    else:
        assert row["status"] == "not significant" and rob["breaks_at"] is None


def _perturbed(w: TriageInputs, name: str, fractions: tuple[float, ...]):
    """A stored robustness run of one perturbation that flips ``fractions[j]`` of every image
    at severity j + 1 (0 leaves the clean predictions)."""
    from dataclasses import replace

    res = _robustness(w, breaks=False)
    labels = res.labels
    preds = res.predictions.copy()
    rng = np.random.default_rng(1)
    for j, frac in enumerate(fractions):
        flip = rng.random(len(labels)) < frac
        preds[0, j, flip] = (labels[flip] + 1) % 4
    return replace(res, perturbations=(name,), predictions=preds)


def _noisy_row(w: TriageInputs, robustness) -> pd.Series:
    from dataclasses import replace

    t = triage(replace(w, robustness=robustness)).table
    rows = t[
        (t["group"] == "camera is c") & (t["cause"] == "image_quality") & (t["detail"] == "noisy")
    ]
    assert len(rows) == 1
    return rows.iloc[0]


def _with_noise(w: TriageInputs, low: float, high: float) -> TriageInputs:
    """Camera c's images with sensor noise of ``low``-``high`` grey levels (the rest keep
    theirs)."""
    from dataclasses import replace

    s = w.samples.copy()
    c = (s["camera"] == "c").to_numpy()
    rng = np.random.default_rng(7)
    s.loc[c, schema.NOISE] = rng.uniform(low, high, int(c.sum()))
    return replace(w, samples=s)


# fractions flipped at severities 1..5 of gaussian_noise (0.04 0.08 0.12 0.18 0.26)
_FROM_SEV_4 = (0.0, 0.0, 0.0, 0.6, 0.8)


@pytest.mark.parametrize(
    ("noise", "matched", "status"),
    [
        # 12-25 grey levels: sigma ~0.07 of the range, severity 2. Noise hurts only from
        # severity 4: at the group's level it does not, so the cause is vetoed even though the
        # perturbation hurts (harder) images later.
        ((12.0, 25.0), 2, "not significant"),
        # 45-65 grey levels: sigma ~0.22, severity 4, where noise hurts: confirmed
        ((45.0, 65.0), 4, "significant"),
    ],
)
def test_robustness_decides_only_at_the_groups_measured_level(noise, matched, status):
    w = _with_noise(_world(), *noise)
    base = _noisy_row(w, None)
    assert base["status"] == "significant"  # the data alone claim it
    row = _noisy_row(w, _perturbed(w, "gaussian_noise", _FROM_SEV_4))
    rob = json.loads(row["numbers"])["robustness"]
    assert rob["perturbation"] == "gaussian_noise"
    assert rob["matched_severity"] == matched and rob["hurts_from"] == 4
    assert rob["measured_level"] == pytest.approx(np.median(w.samples.loc[
        w.samples["camera"] == "c", schema.NOISE]) / 255, rel=0.05)  # fmt: skip
    assert row["status"] == status
    # the p-value is the data's or the robustness check's at the matched severity, the larger
    at_level = next(c["p"] for c in rob["curve"] if c["severity"] == matched)
    assert row["p_value"] == pytest.approx(max(base["p_value"], at_level))


@pytest.mark.parametrize("breaks", [True, False])
def test_a_perturbation_that_does_not_reproduce_the_degradation_neither_confirms_nor_vetoes(
    breaks,
):
    """Blur is evidence for a noisy group (noise hides blur from the Laplacian), never the
    check: whether blur breaks every image or none, the cause stands on the data alone."""
    w = _world()
    base = _noisy_row(w, None)
    fractions = (0.3, 0.5, 0.7, 0.8, 0.9) if breaks else (0.0,) * 5
    row = _noisy_row(w, _perturbed(w, "gaussian_blur", fractions))
    assert row["status"] == base["status"] == "significant"
    assert row["p_value"] == pytest.approx(base["p_value"])
    assert row["p_adj"] == pytest.approx(base["p_adj"])
    num = json.loads(row["numbers"])
    assert num["robustness"]["perturbation"] == "gaussian_blur"
    assert (num["robustness"]["hurts_from"] is not None) is breaks
    assert "Robustness run: gaussian_blur" in row["evidence"]
    assert (
        "No gaussian_noise run, which would reproduce the measured degradation" in (row["evidence"])
    )
    # the augmentation's level is the group's measured noise, not a blur severity
    assert "Gaussian noise makes other images fail" not in row["recommendation"]


def test_cam_mass_on_the_object_reads_cached_maps(tmp_path):
    from analysis.triage.cam_mass import object_mass

    cams = tmp_path / schema.CAMS_DIR
    cams.mkdir()
    s = pd.DataFrame(
        {
            schema.SAMPLE_ID: ["a", "b", "c"],
            schema.PRED: [1, 1, 0],
            schema.WIDTH: [224.0, 224.0, 224.0],
            schema.HEIGHT: [224.0, 224.0, 224.0],
            "shape_cx": [56.0, 56.0, 56.0],
            "shape_cy": [56.0, 56.0, 56.0],
            "shape_r": [30.0, 30.0, 30.0],
        }
    )
    yy, xx = np.mgrid[0:56, 0:56] + 0.5
    # images are 224 px, the model saw 112 (no crop), the CAM is 56 x 56: the object's centre
    # (56, 56) in the image is (14, 14) on the map, its radius 30 px is 7.5 map pixels
    on = (((xx - 14) ** 2 + (yy - 14) ** 2) <= 7.5**2).astype(np.float16)
    np.save(cams / "a__gradcam__layer4__1.npy", on)
    np.save(cams / "b__gradcam__layer4__1.npy", (1 - on).astype(np.float16))
    np.save(cams / "c__gradcam__layer4__1.npy", on)  # not its predicted class: ignored
    prep = {"resize": 112, "crop": None}
    m, n = object_mass(tmp_path, s, np.array([True, False, False]), prep)
    assert n == 1 and m == pytest.approx(1.0)
    m, n = object_mass(tmp_path, s, np.array([False, True, True]), prep)
    assert n == 1 and m == pytest.approx(0.0)
    assert object_mass(tmp_path, s.drop(columns=["shape_r"]), np.ones(3, bool), prep)[1] == 0
