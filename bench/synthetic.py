"""Synthetic worlds at any size for the 1M benchmarks: embeddings, signatures, predictions,
metadata, written in chunks to memory-mapped ``.npy`` files so a million rows never sit in
memory twice.

Embeddings look like a classifier's penultimate features: per class a centre plus a
low-dimensional manifold (``LATENT`` directions per class), ReLU'd, plus a little isotropic noise
(high nominal, low intrinsic dimension, as real CNN features are). Appearance signatures (the
768-d mean-centred tiny images the near-copy search uses) are unit vectors around 2,000 "scenes".
Planted: reference copies of 3% of the evaluation images (leakage, cosine ~0.99 in both spaces),
0.5% within-set near-copies, 4% flipped labels, a slice (camera cam_c at night) where errors are
four times as frequent. Nothing here was used to choose any default of the package except the
approximate index's ``nprobe``/``rerank`` (stated in analysis/stats/neighbours.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

D_EMB = 512
D_SIG = 768
LATENT = 16
CHUNK = 65_536
CLASSES = [f"class_{i}" for i in range(10)]
META = {
    "camera": [f"cam_{c}" for c in "abcdefgh"],
    "site": [f"site_{i:02d}" for i in range(20)],
    "lighting": ["day", "dusk", "night"],
    "annotator": [f"a{i:02d}" for i in range(12)],
}


@dataclass
class World:
    n: int
    m: int
    folder: Path
    samples: pd.DataFrame  # eval table: labels, metadata, properties, predictions
    probs: np.ndarray  # float32 [n, C]
    embeddings: np.ndarray  # float16 memmap [n, D_EMB]
    reference_embeddings: np.ndarray  # float16 memmap [m, D_EMB]
    signatures: np.ndarray  # float16 memmap [n, D_SIG]
    reference_signatures: np.ndarray  # float16 memmap [m, D_SIG]
    leaks: np.ndarray  # int64 [n_leaks, 2]: (eval row, reference row)
    copies: np.ndarray  # int64 [n_copies, 2]: within-set (i, j)


def _memmap(path: Path, rows: int, dims: int):
    return np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(rows, dims))


def _centres(rng):
    c = np.abs(rng.standard_normal((len(CLASSES), D_EMB), dtype=np.float32)) * 1.5
    w = rng.standard_normal((len(CLASSES), LATENT, D_EMB), dtype=np.float32) * 0.5
    scenes = rng.standard_normal((2000, D_SIG), dtype=np.float32)
    looks = rng.standard_normal((8, D_SIG), dtype=np.float32) / np.sqrt(8)
    return c, w, scenes, looks


def _emb_rows(rng, cls, seen, c, w):
    """relu(centre of the class the model 'sees' + manifold + noise)."""
    x = 0.7 * c[cls] + 0.3 * c[seen]
    z = rng.standard_normal((len(cls), LATENT), dtype=np.float32)
    for k in np.unique(cls):  # per class: no [rows, LATENT, D] temporary
        rows = cls == k
        x[rows] += z[rows] @ w[k]
    x += 0.15 * rng.standard_normal(x.shape, dtype=np.float32)
    return np.maximum(x, 0.0)


def _sig_rows(rng, scene_ids, scenes, looks):
    """A scene, one of a few looks of it (light, framing: low-dimensional), pixel noise."""
    a = rng.standard_normal((len(scene_ids), looks.shape[0]), dtype=np.float32)
    x = scenes[scene_ids] + 0.5 * (a @ looks)
    x += 0.3 * rng.standard_normal((len(scene_ids), D_SIG), dtype=np.float32)
    x -= x.mean(axis=1, keepdims=True)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def make_world(n: int, m: int, folder: Path, *, seed: int = 0) -> World:
    """Write a world of ``n`` evaluation and ``m`` reference rows under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    c, w, scenes, looks = _centres(rng)
    k = len(CLASSES)
    truth = rng.integers(0, k, n)
    meta = {col: rng.integers(0, len(v), n) for col, v in META.items()}
    hard = (meta["camera"] == 2) & (meta["lighting"] == 2)
    strength = np.where(hard, 1.0, 3.2) * rng.uniform(0.4, 1.6, n)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    logits[np.arange(n), truth] += strength
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs = (probs / probs.sum(1, keepdims=True)).astype(np.float32)
    pred = probs.argmax(1)
    labels = truth.copy()
    flip = rng.random(n) < 0.04
    labels[flip] = (truth[flip] + rng.integers(1, k, int(flip.sum()))) % k

    emb = _memmap(folder / "embeddings.npy", n, D_EMB)
    sig = _memmap(folder / "signatures.npy", n, D_SIG)
    scene_e = rng.integers(0, len(scenes), n)
    for s in range(0, n, CHUNK):
        e = slice(s, min(n, s + CHUNK))
        emb[e] = _emb_rows(rng, truth[e], pred[e], c, w)
        sig[e] = _sig_rows(rng, scene_e[e], scenes, looks)
    rtruth = rng.integers(0, k, m)
    remb = _memmap(folder / "reference_embeddings.npy", m, D_EMB)
    rsig = _memmap(folder / "reference_signatures.npy", m, D_SIG)
    scene_r = rng.integers(0, len(scenes), m)
    for s in range(0, m, CHUNK):
        e = slice(s, min(m, s + CHUNK))
        remb[e] = _emb_rows(rng, rtruth[e], rtruth[e], c, w)
        rsig[e] = _sig_rows(rng, scene_r[e], scenes, looks)
    # planted copies: 3% of eval images leak from the reference, 0.5% are copied within
    n_leak, n_copy = int(0.03 * n), int(0.005 * n)
    ev_rows = rng.choice(n, n_leak + 2 * n_copy, replace=False)
    leak_e, copy_a, copy_b = np.split(ev_rows, [n_leak, n_leak + n_copy])
    leak_r = rng.choice(m, n_leak, replace=False)
    order = np.argsort(leak_e)
    leak_e, leak_r = leak_e[order], leak_r[order]
    for dst, src_arr, src_rows, arr in (
        (leak_e, remb, leak_r, emb),
        (leak_e, rsig, leak_r, sig),
        (copy_b, emb, copy_a, emb),
        (copy_b, sig, copy_a, sig),
    ):
        for s in range(0, len(dst), CHUNK):
            d, r = dst[s : s + CHUNK], src_rows[s : s + CHUNK]
            x = src_arr[np.sort(r)][np.argsort(np.argsort(r))].astype(np.float32)
            x += (
                0.1
                * np.linalg.norm(x, axis=1, keepdims=True)
                / np.sqrt(x.shape[1])
                * (rng.standard_normal(x.shape, dtype=np.float32))
            )
            arr[d] = x
    for a in (emb, sig, remb, rsig):
        a.flush()

    samples = _samples(rng, n, labels, probs, meta)
    samples.to_parquet(folder / "samples.parquet", index=False)
    np.save(folder / "probs.npy", probs)
    np.save(folder / "leaks.npy", np.stack([leak_e, leak_r], 1))
    np.save(
        folder / "copies.npy", np.stack([np.minimum(copy_a, copy_b), np.maximum(copy_a, copy_b)], 1)
    )
    return load_world(folder)


def _samples(rng, n, labels, probs, meta) -> pd.DataFrame:
    from analysis import schema
    from analysis.loading.inference import prediction_columns

    names = np.asarray(CLASSES, dtype=object)
    ids = np.char.add("s", np.char.zfill(np.arange(n).astype(str), 12))
    rel = np.char.add(np.char.add("img/", np.arange(n).astype(str)), ".jpg")
    s = pd.DataFrame(
        {
            schema.SAMPLE_ID: ids.astype(object),
            schema.PATH: np.char.add("/data/eval/", rel).astype(object),
            schema.RELPATH: rel.astype(object),
            schema.CONTENT_HASH: [f"{i:064x}" for i in range(n)],
            schema.PHASH: [f"{v:016x}" for v in rng.integers(0, 2**63, n)],
            schema.LABEL: labels.astype(np.int64),
            schema.LABEL_NAME: names[labels],
        }
    )
    pc = prediction_columns(probs, labels)
    for col in pc.columns:
        s[col] = pc[col].to_numpy()
    s[schema.PRED_NAME] = names[s[schema.PRED].to_numpy()]
    for col, values in META.items():
        s[col] = np.asarray(values, dtype=object)[meta[col]]
    s["hour"] = rng.integers(0, 24, n)
    s["temperature"] = rng.normal(15, 8, n).round(1)
    s[schema.BRIGHTNESS] = rng.beta(5, 5, n)
    s[schema.CONTRAST] = rng.beta(3, 8, n) * 0.5
    s[schema.SHARPNESS] = rng.lognormal(6, 1, n)
    s[schema.SATURATION] = rng.beta(3, 4, n)
    s[schema.NOISE] = rng.lognormal(0.7, 0.5, n)
    s[schema.WIDTH] = rng.choice([640, 1024, 3024], n)
    s[schema.HEIGHT] = rng.choice([480, 768, 4032], n)
    s[schema.ASPECT_RATIO] = s[schema.WIDTH] / s[schema.HEIGHT]
    s[schema.FILE_SIZE] = rng.integers(20_000, 4_000_000, n)
    s[schema.LATENCY_MS] = np.float32(1.5)
    return s


METADATA_COLUMNS = [*META, "hour", "temperature"]


def load_world(folder: Path) -> World:
    def mm(name):
        return np.load(folder / name, mmap_mode="r")

    samples = pd.read_parquet(folder / "samples.parquet")
    emb = mm("embeddings.npy")
    return World(
        n=len(samples),
        m=mm("reference_embeddings.npy").shape[0],
        folder=folder,
        samples=samples,
        probs=np.load(folder / "probs.npy"),
        embeddings=emb,
        reference_embeddings=mm("reference_embeddings.npy"),
        signatures=mm("signatures.npy"),
        reference_signatures=mm("reference_signatures.npy"),
        leaks=np.load(folder / "leaks.npy"),
        copies=np.load(folder / "copies.npy"),
    )


def world(n: int, m: int, root: Path, *, seed: int = 0) -> World:
    """The world of this size under ``root`` (made once, then reused)."""
    folder = root / f"world-{n}-{m}-{seed}"
    if (folder / "copies.npy").exists():
        return load_world(folder)
    return make_world(n, m, folder, seed=seed)
