"""Number formatting shared by the dashboard and the reports (one place, one style)."""

from __future__ import annotations

import math


def is_missing(x) -> bool:
    try:
        return x is None or (isinstance(x, float) and math.isnan(x))
    except TypeError:
        return False


def pct(x, digits: int = 1) -> str:
    """0.8734 -> '87.3%'; NaN/None -> '—'."""
    return "—" if is_missing(x) else f"{100.0 * float(x):.{digits}f}%"


def num(x, digits: int = 3) -> str:
    return "—" if is_missing(x) else f"{float(x):.{digits}f}"


def interval(low, high, *, as_pct: bool = True, digits: int = 1) -> str:
    """'85.2–89.1%' (or '0.85–0.89'); '—' if either end is missing."""
    if is_missing(low) or is_missing(high):
        return "—"
    if as_pct:
        return f"{100 * float(low):.{digits}f}–{100 * float(high):.{digits}f}%"
    return f"{float(low):.{digits + 2}f}–{float(high):.{digits + 2}f}"


def estimate(est, *, as_pct: bool = True, digits: int = 1) -> str:
    """'87.3% (95% CI 85.2–89.1%)' from an object or dict with value/low/high."""
    get = est.get if isinstance(est, dict) else lambda k: getattr(est, k, None)
    v = get("value")
    main = pct(v, digits) if as_pct else num(v, digits + 2)
    return f"{main} (95% CI {interval(get('low'), get('high'), as_pct=as_pct, digits=digits)})"


def plural(n: int, noun: str, plural_form: str | None = None) -> str:
    """'1 image', '0 images', '2,000 images' (``plural_form`` for irregular nouns)."""
    n = int(n)
    return f"{n:,} {noun if n == 1 else (plural_form or noun + 's')}"


def p_value(p) -> str:
    if is_missing(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def short_name(name, width: int = 24) -> str:
    """A class name cut to ``width`` characters with an ellipsis ("n01440764 tench, Tinca…")."""
    text = str(name)
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


def short_names(names, width: int = 24) -> list[str]:
    """:func:`short_name` of each name, kept unique: chart axes are categorical, so two names
    that shorten alike would merge into one row; a colliding one ends in its position
    ("…#12")."""
    names = [str(n) for n in names]
    out = [short_name(n, width) for n in names]
    seen: dict[str, int] = {}
    for s in out:
        seen[s] = seen.get(s, 0) + 1
    for i, (n, s) in enumerate(zip(names, out, strict=True)):
        if seen[s] > 1 and s != n:
            tag = f"#{i}"
            out[i] = n[: max(1, width - 1 - len(tag))] + "…" + tag
    return out
