"""Image-set queries: the filters behind every gallery, queue and deep link.

A :class:`ImageQuery` is a small serialisable value (it round-trips through URL query parameters)
that one pure function applies to a run's samples table. Every chart that drills down to images
builds an ImageQuery; the gallery, the review queue and the report read it back.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema

# re-exported: pages import them from here
from ..store.selections import SELECTIONS_DIR, load_selection, save_selection  # noqa: F401

SORT_KEYS = {
    "loss": "highest loss first (most confidently wrong)",
    "confidence": "confidence",
    "margin": "margin between the top two classes",
    "entropy": "entropy of the prediction",
    "true_prob": "probability of the given label",
    "label_quality": "label quality (lowest = most suspicious label)",
    "relpath": "file path",
    # image properties: e.g. the darkest or blurriest first (low to high with desc off)
    "brightness": "brightness",
    "contrast": "contrast",
    "sharpness": "sharpness (Laplacian variance)",
    "saturation": "saturation",
    "noise": "noise (estimated sigma)",
    "file_size": "file size",
}

# Query-parameter names, defined once.
P_TRUE, P_PRED, P_CORRECT, P_CONF = "true", "pred", "correct", "conf"
P_WHERE, P_SLICE, P_SEL, P_CLUSTER, P_ISSUE = "where", "slice", "sel", "cluster", "issue"
P_SORT, P_DESC, P_PAGE, P_SAMPLE, P_RUN = "sort", "desc", "page", "sample", "run"
QUERY_PARAMS = (
    P_TRUE,
    P_PRED,
    P_CORRECT,
    P_CONF,
    P_WHERE,
    P_SLICE,
    P_SEL,
    P_CLUSTER,
    P_ISSUE,
    P_SORT,
    P_DESC,
)

ISSUES = {
    "label": "suspected label errors",
    "leak": "leaked from the reference set",
    "duplicate": "near-duplicates inside the set",
    "exif": "carry an EXIF rotation tag",
}


@dataclass(frozen=True)
class ImageQuery:
    """Which images, in which order.

    Attributes
    ----------
    true, pred : tuple of int
        Keep images whose given / predicted label is one of these (empty = any).
    correct : {"all", "correct", "wrong"}
    conf : (float, float)
        Inclusive confidence range in [0, 1].
    where : tuple of (column, value) pairs
        Metadata equality filters, ANDed (values compared as strings).
    slice : str
        A slice spec as JSON (``analysis.stats.slices.spec_to_json``), or "".
    sel : str
        Id of a stored explicit selection (lasso, queue), or "".
    cluster : int or None
    issue : str
        One of ``ISSUES`` or an outlier type ("outlier:dark"), or "".
    sort : str
        One of ``SORT_KEYS``; ``desc`` orders high to low.
    """

    true: tuple[int, ...] = ()
    pred: tuple[int, ...] = ()
    correct: str = "all"
    conf: tuple[float, float] = (0.0, 1.0)
    where: tuple[tuple[str, str], ...] = ()
    slice: str = ""
    sel: str = ""
    cluster: int | None = None
    issue: str = ""
    sort: str = "loss"
    desc: bool = True

    def __post_init__(self):
        if self.correct not in ("all", "correct", "wrong"):
            raise ValueError(f"correct must be 'all', 'correct' or 'wrong', got {self.correct!r}")
        if self.sort not in SORT_KEYS:
            raise ValueError(f"unknown sort key {self.sort!r}; valid: {sorted(SORT_KEYS)}")
        lo, hi = self.conf
        if not (0.0 <= lo <= hi <= 1.0):
            raise ValueError(f"conf must satisfy 0 <= low <= high <= 1, got {self.conf}")

    # -- URL form -------------------------------------------------------------------------
    def to_params(self) -> dict[str, str]:
        """Query parameters that differ from the defaults (so links stay short)."""
        d = ImageQuery()
        out: dict[str, str] = {}
        if self.true:
            out[P_TRUE] = ",".join(map(str, self.true))
        if self.pred:
            out[P_PRED] = ",".join(map(str, self.pred))
        if self.correct != d.correct:
            out[P_CORRECT] = self.correct
        if self.conf != d.conf:
            out[P_CONF] = f"{self.conf[0]:g},{self.conf[1]:g}"
        if self.where:
            out[P_WHERE] = json.dumps([list(w) for w in self.where], separators=(",", ":"))
        if self.slice:
            out[P_SLICE] = self.slice
        if self.sel:
            out[P_SEL] = self.sel
        if self.cluster is not None:
            out[P_CLUSTER] = str(self.cluster)
        if self.issue:
            out[P_ISSUE] = self.issue
        if self.sort != d.sort:
            out[P_SORT] = self.sort
        if self.desc != d.desc:
            out[P_DESC] = "1" if self.desc else "0"
        return out

    @classmethod
    def from_params(cls, params) -> ImageQuery:
        """Parse query parameters; malformed values fall back to the default (a pasted, mangled
        link still opens something sensible rather than an error). :meth:`parse` also says
        which values it dropped."""
        return cls.parse(params)[0]

    @classmethod
    def parse(
        cls, params, *, n_classes: int | None = None, samples: pd.DataFrame | None = None
    ) -> tuple[ImageQuery, tuple[str, ...]]:
        """Parse query parameters defensively.

        Parameters
        ----------
        params : mapping of str to str
            URL query parameters (others than :data:`QUERY_PARAMS` are ignored).
        n_classes : int, optional
            Class indices outside ``0..n_classes-1`` are dropped.
        samples : DataFrame, optional
            The run's samples table: a slice or ``where`` filter on a column it lacks (or a
            range on a text column) is dropped.

        Returns
        -------
        (ImageQuery, problems)
            The query of every value that could be read, and one plain sentence per value that
            could not ("page: 'abc' is not ..."), in parameter order. A bad value never raises.
        """
        kw: dict = {}
        problems: list[str] = []
        for key in QUERY_PARAMS:
            if key not in params:
                continue
            raw = params[key]
            raw = str(raw[0] if isinstance(raw, list | tuple) and raw else raw)
            try:
                kw[key] = _PARSERS[key](raw, n_classes=n_classes, samples=samples)
            except (ValueError, TypeError, KeyError, json.JSONDecodeError) as e:
                problems.append(f"{key}={raw[:60]!r} was ignored: {e}")
        return cls(**kw), tuple(problems)

    def with_(self, **changes) -> ImageQuery:
        return replace(self, **changes)

    def describe(self, class_names: list[str]) -> str:
        """Plain words for a heading: 'given cat, predicted dog, wrong only'."""
        parts = []
        if self.true:
            parts.append(
                "given "
                + " or ".join(class_names[i] for i in self.true if 0 <= i < len(class_names))
            )
        if self.pred:
            parts.append(
                "predicted "
                + " or ".join(class_names[i] for i in self.pred if 0 <= i < len(class_names))
            )
        if self.correct != "all":
            parts.append(f"{self.correct} only")
        if self.conf != (0.0, 1.0):
            parts.append(f"confidence {self.conf[0]:.2f}–{self.conf[1]:.2f}")
        parts += [describe_where(c, v) for c, v in self.where]
        if self.slice:
            try:
                from ..stats.slices import describe, spec_from_json

                parts.append(describe(spec_from_json(self.slice), class_names=class_names))
            except Exception:
                parts.append("slice")
        if self.sel:
            parts.append("a saved selection")
        if self.cluster is not None:
            parts.append(f"cluster {self.cluster}")
        if self.issue:
            parts.append(ISSUES.get(self.issue, self.issue.replace("outlier:", "outlier: ")))
        return ", ".join(parts) if parts else "all images"

    def as_dict(self) -> dict:
        return asdict(self)


def _classes(raw: str, *, n_classes: int | None, **_) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in raw.split(",") if x.strip() != "")
    except ValueError:
        raise ValueError("expected class numbers separated by commas, such as 0,3") from None
    if n_classes is not None:
        bad = [i for i in out if not 0 <= i < n_classes]
        if bad:
            raise ValueError(f"this run has classes 0 to {n_classes - 1}")
    return out


def _correct(raw: str, **_) -> str:
    if raw not in ("all", "correct", "wrong"):
        raise ValueError("expected all, correct or wrong")
    return raw


def _conf(raw: str, **_) -> tuple[float, float]:
    try:
        lo, hi = (float(x) for x in raw.split(","))
    except ValueError:
        raise ValueError("expected two numbers, such as 0.2,0.9") from None
    if not 0.0 <= lo <= hi <= 1.0:  # also NaN
        raise ValueError("expected 0 <= low <= high <= 1")
    return (lo, hi)


def _where(raw: str, *, samples: pd.DataFrame | None, **_) -> tuple[tuple[str, str], ...]:
    try:
        pairs = json.loads(raw)
        out = tuple((str(a), str(b)) for a, b in pairs)
    except (ValueError, TypeError):
        raise ValueError("expected a JSON list of [column, value] pairs") from None
    if samples is not None:
        missing = [c for c, _ in out if c not in samples.columns]
        if missing:
            raise ValueError(f"this run has no column {missing[0]!r}")
    return out


def _slice(raw: str, *, samples: pd.DataFrame | None, **_) -> str:
    from ..stats.slices import apply_slice, spec_from_json

    try:
        spec = spec_from_json(raw)
    except (ValueError, TypeError):
        raise ValueError("not a slice of this tool (it may have been cut off)") from None
    if samples is not None:
        try:
            apply_slice(samples.iloc[:1], spec)  # a missing column, a range on text
        except (ValueError, TypeError):
            raise ValueError("the slice uses columns this run does not have") from None
    return raw


def _sel(raw: str, **_) -> str:
    if not raw.isalnum():
        raise ValueError("not a selection id")
    return raw


def _cluster(raw: str, **_) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("expected a cluster number") from None


def _issue(raw: str, **_) -> str:
    if raw not in ISSUES and not (raw.startswith("outlier:") and raw[len("outlier:") :]):
        raise ValueError(f"expected one of {', '.join(ISSUES)} or outlier:<type>")
    return raw


def _sort(raw: str, **_) -> str:
    if raw not in SORT_KEYS:
        raise ValueError(f"expected one of {', '.join(SORT_KEYS)}")
    return raw


def _desc(raw: str, **_) -> bool:
    if raw not in ("0", "1", "true", "false", "True", "False"):
        raise ValueError("expected 1 (highest first) or 0 (lowest first)")
    return raw in ("1", "true", "True")


_PARSERS = {
    P_TRUE: _classes,
    P_PRED: _classes,
    P_CORRECT: _correct,
    P_CONF: _conf,
    P_WHERE: _where,
    P_SLICE: _slice,
    P_SEL: _sel,
    P_CLUSTER: _cluster,
    P_ISSUE: _issue,
    P_SORT: _sort,
    P_DESC: _desc,
}


def apply_query(
    samples: pd.DataFrame,
    q: ImageQuery,
    *,
    run_dir: str | Path | None = None,
    outliers: pd.DataFrame | None = None,
) -> np.ndarray:
    """Row positions of ``samples`` matching ``q``, in ``q``'s sort order.

    Parameters
    ----------
    samples : DataFrame
        A run's samples table.
    run_dir : path, optional
        Needed to resolve stored selections (``q.sel``).
    outliers : DataFrame, optional
        The run's outliers table (``index``, ``type``), for ``issue="outlier:<type>"``.

    Returns
    -------
    np.ndarray of int64 row positions.
    """
    n = len(samples)
    mask = np.ones(n, dtype=bool)
    if q.true:
        mask &= np.isin(samples[schema.LABEL].to_numpy(), q.true)
    if q.pred:
        mask &= np.isin(samples[schema.PRED].to_numpy(), q.pred)
    if q.correct != "all":
        c = samples[schema.CORRECT].to_numpy(bool)
        mask &= c if q.correct == "correct" else ~c
    if q.conf != (0.0, 1.0):
        conf = samples[schema.CONFIDENCE].to_numpy()
        mask &= (conf >= q.conf[0]) & (conf <= q.conf[1])
    for col, val in q.where:
        mask &= where_mask(samples, col, val)
    if q.slice:
        from ..stats.slices import apply_slice, spec_from_json

        mask &= apply_slice(samples, spec_from_json(q.slice))
    if q.cluster is not None:
        if schema.CLUSTER in samples.columns:
            mask &= samples[schema.CLUSTER].to_numpy() == q.cluster
        else:
            mask &= False
    if q.sel:
        ids = load_selection(run_dir, q.sel) if run_dir is not None else None
        mask &= samples[schema.SAMPLE_ID].isin(ids or []).to_numpy()
    if q.issue:
        mask &= issue_mask(samples, q.issue, outliers)
    idx = np.flatnonzero(mask)
    key = samples[q.sort].to_numpy()[idx] if q.sort in samples.columns else None
    if key is not None:
        if q.desc and np.issubdtype(key.dtype, np.number):
            # stable descending: ties (e.g. losses clipped at the dtype's epsilon) keep row order
            order = np.argsort(-key.astype(np.float64), kind="stable")
        else:
            order = np.argsort(key, kind="stable")
            if q.desc:
                order = order[::-1]
        idx = idx[order]
    return idx.astype(np.int64)


#: A ``where`` value ``"between:LO,HI"`` keeps LO <= x <= HI (numeric columns); ``"contains:T"``
#: keeps values containing T (case-insensitive); anything else is an exact value match.
BETWEEN, CONTAINS = "between:", "contains:"


def parse_between(val: str) -> tuple[float, float] | None:
    """(lo, hi) of a ``"between:LO,HI"`` value, or None when it is not one (or is malformed)."""
    if not val.startswith(BETWEEN):
        return None
    try:
        lo, hi = (float(x) for x in val[len(BETWEEN) :].split(","))
    except ValueError:
        return None
    return (lo, hi) if lo <= hi else None


def where_mask(samples: pd.DataFrame, col: str, val: str) -> np.ndarray:
    """bool [N]: the rows of ``samples`` that a ``where`` entry ``(col, val)`` keeps."""
    if col not in samples.columns:
        return np.zeros(len(samples), dtype=bool)
    rng = parse_between(val)
    if rng is not None:
        x = pd.to_numeric(samples[col], errors="coerce").to_numpy(dtype=float)
        return (x >= rng[0]) & (x <= rng[1])  # NaN compares False: missing values drop out
    if val.startswith(CONTAINS):
        needle = val[len(CONTAINS) :]
        return samples[col].astype(str).str.contains(needle, case=False, regex=False).to_numpy(bool)
    return samples[col].astype(str).to_numpy() == val


#: A metadata column with at most this many values is filtered by picking a value.
MAX_LISTED = 50


@dataclass(frozen=True)
class FilterOption:
    """How the gallery filters one metadata column: ``kind`` is ``"value"`` (pick one of
    ``values``), ``"range"`` (a slider over ``low``..``high``) or ``"text"`` (contains)."""

    kind: str
    values: tuple[str, ...] = ()
    low: float = float("nan")
    high: float = float("nan")


def filter_options(
    samples: pd.DataFrame, columns: list[str], *, listed: Iterable[str] = ()
) -> dict[str, FilterOption]:
    """The gallery's metadata filters for ``columns``: numbers with more than 12 values get a
    range, columns with at most :data:`MAX_LISTED` values (or named in ``listed``: superclass
    columns, searchable lists however long) a value list, others a text search.
    Computed once per run (a million rows take ~0.1 s a column), not on every rerun."""
    listed = set(listed)
    out = {}
    for c in columns:
        col = samples[c]
        n = col.nunique(dropna=True)
        if pd.api.types.is_numeric_dtype(col) and n > 12:
            x = pd.to_numeric(col, errors="coerce")
            out[c] = FilterOption("range", low=float(x.min()), high=float(x.max()))
        elif n <= MAX_LISTED or c in listed:
            values = tuple(sorted(col.dropna().astype(str).unique().tolist()))
            out[c] = FilterOption("value", values=values)
        else:
            out[c] = FilterOption("text")
    return out


def describe_where(col: str, val: str) -> str:
    """Plain words for one ``where`` entry."""
    rng = parse_between(val)
    if rng is not None:
        return f"{col} in [{rng[0]:g}, {rng[1]:g}]"
    if val.startswith(CONTAINS):
        return f"{col} contains '{val[len(CONTAINS) :]}'"
    return f"{col} = {val}"


def issue_mask(samples: pd.DataFrame, issue: str, outliers: pd.DataFrame | None) -> np.ndarray:
    n = len(samples)
    if issue == "label":
        col = samples.get(schema.IS_LABEL_ISSUE)
        return np.zeros(n, bool) if col is None else col.fillna(False).to_numpy(bool)
    if issue == "leak":
        col = samples.get(schema.LEAK_OF)
        return np.zeros(n, bool) if col is None else col.notna().to_numpy()
    if issue == "duplicate":
        col = samples.get(schema.DUPLICATE_OF)
        return np.zeros(n, bool) if col is None else col.notna().to_numpy()
    if issue == "exif":  # a tag that makes viewers turn the image: 2-8 (1 = as stored)
        col = samples.get(schema.EXIF_ORIENTATION)
        return np.zeros(n, bool) if col is None else (col.fillna(0).to_numpy() > 1)
    if issue.startswith("outlier:"):
        if outliers is None or outliers.empty:
            return np.zeros(n, bool)
        rows = outliers.loc[outliers["type"] == issue.split(":", 1)[1], "index"].to_numpy()
        m = np.zeros(n, bool)
        m[rows[(rows >= 0) & (rows < n)].astype(int)] = True
        return m
    return np.zeros(n, bool)


# -- explicit selections (lasso, review queues): stored by analysis.store.selections


@dataclass(frozen=True)
class Page:
    """One page of a result list: positions of the rows shown and where we are."""

    rows: np.ndarray
    page: int
    n_pages: int
    total: int
    per_page: int = field(default=48)


def paginate(idx: np.ndarray, page: int, per_page: int = 48) -> Page:
    """Clamp ``page`` (1-based) into range and slice ``idx``."""
    total = len(idx)
    n_pages = max(1, -(-total // per_page))
    page = min(max(1, int(page)), n_pages)
    start = (page - 1) * per_page
    return Page(idx[start : start + per_page], page, n_pages, total, per_page)


def neighbours_in_order(idx: np.ndarray, row: int) -> tuple[int | None, int | None, int]:
    """(previous row, next row, 1-based position) of ``row`` within the ordered ``idx``."""
    hits = np.flatnonzero(idx == row)
    if not len(hits):
        return None, None, 0
    k = int(hits[0])
    prev = int(idx[k - 1]) if k > 0 else None
    nxt = int(idx[k + 1]) if k + 1 < len(idx) else None
    return prev, nxt, k + 1
