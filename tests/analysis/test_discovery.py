"""Tests for analysis.stats.discovery: planted slices, the null, honest counting, redundancy."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.stats.discovery import DISCOVERY_COLUMNS, discover_slices
from analysis.stats.slices import (
    Predicate,
    SliceSpec,
    apply_slice,
    bh_adjust,
    compute_slices,
    fisher_worse_p,
    slice_partitions,
    spec_from_json,
)

CLASSES = ["ant", "bee", "cat", "dog"]


def with_predictions(df: pd.DataFrame, wrong: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Add label (uniform), pred (a uniformly drawn other class where wrong) and correct."""
    k = len(CLASSES)
    label = rng.integers(0, k, len(df))
    df[schema.LABEL] = label
    df[schema.PRED] = np.where(wrong, (label + rng.integers(1, k, len(df))) % k, label)
    df[schema.CORRECT] = ~wrong
    return df


def planted_table(seed: int, n: int = 2000) -> pd.DataFrame:
    """Errors 40% inside a == x and b == y, 10% elsewhere; c and h are noise."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.choice(["w", "x", "y", "z"], n),
            "b": rng.choice(["p", "q", "y", "s"], n),
            "c": rng.choice(["u", "v", "t"], n),
            "h": rng.uniform(0, 24, n),
            schema.BRIGHTNESS: rng.beta(2, 2, n),
        }
    )
    inside = (df["a"] == "x") & (df["b"] == "y")
    wrong = rng.uniform(size=n) < np.where(inside, 0.4, 0.1)
    return with_predictions(df, wrong, rng)


PLANTED_KW = dict(
    metadata_columns=["a", "b", "c", "h"], property_columns=[schema.BRIGHTNESS], class_names=CLASSES
)


def null_table(seed: int, n: int = 2000) -> pd.DataFrame:
    """Six random columns (three categorical, three numeric); errors iid at 15%."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "camera": rng.choice(["a", "b", "c"], n),
            "site": rng.choice(["s0", "s1", "s2", "s3"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "annotator": rng.choice([f"x{i}" for i in range(6)], n),
            "hour": rng.uniform(0, 24, n),
            schema.BRIGHTNESS: rng.beta(2, 2, n),
            schema.SHARPNESS: rng.lognormal(5, 1, n).round(),
        }
    )
    return with_predictions(df, rng.uniform(size=n) < 0.15, rng)


NULL_KW = dict(
    metadata_columns=["camera", "site", "annotator", "hour"],
    property_columns=[schema.BRIGHTNESS, schema.SHARPNESS],
    class_names=CLASSES,
)


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


# ---------------------------------------------------------------- empty and trivial input


def test_empty_table_gives_empty_frame_with_columns() -> None:
    empty = planted_table(0).iloc[:0]
    out = discover_slices(empty, **PLANTED_KW)
    assert list(out.columns) == DISCOVERY_COLUMNS
    assert len(out) == 0
    assert out.attrs["n_tested"] == 0


@pytest.mark.parametrize("correct", [True, False])
def test_no_errors_or_all_errors_gives_nothing(correct: bool) -> None:
    df = planted_table(0)
    df[schema.PRED] = df[schema.LABEL] if correct else (df[schema.LABEL] + 1) % 4
    df[schema.CORRECT] = correct
    out = discover_slices(df, **PLANTED_KW)
    assert len(out) == 0 and list(out.columns) == DISCOVERY_COLUMNS


# ---------------------------------------------------------------- known answers


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_slice_is_the_top_discovery(seed: int) -> None:
    df = planted_table(seed)
    out = discover_slices(df, **PLANTED_KW)
    assert len(out) >= 1
    top = out.iloc[0]
    expected = SliceSpec((Predicate("a", "==", "x"), Predicate("b", "==", "y")))
    assert spec_from_json(top["spec"]) == expected
    assert top["description"] == "a is x and b is y"
    assert top["depth"] == 2
    assert top["source"] == "metadata"
    assert top["column"] == "a & b"
    assert bool(top["significant"])
    assert top["error_rate_low"] > 0.1  # clearly above the 10% elsewhere
    # ranked by excess errors (the default): errors beyond the rest's rate, most first
    excess = out["errors"] - out["n"] * out["rest_error_rate"]
    assert (excess.diff().dropna() <= 1e-9).all(), excess.tolist()
    by_score = discover_slices(df, **PLANTED_KW, rank_by="sliceline")
    assert (by_score["score"].diff().dropna() <= 1e-12).all()  # SliceLine: best score first
    for _, row in out.iterrows():  # every row is what its spec selects
        mask = apply_slice(df, spec_from_json(row["spec"]))
        assert mask.sum() == row["n"]
        assert (~df[schema.CORRECT][mask]).sum() == row["errors"]
        assert row["p_adj"] < 0.05


def test_counts_every_size_feasible_candidate_and_bh_over_all_of_them() -> None:
    """Brute force: enumerate the lattice with apply-style masks and redo the correction."""
    df = planted_table(3, n=1200)
    kw = dict(
        metadata_columns=["a", "b", "c"],
        property_columns=[],
        class_names=CLASSES,
        model_outputs=True,
    )
    out = discover_slices(df, **kw, min_support=15)
    parts = slice_partitions(df, metadata_columns=["a", "b", "c"], property_columns=[])
    error = ~df[schema.CORRECT].to_numpy()
    total, total_errors = len(df), int(error.sum())

    def group(p):  # true and predicted class are never combined
        return "class" if p.column in (schema.LABEL, schema.PRED) else p.column

    singles = [
        (p.predicates[k], group(p), p.codes == k) for p in parts for k in range(len(p.predicates))
    ]
    specs, n, e = [], [], []
    for depth in (1, 2, 3):
        for combo in itertools.combinations(singles, depth):
            if len({g for _, g, _ in combo}) < depth:
                continue
            mask = np.logical_and.reduce([m for _, _, m in combo])
            size = int(mask.sum())
            parents = [
                np.logical_and.reduce([m for _, _, m in sub]) if sub else np.ones(total, bool)
                for sub in itertools.combinations(combo, depth - 1)
            ]
            if size < 15 or any(size >= int(p.sum()) for p in parents):
                continue
            if total - size < 15 or size > 0.9 * total:  # no slice of (nearly) every row
                continue
            specs.append(SliceSpec(tuple(p for p, _, _ in combo)))
            n.append(size)
            e.append(int(error[mask].sum()))
    n, e = np.array(n), np.array(e)
    assert out.attrs["n_tested"] == len(specs)
    p = fisher_worse_p(e, n, total_errors, total)
    p[e <= n * total_errors / total] = 1.0  # not worse than average: counted with p = 1
    p_adj = dict(zip(specs, bh_adjust(p), strict=True))
    assert out.attrs["n_significant"] == sum(v < 0.05 for v in p_adj.values())
    assert len(out) >= 1
    for _, row in out.iterrows():
        assert row["p_adj"] == pytest.approx(p_adj[spec_from_json(row["spec"])], rel=1e-9)


#: Null data sets per test: under the complete null, Benjamini-Hochberg at alpha promises that
#: anything is flagged in at most alpha of them (Simes; tests positively dependent).
N_NULL = 400
ALPHA = 0.05


def _binomial_bound(n: int, p: float, tail: float = 1e-3) -> int:
    """The count of n Bernoulli(p) trials exceeded with probability at most ``tail``."""
    from scipy.stats import binom

    return int(binom.ppf(1 - tail, n, p))


def test_null_data_gives_no_significant_slice() -> None:
    """What the README promises: where errors depend on no column, a run flags any slice at all
    in at most alpha = 5% of data sets, for the single-slice table and for discovery alike.

    Tested on N_NULL seeded null data sets against the binomial bound: the count must not
    exceed what a true rate of exactly 5% exceeds with probability 0.1%, so the test fails when
    the rate is clearly above the promise (at 10% it fails in about 9 of 10 seed blocks), not on
    an unlucky block of seeds. The long version (1,000 random null worlds of bench/worlds.py,
    with Clopper-Pearson intervals) is in bench/bench_discovery.py. Without the correction most
    data sets flag something (checked, so the test has teeth).
    """
    discovered = single = uncorrected = 0
    for seed in range(N_NULL):
        df = null_table(seed)
        singles = compute_slices(df, **NULL_KW)
        found = discover_slices(df, **NULL_KW)
        discovered += len(found) > 0
        single += bool(singles["significant"].any())
        uncorrected += bool((singles["p_value"] < ALPHA).any())
        assert singles.attrs["n_tested"] >= 30 and found.attrs["n_tested"] >= 1000
    bound = _binomial_bound(N_NULL, ALPHA)
    print(f"null: discovery {discovered}, single {single}, uncorrected {uncorrected} of {N_NULL}")
    assert discovered <= bound, (discovered, bound)
    assert single <= bound, (single, bound)
    assert uncorrected > 2 * bound


def test_min_support_is_respected() -> None:
    df = planted_table(0)
    out = discover_slices(df, **PLANTED_KW, min_support=60)
    assert (out["n"] >= 60).all()
    inside = int(((df["a"] == "x") & (df["b"] == "y")).sum())
    out = discover_slices(df, **PLANTED_KW, min_support=inside + 1)
    assert (out["n"] > inside).all()
    assert "a is x and b is y" not in set(out["description"])


def test_true_and_predicted_class_are_never_combined() -> None:
    rng = np.random.default_rng(11)
    n = 3000
    df = pd.DataFrame({"camera": rng.choice(["a", "b"], n)})
    label = rng.integers(0, 4, n)
    confused = (label == 0) & (rng.uniform(size=n) < 0.3)  # ant -> bee only
    df[schema.LABEL] = label
    df[schema.PRED] = np.where(confused, 1, label)
    df[schema.CORRECT] = ~confused
    out = discover_slices(df, metadata_columns=["camera"], property_columns=[], class_names=CLASSES)
    assert "true class is ant" in set(out["description"])
    for spec in map(spec_from_json, out["spec"]):
        assert not {schema.LABEL, schema.PRED} <= set(spec.columns)


def test_redundant_slices_are_removed() -> None:
    df = planted_table(4)
    rng = np.random.default_rng(5)
    df["b2"] = df["b"].where(rng.uniform(size=len(df)) > 0.03, "p")  # a 97% copy of b
    out = discover_slices(
        df, metadata_columns=["a", "b", "b2", "c"], property_columns=[], class_names=CLASSES
    )
    masks = [apply_slice(df, spec_from_json(s)) for s in out["spec"]]
    for i, j in itertools.combinations(range(len(masks)), 2):
        assert jaccard(masks[i], masks[j]) < 0.9
    near_copies = {"a is x and b is y", "a is x and b2 is y"}
    assert len(near_copies & set(out["description"])) == 1
    # every conjunction is worse than each of its parents
    for _, row in out[out["depth"] >= 2].iterrows():
        spec = spec_from_json(row["spec"])
        for drop in spec.predicates:
            parent = SliceSpec(tuple(p for p in spec.predicates if p != drop))
            mask = apply_slice(df, parent)
            assert row["error_rate"] > (~df[schema.CORRECT][mask]).mean()


def test_a_conjunction_no_worse_than_its_parent_is_not_reported() -> None:
    rng = np.random.default_rng(6)
    n = 4000
    df = pd.DataFrame({"a": rng.choice(list("wxyz"), n), "c": rng.choice(list("uvt"), n)})
    wrong = rng.uniform(size=n) < np.where(df["a"] == "x", 0.4, 0.1)
    df = with_predictions(df, wrong, rng)
    out = discover_slices(df, metadata_columns=["a", "c"], property_columns=[], class_names=CLASSES)
    assert out.iloc[0]["description"] == "a is x"
    assert not any("a is x and" in d or "and a is x" in d for d in out["description"])


def _camera_with_a_property_piece(piece_rate: float, rest_rate: float, seed: int = 11):
    """A camera 'c' of 1/3 of the rows; within it a property-defined piece (noise >= 0.5, 60% of
    the camera's rows, a few elsewhere) with error rate piece_rate, the rest of the camera at
    rest_rate, everything outside the camera at 10%."""
    rng = np.random.default_rng(seed)
    n = 6000
    cam = rng.choice(["a", "b", "c"], n)
    in_c = cam == "c"
    noise = np.where(in_c, rng.uniform(0.1, 0.933, n), rng.uniform(0.0, 0.52, n))
    piece = noise >= 0.5
    rate = np.where(in_c & piece, piece_rate, np.where(in_c, rest_rate, 0.1))
    df = pd.DataFrame({"camera": cam, schema.SHARPNESS: noise})
    return with_predictions(df, rng.uniform(size=n) < rate, rng), in_c


def _top_masks(df: pd.DataFrame, k: int = 3) -> list[np.ndarray]:
    out = discover_slices(
        df, metadata_columns=["camera"], property_columns=[schema.SHARPNESS], class_names=CLASSES
    )
    return [apply_slice(df, spec_from_json(s)) for s in out["spec"].iloc[:k]], out


def test_a_worse_piece_does_not_replace_a_slice_whose_rest_is_still_worse() -> None:
    """The camera is bad throughout (its non-piece rows at 16% against 10% outside), the piece
    worse: the camera stays reported; a piece that only covers part of it must not hide it. (The
    rest is below the overall rate, which the camera itself inflates: the wrong baseline.)"""
    df, in_c = _camera_with_a_property_piece(piece_rate=0.35, rest_rate=0.16)
    masks, out = _top_masks(df)
    assert "camera is c" in set(out["description"].iloc[:3]), out["description"].tolist()
    assert any(jaccard(m, in_c) > 0.95 for m in masks)


def test_a_piece_that_explains_its_slice_replaces_it() -> None:
    """All of the camera's excess errors sit in the piece (its other rows at the outside 10%):
    the piece is the finding and the camera, only worse because it contains the piece, is not."""
    df, in_c = _camera_with_a_property_piece(piece_rate=0.4, rest_rate=0.1)
    masks, out = _top_masks(df, k=1)
    piece = in_c & (df[schema.SHARPNESS] >= 0.5).to_numpy()
    assert jaccard(masks[0], piece) > 0.9, out["description"].tolist()
    assert "camera is c" not in set(out["description"])


def test_max_depth_and_top_k() -> None:
    df = planted_table(0)
    out = discover_slices(df, **PLANTED_KW, max_depth=1)
    assert len(out) >= 1 and (out["depth"] == 1).all()
    assert len(discover_slices(df, **PLANTED_KW, top_k=1)) == 1


@pytest.mark.parametrize(
    "override,error,match",
    [
        (dict(max_depth=0), ValueError, "max_depth must be between 1 and 3"),
        (dict(max_depth=4), ValueError, "max_depth must be between 1 and 3"),
        (dict(max_depth=2.0), TypeError, "max_depth must be an int"),
        (dict(top_k=0), ValueError, "top_k must be >= 1"),
        (dict(error_weight=0.0), ValueError, r"error_weight must be in \(0, 1\]"),
        (dict(error_weight="high"), TypeError, "error_weight must be a float"),
        (dict(alpha=0.0), ValueError, r"alpha must be in \(0, 1\)"),
        (dict(min_support=0), ValueError, "min_support must be >= 1"),
        (dict(metadata_columns=["nope"]), ValueError, r"names column\(s\) \['nope'\]"),
    ],
)
def test_validation(override: dict, error: type, match: str) -> None:
    kwargs = {**PLANTED_KW, **override}
    with pytest.raises(error, match=match):
        discover_slices(planted_table(0).iloc[:50], **kwargs)


def test_not_a_dataframe() -> None:
    with pytest.raises(TypeError, match="pandas DataFrame"):
        discover_slices({}, **PLANTED_KW)  # type: ignore[arg-type]
