"""Set A vs set B drift: PSI / KS / chi-square per feature, embedding drift, moved slices."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import chi2_contingency, ks_2samp

from analysis import schema
from analysis.stats.drift import (
    EMBEDDING_COLUMNS,
    EMBEDDING_METHODS,
    FEATURE_COLUMNS,
    SLICE_COLUMNS,
    DriftReport,
    categorical_psi,
    domain_classifier_auc,
    drift_report,
    drift_runs,
    mmd_test,
    psi,
)

PROPS = [schema.BRIGHTNESS, schema.CONTRAST, schema.SHARPNESS, schema.SATURATION, schema.WIDTH]
META = ["camera", "hour"]


def _set(n: int = 600, seed: int = 0, *, dark: float = 1.0) -> tuple[pd.DataFrame, np.ndarray]:
    """A synthetic evaluation set whose embeddings carry the image brightness (as a real
    network's do); ``dark < 1`` gives the same images darkened."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, 3, n)
    brightness = rng.beta(5, 5, n)
    pred = np.where(rng.random(n) < 0.8, label, (label + 1) % 3)
    samples = pd.DataFrame(
        {
            schema.SAMPLE_ID: [f"s{i}" for i in range(n)],
            schema.LABEL: label,
            schema.PRED: pred,
            schema.CORRECT: pred == label,
            schema.BRIGHTNESS: brightness * dark,
            schema.CONTRAST: rng.gamma(4, 0.03, n) * dark,
            schema.SHARPNESS: rng.lognormal(5, 1, n),
            schema.SATURATION: rng.beta(2, 3, n),
            schema.WIDTH: rng.choice([640, 800, 1024], n),
            "camera": rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]),
            "hour": rng.integers(0, 24, n),
        }
    )
    centres = rng.normal(size=(3, 32))
    direction = np.random.default_rng(99).normal(size=32)
    direction /= np.linalg.norm(direction)
    emb = rng.normal(size=(n, 32)) + centres[label] + (6.0 * brightness * dark)[:, None] * direction
    return samples, emb.astype(np.float32)


def _report(a, b, ea=None, eb=None, **kw):
    kw.setdefault("property_columns", PROPS)
    kw.setdefault("metadata_columns", META)
    kw.setdefault("class_names", ["x", "y", "z"])
    return drift_report(a, b, embeddings_a=ea, embeddings_b=eb, **kw)


def _row(report: DriftReport, feature: str) -> pd.Series:
    return report.features.set_index("feature").loc[feature]


# ----------------------------------------------------------------------------- statistics


def test_empty_sets_give_nan_and_no_flags():
    a, _ = _set(10)
    empty = a.iloc[:0]
    rep = _report(empty, empty)
    assert list(rep.features.columns) == FEATURE_COLUMNS
    assert rep.features["psi"].isna().all() and rep.features["p_value"].isna().all()
    assert not rep.any_flagged and rep.slices.empty and rep.embedding.empty
    assert list(rep.slices.columns) == SLICE_COLUMNS
    assert np.isnan(psi([], [1.0, 2.0])) and np.isnan(categorical_psi([], ["a"]))


def test_psi_by_hand():
    a = ["u"] * 50 + ["v"] * 50
    b = ["u"] * 80 + ["v"] * 20
    pa = np.array([50.5, 50.5]) / 101
    pb = np.array([80.5, 20.5]) / 101
    assert categorical_psi(a, b) == pytest.approx(np.sum((pb - pa) * np.log(pb / pa)))
    assert categorical_psi(a, a) == 0.0
    assert categorical_psi(["u", None], ["u", "u"]) > 0  # missing is a value of its own
    x = np.random.default_rng(0).random(2000)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-12)
    assert psi(x[:1000], x[1000:]) < 0.05  # same distribution
    assert psi(x, x + 0.5) > 1.0  # half of B beyond A's top decile
    # a column with few distinct values is binned per value
    assert psi([1, 1, 2, 2], [1, 1, 1, 1]) == pytest.approx(
        categorical_psi([1, 1, 2, 2], [1, 1, 1, 1])
    )


def test_domain_classifier_and_mmd_on_known_distributions():
    rng = np.random.default_rng(0)
    same_a, same_b = rng.normal(size=(200, 16)), rng.normal(size=(200, 16))
    apart = rng.normal(size=(200, 16)) + 3.0
    auc = domain_classifier_auc(same_a, same_b, seed=0)
    assert abs(auc.value - 0.5) < 0.1 and auc.low < 0.5 < auc.high and auc.method == "delong"
    far = domain_classifier_auc(same_a, apart, seed=0)
    assert far.value > 0.99 and far.low > 0.95
    _, p_same = mmd_test(same_a, same_b, n_permutations=100, seed=0)
    stat, p_far = mmd_test(same_a, apart, n_permutations=100, seed=0)
    assert p_same > 0.05 and p_far == pytest.approx(1 / 101) and stat > 0
    assert domain_classifier_auc(same_a, same_b, seed=0) == auc  # seeded
    with pytest.warns(UserWarning, match="at least 2 images in each set"):
        assert np.isnan(domain_classifier_auc(same_a[:1], same_b).value)


def test_statistic_validation():
    with pytest.raises(ValueError, match="same width, got 16 and 8"):
        domain_classifier_auc(np.zeros((5, 16)), np.zeros((5, 8)))
    with pytest.raises(ValueError, match="embeddings_a must be 2-D"):
        mmd_test(np.zeros(5), np.zeros((5, 8)))
    with pytest.raises(ValueError, match="embeddings_b must be finite"):
        mmd_test(np.zeros((5, 2)), np.full((5, 2), np.nan))
    with pytest.raises(ValueError, match="n_permutations must be an int >= 1"):
        mmd_test(np.zeros((5, 2)), np.zeros((5, 2)), n_permutations=0)
    with pytest.raises(ValueError, match="n_bins must be >= 2, got 1"):
        psi([1.0], [2.0], n_bins=1)
    with pytest.raises(TypeError, match="a must be numeric, got dtype <U1"):
        psi(["a"], [1.0])


# ----------------------------------------------------------------------------- acceptance


def test_darkened_set_is_flagged_on_brightness_and_in_embedding_space():
    a, ea = _set(300, seed=1)
    b, eb = _set(300, seed=1, dark=0.6)  # the same images, darkened
    rep = _report(a, b, ea, eb)
    flagged = set(rep.flagged_features)
    assert {schema.BRIGHTNESS, schema.CONTRAST} <= flagged
    assert flagged.isdisjoint({schema.SHARPNESS, schema.SATURATION, "camera", "hour", "label"})
    bright = _row(rep, schema.BRIGHTNESS)
    assert bright["psi"] > 0.2 and bright["test"] == "ks"
    ks = ks_2samp(a[schema.BRIGHTNESS], b[schema.BRIGHTNESS])
    assert bright["statistic"] == pytest.approx(ks.statistic)
    assert bright["median_b"] == pytest.approx(0.6 * bright["median_a"], rel=1e-6)
    assert rep.features["feature"].iloc[0] in flagged  # flagged first
    emb = rep.embedding.set_index("method").loc["domain_classifier"]
    assert emb["flagged"] and emb["low"] > 0.6 and rep.embedding_flagged
    # the slices that moved most are dark / low-contrast bins, which gained share
    s = rep.slices
    assert s["column"].iloc[0] in {schema.BRIGHTNESS, schema.CONTRAST}
    gain = s.loc[s["share_delta"].idxmax()]
    assert gain["column"] in {schema.BRIGHTNESS, schema.CONTRAST} and gain["share_delta"] > 0.2
    assert '"<"' in gain["spec"]  # the lowest bin


@pytest.mark.parametrize("seed", range(5))
def test_random_halves_of_one_set_are_not_flagged(seed):
    s, e = _set(600, seed=seed)
    half = np.random.default_rng(100 + seed).permutation(len(s))
    ia, ib = np.sort(half[:300]), np.sort(half[300:])
    rep = _report(
        s.iloc[ia].reset_index(drop=True),
        s.iloc[ib].reset_index(drop=True),
        e[ia],
        e[ib],
        embedding_methods=["domain_classifier", "mmd"],
        n_permutations=100,
        mmd_rows=200,
    )
    assert rep.flagged_features == [], rep.features
    assert not rep.embedding_flagged, rep.embedding
    auc = rep.embedding.set_index("method").loc["domain_classifier"]
    assert auc["low"] < 0.6 and abs(auc["statistic"] - 0.5) < 0.1
    assert (rep.features["psi"] < 0.2).all()


def test_class_balance_and_metadata_shifts():
    a, _ = _set(400, seed=2)
    b, _ = _set(400, seed=3)
    b = b[b[schema.LABEL] != 0].reset_index(drop=True)  # class x disappeared
    b.loc[: len(b) // 2, "camera"] = "d"  # a new camera
    rep = _report(a, b)
    label = _row(rep, "label")
    ca = np.bincount(a[schema.LABEL], minlength=3)
    cb = np.bincount(b[schema.LABEL], minlength=3)
    expected = chi2_contingency(np.vstack([ca, cb]))
    assert label["kind"] == "class_balance" and label["flagged"]
    assert label["statistic"] == pytest.approx(expected.statistic)
    assert label["p_value"] == pytest.approx(expected.pvalue)
    camera = _row(rep, "camera")
    assert camera["kind"] == "categorical" and camera["flagged"] and camera["psi"] > 0.2
    assert _row(rep, "hour")["kind"] == "numeric"  # 24 values > n_bins
    assert _row(rep, schema.WIDTH)["psi"] < 0.1  # discrete numeric, binned per value
    assert not _row(rep, schema.SHARPNESS)["flagged"]
    # the new camera is a slice of B only, found because slices come from both sets
    moved = rep.slices.set_index("description")
    assert moved.loc["camera is d", "n_a"] == 0 and moved.loc["camera is d", "share_b"] > 0.4


def test_slice_error_rates_that_moved():
    a, _ = _set(500, seed=4)
    b, _ = _set(500, seed=5)
    wrong = (b["camera"] == "c").to_numpy()
    b.loc[wrong, schema.PRED] = (b.loc[wrong, schema.LABEL] + 1) % 3
    b[schema.CORRECT] = b[schema.PRED] == b[schema.LABEL]
    rep = _report(a, b)
    s = rep.slices.set_index("description")
    cam = s.loc["camera is c"]
    assert cam["error_rate_b"] == 1.0
    assert cam["error_delta"] == pytest.approx(cam["error_rate_b"] - cam["error_rate_a"])
    assert cam["error_delta_low"] > 0.5 and cam["error_delta_high"] <= 1.0
    assert s["error_delta"].idxmax() == "camera is c"
    # sorted: the slices that moved (tested) first, then by how much the share changed
    moved = rep.slices["moved"].to_numpy()
    assert not (np.diff(moved.astype(int)) > 0).any()
    for flag in (True, False):
        shift = rep.slices.loc[moved == flag, "share_delta"].abs().to_numpy()
        assert (np.diff(shift) <= 1e-12).all()


def test_report_round_trips_through_json():
    a, ea = _set(200, seed=6)
    b, eb = _set(200, seed=7, dark=0.8)
    rep = _report(
        a, b, ea, eb, embedding_methods=list(EMBEDDING_METHODS), n_permutations=20, mmd_rows=100
    )
    assert list(rep.embedding.columns) == EMBEDDING_COLUMNS and len(rep.embedding) == 2
    back = DriftReport.from_dict(json.loads(json.dumps(rep.to_dict(), allow_nan=False)))
    assert back == rep and back.flagged_features == rep.flagged_features
    assert back.thresholds["psi_threshold"] == 0.2
    with pytest.raises(ValueError, match="expected a drift_report dict"):
        DriftReport.from_dict({"kind": "model_comparison"})


def test_thresholds_are_options():
    a, _ = _set(300, seed=8)
    b, _ = _set(300, seed=8, dark=0.93)  # a slight shift
    loose = _report(a, b, alpha=0.5, psi_alpha=0.6, psi_threshold=0.0)
    strict = _report(a, b, alpha=1e-12, psi_alpha=1e-12)
    assert schema.BRIGHTNESS in loose.flagged_features
    assert strict.flagged_features == []


def test_drift_validation():
    a, ea = _set(20)
    with pytest.raises(TypeError, match="samples_b must be a pandas DataFrame"):
        drift_report(a, None)
    with pytest.raises(ValueError, match="metadata_columns names column 'site' that samples_a"):
        _report(a, a, metadata_columns=["site"])
    with pytest.raises(TypeError, match="property column 'camera' of samples_a must be numeric"):
        _report(a, a, property_columns=["camera"])
    with pytest.raises(ValueError, match="unknown embedding method 'kl'; expected one of"):
        _report(a, a, ea, ea, embedding_methods=["kl"])
    with pytest.raises(ValueError, match="give embeddings for both sets or for neither"):
        _report(a, a, ea, None)
    with pytest.raises(ValueError, match="embeddings_b has 10 rows but its samples table has 20"):
        _report(a, a, ea, ea[:10])
    with pytest.raises(ValueError, match="alpha must be in \\(0, 1\\)"):
        _report(a, a, alpha=1.5)
    with pytest.raises(TypeError, match="property_columns must be a list of column names"):
        _report(a, a, property_columns="brightness")


# ----------------------------------------------------------------------------- real runs


def test_real_darkened_copies_are_flagged(image_folder, tmp_path):
    import torch
    from PIL import Image

    from analysis.pipeline.engine import AnalysisConfig, analyze
    from tests.conftest import save_tiny_resnet

    torch.set_num_threads(1)
    dark = tmp_path / "dark"
    for p in image_folder.rglob("*.png"):
        out = dark / p.relative_to(image_folder)
        out.parent.mkdir(parents=True, exist_ok=True)
        arr = np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) * 0.4
        Image.fromarray(arr.astype(np.uint8)).save(out)
    model = save_tiny_resnet(tmp_path / "m.pt")

    def run(data, m=model):
        cfg = AnalysisConfig(
            data=str(data),
            model=str(m),
            arch="resnet18",
            resize=32,
            no_crop=True,
            num_workers=0,
            batch_size=8,
            umap=False,
        )
        return analyze(cfg, runs_dir=tmp_path / "runs")

    a, b = run(image_folder), run(dark)
    rep = drift_runs(a, b.path)
    assert schema.BRIGHTNESS in rep.flagged_features
    assert "label" not in rep.flagged_features  # same classes, same counts
    emb = rep.embedding.set_index("method").loc["domain_classifier"]
    assert emb["flagged"] and emb["statistic"] > 0.9
    # another model's embeddings are another space: not compared
    other = run(image_folder, save_tiny_resnet(tmp_path / "m2.pt", seed=1))
    rep2 = drift_runs(a, other)
    assert rep2.embedding.empty and "different models" in rep2.warnings[0]
    assert "pred" not in set(rep2.features["feature"])  # would measure the models
    assert rep2.flagged_features == []  # same images


def test_moved_slices_are_tested_two_sided_with_bh():
    """A slice 'moved' when its share or its error rate changed by a two-sided Fisher exact
    test (doubled smaller tail), BH over the slices; moved slices come first."""
    from scipy.stats import false_discovery_control, hypergeom

    from analysis.stats.drift import _fisher_two_sided

    rng = np.random.default_rng(3)

    def table(n, p_c, err_c):
        cam = np.where(rng.random(n) < p_c, "c", "a")
        wrong = rng.random(n) < np.where(cam == "c", err_c, 0.1)
        label = rng.integers(0, 3, n)
        return pd.DataFrame(
            {"camera": cam, "label": label, "pred": np.where(wrong, (label + 1) % 3, label),
             "correct": ~wrong}
        )  # fmt: skip

    a, b = table(1500, 0.2, 0.1), table(1500, 0.4, 0.3)
    rep = drift_report(a, b, metadata_columns=["camera"], predictions=False)
    s = rep.slices.set_index("description")
    assert bool(s.loc["camera is c", "moved"]) and s["moved"].iloc[:1].all()
    # by hand: share of camera c in B given the pooled count, doubled smaller tail
    na, nb = len(a), len(b)
    k_a, k_b = int((a.camera == "c").sum()), int((b.camera == "c").sum())
    dist = hypergeom(na + nb, k_a + k_b, nb)
    by_hand = min(1.0, 2 * min(dist.sf(k_b - 1), dist.cdf(k_b)))
    assert _fisher_two_sided(np.array([k_b]), na + nb, k_a + k_b, nb)[0] == pytest.approx(by_hand)
    raw = _fisher_two_sided(s["n_b"].to_numpy(), na + nb, (s["n_a"] + s["n_b"]).to_numpy(), nb)
    np.testing.assert_allclose(s["share_p_adj"], false_discovery_control(raw, method="bh"))
    same = drift_report(a, table(1500, 0.2, 0.1), metadata_columns=["camera"], predictions=False)
    assert not same.slices["moved"].any()
