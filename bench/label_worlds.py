"""Synthetic label-error problems for ``bench/bench_label_issues.py``: known flips, and model
errors that are *not* flips (random, systematic, confident), with an embedding space and a
labelled reference set so that evidence from outside the model's probabilities can be measured.

A problem is drawn from :class:`LabelWorld` parameters:

- ``n_classes`` class centres on the unit sphere in ``dim`` dimensions; an image is its class
  centre times ``sep`` plus Gaussian noise of total size ``sigma``. The model is the nearest-
  centre classifier on these embeddings (logits ``3 * x @ centres.T``), softmaxed at temperature
  ``temperature`` (below 1: overconfident). Errors from overlapping classes are the model's
  honest uncertainty.
- ``head_share`` of the images have a "style" (a shared offset, think night photos) on which the
  classifier head adds ``head_bias`` to one fixed confuser class: *confident, systematic model
  errors whose embedding still sits among their true class* (the t-shirt called outwear).
- ``repr_share`` of the images are embedded 65% of the way to their confuser class: confident
  model errors where the *representation* itself is confused (neighbours do not help there).
- given labels: ``noise`` of them flipped to a uniformly drawn other class; with ``region_flip``
  annotators also label the styled images as the confuser class (systematic label errors that
  the reference set shares).
- a reference (training) set drawn the same way, with its own labels (same noise), for
  neighbour evidence, and ``copy_share`` of the evaluation images have a near-copy in it whose
  label is the true one flipped at the same noise rate.

Everything is seeded; :func:`draw` returns a :class:`LabelProblem`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LabelProblem", "LabelWorld", "draw", "knn_labels", "random_world"]


@dataclass(frozen=True)
class LabelWorld:
    n: int = 3000
    n_ref: int = 4000
    n_classes: int = 10
    dim: int = 32
    sep: float = 2.0
    sigma: float = 1.5
    temperature: float = 1.0
    noise: float = 0.05
    head_share: float = 0.0
    head_bias: float = 6.0
    repr_share: float = 0.0
    region_flip: float = 0.0
    copy_share: float = 0.05


@dataclass(frozen=True, eq=False)
class LabelProblem:
    """given int [N], probs float32 [N, C], flipped bool [N] (given != true), embeddings
    float32 [N, D], reference embeddings/labels, copy_label int [N] (label of the image's
    near-copy in the reference set, -1 when it has none)."""

    world: LabelWorld
    given: np.ndarray
    true: np.ndarray
    probs: np.ndarray
    embeddings: np.ndarray
    ref_embeddings: np.ndarray
    ref_labels: np.ndarray
    copy_label: np.ndarray

    @property
    def flipped(self) -> np.ndarray:
        return self.given != self.true


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def draw(world: LabelWorld, seed: int) -> LabelProblem:
    """One problem of ``world``, deterministic in ``seed``."""
    w = world
    rng = np.random.default_rng([seed, 104729])
    c, d = w.n_classes, w.dim
    centres = rng.normal(size=(c, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    style = rng.normal(size=d)
    style /= np.linalg.norm(style)
    confuser = (np.arange(c) + rng.integers(1, c, c)) % c

    def images(m: int):
        true = rng.integers(0, c, m)
        styled = rng.random(m) < w.head_share
        confused = rng.random(m) < w.repr_share
        mix = np.where(confused, 0.65, 0.0)[:, None]
        x = w.sep * ((1 - mix) * centres[true] + mix * centres[confuser[true]])
        x = x + rng.normal(size=(m, d)) * w.sigma / np.sqrt(d) + 1.5 * styled[:, None] * style
        z = 3.0 * (x @ centres.T)
        z[styled, confuser[true[styled]]] += w.head_bias
        given = true.copy()
        flip = rng.random(m) < w.noise
        given[flip] = (true[flip] + rng.integers(1, c, int(flip.sum()))) % c
        region = styled & (rng.random(m) < w.region_flip)
        given[region] = confuser[true[region]]
        return true, given, x.astype(np.float32), _softmax(z / w.temperature).astype(np.float32)

    true, given, x, probs = images(w.n)
    _, ref_given, rx, _ = images(w.n_ref)
    copy_label = np.full(w.n, -1, dtype=np.int64)
    has = np.flatnonzero(rng.random(w.n) < w.copy_share)
    lab = true[has].copy()
    flip = rng.random(has.size) < w.noise
    lab[flip] = (lab[flip] + rng.integers(1, c, int(flip.sum()))) % c
    copy_label[has] = lab
    return LabelProblem(w, given, true, probs, x, rx, ref_given, copy_label)


def knn_labels(emb: np.ndarray, ref_emb: np.ndarray, ref_labels: np.ndarray, k: int = 10):
    """Labels of the k nearest reference rows by cosine similarity, int [N, k]."""
    a = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    b = ref_emb / np.maximum(np.linalg.norm(ref_emb, axis=1, keepdims=True), 1e-12)
    out = np.empty((a.shape[0], k), dtype=np.int64)
    for s in range(0, a.shape[0], 2048):
        sim = a[s : s + 2048] @ b.T
        idx = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        out[s : s + 2048] = ref_labels[idx]
    return out


def random_world(seed: int) -> LabelWorld:
    """A world with every parameter drawn: the family the expected-precision table is made of.

    Label noise 0-10% (people found 0.15-10.1% in the test sets of ten popular benchmarks,
    Northcutt et al. 2021), 3-30 classes, models from weak to strong, under- to overconfident,
    with or without confident systematic errors of either kind.
    """
    rng = np.random.default_rng([seed, 15485863])
    return LabelWorld(
        n=int(rng.integers(1500, 4000)),
        n_ref=3000,
        n_classes=int(rng.integers(3, 31)),
        sigma=float(rng.uniform(0.8, 2.6)),
        temperature=float(np.exp(rng.uniform(np.log(0.3), np.log(2.0)))),
        noise=float(rng.uniform(0.0, 0.10)),
        head_share=float(rng.choice([0.0, rng.uniform(0.05, 0.3)])),
        head_bias=float(rng.uniform(2.0, 8.0)),
        repr_share=float(rng.choice([0.0, rng.uniform(0.05, 0.3)])),
        region_flip=float(rng.choice([0.0, 0.0, 0.0, rng.uniform(0.1, 0.4)])),
    )
