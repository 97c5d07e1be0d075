"""Tests for analysis.stats.slices: specs, apply/describe/JSON, the vocabulary, statistics, tables."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy.stats import false_discovery_control, fisher_exact
from sklearn.metrics import f1_score

from analysis import schema
from analysis.stats.intervals import wilson_interval
from analysis.stats.slices import (
    SLICE_COLUMNS,
    VALUE_COLUMNS,
    Predicate,
    SliceSpec,
    apply_slice,
    bh_adjust,
    compute_slices,
    describe,
    error_rate_by_value,
    fisher_worse_p,
    slice_partitions,
    spec_from_json,
    spec_to_json,
)

NAMES = ["cross", "star", "ring"]


def _rows(camera: str | None, label: int, pred: int, count: int) -> list[dict]:
    return [{"camera": camera, "label": label, "pred": pred} for _ in range(count)]


def known_table() -> pd.DataFrame:
    """105 rows with hand-counted errors per camera.

    camera a: 40 rows, 20 errors (12 cross -> star, 8 ring -> cross)
    camera b: 40 rows, 4 errors (star -> ring)
    camera c: 20 rows, 2 errors (cross -> ring)
    no camera: 5 rows, all correct
    """
    rows = (
        _rows("a", 0, 1, 12)
        + _rows("a", 2, 0, 8)
        + _rows("a", 1, 1, 10)
        + _rows("a", 2, 2, 10)
        + _rows("b", 1, 2, 4)
        + _rows("b", 0, 0, 12)
        + _rows("b", 1, 1, 12)
        + _rows("b", 2, 2, 12)
        + _rows("c", 0, 2, 2)
        + _rows("c", 0, 0, 6)
        + _rows("c", 1, 1, 6)
        + _rows("c", 2, 2, 6)
        + _rows(None, 0, 0, 5)
    )
    df = pd.DataFrame(rows)
    df[schema.CORRECT] = df[schema.LABEL] == df[schema.PRED]
    return df


def random_table(n: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "camera": rng.choice(["cam_a", "cam_b", "cam_c"], n).astype(object),
            "site": rng.integers(0, 3, n),
            "hour": rng.uniform(0, 24, n),
            schema.BRIGHTNESS: rng.beta(2, 2, n),
            schema.SHARPNESS: rng.lognormal(4, 1, n),
            schema.CLUSTER: rng.integers(-1, 4, n),
            schema.LABEL: rng.integers(0, 3, n),
        }
    )
    df.loc[::17, "camera"] = None
    df.loc[::23, schema.BRIGHTNESS] = np.nan
    wrong = rng.uniform(size=n) < 0.2
    df[schema.PRED] = np.where(wrong, (df[schema.LABEL] + 1) % 3, df[schema.LABEL])
    df[schema.CORRECT] = ~wrong
    return df


# ---------------------------------------------------------------- empty input


def test_compute_slices_empty_table_gives_empty_frame_with_columns() -> None:
    empty = pd.DataFrame({schema.LABEL: [], schema.PRED: [], schema.CORRECT: [], "camera": []})
    empty = empty.astype({schema.LABEL: int, schema.PRED: int, schema.CORRECT: bool})
    out = compute_slices(empty, metadata_columns=["camera"], property_columns=[], class_names=NAMES)
    assert list(out.columns) == SLICE_COLUMNS
    assert len(out) == 0
    assert out.attrs["n_tested"] == 0


def test_error_rate_by_value_empty_table() -> None:
    empty = pd.DataFrame({schema.CORRECT: pd.Series([], dtype=bool), "camera": []})
    out = error_rate_by_value(empty, "camera")
    assert list(out.columns) == VALUE_COLUMNS and len(out) == 0


def test_bh_adjust_empty() -> None:
    assert bh_adjust([]).shape == (0,)


# ---------------------------------------------------------------- predicates and specs


def test_predicate_normalises_values_and_ignores_name_in_equality() -> None:
    p = Predicate("camera", "in", ["b", "a", "b"])
    assert p.value == ("a", "b")
    q = Predicate("x", "<", np.float32(0.5), name="darkest 10%")
    assert type(q.value) is float
    assert q == Predicate("x", "<", 0.5)
    assert hash(q) == hash(Predicate("x", "<", 0.5))
    assert Predicate("n", "==", np.int64(3)).value == 3
    assert Predicate("x", "between", [1, 2.5]).value == (1, 2.5)


def test_slice_spec_is_order_insensitive_and_hashable() -> None:
    a = Predicate("camera", "==", "cam_c")
    b = Predicate("brightness", "<", 0.21)
    assert SliceSpec((a, b)) == SliceSpec((b, a))
    assert len({SliceSpec((a, b)), SliceSpec((b, a))}) == 1
    assert SliceSpec((a, b)).columns == ("brightness", "camera")
    assert SliceSpec((a,)).depth == 1
    assert SliceSpec(a) == SliceSpec((a,))


@pytest.mark.parametrize(
    "args,error,match",
    [
        (("x", "~=", 1), ValueError, "unknown predicate op '~='"),
        (("x", "between", [2, 1]), ValueError, "low < high"),
        (("x", "between", [1, 2, 3]), ValueError, r"pair \[low, high\]"),
        (("x", "between", 5), TypeError, r"a pair \[low, high\]"),
        (("x", "in", []), ValueError, "at least one value"),
        (("x", "in", "ab"), TypeError, "a list of values"),
        (("x", "<", "big"), TypeError, "must be a number"),
        (("x", "<", True), TypeError, "must be a number"),
        (("x", "==", float("nan")), ValueError, "must be finite"),
        (("x", "==", [1]), TypeError, "str, bool, int or float"),
        (("", "==", 1), TypeError, "non-empty str"),
    ],
)
def test_predicate_validation(args: tuple, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        Predicate(*args)


def test_predicate_name_must_be_str() -> None:
    with pytest.raises(TypeError, match="name must be a str"):
        Predicate("x", "<", 1, name=3)  # type: ignore[arg-type]


def test_slice_spec_rejects_non_predicates() -> None:
    with pytest.raises(TypeError, match="Predicate items"):
        SliceSpec(("camera", "==", "a"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tuple of Predicate"):
        SliceSpec(3)  # type: ignore[arg-type]


SPECS = [
    SliceSpec(),
    SliceSpec((Predicate("camera", "==", "cam_c"),)),
    SliceSpec(
        (
            Predicate("camera", "!=", "cam_c"),
            Predicate(schema.BRIGHTNESS, "<", 0.21, name="darkest 10%"),
            Predicate("site", "in", [3, 1]),
        )
    ),
    SliceSpec(
        (
            Predicate(schema.SHARPNESS, "between", (10, 55.5), name="20-40th percentile"),
            Predicate(schema.FILE_SIZE, ">=", 120000),
            Predicate("flag", "==", True),
            Predicate(schema.LABEL, "==", 2),
            Predicate("note", "==", 'quo"te & ü / ?'),
        )
    ),
]


@pytest.mark.parametrize("spec", SPECS)
def test_spec_json_round_trip(spec: SliceSpec) -> None:
    text = spec_to_json(spec)
    back = spec_from_json(text)
    assert back == spec
    assert [p.name for p in back.predicates] == [p.name for p in spec.predicates]
    assert [type(p.value) for p in back.predicates] == [type(p.value) for p in spec.predicates]
    assert text.isascii()


@pytest.mark.parametrize("spec", SPECS)
def test_spec_url_safe_round_trip(spec: SliceSpec) -> None:
    token = spec_to_json(spec, url_safe=True)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", token)
    back = spec_from_json(token)
    assert back == spec
    assert [p.name for p in back.predicates] == [p.name for p in spec.predicates]


def test_spec_json_is_compact() -> None:
    spec = SliceSpec((Predicate("camera", "==", "cam_c"),))
    assert spec_to_json(spec) == '[["camera","==","cam_c"]]'


@pytest.mark.parametrize(
    "text,error,match",
    [
        ("[[1,2]]", ValueError, r"\[column, op, value\]"),
        ('{"a":1}', ValueError, "neither JSON nor base64url"),
        ("[[", ValueError, "not valid JSON"),
        ('[["x","~","y"]]', ValueError, "unknown predicate op"),
        ("!!!", ValueError, "neither JSON nor base64url"),
        ("W10x", ValueError, "not a slice spec"),
        (3, TypeError, "must be a str"),
    ],
)
def test_spec_from_json_validation(text: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        spec_from_json(text)  # type: ignore[arg-type]


def test_spec_to_json_validation() -> None:
    with pytest.raises(TypeError, match="must be a SliceSpec"):
        spec_to_json([Predicate("x", "==", 1)])  # type: ignore[arg-type]


# ---------------------------------------------------------------- apply_slice


def nan_table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "camera": ["a", None, np.nan, "b", "a"],
            "x": [0.1, np.nan, 0.5, 0.9, 0.5],
            "s": pd.array(["a", pd.NA, "b", "a", "b"], dtype="string"),
            "f": pd.array([0.1, None, 0.5, 0.9, 0.2], dtype="Float64"),
            "c": pd.Categorical(["a", "b", None, "a", "b"]),
        }
    )


@pytest.mark.parametrize(
    "pred,expected",
    [
        (Predicate("camera", "==", "a"), [1, 0, 0, 0, 1]),
        (Predicate("camera", "!=", "a"), [0, 0, 0, 1, 0]),  # missing is never "not a"
        (Predicate("camera", "in", ["a", "b"]), [1, 0, 0, 1, 1]),
        (Predicate("x", "<", 0.5), [1, 0, 0, 0, 0]),
        (Predicate("x", ">=", 0.5), [0, 0, 1, 1, 1]),
        (Predicate("x", "between", [0.1, 0.9]), [1, 0, 1, 0, 1]),  # half-open: 0.9 out
        (Predicate("s", "==", "a"), [1, 0, 0, 1, 0]),
        (Predicate("s", "!=", "a"), [0, 0, 1, 0, 1]),
        (Predicate("f", "<", 0.5), [1, 0, 0, 0, 1]),
        (Predicate("c", "==", "b"), [0, 1, 0, 0, 1]),
        (Predicate("c", "!=", "b"), [1, 0, 0, 1, 0]),
        (Predicate("c", "==", "not a category"), [0, 0, 0, 0, 0]),
    ],
)
def test_apply_slice_handles_missing_values(pred: Predicate, expected: list[int]) -> None:
    mask = apply_slice(nan_table(), SliceSpec((pred,)))
    assert mask.dtype == bool
    assert mask.tolist() == [bool(v) for v in expected]


def test_apply_slice_conjunction_and_empty_spec() -> None:
    df = nan_table()
    assert apply_slice(df, SliceSpec()).tolist() == [True] * 5
    spec = SliceSpec((Predicate("camera", "==", "a"), Predicate("x", ">=", 0.5)))
    assert apply_slice(df, spec).tolist() == [False, False, False, False, True]
    assert apply_slice(df.iloc[:0], spec).shape == (0,)


def test_apply_slice_validation() -> None:
    df = nan_table()
    with pytest.raises(ValueError, match=r"column\(s\) \['nope'\]"):
        apply_slice(df, SliceSpec((Predicate("nope", "==", 1),)))
    with pytest.raises(TypeError, match="needs a numeric column"):
        apply_slice(df, SliceSpec((Predicate("camera", "<", 1),)))
    with pytest.raises(TypeError, match="pandas DataFrame"):
        apply_slice(df.to_dict(), SliceSpec())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a SliceSpec"):
        apply_slice(df, Predicate("camera", "==", "a"))  # type: ignore[arg-type]


# ---------------------------------------------------------------- describe


def test_describe_wording() -> None:
    spec = SliceSpec(
        (
            Predicate("camera", "==", "cam_c"),
            Predicate(schema.BRIGHTNESS, "<", 0.21, name="darkest 10%"),
        )
    )
    assert describe(spec) == "brightness in the darkest 10% (< 0.21) and camera is cam_c"
    assert describe(SliceSpec()) == "all samples"
    assert describe(SliceSpec((Predicate("camera", "!=", "cam_c"),))) == "camera is not cam_c"
    assert describe(SliceSpec((Predicate("camera", "in", ["b", "a"]),))) == "camera is one of a, b"
    assert describe(SliceSpec((Predicate("x", "between", (0.2, 0.4)),))) == "x in [0.2, 0.4)"
    assert (
        describe(SliceSpec((Predicate("x", "between", (0.2, 0.4), name="20-40th percentile"),)))
        == "x in the 20-40th percentile [0.2, 0.4)"
    )
    assert describe(SliceSpec((Predicate("x", ">=", 0.83),))) == "x >= 0.83"
    assert (
        describe(SliceSpec((Predicate(schema.FILE_SIZE, ">=", 123000, name="largest 10%"),)))
        == "file_size in the largest 10% (>= 123,000)"
    )


def test_describe_uses_class_names_for_label_and_pred() -> None:
    spec = SliceSpec((Predicate(schema.LABEL, "==", 0), Predicate(schema.PRED, "in", [1, 2])))
    assert describe(spec, NAMES) == "true class is cross and predicted class is one of star, ring"
    assert describe(spec) == "true class is 0 and predicted class is one of 1, 2"
    # other integer columns never borrow class names
    assert describe(SliceSpec((Predicate("site", "==", 1),)), NAMES) == "site is 1"


# ---------------------------------------------------------------- statistics


def test_bh_adjust_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        p = np.concatenate([rng.uniform(size=40), rng.uniform(0, 0.01, size=10)])
        p[::7] = p[0]  # ties
        np.testing.assert_allclose(bh_adjust(p), false_discovery_control(p), rtol=1e-12)


def test_bh_adjust_n_tests_counts_unlisted_hypotheses_as_one() -> None:
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 0.05, size=30)
    full = np.concatenate([p, np.ones(70)])
    np.testing.assert_allclose(bh_adjust(p, n_tests=100), false_discovery_control(full)[:30])


def test_bh_adjust_keeps_nan_untested() -> None:
    out = bh_adjust([0.01, np.nan, 0.04])
    assert math.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], false_discovery_control([0.01, 0.04]))


def test_bh_adjust_validation() -> None:
    with pytest.raises(ValueError, match="must be in"):
        bh_adjust([0.5, 1.5])
    with pytest.raises(ValueError, match="1-D"):
        bh_adjust([[0.5]])
    with pytest.raises(ValueError, match="n_tests must be >= the 2"):
        bh_adjust([0.1, 0.2], n_tests=1)
    with pytest.raises(TypeError, match="n_tests must be an int"):
        bh_adjust([0.1], n_tests=2.0)  # type: ignore[arg-type]


def test_fisher_worse_p_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    cases = []
    for total in (1, 7, 60, 2000, 100_000):
        for _ in range(40):
            big_e = int(rng.integers(0, total + 1))
            n = int(rng.integers(0, total + 1))
            lo, hi = max(0, n - (total - big_e)), min(n, big_e)
            cases.append((int(rng.integers(lo, hi + 1)), n, big_e, total))
    e, n, big_e, total = (np.array(c) for c in zip(*cases, strict=True))
    ours = fisher_worse_p(e, n, big_e, total)
    ref = [
        fisher_exact([[a, b - a], [c - a, d - b - c + a]], alternative="greater").pvalue
        for a, b, c, d in cases
    ]
    np.testing.assert_allclose(ours, ref, rtol=1e-8, atol=1e-300)


def test_fisher_worse_p_validation() -> None:
    with pytest.raises(ValueError, match="inconsistent counts"):
        fisher_worse_p(5, 4, 10, 20)


# ---------------------------------------------------------------- compute_slices


def test_compute_slices_known_answer() -> None:
    df = known_table()
    out = compute_slices(
        df, metadata_columns=["camera"], property_columns=[], class_names=NAMES, min_support=20
    )
    cam = out[out["column"] == "camera"].set_index("description")
    assert set(cam.index) == {"camera is a", "camera is b", "camera is c"}  # no "missing" slice
    a = cam.loc["camera is a"]
    assert (a["n"], a["errors"]) == (40, 20)
    assert a["share"] == pytest.approx(40 / 105)
    assert a["error_rate"] == pytest.approx(0.5)
    assert a["accuracy"] == pytest.approx(0.5)
    assert a["rest_error_rate"] == pytest.approx(6 / 65)
    assert a["gap"] == pytest.approx(0.5 - 6 / 65)
    low, high = wilson_interval(20, 40)
    assert (a["error_rate_low"], a["error_rate_high"]) == pytest.approx((low, high))
    ref_p = fisher_exact([[20, 20], [6, 59]], alternative="greater").pvalue
    assert a["p_value"] == pytest.approx(ref_p, rel=1e-9)
    assert a["top_confusion"] == "cross -> star (12)"
    rows = df[df["camera"] == "a"]
    ref_f1 = f1_score(rows[schema.LABEL], rows[schema.PRED], average="macro", zero_division=0)
    assert a["macro_f1"] == pytest.approx(ref_f1)
    assert bool(a["significant"])
    assert a["source"] == "metadata"
    assert spec_from_json(a["spec"]) == SliceSpec((Predicate("camera", "==", "a"),))
    # every slice's counts agree with apply_slice of its spec
    for _, row in out.iterrows():
        mask = apply_slice(df, spec_from_json(row["spec"]))
        assert mask.sum() == row["n"]
        assert (~df[schema.CORRECT][mask]).sum() == row["errors"]
    # BH over the input slices, and separately over those on the model's output (pred)
    for own in (True, False):
        family = out[out["model_output"] == own]
        np.testing.assert_allclose(family["p_adj"], false_discovery_control(family["p_value"]))
    assert (out["significant"] == (out["p_adj"] < 0.05)).all()
    assert out.attrs["n_tested"] == len(out)
    # sorted: significant first, then by gap
    sig = out["significant"].to_numpy()
    assert not np.any(~sig[:-1] & sig[1:])
    for flag in (True, False):
        gaps = out.loc[out["significant"] == flag, "gap"].to_numpy()
        assert np.all(np.diff(gaps) <= 1e-12)


def test_compute_slices_covers_every_source() -> None:
    df = random_table()
    out = compute_slices(
        df,
        metadata_columns=["camera", "site", "hour"],
        property_columns=[schema.BRIGHTNESS, schema.SHARPNESS],
        cluster_column=schema.CLUSTER,
        class_names=NAMES,
    )
    assert set(out["source"]) == {"metadata", "property", "label", "pred", "cluster"}
    descriptions = set(out["description"])
    assert "true class is cross" in descriptions and "predicted class is ring" in descriptions
    assert "cluster is -1" not in descriptions and "cluster is 2" in descriptions
    assert "site is 1" in descriptions  # numeric with few values: one slice per value
    tails = [d for d in descriptions if "darkest 10%" in d or "sharpest 10%" in d]
    assert len(tails) == 2
    assert not any("hour in the lowest 10%" in d for d in descriptions)  # no tails on metadata
    assert sum(d.startswith("hour ") for d in descriptions) == 5  # five quantile bins
    assert any(
        re.fullmatch(r"hour in the 20-40th percentile \[[\d.]+, [\d.]+\)", d) for d in descriptions
    )
    assert out["error_rate_low"].le(out["error_rate"]).all()
    assert out["error_rate_high"].ge(out["error_rate"]).all()


def test_compute_slices_respects_min_support() -> None:
    df = known_table()
    out = compute_slices(
        df, metadata_columns=["camera"], property_columns=[], class_names=NAMES, min_support=21
    )
    assert out["n"].min() >= 21
    assert "camera is c" not in set(out["description"])  # exactly 20 rows
    out20 = compute_slices(
        df, metadata_columns=["camera"], property_columns=[], class_names=NAMES, min_support=20
    )
    assert "camera is c" in set(out20["description"])
    assert out20.attrs["n_tested"] == out.attrs["n_tested"] + 1


def test_compute_slices_skips_a_slice_of_every_row() -> None:
    df = known_table().assign(width=224)
    out = compute_slices(
        df, metadata_columns=["width"], property_columns=[], class_names=NAMES, min_support=1
    )
    assert "width is 224" not in set(out["description"])


def test_a_slice_of_nearly_every_row_says_nothing() -> None:
    """The real-photo case: "width is 100" held 618 of 619 images. A slice needs min_support
    rows on both sides of its comparison and at most MAX_SHARE (90%) of the rows."""
    from analysis.stats.slices import MAX_SHARE, is_testable_size

    rng = np.random.default_rng(0)
    n = 619
    df = pd.DataFrame(
        {
            "width": np.where(np.arange(n) == 0, 3024, 100),
            "site": np.where(np.arange(n) < 580, "s1", "s2"),  # 94% / 6%
            schema.LABEL: rng.integers(0, 3, n),
        }
    )
    df[schema.PRED] = df[schema.LABEL]
    df.loc[df.index[::4], schema.PRED] = (df[schema.LABEL] + 1) % 3
    df[schema.CORRECT] = df[schema.LABEL] == df[schema.PRED]
    out = compute_slices(
        df, metadata_columns=["width", "site"], property_columns=[], class_names=NAMES
    )
    described = set(out["description"])
    assert "width is 100" not in described and "width is 3024" not in described
    assert "site is s1" not in described and "site is s2" in described  # 39 rows, rest 580
    assert (out["share"] <= MAX_SHARE).all()
    assert (len(df) - out["n"] >= 20).all()
    everything = compute_slices(
        df, metadata_columns=["site"], property_columns=[], class_names=NAMES, max_share=1.0
    )
    assert "site is s1" in set(everything["description"])  # the rule, not the data, drops it
    np.testing.assert_array_equal(
        is_testable_size([10, 20, 500, 581, 600], 619, min_support=20),
        [False, True, True, False, False],
    )


def test_null_inputs_stay_quiet_beside_model_output_slices_that_are_worse() -> None:
    """Errors independent of every input, but wrong predictions go mostly to one class: the
    slice 'predicted class is 0' is worse by construction, every time. It must not loosen the
    inputs' correction: in one Benjamini-Hochberg family its discoveries raised the threshold
    for the others, and an input slice was flagged in 9% of random null worlds. Input slices
    are flagged in at most alpha = 5% of 300 seeded null tables (binomial bound, 0.1% tail)."""
    from scipy.stats import binom

    n_sets = 300
    inputs_flagged = own_flagged = 0
    for seed in range(n_sets):
        rng = np.random.default_rng(seed)
        n = 1500
        df = pd.DataFrame(
            {
                "camera": rng.choice(["a", "b", "c"], n),
                "site": rng.choice(["s0", "s1", "s2", "s3"], n),
                "hour": rng.uniform(0, 24, n),
                schema.BRIGHTNESS: rng.beta(2, 2, n),
                schema.LABEL: rng.integers(0, 5, n),
            }
        )
        wrong = rng.random(n) < 0.15
        other = (df[schema.LABEL] + rng.integers(1, 5, n)) % 5
        sink = np.where(df[schema.LABEL] == 0, 1, 0)
        df[schema.PRED] = np.where(
            wrong, np.where(rng.random(n) < 0.7, sink, other), df[schema.LABEL]
        )
        df[schema.CORRECT] = df[schema.PRED] == df[schema.LABEL]
        out = compute_slices(
            df,
            metadata_columns=["camera", "site", "hour"],
            property_columns=[schema.BRIGHTNESS],
            class_names=NAMES + ["d", "e"],
        )
        sig = out[out["significant"]]
        inputs_flagged += bool((~sig["model_output"]).any())
        own_flagged += bool(sig["model_output"].any())
    assert inputs_flagged <= int(binom.ppf(1 - 1e-3, n_sets, 0.05)), inputs_flagged
    assert own_flagged >= 0.9 * n_sets


def test_slices_on_the_model_output_are_marked() -> None:
    df = random_table()
    out = compute_slices(
        df,
        metadata_columns=["camera"],
        property_columns=[schema.BRIGHTNESS],
        cluster_column=schema.CLUSTER,
        class_names=NAMES,
    )
    expected = out["source"].isin(["pred", "cluster"])
    np.testing.assert_array_equal(out["model_output"].to_numpy(), expected.to_numpy())
    assert out["model_output"].any() and not out["model_output"].all()


def test_partitions_agree_with_apply_slice() -> None:
    df = random_table(seed=7)
    parts = slice_partitions(
        df,
        metadata_columns=["camera", "site", "hour"],
        property_columns=[schema.BRIGHTNESS, schema.SHARPNESS],
        cluster_column=schema.CLUSTER,
    )
    assert len(parts) == 3 + 2 * 2 + 3
    for part in parts:
        assert part.codes.shape == (len(df),)
        covered = np.zeros(len(df), dtype=bool)
        for k, pred in enumerate(part.predicates):
            mask = apply_slice(df, SliceSpec((pred,)))
            np.testing.assert_array_equal(mask, part.codes == k, err_msg=str(pred))
            assert not (covered & mask).any()  # a partition's predicates are disjoint
            covered |= mask


def test_bin_edges_are_rounded_and_labelled() -> None:
    df = random_table(seed=8)
    parts = slice_partitions(df, metadata_columns=[], property_columns=[schema.BRIGHTNESS])
    bins, tails = parts[0], parts[1]
    assert [p.op for p in bins.predicates] == ["<", "between", "between", "between", ">="]
    assert bins.predicates[0].name == "darkest 20%"
    assert bins.predicates[-1].name == "brightest 20%"
    assert [p.name for p in tails.predicates] == ["darkest 10%", "brightest 10%"]
    for p in bins.predicates + tails.predicates:
        for v in np.atleast_1d(p.value):
            assert float(f"{v:.3g}") == v  # three significant digits: describe shows the edge


def test_compute_slices_validation() -> None:
    df = random_table()
    good = dict(
        metadata_columns=["camera"], property_columns=[schema.BRIGHTNESS], class_names=NAMES
    )
    cases = [
        (dict(samples=df.to_dict()), TypeError, "pandas DataFrame"),
        (
            dict(samples=df.drop(columns=[schema.CORRECT])),
            ValueError,
            r"missing column\(s\) \['correct'\]",
        ),
        (
            dict(metadata_columns=["nope"]),
            ValueError,
            r"metadata_columns names column\(s\) \['nope'\]",
        ),
        (dict(metadata_columns="camera"), TypeError, "must be a list of column names"),
        (
            dict(metadata_columns=[], property_columns=["camera"]),
            TypeError,
            "property column 'camera' must be numeric",
        ),
        (dict(metadata_columns=["camera", "camera"]), ValueError, "named more than once"),
        (dict(metadata_columns=[schema.LABEL]), ValueError, "sliced automatically"),
        (dict(cluster_column="nope"), ValueError, "cluster_column 'nope'"),
        (dict(class_names=["a", "b"]), ValueError, "class_names has only 2 names"),
        (dict(min_support=0), ValueError, "min_support must be >= 1"),
        (dict(min_support=2.5), TypeError, "min_support must be an int"),
        (dict(n_bins=1), ValueError, "n_bins must be >= 2"),
        (dict(alpha=1.5), ValueError, r"alpha must be in \(0, 1\)"),
        (dict(alpha="0.05"), TypeError, "alpha must be a float"),
        (
            dict(samples=df.assign(correct=np.where(df.index == 3, np.nan, 1.0))),
            ValueError,
            "must not have missing",
        ),
        (dict(samples=df.assign(correct="yes")), TypeError, "must be bool"),
        (dict(samples=df.assign(label=df[schema.LABEL] - 1)), ValueError, "integer class ids >= 0"),
        (dict(samples=df.assign(label="x")), TypeError, "must hold integer class ids"),
        (
            dict(samples=df.assign(when=pd.Timestamp("2024-01-01")), metadata_columns=["when"]),
            TypeError,
            "convert it to numbers",
        ),
    ]
    for override, error, match in cases:
        kwargs = {**good, **override}
        samples = kwargs.pop("samples", df)
        with pytest.raises(error, match=match):
            compute_slices(samples, **kwargs)


# ---------------------------------------------------------------- error_rate_by_value


def test_error_rate_by_value_categorical_with_missing_row() -> None:
    out = error_rate_by_value(known_table(), "camera")
    assert out["value"].tolist() == ["a", "b", "c", "(missing)"]
    assert out["n"].tolist() == [40, 40, 20, 5]
    assert out["errors"].tolist() == [20, 4, 2, 0]
    assert pd.isna(out["spec"].iloc[-1])
    assert spec_from_json(out["spec"].iloc[0]) == SliceSpec((Predicate("camera", "==", "a"),))
    low, high = wilson_interval(np.array([20, 4, 2, 0]), np.array([40, 40, 20, 5]))
    np.testing.assert_allclose(out["error_rate_low"], low)
    np.testing.assert_allclose(out["error_rate_high"], high)


def test_error_rate_by_value_numeric_bins_and_classes() -> None:
    df = random_table(seed=9)
    out = error_rate_by_value(df, schema.BRIGHTNESS, n_bins=4)
    assert len(out) == 5  # four bins and the missing row
    assert out["value"].iloc[0].startswith("darkest 25% (< ")
    assert out["n"].sum() == len(df)
    classes = error_rate_by_value(df, schema.LABEL, class_names=NAMES)
    assert classes["value"].tolist() == NAMES
    clusters = error_rate_by_value(df, schema.CLUSTER)
    assert "-1" not in clusters["value"].tolist()


def test_error_rate_by_value_validation() -> None:
    df = known_table()
    with pytest.raises(ValueError, match="no column 'nope'"):
        error_rate_by_value(df, "nope")
    with pytest.raises(ValueError, match="n_bins must be >= 2"):
        error_rate_by_value(df, "camera", n_bins=1)
    with pytest.raises(TypeError, match="column must be a column name"):
        error_rate_by_value(df, 3)  # type: ignore[arg-type]


@pytest.mark.parametrize("dense", [True, False])
def test_the_class_slices_quality_at_once_equals_sklearn_per_slice(monkeypatch, dense):
    """Macro F1 and top confusion of many slices at once (a slice per class, the dense and the
    sparse counting) equal scikit-learn's macro F1 and the most frequent (true, predicted) pair
    of each slice's own rows, ties to the lower pair."""
    from analysis.stats import slices as sl

    if not dense:
        monkeypatch.setattr(sl, "_DENSE_CELLS", 0)
    rng = np.random.default_rng(7)
    n, c = 3_000, 60
    label = rng.integers(0, c, n)
    pred = np.where(rng.random(n) < 0.6, label, rng.integers(0, c, n))
    names = tuple(f"c{i}" for i in range(c))
    inputs = sl._Inputs(label, pred, label != pred, c, names)
    codes = np.where(rng.random(n) < 0.1, -1, label)  # a part per class; some rows in none
    got = sl._partition_quality(codes, c + 2, inputs)  # two parts with no rows at all
    assert len(got) == c + 2 and math.isnan(got[-1][0]) and got[-1][1] is None
    for j in range(c):
        rows = codes == j
        want = f1_score(label[rows], pred[rows], average="macro", zero_division=0)
        assert got[j][0] == pytest.approx(want, abs=1e-12), j
        wrong = rows & (label != pred)
        if not wrong.any():
            assert got[j][1] is None
            continue
        pairs, counts = np.unique(label[wrong] * c + pred[wrong], return_counts=True)
        t, p = divmod(int(pairs[np.argmax(counts)]), c)
        assert got[j][1] == f"c{t} -> c{p} ({counts.max()})", j
