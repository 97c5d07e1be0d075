"""Which images the Embeddings page draws, and which images a lasso or box on it selects.

A browser draws a scatter of a few tens of thousands of points in well under a second; a million
points is a ~40 MB figure that takes tens of seconds to send, parse and draw. The page therefore
draws every wrong image (the ones an error analysis is about) plus a seeded random sample of the
correct ones, up to :data:`MAX_POINTS` in all, and says so in a caption. A selection is a region
of the map, not a list of drawn points: :func:`rows_in_region` returns every image inside the box
or lasso, drawn or not, so the gallery it opens is complete.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import schema

__all__ = ["MAX_POINTS", "MIN_CORRECT_SHARE", "MapPoints", "map_points", "rows_in_region"]

#: Most points drawn: all errors first, then a sample of the correct images. 40,000 WebGL
#: points draw within the 3 s budget in software-rendered Chromium (bench/bench_map_browser.py).
MAX_POINTS = 40_000
#: Share of the drawn points kept for correct images when the wrong ones alone would fill them.
MIN_CORRECT_SHARE = 0.25


@dataclass(frozen=True)
class MapPoints:
    """The drawn subset of a run's samples.

    Attributes
    ----------
    rows : np.ndarray
        int64 sorted samples rows to draw.
    n, n_wrong, n_correct : int
        Images in the run, wrong ones, correct ones.
    wrong_drawn, correct_drawn : int
    """

    rows: np.ndarray
    n: int
    n_wrong: int
    n_correct: int
    wrong_drawn: int
    correct_drawn: int

    @property
    def complete(self) -> bool:
        return len(self.rows) == self.n

    def caption(self) -> str:
        """What the page says about the drawn points (empty when every image is drawn)."""
        if self.complete:
            return ""
        wrong = (
            f"all {self.n_wrong:,} wrong images"
            if self.wrong_drawn == self.n_wrong
            else f"a random {self.wrong_drawn:,} of the {self.n_wrong:,} wrong images"
        )
        right = (
            f" and a random {self.correct_drawn:,} of the {self.n_correct:,} correct ones"
            if self.n_correct
            else " (no image is correct)"
        )
        return (
            f"Drawn: {wrong}{right} ({len(self.rows):,} of {self.n:,} points: a browser cannot"
            " draw them all quickly). A box or lasso selects every image in the region, drawn or"
            " not."
        )


def map_points(samples: pd.DataFrame, *, max_points: int = MAX_POINTS, seed: int = 0) -> MapPoints:
    """Rows to draw: every wrong image, then a seeded sample of the correct ones, at most
    ``max_points`` in all. When the wrong ones alone exceed it they are sampled too, and
    :data:`MIN_CORRECT_SHARE` of the points stay for correct images (a 1M run with 34%
    errors drew 40,000 wrong images and no correct one: a map of errors with nothing to
    compare them with)."""
    correct = samples[schema.CORRECT].to_numpy(bool)
    n = correct.size
    wrong_rows = np.flatnonzero(~correct)
    right_rows = np.flatnonzero(correct)
    rng = np.random.default_rng(seed)
    if wrong_rows.size > max_points:  # every error when they fit; else room for correct ones
        keep_right = min(right_rows.size, int(MIN_CORRECT_SHARE * max_points))
        wrong_rows = np.sort(rng.choice(wrong_rows, max_points - keep_right, replace=False))
    room = max(0, max_points - wrong_rows.size)
    if right_rows.size > room:
        right_rows = np.sort(rng.choice(right_rows, room, replace=False))
    rows = np.union1d(wrong_rows, right_rows).astype(np.int64)
    return MapPoints(
        rows,
        n,
        int((~correct).sum()),
        int(correct.sum()),
        int(wrong_rows.size),
        int(right_rows.size),
    )


def _in_polygon(x: np.ndarray, y: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
    """Even-odd rule: bool [N], point (x, y) inside the closed polygon (px, py)."""
    inside = np.zeros(x.shape, dtype=bool)
    j = len(px) - 1
    for i in range(len(px)):
        xi, yi, xj, yj = px[i], py[i], px[j], py[j]
        crosses = (yi > y) != (yj > y)
        if crosses.any():
            with np.errstate(divide="ignore", invalid="ignore"):
                at = (xj - xi) * (y - yi) / (yj - yi) + xi
            inside ^= crosses & (x < at)
        j = i
    return inside


def rows_in_region(x: np.ndarray, y: np.ndarray, regions: list[dict]) -> np.ndarray:
    """Sorted rows whose map position lies in any of ``regions``.

    Parameters
    ----------
    x, y : np.ndarray
        float [N] map coordinates (``umap_x``, ``umap_y``).
    regions : list of dict
        ``{"kind": "box", "x": [x0, x1], "y": [y0, y1]}`` or ``{"kind": "lasso", "x": [...],
        "y": [...]}`` (a polygon), in the map's coordinates, as a chart selection reports them.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.zeros(x.shape, dtype=bool)
    for r in regions:
        px = np.asarray(r.get("x") or [], dtype=np.float64)
        py = np.asarray(r.get("y") or [], dtype=np.float64)
        if r.get("kind") == "box" and px.size >= 2 and py.size >= 2:
            keep |= (x >= px.min()) & (x <= px.max()) & (y >= py.min()) & (y <= py.max())
        elif r.get("kind") == "lasso" and px.size >= 3 and px.size == py.size:
            keep |= _in_polygon(x, y, px, py)
    return np.flatnonzero(keep).astype(np.int64)
