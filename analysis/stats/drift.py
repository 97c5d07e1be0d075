"""Set A vs set B with the same model: has the data moved, where, and does it matter?

Per feature (one row of ``DriftReport.features``):

====================  ============================================  ===========================
feature               distance                                      test
====================  ============================================  ===========================
class balance         PSI of the class shares                       chi-square (2 x K)
predicted classes     PSI of the predicted-class shares             chi-square (2 x K)
numeric column        PSI over ``n_bins`` quantile bins of A        two-sample KS (scipy)
(image property or    (over the values themselves when a column
numeric metadata)     has at most ``n_bins`` distinct values)
categorical metadata  PSI of the value shares (missing = a value)   chi-square (2 x K)
====================  ============================================  ===========================

PSI (population stability index) is ``sum_k (b_k - a_k) ln(b_k / a_k)`` over the shares of A and
B in each bin, with half a count added to every bin so empty bins stay finite. The usual reading:
< 0.1 stable, 0.1-0.2 moderate, > 0.2 a real shift. p-values are Benjamini-Hochberg adjusted over
all features of the report.

**Flag rule** (thresholds are keyword options, recorded in ``DriftReport.thresholds``): a feature
is flagged when ``p_adj < alpha`` (0.01), or when ``psi > psi_threshold`` (0.2) and
``p_adj < psi_alpha`` (0.05). PSI alone is not enough on small sets: without any drift its
expectation is about ``(bins - 1) * (1/n_a + 1/n_b)``, 0.36 for 10 bins and 50 images each, so a
PSI above 0.2 flags only when the test agrees at the looser level.

Embedding drift (:data:`EMBEDDING_METHODS`, rows of ``DriftReport.embedding``):

- ``"domain_classifier"``: logistic regression on PCA-50 of the embeddings learns to tell A from
  B; its cross-validated (out-of-fold) ROC-AUC with DeLong's interval is the statistic. 0.5 means
  the sets are indistinguishable; flagged when the interval's lower bound exceeds
  ``auc_threshold`` (0.6). The DeLong interval treats the out-of-fold scores as one model's
  scores (a slight under-statement of the variance).
- ``"mmd"`` (optional): squared maximum mean discrepancy with an RBF kernel (median-distance
  bandwidth) on PCA-50 of a subsample, with a permutation p-value; flagged when ``p < alpha``.

``DriftReport.slices`` lists the single-predicate slices (metadata, image-property bins, true
and predicted class) whose share of the set or error rate moved most from A to B.
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import schema
from ..checks import check_confidence, check_embeddings
from .intervals import Estimate, wilson_interval

__all__ = [
    "EMBEDDING_METHODS",
    "FEATURE_COLUMNS",
    "DriftReport",
    "categorical_psi",
    "domain_classifier_auc",
    "drift_report",
    "drift_runs",
    "mmd_test",
    "psi",
]

_VERSION = 1

PSI_THRESHOLD = 0.2
ALPHA = 0.01
PSI_ALPHA = 0.05
AUC_THRESHOLD = 0.6
MISSING = "<missing>"  # categorical value of missing entries

# kinds of feature
KIND_CLASS_BALANCE = "class_balance"
KIND_PREDICTIONS = "prediction_balance"
KIND_NUMERIC = "numeric"
KIND_CATEGORICAL = "categorical"

# columns of DriftReport.features
FEATURE = "feature"  # column name ("label" / "pred" for the class balances)
KIND = "kind"
N_A = "n_a"  # non-missing values used
N_B = "n_b"
MEDIAN_A = "median_a"  # numeric features only
MEDIAN_B = "median_b"
PSI = "psi"
TEST = "test"  # "ks" or "chi2"
STATISTIC = "statistic"  # KS D or chi-square
P_VALUE = "p_value"
P_ADJ = "p_adj"  # Benjamini-Hochberg over the report's features
FLAGGED = "flagged"
FEATURE_COLUMNS = [
    FEATURE,
    KIND,
    N_A,
    N_B,
    MEDIAN_A,
    MEDIAN_B,
    PSI,
    TEST,
    STATISTIC,
    P_VALUE,
    P_ADJ,
    FLAGGED,
]

# columns of DriftReport.embedding
METHOD = "method"
LOW = "low"
HIGH = "high"
EMBEDDING_COLUMNS = [METHOD, N_A, N_B, STATISTIC, LOW, HIGH, P_VALUE, FLAGGED]

# columns of DriftReport.slices
SOURCE = "source"
COLUMN = "column"
SPEC = "spec"
DESCRIPTION = "description"
SHARE_A = "share_a"
SHARE_B = "share_b"
SHARE_DELTA = "share_delta"  # share_b - share_a
ERROR_RATE_A = "error_rate_a"
ERROR_RATE_B = "error_rate_b"
ERROR_DELTA = "error_delta"  # error_rate_b - error_rate_a
ERROR_DELTA_LOW = "error_delta_low"  # Newcombe's hybrid score interval (independent samples)
ERROR_DELTA_HIGH = "error_delta_high"
SLICE_COLUMNS = [
    SOURCE,
    COLUMN,
    SPEC,
    DESCRIPTION,
    N_A,
    N_B,
    SHARE_A,
    SHARE_B,
    SHARE_DELTA,
    ERROR_RATE_A,
    ERROR_RATE_B,
    ERROR_DELTA,
    ERROR_DELTA_LOW,
    ERROR_DELTA_HIGH,
]


# --------------------------------------------------------------------------------------------
# distances and tests


def _psi_counts(ca: np.ndarray, cb: np.ndarray) -> float:
    """PSI of two count vectors over the same bins (half a count added to every bin)."""
    ca = np.asarray(ca, dtype=np.float64)
    cb = np.asarray(cb, dtype=np.float64)
    if ca.sum() == 0 or cb.sum() == 0:
        return math.nan
    k = ca.size
    pa = (ca + 0.5) / (ca.sum() + 0.5 * k)
    pb = (cb + 0.5) / (cb.sum() + 0.5 * k)
    return float(np.sum((pb - pa) * np.log(pb / pa)))


def _finite(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    return arr[np.isfinite(arr)]


def _numeric_counts(a: np.ndarray, b: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of a and b in quantile bins of a (or per distinct value when there are few)."""
    values = np.unique(np.concatenate([a, b]))
    if values.size <= n_bins:
        k = values.size
        return (
            np.bincount(np.searchsorted(values, a), minlength=k),
            np.bincount(np.searchsorted(values, b), minlength=k),
        )
    edges = np.unique(np.quantile(a, np.arange(1, n_bins) / n_bins)) if a.size else np.zeros(0)
    k = edges.size + 1
    return (
        np.bincount(np.searchsorted(edges, a, side="right"), minlength=k),
        np.bincount(np.searchsorted(edges, b, side="right"), minlength=k),
    )


def _check_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral):
        raise TypeError(f"n_bins must be an int >= 2, got {type(n_bins).__name__}")
    if n_bins < 2:
        raise ValueError(f"n_bins must be >= 2, got {n_bins}")
    return int(n_bins)


def psi(a: Any, b: Any, *, n_bins: int = 10) -> float:
    """Population stability index of a numeric feature from A (reference) to B.

    Parameters
    ----------
    a, b : array-like of float, shape (n_a,), (n_b,)
        Values in each set; non-finite values are left out.
    n_bins : int, keyword-only
        Quantile bins of ``a`` (fewer where ties merge edges); a feature with at most ``n_bins``
        distinct values is binned per value.

    Returns
    -------
    float
        >= 0; NaN when either set has no finite value.
    """
    n_bins = _check_bins(n_bins)
    fa, fb = _finite(a, "a"), _finite(b, "b")
    return _psi_counts(*_numeric_counts(fa, fb, n_bins))


def _category_counts(a: Sequence, b: Sequence) -> tuple[np.ndarray, np.ndarray, list]:
    sa = pd.Series(a, dtype=object).where(pd.notna(pd.Series(a, dtype=object)), MISSING)
    sb = pd.Series(b, dtype=object).where(pd.notna(pd.Series(b, dtype=object)), MISSING)
    sa, sb = sa.astype(str), sb.astype(str)
    cats = sorted(set(sa) | set(sb))
    ca = sa.value_counts().reindex(cats, fill_value=0).to_numpy()
    cb = sb.value_counts().reindex(cats, fill_value=0).to_numpy()
    return ca, cb, cats


def categorical_psi(a: Any, b: Any) -> float:
    """PSI of a categorical feature: shares of every value (missing counts as a value)."""
    ca, cb, _ = _category_counts(list(a), list(b))
    return _psi_counts(ca, cb)


def _chi2_counts(ca: np.ndarray, cb: np.ndarray) -> tuple[float, float]:
    """Chi-square test of homogeneity of two count vectors (empty columns dropped)."""
    from scipy.stats import chi2_contingency

    if ca.sum() == 0 or cb.sum() == 0:
        return math.nan, math.nan
    table = np.vstack([ca, cb])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0  # one value in both sets: identical distributions
    res = chi2_contingency(table)
    return float(res.statistic), float(res.pvalue)


def _ks(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    from scipy.stats import ks_2samp

    if a.size == 0 or b.size == 0:
        return math.nan, math.nan
    res = ks_2samp(a, b)
    return float(res.statistic), float(res.pvalue)


# --------------------------------------------------------------------------------------------
# embeddings


def _subsample(x: np.ndarray, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    if x.shape[0] <= max_rows:
        return x
    return x[np.sort(rng.choice(x.shape[0], size=max_rows, replace=False))]


def _check_pair(emb_a: Any, emb_b: Any) -> tuple[np.ndarray, np.ndarray]:
    a = check_embeddings(emb_a, "embeddings_a")
    b = check_embeddings(emb_b, "embeddings_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"embeddings of A and B must have the same width, got {a.shape[1]} and {b.shape[1]} "
            "(different models?)"
        )
    return a, b


def _check_rows(max_rows: Any, name: str) -> int:
    if isinstance(max_rows, bool) or not isinstance(max_rows, numbers.Integral) or max_rows < 2:
        raise ValueError(f"{name} must be an int >= 2, got {max_rows!r}")
    return int(max_rows)


def domain_classifier_auc(
    embeddings_a: Any,
    embeddings_b: Any,
    *,
    n_components: int = 50,
    n_folds: int = 5,
    max_rows: int = 5000,
    seed: int = 0,
    confidence: float = 0.95,
) -> Estimate:
    """How well a classifier tells A's embeddings from B's (cross-validated ROC-AUC).

    Parameters
    ----------
    embeddings_a, embeddings_b : array-like of float, shape (n_a, D), (n_b, D)
    n_components : int, keyword-only
        PCA components (fewer when there are fewer rows or dimensions), fitted inside each fold.
    n_folds : int, keyword-only
        Stratified folds (fewer when a set has fewer rows).
    max_rows : int, keyword-only
        Seeded random subsample of each set, for speed.
    seed, confidence : keyword-only

    Returns
    -------
    Estimate
        Out-of-fold ROC-AUC of "is from B", DeLong interval (``method="delong"``); 0.5 = no
        drift. NaN (with a warning) when a set has fewer than 2 rows.
    """
    confidence = check_confidence(confidence)
    a, b = _check_pair(embeddings_a, embeddings_b)
    for name, v in (("n_components", n_components), ("n_folds", n_folds)):
        if (
            isinstance(v, bool)
            or not isinstance(v, numbers.Integral)
            or v < (1 if name == "n_components" else 2)
        ):
            raise ValueError(
                f"{name} must be an int >= {1 if name == 'n_components' else 2}, got {v!r}"
            )
    max_rows = _check_rows(max_rows, "max_rows")
    return _domain_core(a, b, int(n_components), int(n_folds), max_rows, int(seed), confidence)


def _domain_core(
    a: np.ndarray,
    b: np.ndarray,
    n_components: int,
    n_folds: int,
    max_rows: int,
    seed: int,
    confidence: float,
) -> Estimate:
    from .intervals import UndefinedMetricWarning

    rng = np.random.default_rng(seed)
    a, b = _subsample(a, max_rows, rng), _subsample(b, max_rows, rng)
    n = a.shape[0] + b.shape[0]
    folds = min(n_folds, a.shape[0], b.shape[0])
    if folds < 2:
        warnings.warn(
            f"domain classifier needs at least 2 images in each set, got {a.shape[0]} and "
            f"{b.shape[0]}: NaN",
            UndefinedMetricWarning,
            stacklevel=3,
        )
        return Estimate(math.nan, math.nan, math.nan, "delong", n, confidence)
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from .metrics import one_vs_rest_scores

    x = np.vstack([a, b])
    y = np.r_[np.zeros(a.shape[0], np.int64), np.ones(b.shape[0], np.int64)]
    n_train = n - int(math.ceil(n / folds))
    k = max(1, min(n_components, x.shape[1], n_train - 1))
    model = make_pipeline(
        PCA(n_components=k, random_state=seed),
        StandardScaler(),
        LogisticRegression(max_iter=2000),
    )
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    score = cross_val_predict(model, x, y, cv=cv, method="predict_proba")[:, 1]
    ovr = one_vs_rest_scores(y, np.c_[1.0 - score, score], confidence=confidence)
    row = ovr.per_class.iloc[1]
    return Estimate(
        row["roc_auc"], row["roc_auc_low"], row["roc_auc_high"], "delong", n, confidence
    )


def _pca(x: np.ndarray, k: int) -> np.ndarray:
    x = x - x.mean(axis=0)
    k = min(k, x.shape[1], max(1, x.shape[0] - 1))
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:k].T


def _mmd2(kern: np.ndarray, is_b: np.ndarray) -> float:
    """Unbiased MMD^2 from the pooled kernel matrix and a boolean membership vector."""
    ia, ib = ~is_b, is_b
    m, n = int(ia.sum()), int(ib.sum())
    kaa = kern[np.ix_(ia, ia)]
    kbb = kern[np.ix_(ib, ib)]
    kab = kern[np.ix_(ia, ib)]
    return float(
        (kaa.sum() - np.trace(kaa)) / (m * (m - 1))
        + (kbb.sum() - np.trace(kbb)) / (n * (n - 1))
        - 2.0 * kab.mean()
    )


def mmd_test(
    embeddings_a: Any,
    embeddings_b: Any,
    *,
    max_rows: int = 500,
    n_components: int = 50,
    n_permutations: int = 200,
    seed: int = 0,
) -> tuple[float, float]:
    """Kernel two-sample test: unbiased MMD^2 with an RBF kernel, permutation p-value.

    Both sets are subsampled to ``max_rows`` (seeded), pooled and projected on their first
    ``n_components`` principal components; the kernel is ``exp(-d^2 / (2 h^2))`` with ``h`` the
    median pairwise distance. ``p = (1 + #{permuted >= observed}) / (1 + n_permutations)``.

    Returns
    -------
    (mmd2, p_value) : floats; NaN when a set has fewer than 2 rows.
    """
    a, b = _check_pair(embeddings_a, embeddings_b)
    max_rows = _check_rows(max_rows, "max_rows")
    if (
        isinstance(n_permutations, bool)
        or not isinstance(n_permutations, numbers.Integral)
        or (n_permutations < 1)
    ):
        raise ValueError(f"n_permutations must be an int >= 1, got {n_permutations!r}")
    return _mmd_core(a, b, max_rows, int(n_components), int(n_permutations), int(seed))


def _mmd_core(a, b, max_rows, n_components, n_permutations, seed) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    a, b = _subsample(a, max_rows, rng), _subsample(b, max_rows, rng)
    if a.shape[0] < 2 or b.shape[0] < 2:
        return math.nan, math.nan
    x = _pca(np.vstack([a, b]).astype(np.float64), n_components)
    sq = np.sum(x * x, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0)
    off = d2[~np.eye(d2.shape[0], dtype=bool)]
    h2 = float(np.median(off)) if off.size else 1.0
    kern = np.exp(-d2 / (2.0 * (h2 if h2 > 0 else 1.0)))
    is_b = np.r_[np.zeros(a.shape[0], bool), np.ones(b.shape[0], bool)]
    observed = _mmd2(kern, is_b)
    count = sum(_mmd2(kern, rng.permutation(is_b)) >= observed for _ in range(n_permutations))
    return observed, (1.0 + count) / (1.0 + n_permutations)


@dataclass(frozen=True)
class _EmbeddingOptions:
    max_rows: int
    mmd_rows: int
    n_permutations: int
    seed: int
    confidence: float
    alpha: float
    auc_threshold: float


def _domain_row(a: np.ndarray, b: np.ndarray, o: _EmbeddingOptions) -> dict:
    est = _domain_core(a, b, 50, 5, o.max_rows, o.seed, o.confidence)
    return {
        STATISTIC: est.value,
        LOW: est.low,
        HIGH: est.high,
        P_VALUE: math.nan,
        FLAGGED: bool(est.low > o.auc_threshold),
    }


def _mmd_row(a: np.ndarray, b: np.ndarray, o: _EmbeddingOptions) -> dict:
    stat, p = _mmd_core(a, b, o.mmd_rows, 50, o.n_permutations, o.seed)
    return {STATISTIC: stat, LOW: math.nan, HIGH: math.nan, P_VALUE: p, FLAGGED: bool(p < o.alpha)}


EMBEDDING_METHODS: dict[str, Callable[[np.ndarray, np.ndarray, _EmbeddingOptions], dict]] = {
    "domain_classifier": _domain_row,
    "mmd": _mmd_row,
}


# --------------------------------------------------------------------------------------------
# the report


@dataclass(frozen=True, eq=False)
class DriftReport:
    """How set B differs from set A (see the module docstring for every statistic).

    Attributes
    ----------
    n_a, n_b : int
        Images in each set.
    features : DataFrame, one row per feature, columns :data:`FEATURE_COLUMNS`
        Flagged features first, then by PSI (largest first).
    embedding : DataFrame, one row per embedding method, columns :data:`EMBEDDING_COLUMNS`
        Empty when no embeddings were given.
    slices : DataFrame, columns :data:`SLICE_COLUMNS`
        Sorted by the absolute share change (largest first).
    thresholds : dict
        The flag thresholds used.
    warnings : tuple of str
    """

    n_a: int
    n_b: int
    features: pd.DataFrame
    embedding: pd.DataFrame
    slices: pd.DataFrame
    thresholds: dict = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    __hash__ = None  # type: ignore[assignment]
    _FRAMES = ("features", "embedding", "slices")

    @property
    def flagged_features(self) -> list[str]:
        return self.features.loc[self.features[FLAGGED], FEATURE].tolist()

    @property
    def embedding_flagged(self) -> bool:
        return bool(self.embedding[FLAGGED].any()) if len(self.embedding) else False

    @property
    def any_flagged(self) -> bool:
        return bool(self.flagged_features) or self.embedding_flagged

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DriftReport):
            return NotImplemented
        return (
            (self.n_a, self.n_b) == (other.n_a, other.n_b)
            and all(getattr(self, f).equals(getattr(other, f)) for f in self._FRAMES)
            and self.thresholds == other.thresholds
            and tuple(self.warnings) == tuple(other.warnings)
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None); :meth:`from_dict` reads it back equal."""
        from .compare import frame_to_dict

        return {
            "kind": "drift_report",
            "version": _VERSION,
            "n_a": self.n_a,
            "n_b": self.n_b,
            **{f: frame_to_dict(getattr(self, f)) for f in self._FRAMES},
            "thresholds": dict(self.thresholds),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftReport:
        from .compare import frame_from_dict

        if d.get("kind") != "drift_report" or d.get("version") != _VERSION:
            raise ValueError(
                f"expected a drift_report dict of version {_VERSION}, got "
                f"kind={d.get('kind')!r} version={d.get('version')!r}"
            )
        return cls(
            n_a=int(d["n_a"]),
            n_b=int(d["n_b"]),
            **{f: frame_from_dict(d[f]) for f in cls._FRAMES},
            thresholds=dict(d["thresholds"]),
            warnings=tuple(d["warnings"]),
        )


def _columns(value: Any, what: str, *tables: pd.DataFrame) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise TypeError(f"{what} must be a list of column names, got {value!r}")
    cols = tuple(value)
    for c in cols:
        if not isinstance(c, str):
            raise TypeError(f"{what} must hold column names (str), got {c!r}")
        for name, t in zip(("samples_a", "samples_b"), tables, strict=True):
            if c not in t.columns:
                raise ValueError(f"{what} names column {c!r} that {name} does not have")
    return cols


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _class_counts(s: pd.Series, k: int) -> np.ndarray:
    x = s.to_numpy(dtype=np.float64, na_value=np.nan)
    x = x[np.isfinite(x)].astype(np.int64)
    return np.bincount(x[(x >= 0) & (x < k)], minlength=k)


def _feature_rows(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    n_classes: int | None,
    n_bins: int,
    predictions: bool,
) -> list[dict]:
    rows = []
    for col, kind in ((schema.LABEL, KIND_CLASS_BALANCE), (schema.PRED, KIND_PREDICTIONS)):
        if (
            (col == schema.PRED and not predictions)
            or n_classes is None
            or col not in a.columns
            or col not in b.columns
        ):
            continue
        ca, cb = _class_counts(a[col], n_classes), _class_counts(b[col], n_classes)
        stat, p = _chi2_counts(ca, cb)
        rows.append(
            {
                FEATURE: col,
                KIND: kind,
                N_A: int(ca.sum()),
                N_B: int(cb.sum()),
                MEDIAN_A: math.nan,
                MEDIAN_B: math.nan,
                PSI: _psi_counts(ca, cb),
                TEST: "chi2",
                STATISTIC: stat,
                P_VALUE: p,
            }
        )
    for col in numeric:
        xa = a[col].to_numpy(dtype=np.float64, na_value=np.nan)
        xb = b[col].to_numpy(dtype=np.float64, na_value=np.nan)
        xa, xb = xa[np.isfinite(xa)], xb[np.isfinite(xb)]
        stat, p = _ks(xa, xb)
        rows.append(
            {
                FEATURE: col,
                KIND: KIND_NUMERIC,
                N_A: int(xa.size),
                N_B: int(xb.size),
                MEDIAN_A: float(np.median(xa)) if xa.size else math.nan,
                MEDIAN_B: float(np.median(xb)) if xb.size else math.nan,
                PSI: _psi_counts(*_numeric_counts(xa, xb, n_bins)),
                TEST: "ks",
                STATISTIC: stat,
                P_VALUE: p,
            }
        )
    for col in categorical:
        ca, cb, _ = _category_counts(a[col].tolist(), b[col].tolist())
        stat, p = _chi2_counts(ca, cb)
        rows.append(
            {
                FEATURE: col,
                KIND: KIND_CATEGORICAL,
                N_A: int(ca.sum()),
                N_B: int(cb.sum()),
                MEDIAN_A: math.nan,
                MEDIAN_B: math.nan,
                PSI: _psi_counts(ca, cb),
                TEST: "chi2",
                STATISTIC: stat,
                P_VALUE: p,
            }
        )
    return rows


def _newcombe_independent(
    e_a: np.ndarray, n_a: np.ndarray, e_b: np.ndarray, n_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Newcombe's hybrid score interval of ``e_b / n_b - e_a / n_a`` (independent samples)."""
    la, ua = wilson_interval(e_a, n_a)
    lb, ub = wilson_interval(e_b, n_b)
    with np.errstate(invalid="ignore", divide="ignore"):
        pa = np.where(n_a > 0, e_a / np.maximum(n_a, 1), np.nan)
        pb = np.where(n_b > 0, e_b / np.maximum(n_b, 1), np.nan)
    d = pb - pa
    low = d - np.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = d + np.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return low, high


def _empty_slices() -> pd.DataFrame:
    text = {SOURCE, COLUMN, SPEC, DESCRIPTION}
    ints = {N_A, N_B}
    return pd.DataFrame(
        {
            c: pd.Series(dtype=object if c in text else "int64" if c in ints else "float64")
            for c in SLICE_COLUMNS
        }
    )


def _slice_shift(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    metadata_columns: Sequence[str],
    property_columns: Sequence[str],
    class_names: Sequence[str] | None,
    n_bins: int,
    min_support: int,
    predictions: bool,
) -> pd.DataFrame:
    """Share and error rate of every single-predicate slice of the pooled sets, in A and B."""
    from .slices import SOURCE_CLUSTER, SOURCE_PRED, describe, slice_partitions, spec_to_json
    from .slices import SliceSpec as Spec

    core = [schema.LABEL, schema.PRED, schema.CORRECT]
    cols = list(dict.fromkeys(core + list(metadata_columns) + list(property_columns)))
    pooled = pd.concat([a[cols], b[cols]], ignore_index=True)
    parts = slice_partitions(
        pooled, metadata_columns=metadata_columns, property_columns=property_columns, n_bins=n_bins
    )
    na, nb = len(a), len(b)
    err = ~pooled[schema.CORRECT].to_numpy(dtype=bool)
    records = []
    for part in parts:
        if part.source == SOURCE_CLUSTER or (part.source == SOURCE_PRED and not predictions):
            continue
        ca, cb = part.codes[:na], part.codes[na:]
        for j, pred in enumerate(part.predicates):
            ma, mb = ca == j, cb == j
            sa, sb = int(ma.sum()), int(mb.sum())
            if max(sa, sb) < min_support:
                continue
            spec = Spec((pred,))
            records.append(
                {
                    SOURCE: part.source,
                    COLUMN: part.column,
                    SPEC: spec_to_json(spec),
                    DESCRIPTION: describe(spec, class_names),
                    N_A: sa,
                    N_B: sb,
                    "_ea": int(err[:na][ma].sum()),
                    "_eb": int(err[na:][mb].sum()),
                }
            )
    if not records:
        return _empty_slices()
    t = pd.DataFrame(records)
    n_a, n_b = t[N_A].to_numpy(), t[N_B].to_numpy()
    e_a, e_b = t.pop("_ea").to_numpy(), t.pop("_eb").to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        t[SHARE_A] = n_a / na if na else np.nan
        t[SHARE_B] = n_b / nb if nb else np.nan
        t[SHARE_DELTA] = t[SHARE_B] - t[SHARE_A]
        t[ERROR_RATE_A] = np.where(n_a > 0, e_a / np.maximum(n_a, 1), np.nan)
        t[ERROR_RATE_B] = np.where(n_b > 0, e_b / np.maximum(n_b, 1), np.nan)
    t[ERROR_DELTA] = t[ERROR_RATE_B] - t[ERROR_RATE_A]
    low, high = _newcombe_independent(e_a, n_a, e_b, n_b)
    t[ERROR_DELTA_LOW], t[ERROR_DELTA_HIGH] = low, high
    order = np.lexsort(
        (-t[ERROR_DELTA].abs().fillna(0).to_numpy(), -t[SHARE_DELTA].abs().fillna(0).to_numpy())
    )
    return t.iloc[order].reset_index(drop=True)[SLICE_COLUMNS]


def drift_report(
    samples_a: pd.DataFrame,
    samples_b: pd.DataFrame,
    *,
    embeddings_a: Any = None,
    embeddings_b: Any = None,
    property_columns: Sequence[str] = (),
    metadata_columns: Sequence[str] = (),
    class_names: Sequence[str] | None = None,
    embedding_methods: Sequence[str] = ("domain_classifier",),
    predictions: bool = True,
    n_bins: int = 10,
    psi_threshold: float = PSI_THRESHOLD,
    alpha: float = ALPHA,
    psi_alpha: float = PSI_ALPHA,
    auc_threshold: float = AUC_THRESHOLD,
    max_embedding_rows: int = 5000,
    mmd_rows: int = 500,
    n_permutations: int = 200,
    min_support: int = 20,
    slice_bins: int = 5,
    seed: int = 0,
    confidence: float = 0.95,
) -> DriftReport:
    """Compare two image sets analysed with the same model.

    Parameters
    ----------
    samples_a, samples_b : DataFrame
        The sets' samples tables (A is the reference). ``label`` and ``pred`` give the class
        balances; ``correct`` lets the slice table show error rates.
    embeddings_a, embeddings_b : array-like [n_a, D], [n_b, D], optional
        Row-aligned with the samples; both or neither.
    property_columns : list of str
        Numeric image properties (``schema.PROPERTY_COLUMNS``).
    metadata_columns : list of str
        Numeric metadata with more than ``n_bins`` distinct values is numeric, the rest
        categorical.
    class_names : list of str, optional
        Classes ``0..C-1``; default ``max(label, pred) + 1`` classes.
    embedding_methods : list of str
        Keys of :data:`EMBEDDING_METHODS`.
    predictions : bool
        Include the predicted-class balance and predicted-class slices (a data shift only when
        both sets were predicted by the same model).
    n_bins : int
        PSI bins for numeric features.
    psi_threshold, alpha, psi_alpha, auc_threshold : float
        The flag rule (module docstring).
    max_embedding_rows, mmd_rows, n_permutations : int
        Subsample sizes of the domain classifier and the MMD test; MMD permutations.
    min_support : int
        Slices with fewer images in both sets are left out of the slice table.
    slice_bins : int
        Quantile bins per numeric column for the slice table.
    seed, confidence : keyword-only

    Returns
    -------
    DriftReport
        Empty sets give NaN statistics and nothing flagged.
    """
    from .slices import bh_adjust

    for name, s in (("samples_a", samples_a), ("samples_b", samples_b)):
        if not isinstance(s, pd.DataFrame):
            raise TypeError(f"{name} must be a pandas DataFrame, got {type(s).__name__}")
    props = _columns(property_columns, "property_columns", samples_a, samples_b)
    meta = _columns(metadata_columns, "metadata_columns", samples_a, samples_b)
    for c in props:
        for name, s in (("samples_a", samples_a), ("samples_b", samples_b)):
            if not _is_numeric(s[c]):
                raise TypeError(
                    f"property column {c!r} of {name} must be numeric, got {s[c].dtype}"
                )
    if isinstance(embedding_methods, str) or not isinstance(embedding_methods, Iterable):
        raise TypeError(f"embedding_methods must be a list of names, got {embedding_methods!r}")
    methods = tuple(embedding_methods)
    for m in methods:
        if m not in EMBEDDING_METHODS:
            raise ValueError(
                f"unknown embedding method {m!r}; expected one of {', '.join(EMBEDDING_METHODS)}"
            )
    n_bins = _check_bins(n_bins)
    slice_bins = _check_bins(slice_bins)
    for name, v in (
        ("psi_threshold", psi_threshold),
        ("alpha", alpha),
        ("psi_alpha", psi_alpha),
        ("auc_threshold", auc_threshold),
        ("confidence", confidence),
    ):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise TypeError(f"{name} must be a finite float, got {v!r}")
    for name, v in (("alpha", alpha), ("psi_alpha", psi_alpha), ("confidence", confidence)):
        if not 0.0 < float(v) < 1.0:
            raise ValueError(f"{name} must be in (0, 1), got {v!r}")
    if (
        isinstance(min_support, bool)
        or not isinstance(min_support, numbers.Integral)
        or (min_support < 1)
    ):
        raise ValueError(f"min_support must be an int >= 1, got {min_support!r}")
    if (embeddings_a is None) != (embeddings_b is None):
        raise ValueError("give embeddings for both sets or for neither")
    emb = None
    if embeddings_a is not None:
        emb = _check_pair(embeddings_a, embeddings_b)
        for name, e, s in (
            ("embeddings_a", emb[0], samples_a),
            ("embeddings_b", emb[1], samples_b),
        ):
            if e.shape[0] != len(s):
                raise ValueError(f"{name} has {e.shape[0]} rows but its samples table has {len(s)}")
    n_classes = None
    if class_names is not None:
        if isinstance(class_names, str) or not isinstance(class_names, Iterable):
            raise TypeError(f"class_names must be a list of str or None, got {class_names!r}")
        class_names = [str(c) for c in class_names]
        n_classes = len(class_names)
    else:
        tops = [
            int(s[c].max())
            for s in (samples_a, samples_b)
            for c in (schema.LABEL, schema.PRED)
            if c in s.columns and len(s) and _is_numeric(s[c])
        ]
        n_classes = max(tops) + 1 if tops else None

    numeric = list(props)
    categorical = []
    for c in meta:
        both = pd.concat([samples_a[c], samples_b[c]], ignore_index=True)
        if _is_numeric(both) and both.dropna().nunique() > n_bins:
            numeric.append(c)
        else:
            categorical.append(c)
    rows = _feature_rows(
        samples_a,
        samples_b,
        numeric=numeric,
        categorical=categorical,
        n_classes=n_classes,
        n_bins=n_bins,
        predictions=bool(predictions),
    )
    features = pd.DataFrame(rows, columns=FEATURE_COLUMNS[:-2])
    features[P_ADJ] = bh_adjust(features[P_VALUE].to_numpy(dtype=np.float64))
    p_adj = features[P_ADJ].to_numpy()
    psi_v = features[PSI].to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        features[FLAGGED] = (p_adj < alpha) | ((psi_v > psi_threshold) & (p_adj < psi_alpha))
    features = features.astype(
        {N_A: "int64", N_B: "int64", FLAGGED: bool, FEATURE: "str", KIND: "str", TEST: "str"}
    )
    order = np.lexsort((-np.nan_to_num(psi_v, nan=-1.0), ~features[FLAGGED].to_numpy()))
    features = features.iloc[order].reset_index(drop=True)[FEATURE_COLUMNS]

    notes: list[str] = []
    embedding_rows = []
    if emb is not None:
        opts = _EmbeddingOptions(
            max_rows=_check_rows(max_embedding_rows, "max_embedding_rows"),
            mmd_rows=_check_rows(mmd_rows, "mmd_rows"),
            n_permutations=int(n_permutations),
            seed=int(seed),
            confidence=float(confidence),
            alpha=float(alpha),
            auc_threshold=float(auc_threshold),
        )
        for m in methods:
            row = EMBEDDING_METHODS[m](emb[0], emb[1], opts)
            embedding_rows.append({METHOD: m, N_A: emb[0].shape[0], N_B: emb[1].shape[0], **row})
    elif methods:
        notes.append("no embeddings given: embedding drift not computed")
    embedding = pd.DataFrame(embedding_rows, columns=EMBEDDING_COLUMNS).astype(
        {
            METHOD: "str",
            N_A: "int64",
            N_B: "int64",
            STATISTIC: "float64",
            LOW: "float64",
            HIGH: "float64",
            P_VALUE: "float64",
            FLAGGED: bool,
        }
    )

    core = [schema.LABEL, schema.PRED, schema.CORRECT]
    if all(c in s.columns for s in (samples_a, samples_b) for c in core) and len(samples_a) + len(
        samples_b
    ):
        slices = _slice_shift(
            samples_a,
            samples_b,
            metadata_columns=meta,
            property_columns=props,
            class_names=class_names,
            n_bins=slice_bins,
            min_support=int(min_support),
            predictions=bool(predictions),
        )
    else:
        slices = _empty_slices()
        if len(samples_a) + len(samples_b):
            notes.append(f"slice table needs columns {core} in both sets")
    thresholds = {
        "psi_threshold": float(psi_threshold),
        "alpha": float(alpha),
        "psi_alpha": float(psi_alpha),
        "auc_threshold": float(auc_threshold),
        "n_bins": n_bins,
    }
    return DriftReport(
        n_a=len(samples_a),
        n_b=len(samples_b),
        features=features,
        embedding=embedding,
        slices=slices,
        thresholds=thresholds,
        warnings=tuple(notes),
    )


def drift_runs(run_a: Any, run_b: Any, **kwargs: Any) -> DriftReport:
    """:func:`drift_report` on two runs: classes, metadata columns shared by both, image
    properties and embeddings come from the runs.

    Embedding drift and the predicted-class balance need both runs to come from the same model
    (same checkpoint sha256); otherwise they are skipped with a warning in the report, since
    they would measure the difference between the models. ``kwargs`` are passed on.
    """
    from ..store.runstore import as_run

    a, b = as_run(run_a, name="run_a"), as_run(run_b, name="run_b")
    if a.class_names != b.class_names:
        raise ValueError(
            f"the runs have different classes ({a.class_names[:10]} vs {b.class_names[:10]}); "
            "drift is measured between sets with the same classes"
        )
    sa, sb = a.samples, b.samples
    notes = []
    emb_a = emb_b = None
    sha_a = ((a.manifest.get("inputs") or {}).get("model") or {}).get("sha256")
    sha_b = ((b.manifest.get("inputs") or {}).get("model") or {}).get("sha256")
    same_model = sha_a == sha_b
    if not same_model:
        notes.append(
            "the runs were made with different models: embedding drift and predicted-class "
            "shares skipped (they would measure the models, not the data)"
        )
    elif a.embeddings is not None and b.embeddings is not None:
        emb_a, emb_b = np.asarray(a.embeddings), np.asarray(b.embeddings)
    defaults = {
        "predictions": same_model,
        "class_names": a.class_names,
        "metadata_columns": [
            c
            for c in a.metadata_columns
            if c in b.metadata_columns and c in sa.columns and c in sb.columns
        ],
        "property_columns": [
            c for c in schema.PROPERTY_COLUMNS if c in sa.columns and c in sb.columns
        ],
        "embeddings_a": emb_a,
        "embeddings_b": emb_b,
    }
    report = drift_report(sa, sb, **{**defaults, **kwargs})
    if notes:
        report = DriftReport(
            report.n_a,
            report.n_b,
            report.features,
            report.embedding,
            report.slices,
            report.thresholds,
            tuple(notes) + report.warnings,
        )
    return report
