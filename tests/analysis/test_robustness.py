"""Perturbations (registry, severities, determinism), robustness runs on a tiny model, and the
views derived from stored predictions."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.stats.robustness import (
    ACCURACY,
    CLEAN_ACCURACY,
    DROP,
    HIGH,
    LOW,
    PERTURBATIONS,
    PREDICTIONS_FILE,
    SEVERITIES,
    SUMMARY_COLUMNS,
    SUMMARY_FILE,
    N,
    RobustnessResult,
    accuracy_rises,
    apply_perturbation,
    estimate_cost,
    first_flip_severity,
    flips,
    fragile_images,
    is_monotone,
    list_robustness,
    load_robustness,
    make_perturb,
    per_slice,
    perturbation_table,
    run_robustness,
    select_rows,
    slice_vs_rest,
)
from analysis.stats.slices import Predicate, SliceSpec
from tests.conftest import make_image_folder, save_tiny_resnet, tiny_config

torch = pytest.importorskip("torch")
NAMES = list(PERTURBATIONS)


def _images(b: int = 3, size: int = 48, seed: int = 0):
    """Smooth images with a coloured block: like photos, unlike i.i.d. noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(b, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(base, size=(size, size), mode="bilinear")
    x[:, :, 10:30, 12:36] = torch.tensor([0.8, 0.2, 0.3]).view(1, 3, 1, 1)
    return x.clamp(0, 1)


# ----------------------------------------------------------------------------- perturbations


@pytest.mark.parametrize("name", NAMES)
def test_empty_batch_gives_empty_batch(name):
    y = apply_perturbation(torch.zeros(0, 3, 32, 32), name, 3)
    assert y.shape == (0, 3, 32, 32)


def test_registry_has_the_required_perturbations_with_five_levels():
    assert set(NAMES) == {
        "brightness_down",
        "brightness_up",
        "contrast",
        "gaussian_blur",
        "motion_blur",
        "gaussian_noise",
        "occlusion",
        "rotation",
        "jpeg",
        "downscale",
    }
    for name, p in PERTURBATIONS.items():
        assert p.name == name and len(p.levels) == len(SEVERITIES) == 5
        steps = np.diff(p.levels)
        assert (steps > 0).all() or (steps < 0).all(), name  # levels strictly ordered
    table = perturbation_table()
    assert list(table["perturbation"]) == NAMES and list(table.columns[-5:]) == list("12345")


@pytest.mark.parametrize("name", NAMES)
def test_changes_grow_with_severity_and_keep_shape_and_range(name):
    x = _images()
    before = x.clone()
    diffs = []
    for s in SEVERITIES:
        y = apply_perturbation(x, name, s, seed=0)
        assert y.shape == x.shape and y.dtype == x.dtype
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
        diffs.append(float((y - x).abs().mean()))
    assert torch.equal(x, before)  # input untouched
    assert (np.diff(diffs) > 0).all(), diffs
    assert diffs[-1] > 0.01


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed_and_independent_of_the_batch(name):
    x = _images(4)
    a = apply_perturbation(x, name, 4, seed=7)
    b = apply_perturbation(x, name, 4, seed=7)
    assert torch.equal(a, b)
    alone = apply_perturbation(x[2:3], name, 4, seed=7)  # same image in another batch
    torch.testing.assert_close(alone, a[2:3], atol=1e-6, rtol=0)
    if PERTURBATIONS[name].random:
        assert not torch.equal(apply_perturbation(x, name, 4, seed=8), a)


def test_make_perturb_is_the_same_function():
    x = _images(2)
    f = make_perturb("gaussian_noise", 2, seed=3)
    assert torch.equal(f(x), apply_perturbation(x, "gaussian_noise", 2, seed=3))


def test_blur_at_the_reference_size_matches_the_documented_sigma():
    from torchvision.transforms.v2 import functional as F

    x = _images(1, size=224)
    y = apply_perturbation(x, "gaussian_blur", 2)
    torch.testing.assert_close(y, F.gaussian_blur(x, [13, 13], [2.0, 2.0]))


def test_perturbation_validation():
    x = _images(1)
    with pytest.raises(ValueError, match="unknown perturbation 'fog'; expected one of .*jpeg"):
        apply_perturbation(x, "fog", 1)
    with pytest.raises(TypeError, match="perturbation name must be a str"):
        apply_perturbation(x, 3, 1)
    with pytest.raises(ValueError, match=r"severity must be one of \[1, 2, 3, 4, 5\], got 6"):
        apply_perturbation(x, "jpeg", 6)
    with pytest.raises(TypeError, match="severity must be an int 1..5, got float"):
        apply_perturbation(x, "jpeg", 2.0)
    with pytest.raises(TypeError, match="seed must be an int"):
        make_perturb("jpeg", 1, seed="a")
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        apply_perturbation(np.zeros((1, 3, 8, 8)), "jpeg", 1)
    with pytest.raises(ValueError, match=r"shape \[B, 3, H, W\], got \[3, 8, 8\]"):
        apply_perturbation(torch.zeros(3, 8, 8), "jpeg", 1)
    with pytest.raises(TypeError, match="float tensor in \\[0, 1\\], got dtype torch.uint8"):
        apply_perturbation(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "jpeg", 1)
    with pytest.raises(ValueError, match="must be in \\[0, 1\\] \\(before normalisation\\)"):
        apply_perturbation(torch.full((1, 3, 8, 8), 2.0), "jpeg", 1)


def test_importing_robustness_does_not_import_torch():
    code = "import sys, analysis.stats.robustness; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- subsets


def test_select_rows():
    assert select_rows(np.zeros(0, int), 5).size == 0
    labels = np.array([0] * 60 + [1] * 30 + [2] * 10)
    assert np.array_equal(select_rows(labels, None), np.arange(100))
    assert np.array_equal(select_rows(labels, 500), np.arange(100))
    rows = select_rows(labels, 20, seed=1)
    assert rows.size == 20 and np.all(np.diff(rows) > 0)
    assert np.bincount(labels[rows]).tolist() == [12, 6, 2]  # stratified
    assert np.array_equal(rows, select_rows(labels, 20, seed=1))
    assert not np.array_equal(rows, select_rows(labels, 20, seed=2))
    assert select_rows(labels, 7).size == 7
    with pytest.raises(ValueError, match="subset must be >= 1"):
        select_rows(labels, 0)
    with pytest.raises(TypeError, match="subset must be an int >= 1 or None, got float"):
        select_rows(labels, 2.5)
    with pytest.raises(ValueError, match="labels must be 1-D"):
        select_rows(np.zeros((2, 2)), 1)


# ----------------------------------------------------------------------------- runs


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from analysis.pipeline.engine import analyze

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("robust")
    data = make_image_folder(root / "data", n_per_class=4, size=40)
    model = save_tiny_resnet(root / "tiny.pt")
    cfg = tiny_config(data, model)
    return analyze(cfg, runs_dir=root / "runs")


def _model_predictions(run, rows, name, severity, seed):
    """What the stored predictions must be: decode, perturb, normalise, argmax, by hand."""
    from analysis.loading.images import decode_image
    from analysis.loading.inference import softmax, to_model_tensor
    from analysis.loading.models import load_run_model

    loaded, prep = load_run_model(run.manifest)
    paths = run.samples[schema.PATH].to_numpy()[rows]
    x = torch.stack([to_model_tensor(decode_image(p).rgb, prep) for p in paths]).float() / 255
    x = apply_perturbation(x, name, severity, seed=seed)
    mean = torch.tensor(prep.mean).view(1, 3, 1, 1)
    std = torch.tensor(prep.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        return softmax(loaded.model((x - mean) / std).numpy()).argmax(1)


def test_run_robustness_stores_what_the_model_predicts(tiny_run):
    names, sev = ["occlusion", "brightness_down"], (1, 5)
    res = run_robustness(
        tiny_run, perturbations=names, severities=sev, subset=9, seed=0, batch_size=4, num_workers=0
    )
    assert res.perturbations == tuple(names) and res.severities == sev
    assert res.n == 9 and res.predictions.shape == (2, 2, 9)
    assert np.bincount(res.labels).tolist() == [3, 3, 3]  # stratified subset
    np.testing.assert_array_equal(
        res.sample_ids, tiny_run.samples[schema.SAMPLE_ID].to_numpy()[res.rows]
    )
    np.testing.assert_array_equal(
        res.clean_pred, tiny_run.samples[schema.PRED].to_numpy()[res.rows]
    )
    for i, name in enumerate(names):
        for j, s in enumerate(sev):
            expected = _model_predictions(tiny_run, res.rows, name, s, 0)
            np.testing.assert_array_equal(res.predictions[i, j], expected, err_msg=f"{name} {s}")
    s = res.summary
    assert list(s.columns) == SUMMARY_COLUMNS and len(s) == 4
    acc = (res.predictions == res.labels).mean(axis=2).reshape(-1)
    np.testing.assert_allclose(s[ACCURACY], acc)
    np.testing.assert_allclose(s[CLEAN_ACCURACY], np.mean(res.clean_pred == res.labels))
    np.testing.assert_allclose(s[DROP], s[CLEAN_ACCURACY] - s[ACCURACY])
    assert (s[LOW] <= s[ACCURACY]).all() and (s[ACCURACY] <= s[HIGH]).all() and (s[N] == 9).all()
    pc = res.per_class
    assert len(pc) == 4 * 3 and set(pc["class_name"]) == set(tiny_run.class_names)
    assert (pc.groupby(["perturbation", "severity"])["n"].sum() == 9).all()


def test_predictions_follow_the_runs_rule_on_near_ties(tmp_path):
    """Logits 1e-9 apart are a tie in the run's float32 probabilities (pred = first class); a
    perturbation that changes nothing must then flip nothing."""
    import torchvision

    from analysis.pipeline.engine import analyze

    m = torchvision.models.resnet18(weights=None, num_classes=3)
    with torch.no_grad():
        m.fc.weight.zero_()
        m.fc.bias.copy_(torch.tensor([0.0, 1e-9, 0.0]))
    torch.save(m.state_dict(), tmp_path / "tied.pt")
    data = make_image_folder(tmp_path / "data", n_per_class=2, size=40)
    cfg = tiny_config(data, tmp_path / "tied.pt")
    run = analyze(cfg, runs_dir=tmp_path / "runs")
    assert (run.samples[schema.PRED] == 0).all()
    res = run_robustness(run, perturbations=["gaussian_blur"], severities=[1], num_workers=0)
    assert (res.predictions == 0).all() and res.summary["flipped"].tolist() == [0]


def test_results_round_trip_and_are_reused(tiny_run):
    kw = dict(perturbations=["jpeg"], severities=[2], subset=6, seed=1, num_workers=0)
    res = run_robustness(tiny_run, **kw)
    folder = tiny_run.path / schema.ROBUSTNESS_DIR / res.key
    assert (folder / SUMMARY_FILE).exists() and (folder / PREDICTIONS_FILE).exists()
    assert np.load(folder / PREDICTIONS_FILE).dtype == np.int32
    stamp = (folder / SUMMARY_FILE).stat().st_mtime_ns
    again = run_robustness(tiny_run, **kw)
    assert again == res and (folder / SUMMARY_FILE).stat().st_mtime_ns == stamp  # reused
    assert load_robustness(tiny_run, res.key) == res
    assert load_robustness(tiny_run.path, "nope") is None
    other = run_robustness(tiny_run, **{**kw, "seed": 2})
    assert other.key != res.key
    assert load_robustness(tiny_run) == other  # the latest
    listed = list_robustness(tiny_run)
    assert listed["key"].iloc[0] == other.key and res.key in set(listed["key"])
    assert json.loads((folder / "settings.json").read_text())["subset"] == 6


def test_no_stored_result_loads_as_none(tmp_path, tiny_run):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run.path, copy, ignore=shutil.ignore_patterns(schema.ROBUSTNESS_DIR))
    assert load_robustness(copy) is None
    assert list_robustness(copy).empty


def test_run_robustness_validation(tiny_run):
    with pytest.raises(ValueError, match="unknown perturbation 'fog'"):
        run_robustness(tiny_run, perturbations=["fog"])
    with pytest.raises(ValueError, match="perturbations named more than once: \\['jpeg'\\]"):
        run_robustness(tiny_run, perturbations=["jpeg", "jpeg"])
    with pytest.raises(ValueError, match="perturbations must name at least one"):
        run_robustness(tiny_run, perturbations=[])
    with pytest.raises(TypeError, match="perturbations must be a list of names"):
        run_robustness(tiny_run, perturbations="jpeg")
    with pytest.raises(ValueError, match="severities must hold at least one"):
        run_robustness(tiny_run, severities=[])
    with pytest.raises(ValueError, match="subset must be >= 1"):
        run_robustness(tiny_run, subset=0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        run_robustness(tiny_run, batch_size=0)
    with pytest.raises(TypeError, match="run must be a Run or a run directory path"):
        run_robustness(42)


def test_estimate_cost(tiny_run):
    one = estimate_cost(tiny_run, perturbations=["jpeg"], severities=[1])
    assert one > 0
    n = len(tiny_run.samples)
    assert one == pytest.approx(n / tiny_run.manifest["images_per_second"])
    assert estimate_cost(tiny_run) == pytest.approx(one * len(NAMES) * 5)
    assert estimate_cost(tiny_run, perturbations=["jpeg"], severities=[1], subset=3) == (
        pytest.approx(one * 3 / n)
    )
    from analysis.store.runstore import Run

    no_rate = Run(
        tiny_run.path, {k: v for k, v in tiny_run.manifest.items() if k != "images_per_second"}
    )
    assert estimate_cost(no_rate, perturbations=["jpeg"], severities=[1]) > 0


# ----------------------------------------------------------------------------- derived views


def _result(predictions, labels, clean_pred, perturbations=("blur",), severities=(1, 2, 3)):
    n = len(labels)
    return RobustnessResult(
        key="k",
        perturbations=tuple(perturbations),
        severities=tuple(severities),
        rows=np.arange(n, dtype=np.int64),
        sample_ids=np.array([f"s{i}" for i in range(n)], dtype=object),
        labels=np.asarray(labels),
        clean_pred=np.asarray(clean_pred),
        predictions=np.asarray(predictions, dtype=np.int32),
        summary=pd.DataFrame(),
        per_class=pd.DataFrame(),
    )


def test_flips_and_first_flip_severity_on_a_hand_example():
    labels = [0, 1, 1, 0]
    clean = [0, 1, 0, 0]  # row 2 wrong when clean
    preds = [
        [
            [0, 1, 0, 0],  # severity 1: nothing changes
            [1, 1, 1, -1],  # severity 2: rows 0 and 2 flip (0 wrong, 2 right); row 3 unreadable
            [1, 0, 1, 1],
        ]
    ]  # severity 3: rows 0, 1, 2, 3 flip
    res = _result(preds, labels, clean)
    assert flips(res, "blur", 1).empty
    f = flips(res, "blur", 2)
    assert f["sample_id"].tolist() == ["s0", "s2"]
    assert f["became_wrong"].tolist() == [True, False]
    assert f["became_right"].tolist() == [False, True]
    assert f["pred"].tolist() == [1, 1] and f["clean_pred"].tolist() == [0, 0]
    first = first_flip_severity(res)
    np.testing.assert_array_equal(first["blur"], [2, 3, 2, 3])
    wrong = first_flip_severity(res, became_wrong=True)
    np.testing.assert_array_equal(wrong["blur"], [2, 3, np.nan, 3])
    with pytest.raises(ValueError, match="perturbation 'fog' is not in this result; it has blur"):
        flips(res, "fog", 1)
    with pytest.raises(ValueError, match=r"severity 5 is not in this result; it has \[1, 2, 3\]"):
        flips(res, "blur", 5)
    with pytest.raises(TypeError, match="result must be a RobustnessResult"):
        flips("x", "blur", 1)


def test_never_flipping_images_get_nan():
    res = _result([[[0, 1], [0, 1], [0, 1]]], [0, 1], [0, 1])
    assert first_flip_severity(res)["blur"].isna().all()


def test_per_slice_restricts_the_summary():
    labels = np.array([0, 0, 1, 1])
    clean = np.array([0, 0, 1, 1])
    preds = np.array([[[0, 0, 1, 1], [0, 1, 0, 1]]])  # severity 2: one wrong in each group
    res = _result(preds, labels, clean, perturbations=("jpeg",), severities=(1, 2))
    samples = pd.DataFrame({"camera": ["a", "a", "b", "b"]})
    t = per_slice(res, samples, SliceSpec((Predicate("camera", "==", "a"),)))
    assert list(t.columns) == SUMMARY_COLUMNS
    assert t[N].tolist() == [2, 2] and t[ACCURACY].tolist() == [1.0, 0.5]
    assert t[DROP].tolist() == [0.0, 0.5] and t["parameter"].tolist() == [50.0, 30.0]
    empty = per_slice(res, samples, SliceSpec((Predicate("camera", "==", "z"),)))
    assert empty[N].tolist() == [0, 0] and empty[ACCURACY].isna().all()
    with pytest.raises(TypeError, match="spec must be a SliceSpec"):
        per_slice(res, samples, "camera == a")
    with pytest.raises(ValueError, match="not the run this result was made on"):
        per_slice(res, samples.iloc[:2], SliceSpec())


def test_slice_vs_rest_and_fragile_images():
    labels = np.array([0, 0, 1, 1, 0, 1])
    clean = np.array([0, 0, 1, 1, 0, 0])  # row 5 wrong when clean
    # severity 1: row 0 becomes wrong (camera a); severity 2: rows 0, 1 (a) and 4 (b) wrong
    preds = np.array([[[1, 0, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]])
    res = _result(preds, labels, clean, perturbations=("jpeg",), severities=(1, 2))
    samples = pd.DataFrame({"camera": ["a", "a", "a", "b", "b", "b"]})
    t = slice_vs_rest(res, samples, SliceSpec((Predicate("camera", "==", "a"),)))
    assert t["n_in"].tolist() == [3, 3] and t["n_out"].tolist() == [3, 3]
    np.testing.assert_allclose(t["drop_in"], [1 / 3, 2 / 3])
    # outside at severity 2: row 4 becomes wrong, row 5 becomes right: no net drop
    np.testing.assert_allclose(t["drop_out"], [0.0, 0.0])
    np.testing.assert_allclose(t["extra_drop"], t["drop_in"] - t["drop_out"])
    assert (t["low_in"] <= t["accuracy_in"]).all() and (t["accuracy_in"] <= t["high_in"]).all()
    f = fragile_images(res, "jpeg")
    # row 0 first at severity 1; rows 1 and 4 at 2; rows 2, 3 never wrong; row 5 was wrong clean
    assert f["row"].tolist() == [0, 1, 4] and f["severity"].tolist() == [1, 2, 2]
    assert f["sample_id"].tolist() == ["s0", "s1", "s4"]


def _paired(clean_right, sev_right):
    """A one-perturbation result from per-image right/wrong at clean and each severity."""
    labels = np.zeros(len(clean_right), dtype=np.int64)
    as_pred = lambda r: np.where(np.asarray(r, bool), 0, 1)  # noqa: E731
    preds = np.stack([as_pred(r) for r in sev_right])[None]
    return _result(preds, labels, as_pred(clean_right), severities=range(1, len(sev_right) + 1))


def test_accuracy_rises_is_a_paired_test():
    """60% -> 75% on the same 100 images, 15 gained and none lost: the two Wilson intervals
    overlap (the old unpaired check called it noise), the paired test calls it a rise."""
    from scipy.stats import binomtest

    from analysis.stats.intervals import wilson_interval

    clean = np.arange(100) < 60
    sev1 = np.arange(100) < 75
    res = _paired(clean, [sev1])
    _, hi0 = wilson_interval(60, 100)
    lo1, _ = wilson_interval(75, 100)
    assert lo1 <= hi0  # the intervals overlap
    r = accuracy_rises(res, "blur")
    assert r[["from_severity", "to_severity", "gained", "lost"]].values.tolist() == [[0, 1, 15, 0]]
    assert r["p_value"].iloc[0] == pytest.approx(
        binomtest(15, 15, 0.5, alternative="greater").pvalue
    )
    assert not is_monotone(res, "blur")
    assert is_monotone(res, "blur", include_clean=False)  # one severity: nothing to compare


def test_accuracy_rises_holm_over_pairs_and_noise_is_not_a_rise():
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    clean = rng.random(200) < 0.8
    sevs = [clean.copy() for _ in range(3)]
    for k, s in enumerate(sevs):  # accuracy falls: each severity loses more than it gains
        s[rng.choice(200, 20 + 10 * k, replace=False)] = False
        s[rng.choice(200, 6, replace=False)] = True
    res = _paired(clean, sevs)
    r = accuracy_rises(res, "blur")
    assert len(r) == 6  # pairs of {clean, 1, 2, 3}
    for _, row in r.iterrows():
        g, lo = int(row["gained"]), int(row["lost"])
        expected = binomtest(g, g + lo, 0.5, alternative="greater").pvalue if g + lo else 1.0
        assert row["p_value"] == pytest.approx(expected)
    # Holm by its definition: the k-th smallest p times (m - k + 1), running maximum, capped at 1
    p = r["p_value"].to_numpy()
    order = np.argsort(p, kind="stable")
    holm = np.empty_like(p)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - k) * p[i]))
        holm[i] = running
    np.testing.assert_allclose(r["p_adj"], holm)
    assert is_monotone(res, "blur")
    # a steady creep upwards is found from the first to the last severity
    creep = [np.arange(200) < 120 + 12 * k for k in range(1, 4)]
    assert not is_monotone(_paired(np.arange(200) < 120, creep), "blur")


def test_accuracy_rises_skips_unreadable_images_and_validates():
    labels = np.zeros(4, dtype=np.int64)
    preds = np.array([[[0, 0, -1, 1]]])  # image 2 unreadable at severity 1
    res = _result(preds, labels, np.array([1, 1, 1, 1]), severities=(1,))
    r = accuracy_rises(res, "blur")
    assert r.iloc[0]["n"] == 3 and r.iloc[0]["gained"] == 2 and r.iloc[0]["lost"] == 0
    with pytest.raises(ValueError, match="perturbation 'fog' is not in result"):
        accuracy_rises(res, "fog")
    with pytest.raises(TypeError, match="result must be a RobustnessResult"):
        accuracy_rises(pd.DataFrame(), "blur")


def test_slice_vs_rest_tests_whether_the_slice_suffers_more():
    """Breaks among the images right when clean, inside vs outside, one-sided Fisher (scipy),
    BH over the cells."""
    from scipy.stats import false_discovery_control, fisher_exact

    from analysis.stats.robustness import slice_vs_rest
    from analysis.stats.slices import Predicate, SliceSpec

    n = 200
    labels = np.zeros(n, dtype=np.int64)
    clean = np.zeros(n, dtype=np.int64)
    clean[:20] = 1  # 20 wrong when clean
    inside = np.arange(n) % 4 == 0  # 50 images
    sev1 = clean.copy()
    sev1[inside & (np.arange(n) >= 20)] = 1  # breaks every clean-right image in the slice
    sev2 = clean.copy()
    sev2[np.arange(20, 60)] = 1  # breaks 40 images regardless of the slice
    res = _result(np.stack([sev1, sev2])[None], labels, clean, severities=(1, 2))
    samples = pd.DataFrame({"camera": np.where(inside, "c", "a")})
    t = slice_vs_rest(res, samples, SliceSpec((Predicate("camera", "==", "c"),)))
    ps = []
    for _, r in t.iterrows():
        pred = (sev1, sev2)[int(r["severity"]) - 1]
        right = clean == labels
        broke = right & (pred != labels)
        table = [
            [int((broke & inside).sum()), int((right & inside & ~broke).sum())],
            [int((broke & ~inside).sum()), int((right & ~inside & ~broke).sum())],
        ]
        assert r["p_value"] == pytest.approx(fisher_exact(table, alternative="greater").pvalue)
        ps.append(r["p_value"])
    np.testing.assert_allclose(t["p_adj"], false_discovery_control(ps, method="bh"))
    assert t["significant"].tolist() == [True, False]
    assert t["break_in"].iloc[0] == 1.0 and t["break_out"].iloc[0] == 0.0


def test_per_class_ranking_puts_the_class_surely_hurt_first_not_the_tiny_one():
    """A 3-image class at 0% does not top a 300-image class at 20% (issue 12 §3): the page ranks
    by the upper end of the 95% Wilson interval (checked against scipy), not by the estimate."""
    from scipy.stats import binomtest

    from analysis.stats.robustness import CLASS_NAME, _per_class_table, per_class_ranking

    labels = np.r_[np.zeros(3, np.int64), np.ones(300, np.int64), np.full(100, 2)]
    clean = labels.copy()
    pred = np.repeat(labels[None, None, :], 2, axis=1).copy()  # [1 perturbation, 2 severities, N]
    pred[0, 1, :3] = 1  # tiny class: all 3 wrong at severity 2
    pred[0, 1, 3:243] = 0  # big class: 240 of 300 wrong (20% right)
    pred[0, 1, 303:313] = 0  # class 2: 90% right
    table = _per_class_table(pred, labels, clean, ["blur"], [1, 2], ["tiny", "big", "fine"])
    view = per_class_ranking(table, "blur")
    assert list(view[CLASS_NAME]) == ["big", "tiny", "fine"]  # by estimate: tiny, big, fine
    for name, k, n in (("tiny", 0, 3), ("big", 60, 300), ("fine", 90, 100)):
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        row = view.set_index(CLASS_NAME).loc[name]
        assert row[LOW] == pytest.approx(ci.low, abs=1e-9)
        assert row[HIGH] == pytest.approx(ci.high, abs=1e-9)
        assert row[2] == pytest.approx(k / n) and row[1] == pytest.approx(1.0)
    assert per_class_ranking(table, "noise").empty
