"""Tests for analysis.data_issues.outliers: adaptive image-property outliers and their error rates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.data_issues.outliers import (
    OUTLIER_COLUMNS,
    OUTLIER_TYPES,
    SUMMARY_COLUMNS,
    find_outliers,
    outlier_summary,
    outlier_thresholds,
)


def clean_table(n: int = 1000, seed: int = 0, brightness=(0.3, 0.65)) -> pd.DataFrame:
    """Properties of an unremarkable photo collection: nothing should be flagged."""
    rng = np.random.default_rng(seed)
    w = rng.choice([640, 800, 1024], n)
    ar = rng.choice([4 / 3, 3 / 2, 16 / 9], n)
    return pd.DataFrame(
        {
            schema.BRIGHTNESS: rng.uniform(*brightness, n),
            schema.CONTRAST: rng.uniform(0.15, 0.3, n),
            schema.SHARPNESS: np.exp(rng.uniform(-6, -4, n)),
            schema.SATURATION: rng.uniform(0.1, 0.6, n),
            schema.NOISE: np.exp(rng.uniform(np.log(1.0), np.log(3.5), n)),
            schema.WIDTH: w,
            schema.HEIGHT: np.round(w / ar),
            schema.ASPECT_RATIO: w / np.round(w / ar),
            schema.FILE_SIZE: rng.integers(50_000, 400_000, n),
            schema.CORRECT: rng.random(n) < 0.85,
        }
    )


PLANTED = {
    "dark": range(0, 8),
    "overexposed": range(8, 14),
    "low_contrast": range(14, 20),
    "near_constant": range(20, 24),
    "blurry": range(24, 30),
    "odd_size": range(30, 36),
    "odd_aspect_ratio": range(36, 40),
    "noisy": range(40, 46),
}


def planted_table() -> pd.DataFrame:
    t = clean_table()
    b, c, s = schema.BRIGHTNESS, schema.CONTRAST, schema.SHARPNESS
    t.loc[PLANTED["dark"], b] = np.linspace(0.0, 0.08, 8)
    t.loc[PLANTED["overexposed"], b] = np.linspace(0.93, 1.0, 6)
    t.loc[PLANTED["low_contrast"], c] = np.linspace(0.03, 0.06, 6)
    # near-constant frames are also low-contrast and blurry: that is what they are
    t.loc[PLANTED["near_constant"], c] = [0.0, 0.005, 0.01, 0.015]
    t.loc[PLANTED["near_constant"], s] = 1e-7
    t.loc[PLANTED["blurry"], s] = np.exp(-5) / np.array([200, 300, 500, 800, 1000, 5000])
    t.loc[[30, 31, 32], [schema.WIDTH, schema.HEIGHT]] = 32  # thumbnails
    t.loc[[33, 34, 35], [schema.WIDTH, schema.HEIGHT]] = [[8000, 6000]] * 3  # huge scans
    t.loc[[30, 31, 32], schema.ASPECT_RATIO] = 1.0  # within the guard: square is not odd here
    t.loc[[33, 34, 35], schema.ASPECT_RATIO] = 4 / 3
    t.loc[PLANTED["odd_aspect_ratio"], schema.ASPECT_RATIO] = [4.0, 5.0, 0.25, 0.3]
    t.loc[PLANTED["noisy"], schema.NOISE] = [12.0, 15.0, 18.0, 20.0, 25.0, 30.0]
    t.loc[:39, schema.CORRECT] = np.arange(40) % 4 != 0  # 25 % errors among the planted
    return t


def flagged(out: pd.DataFrame, kind: str) -> set:
    return set(out.loc[out["type"] == kind, "index"].tolist())


# ----------------------------------------------------------------------------- empty / invalid


def test_empty_table():
    t = clean_table().iloc[:0]
    out = find_outliers(t)
    assert list(out.columns) == OUTLIER_COLUMNS and len(out) == 0
    s = outlier_summary(t, out)
    assert list(s.columns) == SUMMARY_COLUMNS
    assert s["type"].tolist() == list(OUTLIER_TYPES)
    assert (s["n"] == 0).all() and s["error_rate"].isna().all() and s["p_value"].isna().all()
    assert outlier_thresholds(t)["median"].isna().all()


def test_validation():
    t = clean_table(20)
    with pytest.raises(TypeError, match="table must be a pandas DataFrame, got dict"):
        find_outliers({})
    with pytest.raises(ValueError, match="table index must be unique"):
        find_outliers(pd.concat([t, t]))
    with pytest.raises(ValueError, match=r"unknown outlier types \['fuzzy'\]; valid: \['dark'"):
        find_outliers(t, types=["dark", "fuzzy"])
    with pytest.raises(TypeError, match="types must be a sequence of names, got str"):
        find_outliers(t, types="dark")
    with pytest.raises(ValueError, match="z_threshold must be a positive finite float, got -1"):
        find_outliers(t, z_threshold=-1)
    with pytest.raises(TypeError, match="z_threshold must be a positive float, got str"):
        find_outliers(t, z_threshold="3")
    with pytest.raises(
        ValueError, match=r"missing property columns \['height'\] needed by types \['odd_size'\]"
    ):
        find_outliers(t.drop(columns=schema.HEIGHT))
    # a type whose columns are present works without the others
    assert find_outliers(t.drop(columns=schema.HEIGHT), types=["dark"]).empty


def test_summary_validation():
    t = clean_table(20)
    out = find_outliers(t)
    with pytest.raises(ValueError, match="table needs a boolean 'correct' column"):
        outlier_summary(t.drop(columns=schema.CORRECT), out)
    with pytest.raises(TypeError, match="'correct' must be boolean, got dtype float64"):
        outlier_summary(t.assign(correct=0.5), out)
    with pytest.raises(ValueError, match="missing column 'type'"):
        outlier_summary(t, out.drop(columns="type"))
    with pytest.raises(ValueError, match=r"outliers refer to rows not in table: \[999\]"):
        outlier_summary(t, pd.DataFrame({"index": [999], "type": ["dark"]}))
    with pytest.raises(TypeError, match="table and outliers must be DataFrames"):
        outlier_summary(t, [])
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        outlier_summary(t, out, confidence=2.0)


# ----------------------------------------------------------------------------- behaviour


def test_clean_table_flags_nothing():
    t = clean_table()
    assert find_outliers(t).empty
    thr = outlier_thresholds(t).set_index("type")
    assert thr.loc["dark", "low"] < 0.3 and thr.loc["overexposed", "high"] >= 0.8


def test_planted_outliers_are_found_exactly():
    t = planted_table()
    out = find_outliers(t)
    for kind, rows in PLANTED.items():
        expected = set(rows)
        if kind == "low_contrast":
            expected |= set(PLANTED["near_constant"])
        if kind == "blurry":
            expected |= set(PLANTED["near_constant"])
        assert flagged(out, kind) == expected, kind
    # thresholds are in value units and on the right side of each value
    low = out["value"] < out["threshold"]
    high = out["value"] > out["threshold"]
    assert (low | high).all()
    dark = out[out["type"] == "dark"]
    assert dark["value"].is_monotonic_increasing  # most extreme first
    assert (dark["threshold"] <= 0.2).all()


def test_reason_is_plain_words():
    out = find_outliers(planted_table()).set_index(["type", "index"])
    r = out.loc[("dark", 0), "reason"]
    thr = out.loc[("dark", 0), "threshold"]
    assert r.startswith(f"brightness 0.00, below {thr:.2f} (data set median 0.4")
    assert out.loc[("odd_size", 30), "reason"].startswith("32x32 px (1,024 pixels), below ")
    assert out.loc[("near_constant", 20), "reason"] == "contrast 0.000, below 0.020 (fixed limit)"


def test_uniformly_dark_set_does_not_flag_itself_but_finds_black_frames():
    t = clean_table(brightness=(0.05, 0.2))  # every image below a fixed 0.2 "dark" limit
    assert flagged(find_outliers(t), "dark") == set()
    t.loc[[5, 6], schema.BRIGHTNESS] = [0.0, 0.005]
    assert flagged(find_outliers(t), "dark") == {5, 6}
    bright = clean_table(brightness=(0.8, 0.95))  # every image above a fixed 0.8 limit
    assert flagged(find_outliers(bright), "overexposed") == set()
    bright.loc[7, schema.BRIGHTNESS] = 1.0
    assert flagged(find_outliers(bright), "overexposed") == {7}


def test_nullable_integer_columns():
    t = clean_table(50)
    t[schema.WIDTH] = t[schema.WIDTH].astype("Int64")
    t.loc[3, schema.WIDTH] = pd.NA
    t.loc[4, [schema.WIDTH, schema.HEIGHT]] = [16, 16]
    assert flagged(find_outliers(t, types=["odd_size"]), "odd_size") == {4}


def test_identical_sizes_flag_only_far_away_sizes():
    t = clean_table(200)
    t[schema.WIDTH], t[schema.HEIGHT], t[schema.ASPECT_RATIO] = 224, 224, 1.0
    assert find_outliers(t, types=["odd_size", "odd_aspect_ratio"]).empty  # MAD = 0, no flags
    t.loc[[1, 2], [schema.WIDTH, schema.HEIGHT]] = 32
    t.loc[3, [schema.WIDTH, schema.HEIGHT]] = [230, 224]  # different, but not odd
    t.loc[3, schema.ASPECT_RATIO] = 230 / 224
    out = find_outliers(t, types=["odd_size", "odd_aspect_ratio"])
    assert flagged(out, "odd_size") == {1, 2}
    assert flagged(out, "odd_aspect_ratio") == set()


def test_a_large_minority_of_other_sizes_is_not_odd():
    t = clean_table(200)
    t[schema.WIDTH] = t[schema.HEIGHT] = np.where(np.arange(200) < 120, 224, 64)
    assert find_outliers(t, types=["odd_size"]).empty


def test_nan_properties_are_never_flagged_and_index_labels_kept():
    t = planted_table()
    t.index = [f"img{k}" for k in range(len(t))]
    t[schema.SAMPLE_ID] = [f"s{k:04d}" for k in range(len(t))]
    t.loc["img0", schema.BRIGHTNESS] = np.nan
    out = find_outliers(t, types=["dark"])
    assert set(out["index"]) == {f"img{k}" for k in range(1, 8)}
    assert out[schema.SAMPLE_ID].tolist() == [f"s{int(i[3:]):04d}" for i in out["index"]]
    empty = find_outliers(t.iloc[40:], types=["odd_size"])
    assert empty.empty and schema.SAMPLE_ID in empty.columns


def test_summary_numbers():
    t = planted_table()
    out = find_outliers(t)
    s = outlier_summary(t, out).set_index("type")
    error = ~t[schema.CORRECT].to_numpy()
    rows = np.array(list(PLANTED["dark"]))
    rest = np.setdiff1d(np.arange(len(t)), rows)
    e, re = int(error[rows].sum()), int(error[rest].sum())
    assert s.loc["dark", "n"] == 8 and s.loc["dark", "n_errors"] == e == 2
    assert s.loc["dark", "error_rate"] == pytest.approx(e / 8)
    assert s.loc["dark", "rest_n"] == len(rest)
    assert s.loc["dark", "rest_error_rate"] == pytest.approx(re / len(rest))
    z = 1.959963984540054
    p = e / 8
    centre = (p + z * z / 16) / (1 + z * z / 8)
    half = z / (1 + z * z / 8) * math.sqrt(p * (1 - p) / 8 + z * z / 256)
    assert s.loc["dark", "error_low"] == pytest.approx(centre - half)
    assert s.loc["dark", "error_high"] == pytest.approx(centre + half)
    # the slices' one-sided Fisher exact test, by the hypergeometric definition: P(X >= e)
    from scipy.stats import false_discovery_control, hypergeom

    n, big_e = len(t), e + re
    assert s.loc["dark", "p_value"] == pytest.approx(hypergeom.sf(e - 1, n, big_e, 8))
    # Benjamini-Hochberg over the types that have images
    tested = s[(s["n"] > 0) & (s["rest_n"] > 0)]
    np.testing.assert_allclose(
        tested["p_adj"], false_discovery_control(tested["p_value"], method="bh")
    )
    assert (s.loc[s["n"] == 0, "p_adj"].isna()).all()
    np.testing.assert_array_equal(tested["significant"], tested["p_adj"] < 0.05)


def test_summary_detects_an_error_prone_type():
    t = planted_table()
    t.loc[list(PLANTED["overexposed"]), schema.CORRECT] = False  # all 6 wrong
    s = outlier_summary(t, find_outliers(t)).set_index("type")
    assert s.loc["overexposed", "error_rate"] == 1.0
    assert s.loc["overexposed", "p_value"] < 1e-3 and bool(s.loc["overexposed", "significant"])
    assert s.loc["odd_size", "p_value"] > 0.05 and not bool(s.loc["odd_size", "significant"])
    assert outlier_summary(t, find_outliers(t), types=["blurry"])["type"].tolist() == ["blurry"]
