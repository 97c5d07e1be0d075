"""Tests for analysis.data_issues.duplicates: exact / near duplicates, leakage, perceptual hashes."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from analysis.data_issues.duplicates import (
    PAIR_COLUMNS,
    LeakageImpact,
    confirm_pairs,
    dhash,
    exact_duplicate_groups,
    exact_duplicates,
    find_duplicates,
    find_leakage,
    hamming_distance,
    leakage_impact,
    near_duplicates,
    partner_columns,
    perceptual_distance,
    phash,
)


def pair_set(df: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(df["i"].tolist(), df["j"].tolist(), strict=True))


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)


def brute_force(q, r=None, *, threshold, top_k):
    """All-pairs reference: each query's top_k (similarity desc, then lower index) >= threshold."""
    same = r is None
    qn = unit(q)
    rn = qn if same else unit(r)
    s = qn @ rn.T
    out = set()
    for i in range(len(q)):
        cands = [(-s[i, j], j) for j in range(len(rn)) if not (same and j == i)]
        cands = [(ns, j) for ns, j in sorted(cands) if -ns >= threshold][:top_k]
        for _, j in cands:
            out.add((min(i, j), max(i, j)) if same else (i, j))
    return out


def planted(seed=0, n=600, d=64, n_copies=25):
    """Random embeddings (pairwise cosine ~ N(0, 1/d)) with planted near-copies (cosine > 0.98)
    and planted decoys at cosine ~0.85 that must NOT be reported at the 0.95 default."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    src = rng.choice(n // 2, size=n_copies, replace=False)
    dst = rng.choice(np.arange(n // 2, n), size=n_copies, replace=False)
    for a, b in zip(src, dst, strict=True):
        x[b] = x[a] + 0.1 * rng.standard_normal(d)  # cosine ~ 0.995
    decoy_src = rng.choice(np.setdiff1d(np.arange(n // 2), src), size=10, replace=False)
    decoy_dst = rng.choice(np.setdiff1d(np.arange(n // 2, n), dst), size=10, replace=False)
    for a, b in zip(decoy_src, decoy_dst, strict=True):
        x[b] = x[a] + 0.6 * rng.standard_normal(d)  # cosine ~ 0.85
    truth = {(min(a, b), max(a, b)) for a, b in zip(src, dst, strict=True)}
    return x.astype(np.float32), truth


# ----------------------------------------------------------------------------- empty / invalid


def test_empty_inputs_give_empty_tables():
    for df in (
        near_duplicates(np.zeros((0, 8), np.float32)),
        near_duplicates(np.ones((1, 8), np.float32)),
        find_leakage(np.zeros((0, 8)), np.ones((5, 8))),
        find_leakage(np.ones((5, 8)), np.zeros((0, 8))),
        exact_duplicates([]),
        exact_duplicates([], reference_hashes=[]),
        find_duplicates(),
    ):
        assert list(df.columns) == PAIR_COLUMNS
        assert len(df) == 0
    assert exact_duplicate_groups([]) == []


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"embeddings": np.array([["a"]])},
            TypeError,
            r"embeddings must be a real array \[N, D\], got dtype <U1",
        ),
        ({"embeddings": np.ones(4)}, ValueError, r"must be 2-D \[N, D\], got shape \(4,\)"),
        ({"embeddings": np.ones((3, 0))}, ValueError, "at least one feature column"),
        ({"embeddings": np.array([[1.0, np.nan]])}, ValueError, "must be finite"),
        ({"threshold": 1.5}, ValueError, r"threshold must be a cosine similarity in \[-1, 1\]"),
        ({"threshold": "0.9"}, TypeError, "threshold must be a float"),
        ({"top_k": 0}, ValueError, "top_k must be >= 1, got 0"),
        ({"top_k": 2.5}, TypeError, "top_k must be a positive int"),
        ({"block_size": 0}, ValueError, "block_size must be >= 1"),
    ],
)
def test_near_duplicates_validation(kwargs, exc, match):
    args = {"embeddings": np.ones((3, 2), np.float32)} | kwargs
    with pytest.raises(exc, match=match):
        near_duplicates(args.pop("embeddings"), **args)


def test_leakage_validation():
    with pytest.raises(ValueError, match="embeddings have 4 features but reference_embeddings"):
        find_leakage(np.ones((2, 4)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="reference_embeddings must be 2-D"):
        find_leakage(np.ones((2, 4)), np.ones(4))
    with pytest.raises(ValueError, match="reference_embeddings needs embeddings"):
        find_duplicates(reference_embeddings=np.ones((2, 4)))
    with pytest.raises(ValueError, match="reference_hashes needs hashes"):
        find_duplicates(reference_hashes=["a"])


def test_hash_validation():
    with pytest.raises(TypeError, match="hashes must be a sequence of strings, got str"):
        exact_duplicates("abc")
    with pytest.raises(TypeError, match=r"hashes\[1\] must be a string \(or None\), got int"):
        exact_duplicate_groups(["a", 3])
    with pytest.raises(TypeError, match=r"reference_hashes\[0\] must be a string"):
        exact_duplicates(["a"], reference_hashes=[1.5])


# ----------------------------------------------------------------------------- exact


def test_exact_duplicate_groups_and_pairs():
    hashes = ["h1", "h2", "h1", None, "h1", "h3", float("nan"), "h2", ""]
    groups = exact_duplicate_groups(hashes)
    assert [g.tolist() for g in groups] == [[0, 2, 4], [1, 7]]
    df = exact_duplicates(hashes, reference_hashes=["h3", "zz", "h3", "h2"])
    within = df[df["scope"] == "within"]
    leak = df[df["scope"] == "leak"]
    assert pair_set(within) == {(0, 2), (0, 4), (1, 7)}  # a star per group
    assert pair_set(leak) == {(5, 0), (1, 3), (7, 3)}  # first reference copy
    assert (df["kind"] == "exact").all() and (df["similarity"] == 1.0).all()


# ----------------------------------------------------------------------------- near


def test_planted_near_copies_found_with_precision_and_recall_one():
    x, truth = planted()
    df = near_duplicates(x)
    assert pair_set(df) == truth
    assert (df["kind"] == "near").all() and (df["scope"] == "within").all()
    assert (df["i"] < df["j"]).all()
    assert df["similarity"].is_monotonic_decreasing and (df["similarity"] >= 0.95).all()
    # the decoys (cosine ~0.85) appear once the threshold is low enough
    assert len(near_duplicates(x, threshold=0.7)) == len(truth) + 10


def test_planted_leaks_found_with_precision_and_recall_one():
    rng = np.random.default_rng(1)
    ev = rng.standard_normal((300, 48)).astype(np.float32)
    ref = rng.standard_normal((500, 48)).astype(np.float32)
    leaked = rng.choice(300, size=15, replace=False)
    where = rng.choice(500, size=15, replace=False)
    ref[where] = 3.0 * ev[leaked] + 0.05 * rng.standard_normal((15, 48))  # scale does not matter
    df = find_leakage(ev.astype(np.float16), ref.astype(np.float16))
    assert pair_set(df) == set(zip(leaked.tolist(), where.tolist(), strict=True))
    assert (df["scope"] == "leak").all()


@pytest.mark.parametrize("block_size", [1, 7, 64, 5000])
def test_block_size_does_not_change_the_result(block_size):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((130, 6)).astype(np.float32)  # low-d: many pairs above 0.5
    r = rng.standard_normal((90, 6)).astype(np.float32)
    kw = {"threshold": 0.5, "top_k": 3}
    within = near_duplicates(x, block_size=block_size, **kw)
    assert pair_set(within) == brute_force(x, threshold=0.5, top_k=3)
    leak = find_leakage(x, r, block_size=block_size, **kw)
    assert pair_set(leak) == brute_force(x, r, threshold=0.5, top_k=3)
    assert len(within) > 130 and len(leak) > 100  # the top_k cap is what limits them
    s = unit(x) @ unit(x).T
    np.testing.assert_allclose(within["similarity"], s[within["i"], within["j"]], atol=1e-5)
    # and it is identical to the default block size
    pd.testing.assert_frame_equal(
        within[["i", "j"]], near_duplicates(x, **kw)[["i", "j"]], check_dtype=True
    )


def test_ties_go_to_the_lower_index_whatever_the_blocks():
    # 12 identical one-hot rows: every similarity is exactly 1.0, a tie everywhere
    x = np.zeros((15, 4), np.float32)
    x[:12, 0] = 1.0
    x[12:, 1:] = np.eye(3)
    expected = brute_force(x, threshold=0.95, top_k=2)
    for bs in (1, 2, 5, 100):
        assert pair_set(near_duplicates(x, top_k=2, block_size=bs)) == expected
    # each row keeps its 2 lowest-index twins; pairs are the union over rows
    assert expected == {(0, 1), (0, 2), (1, 2)} | {(a, b) for b in range(3, 12) for a in (0, 1)}


def test_zero_vectors_are_similar_to_nothing():
    x = np.zeros((4, 3), np.float32)
    x[2] = [1, 0, 0]
    assert near_duplicates(x, threshold=0.0).empty is False  # sim 0 >= 0 with everything
    assert near_duplicates(x, threshold=0.01).empty


def test_find_duplicates_prefers_exact_over_near():
    x, truth = planted(n=200, n_copies=5)
    a, b = sorted(truth)[0]
    hashes = [f"h{k}" for k in range(200)]
    hashes[b] = hashes[a]
    df = find_duplicates(x, hashes=hashes)
    assert pair_set(df) == truth
    assert df.loc[(df["i"] == a) & (df["j"] == b), "kind"].tolist() == ["exact"]
    assert (df["kind"] == "near").sum() == len(truth) - 1


def test_partner_columns_pick_the_most_similar_partner():
    pairs = pd.DataFrame(
        {
            "i": [0, 0, 1, 2, 2],
            "j": [1, 3, 3, 0, 1],
            "similarity": [0.96, 0.99, 0.97, 0.98, 0.98],
            "kind": ["near", "exact", "near", "near", "near"],
            "scope": ["within", "within", "within", "leak", "leak"],
        }
    )
    cols = partner_columns(pairs, ["a", "b", "c", "d", "e"], ["r0", "r1"])

    def values(col):  # missing is NaN or None depending on the pandas string dtype
        return [None if pd.isna(v) else v for v in cols[col]]

    assert values("duplicate_of") == ["d", "d", None, "a", None]
    assert values("leak_of") == [None, None, "r0", None, None]  # tie: lower index
    np.testing.assert_allclose(cols["leak_similarity"], [np.nan, np.nan, 0.98, np.nan, np.nan])
    empty = partner_columns(exact_duplicates([]), ["a", "b"])
    assert empty["duplicate_of"].isna().all() and empty["leak_similarity"].isna().all()
    with pytest.raises(ValueError, match="pairs has 'leak' rows: pass reference_names"):
        partner_columns(pairs, ["a", "b", "c", "d", "e"])
    with pytest.raises(ValueError, match="pairs within j out of range for 3 sample_ids"):
        partner_columns(pairs, ["a", "b", "c"], ["r0", "r1"])


# ----------------------------------------------------------------------------- impact


def wilson(s, n, z=1.959963984540054):
    p = s / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_leakage_impact_numbers():
    correct = np.array([1, 1, 1, 1, 0, 1, 0, 0, 1, 1], dtype=bool)
    leaked = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], dtype=bool)
    res = leakage_impact(correct, leaked)
    assert (res.n, res.n_leaked) == (10, 4)
    assert res.accuracy.value == pytest.approx(0.7)
    assert res.accuracy_clean.value == pytest.approx(3 / 6)
    assert res.accuracy_leaked.value == 1.0
    assert res.inflation == pytest.approx(0.2)
    assert (res.accuracy.low, res.accuracy.high) == pytest.approx(wilson(7, 10))
    assert (res.accuracy_clean.low, res.accuracy_clean.high) == pytest.approx(wilson(3, 6))
    assert res.accuracy_leaked.high == 1.0
    assert res.accuracy_leaked.low == pytest.approx(wilson(4, 4)[0])
    assert res.accuracy_clean.n == 6 and res.accuracy.method == "wilson"
    back = LeakageImpact.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back == res


def test_the_leakage_finding_reads_leakage_impact():
    """The overview's leakage sentence gives leakage_impact's numbers (one computation, not two)."""
    from analysis import schema
    from analysis.present.findings import findings

    class Run:  # the few things findings() reads of a run
        class_names = ["a", "b"]
        manifest: dict = {}
        sections: dict = {}
        samples = pd.DataFrame(
            {
                schema.CORRECT: [1, 1, 1, 1, 0, 1, 0, 0, 1, 1],
                schema.LEAK_OF: ["r1", "r2", "r3", "r4", *[None] * 6],
            }
        ).astype({schema.CORRECT: bool})

        def json(self, name):
            return None

        def table(self, name):
            return None

    (leak,) = [f for f in findings(Run()) if f.kind == "leakage"]
    assert leak.message.startswith("4 evaluation images are near-copies")
    from analysis.stats.intervals import wilson_interval

    (lo, hi), (clo, chi) = wilson_interval(7, 10), wilson_interval(3, 6)
    assert leak.message.endswith(
        f"accuracy is 70.0% (95% CI {lo:.1%}-{hi:.1%}) with them and"
        f" 50.0% (95% CI {clo:.1%}-{chi:.1%}) without"
    )
    Run.samples[schema.LEAK_OF] = None
    assert not [f for f in findings(Run()) if f.kind == "leakage"]


def test_leakage_impact_without_leaks_and_empty():
    res = leakage_impact([True, False, True], [False, False, False])
    assert math.isnan(res.accuracy_leaked.value) and res.inflation == 0.0
    empty = leakage_impact([], [])
    assert empty.n == 0 and math.isnan(empty.accuracy.value) and math.isnan(empty.inflation)
    assert LeakageImpact.from_dict(json.loads(json.dumps(empty.to_dict()))) == empty


def test_leakage_impact_validation():
    with pytest.raises(ValueError, match="correct has 2 rows but leaked has 3"):
        leakage_impact([True, False], [True, False, False])
    with pytest.raises(TypeError, match=r"leaked must be boolean \(or 0/1\), got dtype float64"):
        leakage_impact([True], [0.5])
    with pytest.raises(ValueError, match=r"correct must be 1-D \[N\]"):
        leakage_impact([[True]], [True])
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\)"):
        leakage_impact([True], [True], confidence=95)


# ----------------------------------------------------------------------------- perceptual


def scene(seed: int, size=(96, 64)) -> np.ndarray:
    """A smooth random picture (blurred noise + gradient), uint8 [H, W, 3]."""
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    noise = Image.fromarray(rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=np.uint8))
    img = noise.resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    return np.asarray(img)


def test_dhash_known_bits():
    ramp = np.tile(np.arange(0, 250, 10, dtype=np.uint8), (20, 1))  # brighter to the right
    assert dhash(ramp, hash_size=4).all()
    assert not dhash(ramp[:, ::-1], hash_size=4).any()
    assert dhash(ramp).shape == (64,) and phash(ramp).shape == (64,)
    assert hamming_distance(np.array([1, 0, 1], bool), np.array([1, 1, 0], bool)) == 2
    with pytest.raises(ValueError, match="hash_size must be an int >= 2"):
        dhash(ramp, hash_size=1)
    with pytest.raises(TypeError, match="image must be a path, a PIL image or a uint8 array"):
        phash(3.0)
    with pytest.raises(ValueError, match="hashes must have the same shape"):
        hamming_distance(np.zeros(3, bool), np.zeros(4, bool))


def test_perceptual_hash_confirms_copies_and_rejects_different_pictures(tmp_path):
    from PIL import Image

    a = Image.fromarray(scene(0))
    a.save(tmp_path / "a.png")
    a.resize((144, 96)).save(tmp_path / "a_big.jpg", quality=70)  # resized, re-encoded copy
    Image.fromarray(scene(1)).save(tmp_path / "b.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    for method in ("dhash", "phash"):
        same = perceptual_distance(tmp_path / "a.png", tmp_path / "a_big.jpg", method=method)
        other = perceptual_distance(tmp_path / "a.png", tmp_path / "b.png", method=method)
        assert same <= 4 < 20 <= other, (method, same, other)
    with pytest.raises(ValueError, match=r"unknown method 'ahash'; valid: \['dhash', 'phash'\]"):
        perceptual_distance(a, a, method="ahash")

    paths = [str(tmp_path / n) for n in ("a.png", "b.png", "broken.jpg")]
    ref = [str(tmp_path / "a_big.jpg")]
    pairs = pd.DataFrame(
        {
            "i": [0, 0, 1],
            "j": [1, 0, 2],
            "similarity": [0.97, 0.99, 0.96],
            "kind": "near",
            "scope": ["within", "leak", "within"],
        }
    )
    out = confirm_pairs(pairs, paths, ref)
    assert out["confirmed"].tolist() == [False, True, False]
    assert out["hash_distance"].iloc[0] >= 20 and out["hash_distance"].iloc[1] <= 4
    assert math.isnan(out["hash_distance"].iloc[2])  # unreadable image: not confirmed
    assert list(out.columns) == PAIR_COLUMNS + ["hash_distance", "confirmed"]
    with pytest.raises(ValueError, match="pairs has 'leak' rows: pass reference_paths"):
        confirm_pairs(pairs, paths)
    with pytest.raises(ValueError, match=r"pairs must have columns \['i', 'j', 'scope'\]"):
        confirm_pairs(pairs.drop(columns="scope"), paths, ref)
    with pytest.raises(ValueError, match="max_distance must be an int >= 0"):
        confirm_pairs(pairs, paths, ref, max_distance=-1)


def test_near_copies_stand_out_from_look_alikes():
    """Copies (re-lit, re-noised) are found; a crowd of look-alikes as similar to each other as
    0.96 is not, because nothing in the crowd stands out from its neighbourhood."""
    from analysis.data_issues.duplicates import appearance_signature, find_near_copies

    rng = np.random.default_rng(0)
    ref_imgs = [rng.integers(0, 255, (16, 16, 3)).astype(np.float32) for _ in range(60)]
    crowd_base = rng.integers(0, 255, (16, 16, 3)).astype(np.float32)
    ref_imgs += [crowd_base + rng.normal(0, 18, (16, 16, 3)) for _ in range(20)]
    ev_imgs = [rng.integers(0, 255, (16, 16, 3)).astype(np.float32) for _ in range(40)]
    ev_imgs += [crowd_base + rng.normal(0, 18, (16, 16, 3)) for _ in range(5)]  # look-alikes
    copies = {45 + k: k for k in range(6)}  # eval row -> reference row
    ev_imgs += [0.8 * ref_imgs[r] + 20 + rng.normal(0, 2, (16, 16, 3)) for r in copies.values()]

    def sig(a):
        return appearance_signature(np.clip(a, 0, 255).astype(np.uint8))

    ev = np.stack([sig(a) for a in ev_imgs])
    ref = np.stack([sig(a) for a in ref_imgs])
    crowd = ref[60:]
    sims = (crowd.astype(np.float32) @ crowd.astype(np.float32).T)[np.triu_indices(20, 1)]
    assert np.median(sims) > 0.9  # the crowd really is a crowd of look-alikes
    pairs = find_near_copies(ev, ref)
    leaks = pairs[pairs["scope"] == "leak"]
    assert set(zip(leaks["i"], leaks["j"], strict=True)) == set(copies.items())
    assert (pairs["scope"] == "within").sum() == 0
    assert (leaks["distinctiveness"] >= 4).all()


def test_appearance_signature_ignores_brightness_and_contrast():
    from analysis.data_issues.duplicates import appearance_signature

    rng = np.random.default_rng(1)
    a = rng.integers(20, 200, (40, 40, 3)).astype(np.uint8)
    b = np.clip(a.astype(float) * 1.2 + 15, 0, 255).astype(np.uint8)
    sa, sb = appearance_signature(a), appearance_signature(b)
    assert sa.shape == (768,) and sa.dtype == np.float16
    assert float(sa.astype(np.float32) @ sb.astype(np.float32)) > 0.99
