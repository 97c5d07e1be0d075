"""The Confusion page's tables: top confusion pairs, per-class metrics (sorted worst first,
searched, paged, with a chart of the page shown) and per-superclass metrics. Every row opens
its images."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from analysis import schema
from analysis.present import classes as cv
from analysis.present import figures
from analysis.present import formatting as fmt
from analysis.present.query import ImageQuery
from analysis.stats.hierarchy import level_column
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import data, nav

PER_PAGE = 25
PAIRS_SHOWN = 200
#: the page's query parameters (one place, for the copied link)
URL_KEYS = ("norm", "level", "group", "view", "n", "cls", "pq", "sort", "order", "q", "page")
PCT = {"format": "percent", "min_value": 0, "max_value": 1}


def pairs(run: Run, names: list[str], *, focus: int | None = None) -> None:
    """The largest (given, predicted) pairs with count, rate and interval; click opens them.
    With a searched class (``focus``) and no text typed, the pairs it takes part in."""
    st.subheader("Top confusion pairs")
    text = st.text_input(
        "Find a class",
        value=str(st.query_params.get("pq", "")),
        placeholder="part of a class name: pairs where it is given or predicted",
        key="cm_pq",
    )
    ui.sync_param("pq", text, "")
    found = cv.find_classes(names, text) if text.strip() else None
    if found is None and focus is not None:
        found = np.array([focus])
        st.caption(f"Pairs with {names[focus]} (type a name to search others).")
    if found is not None and not found.size:
        st.info(f"No class name contains {ui.safe(repr(text))}.")
        return
    table = data.pair_table(run, classes=found, k=PAIRS_SHOWN)
    if table.empty:
        st.caption("No errors." if found is None else "No errors involve these classes.")
        return
    st.caption(
        f"The {len(table)} largest pairs. Rate = share of the given class predicted as the other,"
        " with its 95% Wilson interval. Click a row to open its images."
    )
    shown = pd.DataFrame(
        {
            "given": table["given"],
            "predicted": table["predicted"],
            "images": table["count"],
            "rate": table["rate"],
            "rate 95% CI": [
                fmt.interval(a, b)
                for a, b in zip(table["rate_low"], table["rate_high"], strict=True)
            ],
            "of given": [
                f"{c:,} / {s:,}" for c, s in zip(table["count"], table["support"], strict=True)
            ],
            "of predicted": table["share_of_pred"],
            "of all errors": table["share_of_errors"],
        }
    )
    row = ui.clickable_table(
        shown,
        key="pairs_tbl",
        height=min(400, 35 * len(shown) + 40),
        column_config={
            "rate": st.column_config.ProgressColumn("rate", **PCT),
            "of predicted": st.column_config.NumberColumn("of predicted", format="percent"),
            "of all errors": st.column_config.NumberColumn("of all errors", format="percent"),
        },
    )
    if row is not None:
        r = table.iloc[row]
        nav.go("gallery", ImageQuery(true=(int(r["true"]),), pred=(int(r["pred"]),)))


def per_class(per_class_df: pd.DataFrame, names: list[str], *, top_k: dict) -> None:
    """Per-class precision / recall / F1 with intervals: sorted, searched, paged."""
    k = len(names)
    st.subheader("Per class")
    k5 = top_k.get(5)
    if k5 is not None and k >= cv.MANY_CLASSES:
        st.caption(
            f"Top-5 accuracy {fmt.estimate(k5)} — the share of images whose label is among the"
            " model's five most probable classes (Wilson interval)."
        )
    c = st.columns([2, 2, 3])
    sort = c[0].selectbox(
        "Sort by",
        list(cv.PER_CLASS_SORTS),
        index=list(cv.PER_CLASS_SORTS).index(ui.url_choice("sort", cv.PER_CLASS_SORTS, "recall")),
        format_func=cv.PER_CLASS_SORTS.get,
        key="pc_sort",
    )
    order = (
        c[1].segmented_control(
            "Order",
            ["worst", "best"],
            default=ui.url_choice("order", ["worst", "best"], "worst"),
            format_func=lambda o: f"{o} first",
            key="pc_order",
        )
        or "worst"
    )
    text = c[2].text_input("Search classes", value=str(st.query_params.get("q", "")), key="pc_q")
    ui.sync_param("sort", sort, "recall")
    ui.sync_param("order", order, "worst")
    ui.sync_param("q", text, "")
    rows = cv.per_class_rows(
        per_class_df, names, sort=sort, worst_first=order == "worst", search=text
    )
    if rows.empty:
        st.info(f"No class name contains {ui.safe(repr(text))}.")
        return
    n_pages = max(1, -(-len(rows) // PER_PAGE))
    try:
        asked = int(st.query_params.get("page", 1))
    except ValueError:
        asked = 1
    page = 1
    if n_pages > 1:
        page = int(
            st.columns([1, 3])[0].number_input(
                f"Page (of {n_pages}, {PER_PAGE} classes each)",
                1,
                n_pages,
                min(max(asked, 1), n_pages),
                key=f"pc_page_{sort}_{order}_{text}",
            )
        )
    ui.sync_param("page", page, 1)
    part = rows.iloc[(page - 1) * PER_PAGE : page * PER_PAGE]
    st.caption(
        f"Classes {(page - 1) * PER_PAGE + 1}–{(page - 1) * PER_PAGE + len(part)} of {len(rows):,}"
        + (f" matching {text!r}" if text else "")
        + f", {order} {cv.PER_CLASS_SORTS[sort]} first. Intervals: Wilson for precision and"
        " recall, bootstrap for F1. Click a row to open that class's errors."
    )
    table = ui.per_class_table(part, names)
    row = ui.clickable_table(table, key="pc", column_config=ui.PER_CLASS_COLUMNS)
    if row is not None:
        nav.go("gallery", ImageQuery(true=(int(table.iloc[row]["class id"]),), correct="wrong"))
    st.plotly_chart(figures.per_class_figure(part, names), key="pc_fig")


def superclasses(run: Run, level: int) -> None:
    """Per-superclass metrics at ``level`` with intervals, worst recall first."""
    table = data.table(str(run.path), schema.HIERARCHY_METRICS)
    if table is None:
        st.info("No per-superclass metrics in this run.")
        return
    t = table[table["level"] == level].sort_values(["recall", "support"], ascending=[True, False])
    st.subheader(f"Superclasses at level {level}")
    st.caption(
        "Superclass recall: the prediction is in the right superclass. Class accuracy: the exact"
        " class is right. Wilson intervals. Click a row to open the superclass's errors."
    )
    shown = pd.DataFrame(
        {
            "superclass": t["name"].astype(str),
            "classes": t["n_classes"].astype(int),
            "images": t["support"].astype(int),
            "recall": t["recall"],
            "recall 95% CI": [
                fmt.interval(a, b) for a, b in zip(t["recall_low"], t["recall_high"], strict=True)
            ],
            "precision": t["precision"],
            "precision 95% CI": [
                fmt.interval(a, b)
                for a, b in zip(t["precision_low"], t["precision_high"], strict=True)
            ],
            "class accuracy": t["class_accuracy"],
            "class accuracy 95% CI": [
                fmt.interval(a, b)
                for a, b in zip(t["class_accuracy_low"], t["class_accuracy_high"], strict=True)
            ],
        }
    )
    row = ui.clickable_table(
        shown,
        key=f"sup_{level}",
        column_config={
            "recall": st.column_config.ProgressColumn("recall", **PCT),
            "precision": st.column_config.ProgressColumn("precision", **PCT),
            "class accuracy": st.column_config.ProgressColumn("class accuracy", **PCT),
        },
    )
    if row is not None:
        name = shown.iloc[row]["superclass"]
        nav.go("gallery", ImageQuery(where=((level_column(level), name),), correct="wrong"))
