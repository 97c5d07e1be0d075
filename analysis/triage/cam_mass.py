"""Supporting evidence for a shortcut: where the model looked, from the CAMs already cached.

When the samples table says where the object is — a circle (``shape_cx``, ``shape_cy``,
``shape_r``, as in the bundled sample) or a box (``box_x0``, ``box_y0``, ``box_x1``,
``box_y1``), in original-image pixels — the share of a CAM's mass inside the object says whether
the model looked at the object or at the rest (a background it took for the class). CAMs are
computed on demand (the image detail page, the review queue), so this reads only the maps
already in ``<run>/cams/``, for the predicted class, by any method and layer. It is shown beside
a shortcut's test, never instead of it: a CAM is an explanation with its own failure modes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema

CIRCLE = ("shape_cx", "shape_cy", "shape_r")
BOX = ("box_x0", "box_y0", "box_x1", "box_y1")
MAX_MAPS = 200  # maps read per set of images


def has_object_geometry(samples: pd.DataFrame) -> bool:
    return all(c in samples.columns for c in CIRCLE) or all(c in samples.columns for c in BOX)


def _to_cam(x, y, w, h, prep: dict, cam_shape: tuple[int, int]):
    """Original-image pixel coordinates -> CAM pixel coordinates (resize, optional centre crop)."""
    r = float(prep.get("resize") or 0) or float(min(w, h))
    crop = prep.get("crop")
    if crop is None:
        sx, sy, ox, oy, side_x, side_y = r / w, r / h, 0.0, 0.0, r, r
    else:
        s = r / min(w, h)
        sx = sy = s
        ox, oy = (w * s - crop) / 2, (h * s - crop) / 2
        side_x = side_y = float(crop)
    ch, cw = cam_shape
    return (
        (np.asarray(x) * sx - ox) * cw / side_x,
        (np.asarray(y) * sy - oy) * ch / side_y,
        cw / side_x * sx,
    )


def _inside(cam: np.ndarray, row: pd.Series, prep: dict) -> float | None:
    w = float(row.get(schema.WIDTH, np.nan))
    h = float(row.get(schema.HEIGHT, np.nan))
    if not (w > 0 and h > 0):
        return None
    yy, xx = np.mgrid[0 : cam.shape[0], 0 : cam.shape[1]] + 0.5
    if all(c in row.index for c in CIRCLE):
        cx, cy, scale = _to_cam(row[CIRCLE[0]], row[CIRCLE[1]], w, h, prep, cam.shape)
        rad = float(row[CIRCLE[2]]) * scale
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= rad**2
    else:
        x0, y0, _ = _to_cam(row[BOX[0]], row[BOX[1]], w, h, prep, cam.shape)
        x1, y1, _ = _to_cam(row[BOX[2]], row[BOX[3]], w, h, prep, cam.shape)
        mask = (xx >= x0) & (xx <= x1) & (yy >= y0) & (yy <= y1)
    total = float(cam.sum())
    if total <= 0 or not mask.any():
        return None
    return float(cam[mask].sum() / total)


def object_mass(
    run_dir: str | Path, samples: pd.DataFrame, rows: np.ndarray, prep: dict
) -> tuple[float, int]:
    """(mean share of CAM mass on the object, maps read) over the cached CAMs of ``rows``
    (bool [N]) for their predicted class; (NaN, 0) when none is cached or geometry is missing."""
    if run_dir is None or not has_object_geometry(samples):
        return math.nan, 0
    cams = Path(run_dir) / schema.CAMS_DIR
    if not cams.is_dir():
        return math.nan, 0
    by_sid: dict[str, list[Path]] = {}
    for p in cams.glob("*.npy"):
        by_sid.setdefault(p.name.split("__", 1)[0], []).append(p)
    vals = []
    for i in np.flatnonzero(rows):
        row = samples.iloc[int(i)]
        sid = str(row.get(schema.SAMPLE_ID, ""))
        pred = int(row[schema.PRED])
        for p in by_sid.get(sid, []):
            if p.stem.rsplit("__", 1)[-1] != str(pred):
                continue
            try:
                cam = np.load(p, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError):
                continue
            v = _inside(cam, row, prep)
            if v is not None:
                vals.append(v)
            break
        if len(vals) >= MAX_MAPS:
            break
    return (float(np.mean(vals)) if vals else math.nan), len(vals)
