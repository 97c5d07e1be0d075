"""Tests for analysis.present.map_points: what the Embeddings page draws and selects."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analysis import schema
from analysis.present.map_points import map_points, rows_in_region


def _samples(n, wrong_every):
    return pd.DataFrame({schema.CORRECT: np.arange(n) % wrong_every != 0})


def test_small_runs_draw_every_image():
    pts = map_points(_samples(500, 5))
    assert pts.complete and pts.rows.tolist() == list(range(500)) and pts.caption() == ""


def test_large_runs_draw_every_error_and_a_stated_sample_of_the_rest():
    s = _samples(100_000, 10)
    pts = map_points(s, max_points=20_000, seed=0)
    wrong = np.flatnonzero(~s[schema.CORRECT].to_numpy())
    assert np.isin(wrong, pts.rows).all()  # every error is drawn
    assert len(pts.rows) == 20_000 and (np.diff(pts.rows) > 0).all()
    assert pts.wrong_drawn == 10_000 and pts.correct_drawn == 10_000
    assert "all 10,000 wrong images" in pts.caption()
    assert "a random 10,000 of the 90,000 correct ones" in pts.caption()
    np.testing.assert_array_equal(pts.rows, map_points(s, max_points=20_000, seed=0).rows)
    # more errors than room: errors sampled too, a quarter of the points kept for correct
    # images (the map still shows where the model is right), and both said
    few = map_points(s, max_points=4_000)
    assert few.wrong_drawn == 3_000 and few.correct_drawn == 1_000 and len(few.rows) == 4_000
    assert np.isin(few.rows, wrong).sum() == 3_000
    assert "a random 3,000 of the 10,000 wrong images" in few.caption()
    assert "a random 1,000 of the 90,000 correct ones" in few.caption()
    # nearly all wrong: the correct ones are all drawn, the rest of the room goes to errors
    mostly = map_points(
        _samples(10_000, 1).assign(**{schema.CORRECT: np.arange(10_000) < 100}), max_points=2_000
    )
    assert mostly.correct_drawn == 100 and mostly.wrong_drawn == 1_900
    fits = map_points(
        _samples(1_000, 1).assign(**{schema.CORRECT: np.arange(1_000) < 100}), max_points=950
    )  # errors fill 95% of the room but fit: all drawn
    assert fits.wrong_drawn == 900 and fits.correct_drawn == 50
    none_right = map_points(_samples(5_000, 1), max_points=1_000)
    assert none_right.wrong_drawn == 1_000 and "no image is correct" in none_right.caption()


def test_a_region_selects_every_image_inside_drawn_or_not():
    rng = np.random.default_rng(0)
    x, y = rng.uniform(-1, 1, 50_000), rng.uniform(-1, 1, 50_000)
    box = rows_in_region(x, y, [{"kind": "box", "x": [0.5, 0], "y": [0, 0.5]}])
    want = np.flatnonzero((x >= 0) & (x <= 0.5) & (y >= 0) & (y <= 0.5))
    np.testing.assert_array_equal(box, want)
    # a lasso triangle (0,0) (1,0) (0,1): x, y >= 0 and x + y <= 1
    tri = rows_in_region(x, y, [{"kind": "lasso", "x": [0, 1, 0], "y": [0, 0, 1]}])
    inside = (x > 0) & (y > 0) & (x + y < 1)
    assert set(np.flatnonzero(inside)) <= set(tri) and len(tri) - inside.sum() < 20  # edges
    both = rows_in_region(
        x,
        y,
        [
            {"kind": "box", "x": [0.5, 0], "y": [0, 0.5]},
            {"kind": "lasso", "x": [0, 1, 0], "y": [0, 0, 1]},
        ],
    )
    np.testing.assert_array_equal(both, np.union1d(box, tri))
    assert rows_in_region(x, y, []).size == 0
    assert rows_in_region(x, y, [{"kind": "lasso", "x": [0, 1], "y": [0, 1]}]).size == 0
