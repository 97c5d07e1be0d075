"""Synthetic many-class problems (hundreds to thousands of classes) with known answers.

Used by the many-class tests and by ``bench/bench_many_classes.py`` / ``bench_label_issues``:
a model's probabilities are drawn first and each image's true class is then *sampled from
them*, so the probabilities are calibrated by construction; ``temperature > 1`` sharpens them
afterwards (an overconfident model with the same ranking). Classes come in groups of
``group_size`` look-alikes (the model confuses within a group), groups in ``kingdoms`` (the
class hierarchy). ``noise`` flips that share of the given labels to another class, half to a
look-alike and half anywhere; the flipped rows are returned. Names look like ImageNet's
("n01440764 tench, Tinca tinca"): long, so the dashboard must shorten them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class World:
    names: list[str]
    given: np.ndarray  # int64 [n], the labels a user would have (with noise)
    true: np.ndarray  # int64 [n], the labels before noise
    probs: np.ndarray  # float32 [n, k]
    flipped: np.ndarray  # bool [n], given != true
    parents: list[tuple[str, str]]  # (child, parent) pairs: class -> group -> kingdom

    @property
    def k(self) -> int:
        return len(self.names)


def class_names(k: int) -> list[str]:
    words = ["tench", "goldfinch", "kite", "tabby", "lorikeet", "beacon", "abacus", "yurt"]
    return [
        f"n{1_000_000 + 7919 * i % 9_000_000:08d} {words[i % len(words)]} {i}, a synthetic class"
        for i in range(k)
    ]


def many_class_world(
    k: int,
    per_class: int | np.ndarray,
    *,
    seed: int = 0,
    noise: float = 0.0,
    temperature: float = 1.0,
    separation: float = 8.0,
    group_size: int = 20,
    kingdoms: int = 5,
) -> World:
    """A k-class evaluation set of ``per_class`` images per class (or an array of sizes)."""
    rng = np.random.default_rng(seed)
    sizes = np.full(k, per_class) if np.isscalar(per_class) else np.asarray(per_class)
    intended = np.repeat(np.arange(k), sizes)
    n = intended.size
    group = np.arange(k) // group_size
    probs = np.empty((n, k), dtype=np.float32)
    true = np.empty(n, dtype=np.int64)
    step = max(1, (1 << 23) // k)  # rows at a time: 100k x 1,000 stays a few hundred MB
    for a in range(0, n, step):
        rows = intended[a : a + step]
        m = rows.size
        # logits: a pull to the intended class, a weaker one to its look-alikes, noise elsewhere
        z = rng.normal(0.0, 1.0, size=(m, k)).astype(np.float32)
        strength = rng.uniform(0.3, 1.3, size=m).astype(np.float32) * np.float32(separation)
        z[np.arange(m), rows] += strength
        z += (group[rows][:, None] == group[None, :]) * (0.35 * strength)[:, None]
        p = _softmax(z)
        # the true class is drawn from the probabilities: calibrated by construction
        u = rng.random(m, dtype=np.float32)[:, None]
        true[a : a + step] = np.minimum((np.cumsum(p, axis=1) < u).sum(axis=1), k - 1)
        probs[a : a + step] = p if temperature == 1.0 else _softmax(z * np.float32(temperature))
    given = true.copy()
    flip = rng.random(n) < noise
    near = rng.random(n) < 0.5
    for i in np.flatnonzero(flip):
        g = group[true[i]]
        pool = np.flatnonzero(group == g) if near[i] else np.arange(k)
        pool = pool[pool != true[i]]
        given[i] = rng.choice(pool if pool.size else np.delete(np.arange(k), true[i]))
    names = class_names(k)
    parents = [(names[c], f"group {group[c]:02d}") for c in range(k)]
    n_groups = int(group.max()) + 1
    parents += [(f"group {g:02d}", f"kingdom {g * kingdoms // n_groups}") for g in range(n_groups)]
    return World(names, given, true, probs, given != true, parents)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def write_predictions_inputs(root: Path, world: World, *, image_px: int = 8) -> dict[str, Path]:
    """Tiny images, a manifest, a predictions Parquet and a hierarchy CSV for ``analyze``.

    Returns the paths as ``{"data", "predictions", "classes", "hierarchy"}``.
    """
    from PIL import Image

    rng = np.random.default_rng(1)
    img = root / "img"
    img.mkdir(parents=True, exist_ok=True)
    rel = [f"img/{i:06d}.png" for i in range(len(world.given))]
    for r in rel:
        colour = rng.integers(0, 255, size=(image_px, image_px, 3), dtype=np.uint8)
        Image.fromarray(colour).save(root / r)
    sites = np.asarray(["north", "south", "east"], dtype=object)
    pd.DataFrame(
        {
            "path": rel,
            "label": np.asarray(world.names, dtype=object)[world.given],
            "site": sites[np.arange(len(rel)) % 3],
        }
    ).to_csv(root / "data.csv", index=False)
    (root / "classes.txt").write_text("\n".join(world.names) + "\n")
    preds = pd.DataFrame(world.probs, columns=world.names)
    preds.insert(0, "path", rel)
    preds.to_parquet(root / "preds.parquet", index=False)
    pd.DataFrame(world.parents, columns=["class", "parent"]).to_csv(
        root / "hierarchy.csv", index=False
    )
    return {
        "data": root / "data.csv",
        "predictions": root / "preds.parquet",
        "classes": root / "classes.txt",
        "hierarchy": root / "hierarchy.csv",
    }


def analyze_world(world: World, root: Path, runs_dir: Path, *, hierarchy: bool = True):
    """``errorscope analyze`` in predictions mode on ``world``'s files (tiny images, 16 px)."""
    from analysis.pipeline.engine import AnalysisConfig, analyze

    paths = write_predictions_inputs(root, world)
    run = analyze(
        AnalysisConfig(
            data=str(paths["data"]),
            predictions=str(paths["predictions"]),
            classes=str(paths["classes"]),
            class_hierarchy=str(paths["hierarchy"]) if hierarchy else None,
            resize=16,
            no_crop=True,
            num_workers=0,
        ),
        runs_dir=runs_dir,
    )
    return run, paths
