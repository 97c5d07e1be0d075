"""Model A vs B: alignment, flip table, McNemar, paired intervals, per-class and per-slice deltas."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest, chi2

from analysis import schema
from analysis.stats.compare import (
    BOTH_RIGHT,
    BOTH_WRONG,
    CELLS,
    FIX,
    MCNEMAR_METHODS,
    PER_CLASS_COLUMNS,
    REGRESSION,
    SLICE_COLUMNS,
    ModelComparison,
    align_samples,
    compare_models,
    compare_runs,
    mcnemar_p_value,
    paired_difference_interval,
)
from analysis.stats.slices import Predicate, SliceSpec, spec_to_json

N_IMAGES = 90
BROKEN = [3, 7, 10, 13, 17, 21, 27, 31, 39, 45, 52, 66, 71, 80, 85, 88]  # A right, B wrong
# (all put on camera "b")
FIXED = [1, 61]  # wrong in A, right in B
WRONG_IN_BOTH = [5, 50]


def _tables(seed: int = 0):
    rng = np.random.default_rng(seed)
    i = np.arange(N_IMAGES)
    label = i % 3
    camera = np.where(np.isin(i, BROKEN) | (i % 2 == 1), "b", "a")
    a = pd.DataFrame(
        {
            schema.SAMPLE_ID: [f"a{k:03d}" for k in i],
            schema.RELPATH: [f"cls{k % 3}/img{k:03d}.png" for k in i],
            schema.CONTENT_HASH: [f"h{k:03d}" for k in i],
            schema.LABEL: label,
            schema.PRED: label.copy(),
            "camera": camera,
            schema.BRIGHTNESS: rng.random(N_IMAGES),
        }
    )
    a.loc[FIXED + WRONG_IN_BOTH, schema.PRED] = (label[FIXED + WRONG_IN_BOTH] + 1) % 3
    b = a.copy()
    b[schema.PRED] = label.copy()
    b.loc[BROKEN + WRONG_IN_BOTH, schema.PRED] = (label[BROKEN + WRONG_IN_BOTH] + 2) % 3
    # B is another run: other ids and paths, rows in another order; same image bytes
    b[schema.SAMPLE_ID] = [f"b{k:03d}" for k in i]
    b[schema.RELPATH] = [f"moved/{k:03d}.png" for k in i]
    b = b.iloc[rng.permutation(N_IMAGES)].reset_index(drop=True)
    return a, b


def _compare(a, b, **kw):
    kw.setdefault("class_names", ["x", "y", "z"])
    kw.setdefault("metadata_columns", ["camera"])
    kw.setdefault("property_columns", [schema.BRIGHTNESS])
    kw.setdefault("min_support", 10)
    return compare_models(a, b, **kw)


# ----------------------------------------------------------------------------- statistics


def test_empty_tables_have_nothing_to_compare():
    empty = _tables()[0].iloc[:0]
    with pytest.raises(ValueError, match="no image in common .*0 shared content_hash values"):
        compare_models(empty, empty)


@pytest.mark.parametrize("b, c", [(8, 2), (0, 5), (3, 3), (20, 9), (1, 0)])
def test_exact_mcnemar_is_the_binomial_test_on_discordant_pairs(b, c):
    assert mcnemar_p_value(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, rel=1e-12)


def test_chi2_and_midp_mcnemar_by_hand():
    stat = (abs(8 - 2) - 1) ** 2 / (8 + 2)  # 2.5
    assert mcnemar_p_value(8, 2, method="chi2") == pytest.approx(chi2.sf(stat, 1))
    assert mcnemar_p_value(8, 2, method="chi2") == pytest.approx(0.1138462, abs=1e-6)
    # mid-p: 2 * (P(X <= 2) - P(X = 2) / 2), X ~ Bin(10, 1/2) = 2 * (56 - 22.5) / 1024
    assert mcnemar_p_value(8, 2, method="midp") == pytest.approx(67 / 1024)
    assert mcnemar_p_value(8, 2, method="midp") < mcnemar_p_value(8, 2)
    np.testing.assert_allclose(mcnemar_p_value([0, 4], [0, 4], method="chi2"), [1.0, 1.0])
    for method in MCNEMAR_METHODS:
        assert mcnemar_p_value(0, 0, method=method) == 1.0  # no discordant pairs


def test_paired_interval_matches_the_published_example():
    # Newcombe square-and-add for paired proportions; the 2x2 table of Cavo et al. (2012) as in
    # Fagerland, Lydersen & Laake, "Statistical analysis of contingency tables", chapter 8
    # (estimate -0.0621, 95% CI -0.1186 to -0.0046).
    low, high = paired_difference_interval(59, 16, 6, 80)
    assert (round(low, 4), round(high, 4)) == (-0.1186, -0.0046)
    low, high = paired_difference_interval(10, 0, 0, 0)
    assert low < 0 < high  # all right in both: a 0 difference, still an interval
    # vectorised: an all-zero table has no interval, the second entry is the published example
    lows, highs = paired_difference_interval([0, 59], [0, 16], [0, 6], [0, 80])
    assert np.isnan(lows[0]) and np.isnan(highs[0])
    assert (round(lows[1], 4), round(highs[1], 4)) == (-0.1186, -0.0046)


def test_statistic_validation():
    with pytest.raises(ValueError, match="unknown McNemar method 'z'; expected one of exact"):
        mcnemar_p_value(1, 2, method="z")
    with pytest.raises(ValueError, match="regressions must be integer counts >= 0"):
        mcnemar_p_value(-1, 2)
    with pytest.raises(TypeError, match="fixes must be integer counts, got dtype bool"):
        mcnemar_p_value(1, True)
    with pytest.raises(ValueError, match="confidence must be in \\(0, 1\\)"):
        paired_difference_interval(1, 2, 3, 4, confidence=95)


# ----------------------------------------------------------------------------- comparisons


def test_flip_table_finds_exactly_the_changed_images():
    a, b = _tables()
    cmp = _compare(a, b)
    assert cmp.n_matched == N_IMAGES and cmp.aligned_on == "content_hash"
    ids = lambda ks: tuple(f"a{k:03d}" for k in sorted(ks))  # noqa: E731
    assert cmp.flips[REGRESSION] == ids(BROKEN)
    assert cmp.flips[FIX] == ids(FIXED)
    assert cmp.flips[BOTH_WRONG] == ids(WRONG_IN_BOTH)
    assert len(cmp.flips[BOTH_RIGHT]) == N_IMAGES - 20
    assert cmp.counts == {BOTH_RIGHT: 70, REGRESSION: 16, FIX: 2, BOTH_WRONG: 2}
    t = cmp.flip_table()
    assert list(t["cell"]) == list(CELLS) and t["count"].sum() == N_IMAGES
    # B's own ids travel with each pair
    regress = cmp.pairs[cmp.pairs["cell"] == REGRESSION]
    assert regress["sample_id_b"].tolist() == [f"b{k:03d}" for k in sorted(BROKEN)]
    assert cmp.accuracy_a.value == pytest.approx(86 / 90)
    assert cmp.accuracy_b.value == pytest.approx(72 / 90)
    assert cmp.delta.value == pytest.approx(-14 / 90) and cmp.delta.method == "newcombe"
    low, high = paired_difference_interval(70, 16, 2, 2)
    assert (cmp.delta.low, cmp.delta.high) == pytest.approx((low, high))
    assert cmp.p_value == pytest.approx(binomtest(16, 18, 0.5).pvalue)


def test_changed_images_by_class_and_slice_are_what_a_click_opens():
    a, b = _tables()
    cmp = _compare(a, b)
    ids = lambda ks: [f"a{k:03d}" for k in sorted(ks)]  # noqa: E731
    assert cmp.changed_images() == ids(BROKEN)
    assert cmp.changed_images(cells=(REGRESSION, FIX)) == ids(BROKEN + FIXED)
    assert cmp.changed_images(cls=1) == ids(k for k in BROKEN if k % 3 == 1)
    on_b = a.loc[a["camera"] == "b", schema.SAMPLE_ID]
    assert cmp.changed_images(among=on_b) == ids(BROKEN)  # all broken images are on camera b
    on_a = a.loc[a["camera"] == "a", schema.SAMPLE_ID]
    assert cmp.changed_images(among=on_a) == []
    assert cmp.changed_images(among=on_a, cells=(FIX, BOTH_WRONG)) == ids(
        k for k in FIXED + WRONG_IN_BOTH if a.loc[k, "camera"] == "a"
    )
    with pytest.raises(ValueError, match=r"unknown cell\(s\) \['nope'\]"):
        cmp.changed_images(cells=("nope",))


def test_per_class_deltas_on_a_hand_example():
    a = pd.DataFrame(
        {
            schema.SAMPLE_ID: list("pqrstuv"),
            schema.CONTENT_HASH: list("PQRSTUV"),
            schema.LABEL: [0, 0, 0, 0, 1, 1, 1],
            schema.PRED: [0, 0, 0, 1, 1, 0, 0],  # class 0: 3/4 right, class 1: 1/3
        }
    )
    b = a.assign(**{schema.PRED: [0, 1, 1, 0, 1, 1, 1]})  # class 0: 2/4, class 1: 3/3
    cmp = compare_models(a, b, class_names=["cat", "dog"])
    pc = cmp.per_class
    assert list(pc.columns) == PER_CLASS_COLUMNS
    assert pc["class_name"].tolist() == ["cat", "dog"] and pc["n"].tolist() == [4, 3]
    np.testing.assert_allclose(pc["recall_a"], [3 / 4, 1 / 3])
    np.testing.assert_allclose(pc["recall_b"], [2 / 4, 3 / 3])
    np.testing.assert_allclose(pc["delta"], [-1 / 4, 2 / 3])
    assert pc["regressions"].tolist() == [2, 0] and pc["fixes"].tolist() == [1, 2]
    np.testing.assert_allclose(pc["p_value"], [1.0, binomtest(0, 2, 0.5).pvalue])
    low, high = paired_difference_interval(1, 2, 1, 0)
    assert (pc["delta_low"][0], pc["delta_high"][0]) == pytest.approx((low, high))


def test_class_without_images_is_nan_not_an_error():
    a = pd.DataFrame(
        {
            schema.SAMPLE_ID: ["p", "q"],
            schema.CONTENT_HASH: ["P", "Q"],
            schema.LABEL: [0, 0],
            schema.PRED: [0, 1],
        }
    )
    cmp = compare_models(a, a, class_names=["cat", "dog", "emu"])
    assert cmp.per_class["n"].tolist() == [2, 0, 0]
    assert cmp.per_class["recall_a"][1:].isna().all() and cmp.per_class["p_value"][1:].isna().all()
    assert cmp.delta.value == 0.0 and cmp.p_value == 1.0


def test_regressing_slice_is_ranked_first():
    a, b = _tables()
    cmp = _compare(a, b)
    s = cmp.slices
    assert list(s.columns) == SLICE_COLUMNS and len(s) > 3
    top = s.iloc[0]
    assert top["spec"] == spec_to_json(SliceSpec((Predicate("camera", "==", "b"),)))
    assert top["regressions"] == 16 and top["delta_low"] < top["delta"] < top["delta_high"] < 0
    assert top["fixes"] == 2 and top["p_value"] == pytest.approx(binomtest(16, 18, 0.5).pvalue)
    assert "pred" not in set(s["source"])  # A's predictions are not a fair slice
    drops = s["delta"].to_numpy() < 0
    assert not np.any(drops[np.argmin(drops) :])  # every drop comes before every non-drop
    assert (np.diff(s["p_value"].to_numpy()[drops]) >= 0).all()
    assert list(cmp.regressions()["spec"]) == [top["spec"]]  # the only significant drop


def test_given_specs_are_used_as_they_are():
    a, b = _tables()
    spec_a = SliceSpec((Predicate("camera", "==", "a"),))
    spec_b = spec_to_json(SliceSpec((Predicate("camera", "==", "b"),)))
    none = SliceSpec((Predicate("camera", "==", "zzz"),))
    cmp = _compare(a, b, specs=[spec_a, spec_b, none])
    s = cmp.slices.set_index("spec")
    assert set(cmp.slices["source"]) == {"given"} and len(s) == 3
    assert s.loc[spec_b, "regressions"] == 16 and s.loc[spec_to_json(spec_a), "regressions"] == 0
    assert s.loc[spec_to_json(none), "n"] == 0 and np.isnan(s.loc[spec_to_json(none), "delta"])
    assert cmp.slices["spec"].iloc[0] == spec_b


def test_alignment_by_hash_then_relpath_and_duplicates():
    a, b = _tables()
    al = align_samples(a, b)
    assert al.on == "content_hash" and al.n_matched == N_IMAGES
    assert (
        a[schema.CONTENT_HASH].to_numpy()[al.index_a]
        == b[schema.CONTENT_HASH].to_numpy()[al.index_b]
    ).all()
    # re-encoded images (other hashes) still match by relpath
    a2 = a.assign(**{schema.CONTENT_HASH: "x" + a[schema.CONTENT_HASH]})
    b2 = a.copy()
    assert align_samples(a2, b2).on == "relpath"
    with pytest.raises(ValueError, match="no image in common"):
        align_samples(a2, b2, on="content_hash")
    # B holds only part of A: only the shared images are compared, and that is reported
    cmp = _compare(a, b.iloc[:30])
    assert (cmp.n_a, cmp.n_b, cmp.n_matched) == (N_IMAGES, 30, 30)
    # exact duplicates within a set pair up one to one
    dup = a.iloc[[0, 0, 1]].reset_index(drop=True)
    dup[schema.RELPATH] = ["d/1.png", "d/2.png", "d/3.png"]
    al = align_samples(dup, dup.iloc[::-1].reset_index(drop=True))
    assert al.n_matched == 3 and sorted(al.index_b.tolist()) == [0, 1, 2]


def test_label_disagreements_are_reported():
    a, b = _tables()
    b.loc[b[schema.CONTENT_HASH] == "h000", schema.LABEL] = 2
    with pytest.warns(UserWarning, match="1 matched image"):
        cmp = _compare(a, b)
    assert "A's labels" in cmp.warnings[0]
    assert cmp.counts[REGRESSION] == 16  # judged with A's labels


def test_comparison_round_trips_through_json():
    a, b = _tables()
    cmp = _compare(a, b, method="midp")
    text = json.dumps(cmp.to_dict(), allow_nan=False)
    back = ModelComparison.from_dict(json.loads(text))
    assert back == cmp
    assert back.flips == cmp.flips and back.pairs.dtypes.equals(cmp.pairs.dtypes)
    assert back != _compare(a, b, method="exact")
    with pytest.raises(ValueError, match="expected a model_comparison dict"):
        ModelComparison.from_dict({"kind": "other"})


def test_compare_validation():
    a, b = _tables()
    with pytest.raises(ValueError, match="unknown McNemar method 'fisher'"):
        _compare(a, b, method="fisher")
    with pytest.raises(TypeError, match="specs must be a list of SliceSpec"):
        _compare(a, b, specs=SliceSpec())
    with pytest.raises(TypeError, match="specs must hold SliceSpec items, got int"):
        _compare(a, b, specs=[1])
    with pytest.raises(ValueError, match="samples_b is missing column 'pred'"):
        _compare(a, b.drop(columns=[schema.PRED]))
    with pytest.raises(ValueError, match="class id 2 but class_names has 2"):
        _compare(a, b, class_names=["x", "y"])
    with pytest.raises(ValueError, match="unknown alignment 'path'; expected one of auto"):
        _compare(a, b, align_on="path")
    with pytest.raises(TypeError, match="samples_a must be a pandas DataFrame"):
        compare_models([], b)
    with pytest.raises(ValueError, match="metadata_columns names column\\(s\\) \\['site'\\]"):
        _compare(a, b, metadata_columns=["site"])


# ----------------------------------------------------------------------------- real runs


def test_compare_two_real_runs(image_folder, tmp_path):
    import torch

    from analysis.pipeline.engine import AnalysisConfig, analyze
    from tests.conftest import save_tiny_resnet

    torch.set_num_threads(1)
    runs = []
    for seed in (0, 1):
        model = save_tiny_resnet(tmp_path / f"m{seed}.pt", seed=seed)
        cfg = AnalysisConfig(
            data=str(image_folder),
            model=str(model),
            arch="resnet18",
            resize=32,
            no_crop=True,
            num_workers=0,
            batch_size=8,
            umap=False,
        )
        runs.append(analyze(cfg, runs_dir=tmp_path / "runs"))
    cmp = compare_runs(runs[0], runs[1].path, min_support=3)
    sa, sb = runs[0].samples, runs[1].samples
    assert cmp.n_matched == len(sa) == 18 and cmp.class_names == tuple(runs[0].class_names)
    assert cmp.accuracy_a.value == pytest.approx(sa[schema.CORRECT].mean())
    assert cmp.accuracy_b.value == pytest.approx(sb[schema.CORRECT].mean())
    broke = set(sa.loc[sa[schema.CORRECT] & ~sb[schema.CORRECT].to_numpy(), schema.SAMPLE_ID])
    assert set(cmp.flips[REGRESSION]) == broke
    assert set(cmp.slices["source"]) <= {"property", "label", "cluster", "metadata"}


def test_importing_compare_and_drift_stays_light():
    import subprocess
    import sys

    code = (
        "import sys, analysis.stats.compare, analysis.stats.drift; "
        "print(sorted(m for m in ('torch', 'sklearn', 'scipy', 'streamlit', 'plotly') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
