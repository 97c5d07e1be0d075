"""The planted-worlds generator (bench/worlds.py): deterministic, truthful about what it plants,
and extensible by plants of other modules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from analysis import schema
from analysis.stats.slices import apply_slice, compute_slices
from bench.worlds import (
    Planted,
    WeakSlice,
    WorldConfig,
    first_match,
    jaccard,
    make_world,
    truly_worse,
)


def test_same_seed_same_world_and_other_seeds_differ() -> None:
    a, b, c = make_world(3), make_world(3), make_world(4)
    assert a.samples.equals(b.samples)
    np.testing.assert_array_equal(a.error_prob, b.error_prob)
    assert [p.description for p in a.planted] == [p.description for p in b.planted]
    assert not (len(a.samples) == len(c.samples) and a.samples.equals(c.samples))


def test_a_world_has_the_columns_discovery_reads() -> None:
    w = make_world(1)
    s = w.samples
    for col in (schema.LABEL, schema.PRED, schema.CORRECT, schema.CLUSTER, *w.metadata_columns):
        assert col in s.columns
    assert set(w.property_columns) <= set(schema.PROPERTY_COLUMNS)
    np.testing.assert_array_equal(s[schema.CORRECT], s[schema.LABEL] == s[schema.PRED])
    assert s[schema.LABEL].max() < len(w.class_names)
    table = compute_slices(s, **w.discovery_kwargs())  # the kwargs are accepted as they are
    assert table.attrs["n_tested"] > 0


def test_null_world_errors_depend_on_nothing() -> None:
    w = make_world(5, n_planted=0)
    assert w.planted == ()
    assert np.all(w.error_prob == w.base_error)
    err = ~w.samples[schema.CORRECT].to_numpy()
    # the observed rate is the base rate within 4 binomial standard errors
    se = np.sqrt(w.base_error * (1 - w.base_error) / err.size)
    assert abs(err.mean() - w.base_error) < 4 * se


@pytest.mark.parametrize("seed", range(6))
def test_planted_slices_are_what_they_say_and_worse(seed: int) -> None:
    w = make_world(seed, n_planted=3)
    assert 1 <= len(w.planted) <= 3
    cfg = w.config
    for p in w.planted:
        assert p.kind == "weak_slice"
        np.testing.assert_array_equal(p.mask, apply_slice(w.samples, p.spec))
        assert p.mask.sum() >= cfg.min_rows
        assert cfg.share[0] <= p.mask.mean() <= cfg.share[1]
        assert 1 <= p.spec.depth <= 3
        assert np.all(w.error_prob[p.mask] >= p.details["error_rate"] - 1e-12)
        assert p.details["error_rate"] > w.base_error
        assert truly_worse(w, p.mask)
    outside = ~np.logical_or.reduce([p.mask for p in w.planted])
    assert np.all(w.error_prob[outside] == w.base_error)


def test_planted_rows_err_more_in_the_drawn_outcomes() -> None:
    """Across worlds, the realised error rate inside planted slices exceeds the one outside."""
    inside = outside = n_in = n_out = 0
    for seed in range(10):
        w = make_world(seed, n_planted=2)
        err = ~w.samples[schema.CORRECT].to_numpy()
        m = np.logical_or.reduce([p.mask for p in w.planted]) if w.planted else np.zeros_like(err)
        inside, n_in = inside + err[m].sum(), n_in + m.sum()
        outside, n_out = outside + err[~m].sum(), n_out + (~m).sum()
    assert inside / n_in > 1.5 * outside / n_out


def test_config_ranges_are_respected() -> None:
    cfg = WorldConfig(n_rows=(500, 600), n_classes=(3, 3), n_metadata=(2, 2), n_properties=(0, 0))
    w = make_world(0, cfg)
    assert 500 <= len(w.samples) <= 600
    assert len(w.class_names) == 3 and len(w.metadata_columns) == 2 and w.property_columns == []


@dataclass(frozen=True)
class _FlipLabels:
    """A plant of another module: flips the given label of every tenth row after outcomes."""

    kind: str = "label_noise"

    def before(self, draft, rng) -> None:
        return None

    def after(self, draft, rng) -> None:
        rows = np.arange(draft.n) % 10 == 0
        c = len(draft.class_names)
        draft.samples.loc[rows, schema.LABEL] = (draft.samples.loc[rows, schema.LABEL] + 1) % c
        draft.planted.append(Planted(self.kind, "every tenth label flipped", rows))


def test_plants_of_other_modules_run_their_hooks() -> None:
    w = make_world(2, plants=[WeakSlice(depth=1), _FlipLabels()])
    kinds = [p.kind for p in w.planted]
    assert kinds.count("label_noise") == 1 and kinds.count("weak_slice") <= 1
    flipped = w.planted_of("label_noise")[0].mask
    s = w.samples
    assert np.all(s[schema.LABEL].to_numpy()[flipped] != w.true_label[flipped])
    np.testing.assert_array_equal(s[schema.LABEL].to_numpy()[~flipped], w.true_label[~flipped])
    # correct is recomputed from the flipped labels
    np.testing.assert_array_equal(s[schema.CORRECT], s[schema.LABEL] == s[schema.PRED])


def test_scoring_helpers_known_answers() -> None:
    a = np.array([1, 1, 1, 0, 0], bool)
    b = np.array([0, 1, 1, 1, 0], bool)
    assert jaccard(a, b) == pytest.approx(2 / 4)
    assert jaccard(np.zeros(3, bool), np.zeros(3, bool)) == 0.0
    assert first_match(a, [b, a], min_jaccard=0.9) == 2
    assert first_match(a, [b], min_jaccard=0.5) == 1
    assert first_match(a, [b], min_jaccard=0.51) is None
    w = make_world(0, n_planted=1)
    if w.planted:
        m = w.planted[0].mask
        assert truly_worse(w, m) and not truly_worse(w, ~m)
    assert not truly_worse(w, np.ones(len(w.samples), bool))
