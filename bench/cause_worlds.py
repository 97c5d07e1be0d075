"""Planted *causes* on top of the random planted worlds of ``bench/worlds.py``.

``bench/worlds.py`` plants failures (weak slices) into a tabular stand-in for an evaluation run.
Root-cause triage also needs to know *why* each failure happens, and reads more than the samples
table: a reference (training) set, per-image suspected-label-error flags, margins and
embeddings. This module adds:

- one :class:`~bench.worlds.Plant` per cause, each planting a failure on a fresh categorical
  column's value (or a class pair) with the mechanism the cause names:

  ========================  ===================================================================
  plant                     mechanism
  ========================  ===================================================================
  :class:`UnderRepresented` the value is 3-20% as common in the reference as in evaluation (or a
                            class is that rare in training); its images fail more (error odds
                            x1.5-10, as for every plant below that raises errors)
  :class:`Shortcut`         in the reference, class k carries the value 60-90% of the time
                            (others 2-10%); in evaluation the value is independent of the class,
                            and 8-60% of non-k images with it are predicted k
  :class:`Quality`          the value's images are degraded (noise sigma 8-30 grey levels, or
                            brightness below 0.15) in both sets, and fail more
  :class:`Unfamiliar`       the value's evaluation images are shifted 3-9 noise radii away in the
                            embedding space, where no reference image is, and fail more
  :class:`LabelNoise`       5-35% of the value's given labels are flipped (the model predicts the
                            true class); flipped images are flagged as suspected label errors
                            75% of the time, other errors 15-35%
  :class:`Overlapping`      classes a and b sit close together in the embedding space (both
                            sets), a's images are taken for b with low margins
  ``WeakSlice``             (``bench/worlds.py``) a weak slice with none of the above: a genuine
                            model error
  ========================  ===================================================================

- :func:`make_cause_world`: a world with a random subset of these plants, plus the parts triage
  reads (:class:`CauseWorld`: the reference table, embeddings, flags, margins, and the
  :class:`~analysis.triage.inputs.TriageInputs` with the world's slices and discovered slices).

Every plant records in ``Planted.details["excess"]`` the error probability it adds to each row,
so a benchmark can say, for any reported group, which causes truly account for its errors.
"""

from __future__ import annotations

import math
import string
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis import schema
from analysis.stats.slices import Predicate, SliceSpec, describe
from bench.worlds import Draft, Planted, WeakSlice, World, WorldConfig, make_world

CAUSE_KINDS = (
    "under_represented",
    "shortcut",
    "image_quality",
    "unfamiliar",
    "label_noise",
    "overlapping",
)
EMB_DIM = 16


def _new_column(draft: Draft, rng: np.random.Generator, stem: str, share: float):
    """A fresh categorical column (3-5 values) whose first value covers ``share`` of rows."""
    k = int(rng.integers(3, 6))
    name = stem
    i = 2
    while name in draft.samples.columns:
        name, i = f"{stem}{i}", i + 1
    values = np.array([f"{name}_{c}" for c in string.ascii_lowercase[:k]], dtype=object)
    rest = rng.dirichlet(np.full(k - 1, 3.0)) * (1 - share)
    p = np.r_[share, rest]
    col = values[rng.choice(k, draft.n, p=p)]
    draft.samples[name] = col
    draft.metadata_columns.append(name)
    return name, values[0], col == values[0]


def _raise_odds(draft: Draft, mask: np.ndarray, ratio: float) -> np.ndarray:
    """Multiply the error odds of ``mask`` rows by ``ratio``; returns the probability added."""
    p = draft.error_prob
    odds = p / (1 - p) * ratio
    new = np.where(mask, np.maximum(p, odds / (1 + odds)), p)
    added = new - p
    draft.error_prob[:] = new
    return added


def _log_uniform(rng, lo, hi) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _planted(kind, column, value, mask, excess, names, **details) -> Planted:
    spec = SliceSpec((Predicate(column, "==", value),)) if column else None
    return Planted(
        kind=kind,
        description=describe(spec, names) if spec is not None else kind,
        mask=mask,
        spec=spec,
        details={"excess": excess, "column": column, "value": value, **details},
    )


@dataclass
class UnderRepresented:
    """A value (or a class, ``by_class``) rare in the reference; its images fail more."""

    by_class: bool = False
    kind: str = "under_represented"

    def before(self, draft: Draft, rng: np.random.Generator) -> None:
        ratio = _log_uniform(rng, 1.5, 10.0)
        factor = _log_uniform(rng, 0.03, 0.2)
        if self.by_class and len(draft.class_names) >= 3:
            k = int(rng.integers(len(draft.class_names)))
            mask = draft.true_label == k
            spec = SliceSpec((Predicate(schema.LABEL, "==", k),))
            excess = _raise_odds(draft, mask, ratio)
            draft.planted.append(
                Planted(
                    self.kind,
                    describe(spec, draft.class_names),
                    mask,
                    spec,
                    {"excess": excess, "cls": k, "ref_factor": factor, "column": None},
                )
            )
            return
        col, v, mask = _new_column(draft, rng, "site", rng.uniform(0.03, 0.25))
        excess = _raise_odds(draft, mask, ratio)
        draft.planted.append(
            _planted(self.kind, col, v, mask, excess, draft.class_names, ref_factor=factor)
        )

    def after(self, draft: Draft, rng: np.random.Generator) -> None:
        return None


@dataclass
class Shortcut:
    """The reference ties a value to class k; evaluation images with it are predicted k."""

    kind: str = "shortcut"
    _state: dict = field(default_factory=dict)

    def before(self, draft: Draft, rng: np.random.Generator) -> None:
        col, v, mask = _new_column(draft, rng, "background", rng.uniform(0.12, 0.3))
        k = int(rng.integers(len(draft.class_names)))
        self._state.update(col=col, v=v, mask=mask, k=k, q=rng.uniform(0.08, 0.6))

    def after(self, draft: Draft, rng: np.random.Generator) -> None:
        st = self._state
        s = draft.samples
        v, k, q = st["mask"], st["k"], st["q"]
        pred = s[schema.PRED].to_numpy().copy()
        label = s[schema.LABEL].to_numpy()
        towards = v & (label != k) & (rng.random(draft.n) < q)
        pred[towards] = k
        s[schema.PRED] = pred
        excess = np.where(v & (label != k), q * (1 - draft.error_prob), 0.0)
        draft.planted.append(
            _planted(
                self.kind,
                st["col"],
                st["v"],
                v,
                excess,
                draft.class_names,
                cls=k,
                induced=towards,
                ref_p_v_given_k=float(rng.uniform(0.6, 0.9)),
                ref_p_v_given_not_k=float(rng.uniform(0.02, 0.1)),
            )
        )


@dataclass
class Quality:
    """The value's images are degraded (noisy or dark) in both sets and fail more."""

    kind: str = "image_quality"

    def before(self, draft: Draft, rng: np.random.Generator) -> None:
        col, v, mask = _new_column(draft, rng, "camera", rng.uniform(0.1, 0.35))
        s = draft.samples
        which = str(rng.choice(["noisy", "dark"]))
        prop = schema.NOISE if which == "noisy" else schema.BRIGHTNESS
        if prop not in s.columns:
            s[prop] = (
                rng.gamma(2.0, 0.8, draft.n) if prop == schema.NOISE else rng.beta(5, 5, draft.n)
            )
            draft.property_columns.append(prop)
        x = s[prop].to_numpy(dtype=float).copy()
        if which == "noisy":
            x = np.minimum(x, 4.0)  # clean images are clean; the camera's are grainy
            x[mask] = rng.uniform(8, 30, int(mask.sum()))
        else:
            x = np.maximum(x, 0.22)
            x[mask] = rng.uniform(0.04, 0.15, int(mask.sum()))
        s[prop] = x
        excess = _raise_odds(draft, mask, _log_uniform(rng, 1.5, 10.0))
        draft.planted.append(
            _planted(self.kind, col, v, mask, excess, draft.class_names, type=which, prop=prop)
        )

    def after(self, draft: Draft, rng: np.random.Generator) -> None:
        return None


@dataclass
class Unfamiliar:
    """The value's evaluation images lie where no reference image is; they fail more."""

    kind: str = "unfamiliar"

    def before(self, draft: Draft, rng: np.random.Generator) -> None:
        col, v, mask = _new_column(draft, rng, "firmware", rng.uniform(0.04, 0.2))
        excess = _raise_odds(draft, mask, _log_uniform(rng, 1.5, 10.0))
        direction = rng.normal(size=EMB_DIM)
        draft.planted.append(
            _planted(
                self.kind,
                col,
                v,
                mask,
                excess,
                draft.class_names,
                offset=(direction / np.linalg.norm(direction) * rng.uniform(3.0, 9.0)).tolist(),
            )
        )

    def after(self, draft: Draft, rng: np.random.Generator) -> None:
        return None


@dataclass
class LabelNoise:
    """5-35% of the value's labels are flipped; the model predicts the true class."""

    kind: str = "label_noise"
    _state: dict = field(default_factory=dict)

    def before(self, draft: Draft, rng: np.random.Generator) -> None:
        col, v, mask = _new_column(draft, rng, "annotator", rng.uniform(0.08, 0.3))
        self._state.update(col=col, v=v, mask=mask, rate=rng.uniform(0.05, 0.35))

    def after(self, draft: Draft, rng: np.random.Generator) -> None:
        st = self._state
        s = draft.samples
        c = len(draft.class_names)
        flip = st["mask"] & (rng.random(draft.n) < st["rate"])
        label = s[schema.LABEL].to_numpy().copy()
        label[flip] = (draft.true_label[flip] + rng.integers(1, c, int(flip.sum()))) % c
        s[schema.LABEL] = label
        excess = np.where(st["mask"], st["rate"] * (1 - draft.error_prob), 0.0)
        draft.planted.append(
            _planted(
                self.kind, st["col"], st["v"], st["mask"], excess, draft.class_names, flipped=flip
            )
        )


@dataclass
class Overlapping:
    """Classes a and b overlap: a's images are often taken for b, with low margins."""

    kind: str = "overlapping"
    _state: dict = field(default_factory=dict)

    def before(self, draft: Draft, rng: np.random.Generator) -> None:
        c = len(draft.class_names)
        if c < 3:
            return
        a, b = (int(x) for x in rng.choice(c, 2, replace=False))
        mask = draft.true_label == a
        ratio = _log_uniform(rng, 1.5, 8.0)
        excess = _raise_odds(draft, mask, ratio)
        self._state.update(a=a, b=b, mask=mask, excess=excess)

    def after(self, draft: Draft, rng: np.random.Generator) -> None:
        st = self._state
        if not st:
            return
        s = draft.samples
        a, b = st["a"], st["b"]
        pred = s[schema.PRED].to_numpy().copy()
        wrong_a = (draft.true_label == a) & (pred != a)
        # the extra errors of a go to b (the planted confusion)
        share = st["excess"][draft.true_label == a].mean() / max(
            draft.error_prob[draft.true_label == a].mean(), 1e-9
        )
        to_b = wrong_a & (rng.random(draft.n) < max(share, 0.5))
        pred[to_b] = b
        s[schema.PRED] = pred
        spec = SliceSpec((Predicate(schema.LABEL, "==", a),))
        draft.planted.append(
            Planted(
                self.kind,
                f"given {draft.class_names[a]} predicted as {draft.class_names[b]}",
                st["mask"],
                spec,
                {"excess": st["excess"], "a": a, "b": b, "column": None, "to_b": to_b},
            )
        )


PLANTS = {
    "under_represented": lambda: UnderRepresented(),
    "rare_class": lambda: UnderRepresented(by_class=True),
    "shortcut": Shortcut,
    "image_quality": Quality,
    "unfamiliar": Unfamiliar,
    "label_noise": LabelNoise,
    "overlapping": Overlapping,
    "genuine": WeakSlice,
}


# ----------------------------------------------------------------------------- the world


@dataclass(frozen=True, eq=False)
class CauseWorld:
    """A world with planted causes and everything triage reads."""

    world: World
    reference: pd.DataFrame
    embeddings: np.ndarray
    reference_embeddings: np.ndarray

    @property
    def planted(self) -> tuple[Planted, ...]:
        return self.world.planted

    def inputs(self, *, discover: bool = True):
        """:class:`~analysis.triage.inputs.TriageInputs` with the world's slices."""
        from analysis.stats.discovery import discover_slices
        from analysis.stats.slices import compute_slices
        from analysis.triage.inputs import TriageInputs

        w = self.world
        kw = w.discovery_kwargs()
        slices = compute_slices(w.samples, **kw)
        found = discover_slices(w.samples, **kw) if discover else None
        return TriageInputs(
            samples=w.samples,
            class_names=w.class_names,
            metadata_columns=w.metadata_columns,
            property_columns=w.property_columns,
            reference=self.reference,
            embeddings=self.embeddings,
            reference_embeddings=self.reference_embeddings,
            slices=slices,
            discovered=found,
            seed=w.seed,
        )


def _embeddings(world: World, rng: np.random.Generator, ref: pd.DataFrame):
    c = len(world.class_names)
    centroids = rng.normal(size=(c, EMB_DIM)) * 2.2
    for p in world.planted:
        if p.kind == "overlapping":  # b sits next to a
            a, b = p.details["a"], p.details["b"]
            centroids[b] = centroids[a] + rng.normal(size=EMB_DIM) * 0.4
    s = world.samples
    true = world.true_label
    pred = s[schema.PRED].to_numpy()
    # the model's features of an error lean towards what it predicted
    emb = 0.55 * centroids[true] + 0.45 * centroids[pred] + rng.normal(size=(len(s), EMB_DIM))
    for p in world.planted:
        if p.kind == "unfamiliar":
            emb[p.mask] += np.asarray(p.details["offset"])
    remb = centroids[ref[schema.LABEL].to_numpy()] + rng.normal(size=(len(ref), EMB_DIM))
    return emb.astype(np.float32), remb.astype(np.float32)


def _reference(world: World, rng: np.random.Generator) -> pd.DataFrame:
    """A training set drawn like the evaluation inputs, bent by the planted causes."""
    s = world.samples
    n_ref = int(round(len(s) * rng.uniform(1.2, 2.0)))
    w = np.ones(len(s))
    for p in world.planted:
        if p.kind == "under_represented":
            w[p.mask] *= p.details["ref_factor"]
    idx = rng.choice(len(s), n_ref, p=w / w.sum())
    cols = [*world.metadata_columns, *world.property_columns]
    ref = s.iloc[idx][cols].reset_index(drop=True)
    ref[schema.LABEL] = world.true_label[idx]
    for p in world.planted:
        if p.kind == "shortcut":
            col, v, k = p.details["column"], p.details["value"], p.details["cls"]
            others = sorted(set(s[col]) - {v})
            is_k = ref[schema.LABEL].to_numpy() == k
            prob = np.where(is_k, p.details["ref_p_v_given_k"], p.details["ref_p_v_given_not_k"])
            has_v = rng.random(n_ref) < prob
            ref[col] = np.where(has_v, v, rng.choice(others, n_ref))
    return ref


def _flags_and_margins(world: World, rng: np.random.Generator) -> None:
    s = world.samples
    n = len(s)
    wrong = ~s[schema.CORRECT].to_numpy(bool)
    p_flag = np.full(n, rng.uniform(0.15, 0.35))
    margin = np.where(wrong, rng.uniform(0.0, 0.8, n), rng.uniform(0.2, 1.0, n))
    for p in world.planted:
        if p.kind == "label_noise":
            p_flag[p.details["flipped"]] = 0.75
        if p.kind == "shortcut":
            p_flag[p.details["induced"]] = 0.4  # confident shortcut errors look mislabelled
        if p.kind == "overlapping":
            to_b = p.details["to_b"]
            margin[to_b] = rng.uniform(0.0, 0.2, int(to_b.sum()))
    s[schema.IS_LABEL_ISSUE] = wrong & (rng.random(n) < p_flag)
    s[schema.MARGIN] = margin
    s[schema.SAMPLE_ID] = [f"w{i:06d}" for i in range(n)]


def make_cause_world(
    seed: int,
    *,
    causes: tuple[str, ...] | None = None,
    config: WorldConfig | None = None,
) -> CauseWorld:
    """A random world with planted causes (module docstring).

    Parameters
    ----------
    seed : int
    causes : tuple of str, optional, keyword-only
        Names from :data:`PLANTS`; default 1-4 drawn at random (a "genuine" weak slice among
        them half the time). ``()`` gives a null world: nothing planted.
    config : WorldConfig, optional, keyword-only
        Ranges of the base world (default: ``bench/worlds.py``'s, without its own weak slices).
    """
    rng = np.random.default_rng([int(seed), 104729])
    if causes is None:
        names = [n for n in PLANTS if n != "genuine"]
        k = int(rng.integers(1, 4))
        causes = tuple(rng.choice(names, k, replace=False))
        if rng.random() < 0.5:
            causes = (*causes, "genuine")
    plants = [PLANTS[c]() for c in causes]
    cfg = config or WorldConfig(n_planted=(0, 0), n_rows=(2000, 8000), n_classes=(3, 10))
    world = make_world(int(seed), cfg, plants=plants)
    _flags_and_margins(world, rng)
    ref = _reference(world, rng)
    emb, remb = _embeddings(world, rng, ref)
    return CauseWorld(world=world, reference=ref, embeddings=emb, reference_embeddings=remb)


def _added(cw: CauseWorld) -> dict[str, np.ndarray]:
    """Error probability each kind of plant adds to each row."""
    out: dict[str, np.ndarray] = {}
    n = len(cw.world.samples)
    for p in cw.planted:
        if "excess" in p.details:
            e = np.asarray(p.details["excess"], dtype=float)
        else:  # a weak slice of bench/worlds.py: its rows' added error probability
            add = p.details.get("error_rate", 0.0) - p.details.get("base_error", 0.0)
            e = np.where(p.mask, max(add, 0.0), 0.0)
        out[p.kind] = out.get(p.kind, np.zeros(n)) + e
    return out


def true_causes(
    cw: CauseWorld,
    rows: np.ndarray,
    baseline: np.ndarray | None = None,
    *,
    within: bool = False,
    min_share: float = 0.2,
) -> set[str]:
    """The causes that truly account for at least ``min_share`` of a group's planted errors.

    ``within=False`` (slices, classes, clusters): a cause's part of the group's *excess* error
    probability over ``baseline`` (default: the other rows), as the composition estimator asks.
    ``within=True`` (a confusion pair, ``rows`` = its class): a cause's part of the error
    probability the plants add to the class's rows.
    """
    rows = np.asarray(rows, dtype=bool)
    base = ~rows if baseline is None else np.asarray(baseline, dtype=bool) & ~rows
    added = _added(cw)
    part: dict[str, float] = {}
    for kind, e in added.items():
        if within:
            part[kind] = float(e[rows].sum())
        else:
            mean_b = float(e[base].mean()) if base.any() else 0.0
            part[kind] = float(e[rows].sum() - rows.sum() * mean_b)
    total = sum(max(v, 0.0) for v in part.values())
    if total <= 1.0:  # less than one planted error: nothing to attribute
        return set()
    return {k for k, v in part.items() if k in CAUSE_KINDS and v >= min_share * total}
