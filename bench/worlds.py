"""Random planted worlds: tabular stand-ins for an evaluation run, with known failures.

A *world* is what slice discovery (and root-cause triage) sees of a run: a samples table with
``label``, ``pred``, ``correct``, metadata columns, image-property columns and an embedding
``cluster``, and no images. Each world is drawn from a seed: its size, its classes and their
balance, how many metadata columns it has, their cardinality and how they correlate with each
other and with the class, which image properties it has, the model's base error rate, how
systematic its errors are, and 0-4 planted weak slices (conjunctions of 1-3 conditions on inputs:
metadata values, property tails or ranges, the true class) of varied size and effect. Errors
elsewhere are independent of every column. The truth is kept beside the table: each planted
slice's rows, and every row's error probability, so a benchmark can score what a detector
reports without looking at how it works.

Why tabular: discovery and triage read columns, not pixels; thousands of worlds take seconds.

Public API (documented here, used by ``bench/bench_discovery.py`` and meant to be extended):

- :class:`WorldConfig` - the ranges every world is drawn from (frozen; ``replace`` to vary).
- :func:`make_world` ``(seed, config=None, *, n_planted=None, plants=None) -> World``.
- :class:`World` - the finished world: ``samples``, ``class_names``, ``metadata_columns``,
  ``property_columns``, ``cluster_column``, ``planted`` (tuple of :class:`Planted`),
  ``error_prob`` (float [N], every row's true error probability), ``true_label`` (int [N]);
  ``discovery_kwargs()`` gives the keyword arguments of ``discover_slices``/``compute_slices``.
- :class:`Planted` - one planted failure: ``kind``, ``description``, ``mask`` (bool [N]),
  ``spec`` (a :class:`~analysis.stats.slices.SliceSpec` when it is a slice, else None), and
  ``details`` (free-form numbers: target error rate, share, ...).
- :class:`Plant` - the extension point. A plant has a ``kind`` and two hooks on the
  :class:`Draft` (the world under construction): ``before(draft, rng)`` runs before outcomes are
  drawn (add columns, raise ``draft.error_prob`` on some rows, record a :class:`Planted`);
  ``after(draft, rng)`` runs after errors and predictions exist (flip given labels, copy rows,
  change predictions; ``correct`` is recomputed from ``label`` and ``pred`` afterwards).
  :class:`WeakSlice` is the built-in plant; root-cause triage adds its own (label noise in a
  slice, a spurious column, an under-represented condition, ...) by passing ``plants=[...]``.
- :func:`jaccard`, :func:`first_match` (rank at which a planted mask is found in a ranked list
  of masks) and :func:`truly_worse` (is a reported slice worse in truth, by the known error
  probabilities, than the rows outside it): the scoring every benchmark shares.

Everything is NumPy + pandas, deterministic in the seed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from analysis import schema
from analysis.stats.slices import Predicate, SliceSpec, apply_slice, describe

__all__ = [
    "Draft",
    "Plant",
    "Planted",
    "WeakSlice",
    "World",
    "WorldConfig",
    "first_match",
    "jaccard",
    "make_world",
    "truly_worse",
]

# Properties a world may carry, with a sampler each (plausible shapes; ties for width/height).
_PROPERTY_SAMPLERS = {
    schema.BRIGHTNESS: lambda rng, n: rng.beta(2.5, 2.5, n),
    schema.CONTRAST: lambda rng, n: 0.5 * rng.beta(2, 5, n),
    schema.SHARPNESS: lambda rng, n: rng.lognormal(5, 1.2, n).round(1),
    schema.SATURATION: lambda rng, n: rng.beta(2, 3, n),
    schema.NOISE: lambda rng, n: rng.gamma(2.0, 1.5, n),
    schema.WIDTH: lambda rng, n: rng.choice([224, 320, 640, 1024, 3024], n, p=_p5),
    schema.ASPECT_RATIO: lambda rng, n: np.exp(rng.normal(0.2, 0.25, n)).round(2),
    schema.FILE_SIZE: lambda rng, n: rng.lognormal(11, 0.8, n).round(),
}
_p5 = [0.05, 0.15, 0.5, 0.2, 0.1]


@dataclass(frozen=True)
class WorldConfig:
    """Ranges a world is drawn from (each inclusive; a world draws one value of each).

    Attributes
    ----------
    n_rows : (int, int)
        Rows, drawn log-uniformly.
    n_classes : (int, int)
    class_imbalance : float
        Dirichlet concentration of the class prior (small = imbalanced); drawn per world between
        this and 20.
    n_metadata : (int, int)
        Metadata columns. Each is categorical (2-12 values, skewed frequencies) or, with
        probability ``numeric_share``, numeric (continuous or integer-valued).
    correlated_share : float
        Chance that a metadata column is a noisy copy of an earlier one (a second camera field,
        a site and its region): it then agrees with it on 60-95% of rows.
    label_dependent_share : float
        Chance that a categorical column's frequencies depend on the true class.
    n_properties : (int, int)
        Image-property columns (schema names, so descriptions use their words).
    base_error : (float, float)
        Error rate outside every planted slice.
    n_planted : (int, int)
        Planted weak slices (overridden by ``make_world(n_planted=...)``).
    depth : (int, int)
        Conditions per planted slice.
    share : (float, float)
        Planted slice size as a share of rows (log-uniform); slices are redrawn until they fall
        in this range and hold at least ``min_rows`` rows.
    odds_ratio : (float, float)
        Effect: odds of an error inside the slice over the base odds (log-uniform).
    systematic : (float, float)
        Share of a world's errors that go to one fixed "confuser" class per true class (the rest
        go to a uniformly drawn other class).
    cluster_follows_pred : float
        Chance that an error's embedding cluster is its *predicted* class's cluster (errors sit
        near what the model thinks they are), which makes cluster slices worse by construction.
    """

    n_rows: tuple[int, int] = (1500, 8000)
    n_classes: tuple[int, int] = (2, 12)
    class_imbalance: float = 1.0
    n_metadata: tuple[int, int] = (1, 7)
    numeric_share: float = 0.25
    correlated_share: float = 0.25
    label_dependent_share: float = 0.25
    n_properties: tuple[int, int] = (0, 5)
    base_error: tuple[float, float] = (0.05, 0.30)
    n_planted: tuple[int, int] = (0, 4)
    depth: tuple[int, int] = (1, 3)
    share: tuple[float, float] = (0.02, 0.30)
    odds_ratio: tuple[float, float] = (2.0, 12.0)
    systematic: tuple[float, float] = (0.0, 0.8)
    cluster_follows_pred: float = 0.5
    min_rows: int = 30


@dataclass(frozen=True, eq=False)
class Planted:
    """One planted failure and its truth.

    Attributes
    ----------
    kind : str
        ``"weak_slice"`` for :class:`WeakSlice`; plants of other modules name their own.
    description : str
        Plain words (``describe(spec)`` for a slice).
    mask : np.ndarray
        bool [N], the rows it affects.
    spec : SliceSpec or None
        The slice as discovery would write it, when the failure is a slice of the inputs.
    details : dict
        Numbers of the plant (``share``, ``error_rate``, ``odds_ratio``, ...).
    """

    kind: str
    description: str
    mask: np.ndarray
    spec: SliceSpec | None = None
    details: dict = field(default_factory=dict)


@dataclass(eq=False)
class Draft:
    """A world under construction; plants read and change it.

    ``samples`` holds the input columns (and, in ``after`` hooks, ``label``, ``pred`` and
    ``correct``); ``error_prob`` is each row's probability of a model error (set ``before``
    outcomes are drawn); ``true_label`` the class a row really is (``label`` starts equal to it).
    """

    samples: pd.DataFrame
    class_names: list[str]
    metadata_columns: list[str]
    property_columns: list[str]
    true_label: np.ndarray
    error_prob: np.ndarray
    base_error: float
    confuser: np.ndarray  # int [C]: the class a systematic error of class c goes to
    systematic: float
    config: WorldConfig
    planted: list[Planted] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.samples)

    def input_columns(self) -> list[str]:
        """Columns a planted input condition may use: metadata, properties, the true class."""
        return [*self.metadata_columns, *self.property_columns, schema.LABEL]


class Plant(Protocol):
    """Extension point: a planted failure (see the module docstring)."""

    kind: str

    def before(self, draft: Draft, rng: np.random.Generator) -> None: ...

    def after(self, draft: Draft, rng: np.random.Generator) -> None: ...


@dataclass(frozen=True, eq=False)
class World:
    """A finished world; see the module docstring."""

    seed: int
    samples: pd.DataFrame
    class_names: list[str]
    metadata_columns: list[str]
    property_columns: list[str]
    cluster_column: str
    planted: tuple[Planted, ...]
    error_prob: np.ndarray
    true_label: np.ndarray
    base_error: float
    systematic: float
    config: WorldConfig

    def discovery_kwargs(self) -> dict:
        """Keyword arguments of ``discover_slices`` / ``compute_slices`` for this world."""
        return dict(
            metadata_columns=list(self.metadata_columns),
            property_columns=list(self.property_columns),
            cluster_column=self.cluster_column,
            class_names=list(self.class_names),
        )

    def planted_of(self, kind: str) -> list[Planted]:
        return [p for p in self.planted if p.kind == kind]


# ----------------------------------------------------------------------------- drawing


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def _int_between(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _categorical_column(
    rng: np.random.Generator, name: str, n: int, label: np.ndarray, n_classes: int, cfg
) -> np.ndarray:
    k = int(rng.integers(2, 13))
    values = np.array([f"{name}_{chr(97 + i)}" for i in range(k)], dtype=object)
    freq = rng.dirichlet(np.full(k, rng.uniform(0.5, 5.0)))
    if rng.random() < cfg.label_dependent_share:
        # frequencies tilt with the class: a site that sees more of some classes
        tilt = rng.dirichlet(np.full(k, 1.0), size=n_classes)
        per_class = 0.5 * freq[None, :] + 0.5 * tilt
        u = rng.random(n)
        cum = np.cumsum(per_class[label], axis=1)
        codes = (u[:, None] > cum).sum(axis=1).clip(0, k - 1)
    else:
        codes = rng.choice(k, n, p=freq)
    return values[codes]


def _numeric_column(rng: np.random.Generator, n: int) -> np.ndarray:
    kind = rng.integers(0, 3)
    if kind == 0:
        return rng.uniform(0, 24, n)  # an hour of the day
    if kind == 1:
        return rng.normal(0, 1, n) * rng.uniform(1, 100)
    return rng.integers(0, int(rng.integers(8, 60)), n).astype(np.int64)  # integer-valued, ties


def _noisy_copy(rng: np.random.Generator, source: np.ndarray, name: str) -> np.ndarray:
    """A column that agrees with ``source`` (relabelled) on 60-95% of rows."""
    agree = rng.uniform(0.6, 0.95)
    if source.dtype == object:
        uniq = np.unique(source)
        mapping = {u: f"{name}_{chr(97 + i)}" for i, u in enumerate(uniq)}
        out = np.array([mapping[v] for v in source], dtype=object)
        other = np.array(list(mapping.values()), dtype=object)
        swap = rng.random(len(source)) > agree
        out[swap] = rng.choice(other, int(swap.sum()))
        return out
    noise = rng.normal(0, np.std(source) * (1 - agree) * 3 + 1e-9, len(source))
    return source + noise


def _draft(rng: np.random.Generator, cfg: WorldConfig) -> Draft:
    n = int(round(_log_uniform(rng, *cfg.n_rows)))
    c = _int_between(rng, cfg.n_classes)
    prior = rng.dirichlet(np.full(c, rng.uniform(cfg.class_imbalance, 20.0)))
    prior = 0.9 * prior + 0.1 / c  # every class present
    true = rng.choice(c, n, p=prior).astype(np.int64)
    cols: dict[str, np.ndarray] = {}
    meta: list[str] = []
    for j in range(_int_between(rng, cfg.n_metadata)):
        name = f"m{j}"
        if meta and rng.random() < cfg.correlated_share:
            cols[name] = _noisy_copy(rng, cols[meta[int(rng.integers(len(meta)))]], name)
        elif rng.random() < cfg.numeric_share:
            cols[name] = _numeric_column(rng, n)
        else:
            cols[name] = _categorical_column(rng, name, n, true, c, cfg)
        meta.append(name)
    k = _int_between(rng, cfg.n_properties)
    props = list(rng.choice(list(_PROPERTY_SAMPLERS), size=k, replace=False)) if k else []
    props = [str(p) for p in props]
    for p in props:
        cols[p] = _PROPERTY_SAMPLERS[p](rng, n)
    samples = pd.DataFrame(cols, index=pd.RangeIndex(n))
    samples[schema.LABEL] = true
    base = float(rng.uniform(*cfg.base_error))
    confuser = (np.arange(c) + rng.integers(1, c, size=c)) % c
    return Draft(
        samples=samples,
        class_names=[f"class{k}" for k in range(c)],
        metadata_columns=meta,
        property_columns=props,
        true_label=true.copy(),
        error_prob=np.full(n, base),
        base_error=base,
        confuser=confuser,
        systematic=float(rng.uniform(*cfg.systematic)),
        config=cfg,
    )


def _condition(rng: np.random.Generator, draft: Draft, column: str) -> Predicate:
    """One random input condition on ``column``: a value, or a tail or range of a number."""
    x = draft.samples[column]
    if column == schema.LABEL:
        return Predicate(schema.LABEL, "==", int(rng.integers(len(draft.class_names))))
    values = x.to_numpy()
    distinct = np.unique(values)
    if not pd.api.types.is_numeric_dtype(x) or len(distinct) <= 5:
        counts = pd.Series(values).value_counts(normalize=True)
        # prefer values that are neither tiny nor most of the data
        w = np.clip(counts.to_numpy(), 0.01, 0.6) * (counts.to_numpy() < 0.7)
        w = w / w.sum() if w.sum() > 0 else np.full(len(counts), 1 / len(counts))
        v = counts.index[int(rng.choice(len(counts), p=w))]
        return Predicate(column, "==", v.item() if hasattr(v, "item") else v)
    q = float(rng.uniform(0.05, 0.35))
    shape = rng.integers(0, 3)
    if shape == 0:
        return Predicate(column, "<", float(np.quantile(values, q)))
    if shape == 1:
        return Predicate(column, ">=", float(np.quantile(values, 1 - q)))
    lo = float(rng.uniform(0.1, 0.9 - q))
    a, b = np.quantile(values, [lo, lo + q])
    if not a < b:
        return Predicate(column, ">=", float(np.quantile(values, 1 - q)))
    return Predicate(column, "between", (float(a), float(b)))


@dataclass(frozen=True)
class WeakSlice:
    """The built-in plant: a conjunction of input conditions with a higher error rate.

    Drawn at ``before`` time: a wanted share (log-uniform in ``config.share``), then up to 50
    draws of ``depth`` distinct input columns with one condition each; the draw closest to the
    wanted share among those holding a share in ``config.share`` and ``config.min_rows`` rows
    is planted;
    its rows' error odds become ``odds_ratio`` times the base odds (overlapping slices keep the
    larger probability). A world where no draw fits gets no slice of this plant.
    """

    depth: int | None = None
    odds_ratio: float | None = None
    kind: str = "weak_slice"

    def before(self, draft: Draft, rng: np.random.Generator) -> None:
        cfg = draft.config
        columns = draft.input_columns()
        want = _log_uniform(rng, *cfg.share)
        best = None  # (distance to the wanted share, spec, mask)
        for _ in range(50):
            depth = min(self.depth or _int_between(rng, cfg.depth), len(columns))
            picked = [str(c) for c in rng.choice(columns, size=depth, replace=False)]
            spec = SliceSpec(tuple(_condition(rng, draft, c) for c in picked))
            mask = apply_slice(draft.samples, spec)
            share = float(mask.mean())
            if mask.sum() < cfg.min_rows or not cfg.share[0] <= share <= cfg.share[1]:
                continue
            distance = abs(math.log(share / want))
            if best is None or distance < best[0]:
                best = (distance, spec, mask)
            if distance < 0.7:
                break
        if best is None:
            return
        _, spec, mask = best
        share = float(mask.mean())
        ratio = self.odds_ratio or _log_uniform(rng, *cfg.odds_ratio)
        base = draft.base_error
        odds = base / (1 - base) * ratio
        rate = odds / (1 + odds)
        draft.error_prob[mask] = np.maximum(draft.error_prob[mask], rate)
        draft.planted.append(
            Planted(
                kind=self.kind,
                description=describe(spec, draft.class_names),
                mask=mask,
                spec=spec,
                details={
                    "share": share,
                    "rows": int(mask.sum()),
                    "depth": spec.depth,
                    "odds_ratio": ratio,
                    "error_rate": rate,
                    "base_error": base,
                },
            )
        )

    def after(self, draft: Draft, rng: np.random.Generator) -> None:
        return None


def _outcomes(draft: Draft, rng: np.random.Generator) -> None:
    """Draw errors from ``error_prob``, predictions (systematic or not) and the clusters."""
    n, c = draft.n, len(draft.class_names)
    true = draft.true_label
    error = rng.random(n) < draft.error_prob
    other = (true + rng.integers(1, c, size=n)) % c if c > 1 else true
    systematic = rng.random(n) < draft.systematic
    wrong_pred = np.where(systematic, draft.confuser[true], other)
    pred = np.where(error, wrong_pred, true)
    s = draft.samples
    s[schema.LABEL] = true.copy()
    s[schema.PRED] = pred.astype(np.int64)
    # clusters: one or two per class (split by a metadata column where there is one); an error
    # sits in its predicted class's cluster with probability cluster_follows_pred
    split = np.zeros(n, dtype=np.int64)
    cats = [m for m in draft.metadata_columns if not pd.api.types.is_numeric_dtype(s[m])]
    if cats:
        split = pd.factorize(s[cats[0]])[0] % 2
    near = np.where(error & (rng.random(n) < draft.config.cluster_follows_pred), pred, true)
    cluster = near * 2 + split
    cluster[rng.random(n) < 0.05] = -1
    s[schema.CLUSTER] = cluster.astype(np.int64)


def make_world(
    seed: int,
    config: WorldConfig | None = None,
    *,
    n_planted: int | None = None,
    plants: list[Plant] | None = None,
) -> World:
    """Draw one world.

    Parameters
    ----------
    seed : int
        Everything about the world follows from it (and the config).
    config : WorldConfig, optional
        Ranges to draw from; default :class:`WorldConfig()`.
    n_planted : int, optional, keyword-only
        Number of :class:`WeakSlice` plants (default: drawn from ``config.n_planted``); 0 gives a
        null world, where errors depend on no column.
    plants : list of Plant, optional, keyword-only
        Plants to apply instead of the default weak slices (pass ``[WeakSlice(), MyPlant()]`` to
        add to them). Each plant's ``before`` runs in order, then outcomes are drawn, then each
        ``after``; ``correct`` is recomputed last.

    Returns
    -------
    World
    """
    cfg = config or WorldConfig()
    rng = np.random.default_rng([int(seed), 7919])
    draft = _draft(rng, cfg)
    if plants is None:
        k = _int_between(rng, cfg.n_planted) if n_planted is None else int(n_planted)
        plants = [WeakSlice() for _ in range(k)]
    for plant in plants:
        plant.before(draft, rng)
    _outcomes(draft, rng)
    for plant in plants:
        plant.after(draft, rng)
    s = draft.samples
    s[schema.CORRECT] = (s[schema.LABEL] == s[schema.PRED]).to_numpy()
    return World(
        seed=int(seed),
        samples=s,
        class_names=draft.class_names,
        metadata_columns=draft.metadata_columns,
        property_columns=draft.property_columns,
        cluster_column=schema.CLUSTER,
        planted=tuple(draft.planted),
        error_prob=draft.error_prob,
        true_label=draft.true_label,
        base_error=draft.base_error,
        systematic=draft.systematic,
        config=cfg,
    )


# ----------------------------------------------------------------------------- scoring


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """|a & b| / |a | b| of two boolean masks (0 when both are empty)."""
    union = int(np.count_nonzero(a | b))
    return int(np.count_nonzero(a & b)) / union if union else 0.0


def first_match(planted: np.ndarray, ranked: list[np.ndarray], *, min_jaccard: float) -> int | None:
    """1-based rank of the first mask in ``ranked`` with Jaccard >= ``min_jaccard`` to
    ``planted``, or None when none is."""
    for rank, mask in enumerate(ranked, start=1):
        if jaccard(planted, mask) >= min_jaccard:
            return rank
    return None


def truly_worse(world: World, mask: np.ndarray, *, min_ratio: float = 1.1) -> bool:
    """Whether the rows of ``mask`` are worse *in truth* than the rest.

    Truth is the known error probability of every row: the slice is truly worse when its rows'
    mean error probability is at least ``min_ratio`` times the rest's (10% higher by default; a
    slice that merely holds a few more rows of a planted slice than its share, by chance, is not
    a finding). A reported slice that is not truly worse is a false discovery, whatever its
    observed error rate; a slice defined by the model's own predictions can look worse by
    construction and still be false here.
    """
    m = np.asarray(mask, dtype=bool)
    if not m.any() or m.all():
        return False
    p = world.error_prob
    return bool(p[m].mean() >= min_ratio * p[~m].mean())
