"""Generate the bundled synthetic sample: shape images with planted, documented failures.

Run ``python sample_data/generate.py`` from anywhere. It (re)writes, next to this file:

- ``images/reference/rNNNNN.jpg`` and ``images/eval/eNNNNN.jpg``: RGB JPEG, 112 x 112 px.
- ``reference.csv`` and ``eval.csv``: manifests with ``path`` (relative to this folder), ``label``
  (class name) and the metadata columns ``camera``, ``lighting``, ``background``,
  ``capture_hour`` (int, 0-23) and the shape geometry ``shape_cx``, ``shape_cy``, ``shape_r``
  (pixels in the 112 x 112 image: centre and radius of the shape's circumscribed circle).
- ``classes.txt``: one class name per line, in label-index order.
- ``planted.json``: the planted failures (weak slices, spurious background, rare class, flipped
  labels, leaked pairs), the seed and the measured counts.

Everything is a pure function of ``SEED``: each image draws from its own
``numpy.random.default_rng([SEED, split, index])`` stream, so the output is byte-identical
across runs with the same Pillow / libjpeg versions. See README.md for the planted failures.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

SEED = 20240611
HERE = Path(__file__).resolve().parent

CLASSES = ["circle", "square", "triangle", "star", "cross", "hexagon"]
CAMERAS = ["cam_a", "cam_b", "cam_c"]
LIGHTINGS = ["day", "overcast", "night"]
BACKGROUNDS = ["plain", "gradient", "dots", "noise", "stripes"]

SIZE = 112  # output image side, pixels
SS = 2  # supersampling factor for anti-aliased drawing
JPEG_QUALITY = 90
SHAPE_R_MIN, SHAPE_R_MAX = 22.0, 40.0  # circumscribed radius, output pixels

N_REFERENCE = 1800
N_EVAL = 1200

# Class shares. Hexagon is the rare class; the rest share the remainder equally.
REFERENCE_HEXAGON_SHARE = 0.03
EVAL_HEXAGON_SHARE = 0.04
# Lighting shares (day, overcast, night): night is rare in reference, common in eval.
REFERENCE_LIGHTING = (0.67, 0.30, 0.03)
EVAL_LIGHTING = (0.60, 0.30, 0.10)
# Camera shares (cam_a, cam_b, cam_c): cam_c (blur + sensor noise) is 15% of reference.
REFERENCE_CAMERA = (0.45, 0.40, 0.15)
EVAL_CAMERA = (1 / 3, 1 / 3, 1 / 3)
# Spurious background in reference: triangles mostly on stripes, stripes rare for other classes.
REFERENCE_TRIANGLE_STRIPES = 0.85
REFERENCE_OTHER_STRIPES = 0.05
# Eval data issues.
EVAL_FLIP_SHARE = 0.04
EVAL_LEAK_SHARE = 0.03


@dataclass(frozen=True)
class Spec:
    """Everything needed to render one image deterministically.

    ``cx``, ``cy``, ``r`` are in output pixels (112 x 112 frame); ``rotation`` in degrees.
    """

    split: str
    index: int
    label: str
    camera: str
    lighting: str
    background: str
    capture_hour: int
    cx: float
    cy: float
    r: float


# --------------------------------------------------------------------------- geometry


def shape_polygon(label: str, cx: float, cy: float, r: float, rot: float) -> list[tuple]:
    """Vertices (x, y) of a shape whose circumscribed circle is (cx, cy, r); ``rot`` in radians."""
    if label == "square":
        angles, radii = [rot + k * math.pi / 2 for k in range(4)], [r] * 4
    elif label == "triangle":
        angles, radii = [rot + k * 2 * math.pi / 3 for k in range(3)], [r] * 3
    elif label == "hexagon":
        angles, radii = [rot + k * math.pi / 3 for k in range(6)], [r] * 6
    elif label == "star":
        angles = [rot + k * math.pi / 5 for k in range(10)]
        radii = [r if k % 2 == 0 else 0.45 * r for k in range(10)]
    elif label == "cross":
        # A plus sign: arm half-width w, arm length reaching the circumscribed circle.
        w = 0.34 * r
        a = math.sqrt(r * r - w * w)
        pts = [(w, a), (-w, a), (-w, w), (-a, w), (-a, -w), (-w, -w)]
        pts += [(-w, -a), (w, -a), (w, -w), (a, -w), (a, w), (w, w)]
        c, s = math.cos(rot), math.sin(rot)
        return [(cx + x * c - y * s, cy + x * s + y * c) for x, y in pts]
    else:
        raise ValueError(f"no polygon for {label!r}")
    return [
        (cx + q * math.cos(t), cy + q * math.sin(t)) for t, q in zip(angles, radii, strict=True)
    ]


# --------------------------------------------------------------------------- colours


def _luma(c: np.ndarray) -> float:
    return float(0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2])


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float32)


def _distinct_colour(rng: np.random.Generator, avoid: list[np.ndarray]) -> np.ndarray:
    """A random colour at least 60 luma levels or 140 RGB-distance away from every colour in avoid."""
    best, best_d = None, -1.0
    for _ in range(50):
        c = _random_colour(rng)
        d = min(max(abs(_luma(c) - _luma(a)) * 2.3, float(np.linalg.norm(c - a))) for a in avoid)
        if d >= 140:
            return c
        if d > best_d:
            best, best_d = c, d
    return best


# --------------------------------------------------------------------------- backgrounds


def render_background(kind: str, rng: np.random.Generator, n: int) -> tuple[np.ndarray, list]:
    """A textured background, float32 [n, n, 3] in 0..255, and the colours it is made of."""
    c1 = _random_colour(rng)
    c2 = np.clip(c1 + rng.normal(0, 70, size=3), 0, 255).astype(np.float32)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    if kind == "plain":
        # Flat colour with faint low-frequency shading, like a matte surface.
        t = 0.15 * _smooth_noise(rng, n, cells=3)
        img = c1[None, None, :] * (0.925 + t[..., None])
        return np.clip(img, 0, 255), [c1]
    if kind == "gradient":
        theta = rng.uniform(0, 2 * math.pi)
        t = (xx - 0.5) * math.cos(theta) + (yy - 0.5) * math.sin(theta)
        t = (t - t.min()) / (t.max() - t.min())
        img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
        return img, [c1, c2]
    if kind == "noise":
        t = _smooth_noise(rng, n, cells=int(rng.integers(6, 12)))
        t = (t - t.min()) / (t.max() - t.min() + 1e-6)
        img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
        img += rng.normal(0, 6, size=img.shape)
        return np.clip(img, 0, 255), [c1, c2]
    if kind == "dots":
        im = Image.new("RGB", (n, n), tuple(int(v) for v in c1))
        draw = ImageDraw.Draw(im)
        col = tuple(int(v) for v in c2)
        for _ in range(int(rng.integers(25, 45))):
            x, y = rng.uniform(0, n, size=2)
            rad = rng.uniform(0.012, 0.03) * n
            draw.ellipse([x - rad, y - rad, x + rad, y + rad], fill=col)
        return np.asarray(im, dtype=np.float32), [c1, c2]
    if kind == "stripes":
        theta = rng.uniform(0, math.pi)
        period = rng.uniform(0.09, 0.16)  # fraction of the image side
        u = xx * math.cos(theta) + yy * math.sin(theta)
        t = (np.sin(2 * math.pi * u / period) > 0).astype(np.float32)
        # Make stripes clearly two-tone.
        c2 = np.clip(c1 + np.sign(rng.normal(size=3)) * rng.uniform(60, 110, size=3), 0, 255)
        c2 = c2.astype(np.float32)
        img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
        return img, [c1, c2]
    raise ValueError(f"unknown background {kind!r}")


def _smooth_noise(rng: np.random.Generator, n: int, *, cells: int) -> np.ndarray:
    """Value noise in [-0.5, 0.5], float32 [n, n]: a random cells x cells grid, bicubic-upsampled."""
    grid = (rng.uniform(0, 255, size=(cells, cells))).astype(np.uint8)
    up = Image.fromarray(grid, mode="L").resize((n, n), Image.BICUBIC)
    return np.asarray(up, dtype=np.float32) / 255.0 - 0.5


# --------------------------------------------------------------------------- rendering


def render(spec: Spec, rng: np.random.Generator, rot: float) -> np.ndarray:
    """Render one scene, then apply lighting and camera. Returns uint8 [112, 112, 3]."""
    n = SIZE * SS
    bg, bg_colours = render_background(spec.background, rng, n)
    colour = _distinct_colour(rng, bg_colours)
    im = Image.fromarray(bg.astype(np.uint8), mode="RGB")
    draw = ImageDraw.Draw(im)
    fill = tuple(int(v) for v in colour)
    cx, cy, r = spec.cx * SS, spec.cy * SS, spec.r * SS
    if spec.label == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(shape_polygon(spec.label, cx, cy, r, rot), fill=fill)
    im = im.resize((SIZE, SIZE), Image.LANCZOS)
    x = np.asarray(im, dtype=np.float32)
    x = apply_lighting(x, spec.lighting, rng)
    x = apply_camera(x, spec.camera, rng)
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def apply_lighting(x: np.ndarray, lighting: str, rng: np.random.Generator) -> np.ndarray:
    """Scene illumination on float [H, W, 3] 0..255: day as is, overcast dimmer, night dark."""
    if lighting == "day":
        return x * rng.uniform(0.95, 1.08)
    mean = x.mean(axis=(0, 1), keepdims=True)
    if lighting == "overcast":
        contrast, gain = rng.uniform(0.75, 0.9), rng.uniform(0.8, 0.92)
        return (mean + (x - mean) * contrast) * gain
    if lighting == "night":
        contrast, gain = rng.uniform(0.4, 0.55), rng.uniform(0.3, 0.4)
        tint = np.array([0.8, 0.9, 1.2], dtype=np.float32)
        y = (mean + (x - mean) * contrast) * gain * tint
        return y + rng.normal(0, 5.0, size=x.shape)
    raise ValueError(f"unknown lighting {lighting!r}")


def apply_camera(x: np.ndarray, camera: str, rng: np.random.Generator) -> np.ndarray:
    """Camera response on float [H, W, 3] 0..255. cam_c: Gaussian blur and sensor noise."""
    if camera == "cam_a":
        return x
    if camera == "cam_b":
        return x * np.array([1.04, 1.0, 0.95], dtype=np.float32)  # slightly warm white balance
    if camera == "cam_c":
        im = Image.fromarray(np.clip(np.round(x), 0, 255).astype(np.uint8), mode="RGB")
        im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(3.2, 4.2))))
        y = np.asarray(im, dtype=np.float32)
        return y + rng.normal(0, rng.uniform(22, 30), size=y.shape)
    raise ValueError(f"unknown camera {camera!r}")


# --------------------------------------------------------------------------- sampling


def _hour(lighting: str, rng: np.random.Generator) -> int:
    """Capture hour 0-23, consistent with the lighting."""
    if lighting == "night":
        return int(rng.choice([20, 21, 22, 23, 0, 1, 2, 3, 4, 5]))
    if lighting == "day":
        return int(rng.integers(8, 18))
    return int(rng.integers(6, 20))


def _exact_counts(shares, n: int) -> list[int]:
    """Integer counts summing to n, proportional to shares (largest remainder)."""
    raw = np.asarray(shares, dtype=np.float64) / np.sum(shares) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _shuffled_column(values, shares, n: int, rng: np.random.Generator) -> list[str]:
    col = [v for v, k in zip(values, _exact_counts(shares, n), strict=True) for _ in range(k)]
    return [col[i] for i in rng.permutation(n)]


def sample_specs(split: str, n: int, rng: np.random.Generator) -> list[Spec]:
    """Metadata for every image of a split, with exact shares (see the module constants)."""
    hex_share = REFERENCE_HEXAGON_SHARE if split == "reference" else EVAL_HEXAGON_SHARE
    rest = (1 - hex_share) / (len(CLASSES) - 1)
    class_shares = [hex_share if c == "hexagon" else rest for c in CLASSES]
    labels = _shuffled_column(CLASSES, class_shares, n, rng)
    lighting = _shuffled_column(
        LIGHTINGS, REFERENCE_LIGHTING if split == "reference" else EVAL_LIGHTING, n, rng
    )
    camera = _shuffled_column(
        CAMERAS, REFERENCE_CAMERA if split == "reference" else EVAL_CAMERA, n, rng
    )
    others = [b for b in BACKGROUNDS if b != "stripes"]
    on_stripes = set()
    if split == "reference":
        # Exactly round(share * n_class) images of each class on stripes.
        for c in CLASSES:
            rows = [i for i in range(n) if labels[i] == c]
            share = REFERENCE_TRIANGLE_STRIPES if c == "triangle" else REFERENCE_OTHER_STRIPES
            on_stripes |= set(rng.permutation(rows)[: round(share * len(rows))].tolist())
    specs = []
    for i in range(n):
        lab = labels[i]
        if split == "reference":
            bg = "stripes" if i in on_stripes else str(rng.choice(others))
        else:
            bg = str(rng.choice(BACKGROUNDS))  # independent of the class
        r = float(rng.uniform(SHAPE_R_MIN, SHAPE_R_MAX))
        cx, cy = (float(v) for v in rng.uniform(r + 3, SIZE - r - 3, size=2))
        specs.append(
            Spec(
                split=split,
                index=i,
                label=lab,
                camera=camera[i],
                lighting=lighting[i],
                background=bg,
                capture_hour=_hour(lighting[i], rng),
                cx=round(cx, 2),
                cy=round(cy, 2),
                r=round(r, 2),
            )
        )
    return specs


def image_relpath(split: str, index: int) -> str:
    prefix = "r" if split == "reference" else "e"
    return f"images/{split}/{prefix}{index:05d}.jpg"


def _save_jpeg(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr, mode="RGB").save(path, format="JPEG", quality=JPEG_QUALITY)


def leak_copy(arr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int, int]:
    """Near-copy of uint8 [H, W, 3]: 1-2 px shift (edge-padded) and a +-3-6% brightness change.

    Returns the new image and the shift (dx, dy) in pixels.
    """
    dx, dy = (int(rng.choice([-2, -1, 1, 2])) for _ in range(2))
    pad = np.pad(arr, ((2, 2), (2, 2), (0, 0)), mode="edge")
    shifted = pad[2 - dy : 2 - dy + arr.shape[0], 2 - dx : 2 - dx + arr.shape[1]]
    gain = 1 + float(rng.choice([-1, 1])) * rng.uniform(0.03, 0.06)
    out = np.clip(np.round(shifted.astype(np.float32) * gain), 0, 255).astype(np.uint8)
    return out, dx, dy


# --------------------------------------------------------------------------- main


COLUMNS = [
    "path",
    "label",
    "camera",
    "lighting",
    "background",
    "capture_hour",
    "shape_cx",
    "shape_cy",
    "shape_r",
]


def _row(spec: Spec, path: str, label: str) -> dict:
    return {
        "path": path,
        "label": label,
        "camera": spec.camera,
        "lighting": spec.lighting,
        "background": spec.background,
        "capture_hour": spec.capture_hour,
        "shape_cx": spec.cx,
        "shape_cy": spec.cy,
        "shape_r": spec.r,
    }


def _write_csv(rows: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def _shares(rows: list[dict], col: str) -> dict:
    n = len(rows)
    vals = sorted({r[col] for r in rows})
    return {
        v: {
            "count": sum(r[col] == v for r in rows),
            "share": round(sum(r[col] == v for r in rows) / n, 4),
        }
        for v in vals
    }


def _stripes_share(rows: list[dict], *, triangle: bool) -> float:
    sel = [r for r in rows if (r["label"] == "triangle") == triangle]
    return round(sum(r["background"] == "stripes" for r in sel) / len(sel), 4)


def generate(out: Path = HERE, seed: int = SEED) -> dict:
    """Write images, manifests, classes.txt and planted.json under ``out``; return planted."""
    for split in ("reference", "eval"):
        d = out / "images" / split
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)

    # Reference split.
    ref_specs = sample_specs("reference", N_REFERENCE, np.random.default_rng([seed, 0]))
    ref_rows, ref_arrays = [], []
    for s in ref_specs:
        rng = np.random.default_rng([seed, 0, s.index])
        arr = render(s, rng, rot=float(rng.uniform(0, 2 * math.pi)))
        path = image_relpath("reference", s.index)
        _save_jpeg(arr, out / path)
        ref_arrays.append(arr)
        ref_rows.append(_row(s, path, s.label))

    # Eval split: fresh renders, then leaked near-copies and flipped labels on disjoint rows.
    eval_specs = sample_specs("eval", N_EVAL, np.random.default_rng([seed, 1]))
    issue_rng = np.random.default_rng([seed, 2])
    n_leak = round(EVAL_LEAK_SHARE * N_EVAL)
    n_flip = round(EVAL_FLIP_SHARE * N_EVAL)
    picked = issue_rng.permutation(N_EVAL)
    leak_rows, flip_rows = (
        sorted(picked[:n_leak].tolist()),
        set(picked[n_leak : n_leak + n_flip].tolist()),
    )
    # Leak sources: reference images off stripes, so leakage does not bend eval's background mix.
    candidates = [i for i, r in enumerate(ref_rows) if r["background"] != "stripes"]
    sources = issue_rng.choice(candidates, size=n_leak, replace=False).tolist()
    leak_source = dict(zip(leak_rows, sources, strict=True))

    eval_rows, eval_true, flipped, leaked = [], [], [], []
    for s in eval_specs:
        rng = np.random.default_rng([seed, 1, s.index])
        path = image_relpath("eval", s.index)
        if s.index in leak_source:
            src = ref_specs[leak_source[s.index]]
            arr, dx, dy = leak_copy(ref_arrays[src.index], rng)
            s = replace(
                src, split="eval", index=s.index, cx=round(src.cx + dx, 2), cy=round(src.cy + dy, 2)
            )
            leaked.append({"eval_path": path, "reference_path": ref_rows[src.index]["path"]})
        else:
            arr = render(s, rng, rot=float(rng.uniform(0, 2 * math.pi)))
        _save_jpeg(arr, out / path)
        label = s.label
        if s.index in flip_rows:
            label = str(rng.choice([c for c in CLASSES if c != s.label]))
            flipped.append({"path": path, "true_label": s.label, "given_label": label})
        eval_rows.append(_row(s, path, label))
        eval_true.append(_row(s, path, s.label))

    _write_csv(ref_rows, out / "reference.csv")
    _write_csv(eval_rows, out / "eval.csv")
    (out / "classes.txt").write_text("\n".join(CLASSES) + "\n")

    planted = {
        "seed": seed,
        "generator": "sample_data/generate.py",
        "image_size": [SIZE, SIZE],
        "classes": CLASSES,
        "weak_slices": [
            {
                "column": "lighting",
                "value": "night",
                "why": "rare in reference; dark, low contrast",
            },
            {"column": "camera", "value": "cam_c", "why": "Gaussian blur + sensor noise"},
        ],
        "spurious": {
            "class": "triangle",
            "column": "background",
            "value": "stripes",
            "reference_share_of_class_on_value": _stripes_share(ref_rows, triangle=True),
            "reference_share_of_other_classes_on_value": _stripes_share(ref_rows, triangle=False),
            "eval_share_of_class_on_value": _stripes_share(eval_true, triangle=True),
            "eval_share_of_other_classes_on_value": _stripes_share(eval_true, triangle=False),
        },
        "rare_class": "hexagon",
        "geometry_columns": {
            "shape_cx": "x of the shape centre, pixels from the left edge of the 112 x 112 image",
            "shape_cy": "y of the shape centre, pixels from the top edge",
            "shape_r": "radius of the shape's circumscribed circle, pixels",
        },
        "flipped_labels": flipped,
        "leaked_pairs": leaked,
        "counts": {
            "reference": {
                "n": len(ref_rows),
                "label": _shares(ref_rows, "label"),
                "lighting": _shares(ref_rows, "lighting"),
                "camera": _shares(ref_rows, "camera"),
                "background": _shares(ref_rows, "background"),
            },
            "eval": {
                "n": len(eval_rows),
                "true_label": _shares(eval_true, "label"),
                "given_label": _shares(eval_rows, "label"),
                "lighting": _shares(eval_rows, "lighting"),
                "camera": _shares(eval_rows, "camera"),
                "background": _shares(eval_rows, "background"),
                "flipped": len(flipped),
                "flipped_share": round(len(flipped) / len(eval_rows), 4),
                "leaked": len(leaked),
                "leaked_share": round(len(leaked) / len(eval_rows), 4),
            },
        },
    }
    (out / "planted.json").write_text(json.dumps(planted, indent=1) + "\n")
    return planted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: here)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    planted = generate(args.out, args.seed)
    c = planted["counts"]
    print(f"reference: {c['reference']['n']} images, eval: {c['eval']['n']} images")
    print(f"eval flipped: {c['eval']['flipped']}, leaked: {c['eval']['leaked']}")
    print("spurious:", {k: v for k, v in planted["spurious"].items() if "share" in k})
    print(
        "reference night:",
        c["reference"]["lighting"]["night"],
        "eval night:",
        c["eval"]["lighting"]["night"],
    )
    print(
        "reference hexagon:",
        c["reference"]["label"]["hexagon"],
        "eval hexagon:",
        c["eval"]["true_label"]["hexagon"],
    )


if __name__ == "__main__":
    main()
