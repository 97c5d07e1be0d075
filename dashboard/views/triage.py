"""Triage: every failure group ranked by the errors it costs, its causes, evidence and actions."""

from __future__ import annotations

import hashlib
import math

import pandas as pd
import streamlit as st

from analysis import schema
from analysis.present import formatting as fmt
from analysis.present import triage_figures as tf
from analysis.present.query import ImageQuery, save_selection
from analysis.store.runstore import Run
from analysis.triage import plan
from dashboard import components as ui
from dashboard import data, nav
from dashboard.views import review_panel

P_GROUP = "group"  # query parameter: the group opened first


def _review_state(run: Run):
    """(state of this run's reviewed images, a digest that changes when it does)."""
    st_all = review_panel.review_store().state()
    if st_all is None or st_all.empty:
        return None, ""
    mine = st_all[st_all["content_hash"].isin(set(run.samples[schema.CONTENT_HASH]))]
    key = pd.util.hash_pandas_object(
        mine[["content_hash", "corrected_label"]].assign(t=mine["tags"].map(tuple).astype(str)),
        index=False,
    ).sum()
    return (mine if len(mine) else None), hashlib.sha1(str(key).encode()).hexdigest()[:12]


def _robustness_key(run: Run) -> str:
    root = run.path / schema.ROBUSTNESS_DIR
    if not root.exists():
        return ""
    return ",".join(sorted(d.name for d in root.iterdir() if not d.name.startswith(".")))


@st.cache_data(show_spinner="Triaging the failures…", max_entries=8)
def _load(path: str, stamp: str, rob: str, review_key: str, _state):
    from analysis.triage.runs import load_triage

    return load_triage(data.get_run(path), review=_state)


def render(run: Run) -> None:
    st.title("Triage")
    state, review_key = _review_state(run)
    try:
        result = _load(
            str(run.path), run.manifest["created"], _robustness_key(run), review_key, state
        )
    except Exception as e:  # a broken stored table or a bug: say it, keep the page
        st.error(f"Triage could not be computed for this run: {ui.safe(type(e).__name__)}:"
                 f" {ui.safe(e)}")  # fmt: skip
        return
    t, info = result.table, result.info
    st.caption(
        "Why each failure happens and what to do. Groups (weak classes, confusion pairs,"
        " significant slices, error clusters) are ranked by the errors they cost; each candidate"
        f" cause is tested, {info.get('n_tests', 0)} tests corrected together"
        f" (Benjamini–Hochberg, {info.get('alpha', 0.05):.0%} false discoveries). A share says"
        " how much of the group's excess errors a cause accounts for, with its 95% interval."
        + (" Includes the latest robustness run." if info.get("robustness") else "")
        + (f" Includes {info['reviewed']} reviewed images." if info.get("reviewed") else "")
    )
    if t.empty:
        st.success("No failure group: no weak class, slice, cluster or confusion pair to triage.")
        return
    focus = _int(st.query_params.get(P_GROUP))
    ev = st.plotly_chart(
        tf.groups_figure(t),
        key="tri_groups",
        on_select="rerun",
        selection_mode="points",
        config={"displayModeBar": False},
    )
    picked = ui.clicked_points(ev)
    if picked and picked[0] != focus:
        st.query_params[P_GROUP] = str(picked[0])
        st.rerun()
    for rank, g in t.groupby("group_rank", sort=True):
        _group(run, int(rank), g, expanded=(rank == focus) or (focus is None and rank <= 2))
    for line in plan.not_tested(t):
        st.caption(f":material/block: {ui.safe(line)}")
    st.download_button(
        "Download the action plan (CSV)",
        plan.csv_text(plan.action_plan(t)).encode(),
        file_name=f"{run.run_id}-action-plan.csv",
        mime="text/csv",
    )
    nav.copy_link("triage", None, **({P_GROUP: focus} if focus else {}))


def _int(x) -> int | None:
    try:
        return int(x) if x is not None else None
    except (TypeError, ValueError):
        return None


def _group(run: Run, rank: int, g: pd.DataFrame, *, expanded: bool) -> None:
    first = g.iloc[0]
    claimed = g[g["status"].isin(["significant", "found"])]
    tag = ", ".join(dict.fromkeys(claimed["cause_label"])) or "none of these"
    title = f"{rank}. {first['group']} — {plan.cost_text(first)} · {tag}"
    with st.expander(title, expanded=expanded):
        q = ImageQuery.from_params(_params(first["group_query"]))
        if first["group_kind"] != "whole_set" or q.to_params():
            nav.link("gallery", "Open the group's errors →", q)
        also = _json_list(first["group_also"])
        if also:
            st.caption("Same images as: " + ui.safe("; ".join(also)))
        for i, (_, row) in enumerate(
            g[g["status"].isin(["significant", "found", "none"])].iterrows()
        ):
            _cause(run, row, key=f"g{rank}_{i}")
        rest = g[g["status"] == "not significant"]
        if len(rest):
            st.markdown("**Tested, not significant**")
            st.dataframe(_rest_table(rest), hide_index=True, key=f"g{rank}_rest")


def _cause(run: Run, row, *, key: str) -> None:
    with st.container(border=True):
        head = f"**{ui.safe(row['cause_label'])}**"
        if row["detail"]:
            head += f" · {ui.safe(row['detail'])}"
        st.markdown(head)
        share = plan.share_text(row)
        p = row["p_adj"]
        st.markdown(
            (ui.safe(share) + " · " if share else "")
            + (f"adjusted p {fmt.p_value(p)}" if isinstance(p, float) and math.isfinite(p) else "")
        )
        left, right = st.columns([3, 2], gap="medium")
        with left:
            st.markdown(ui.safe(row["evidence"]))
            sentence = plan.fill(row, lambda s, q: f"**{ui.safe(s)}**", _words)
            st.markdown(f":material/arrow_forward: {sentence}")
            for lk in [lk for lk in plan.links_of(row) if lk.get("query")]:
                nav.link("gallery", f"{lk['text']} →", ImageQuery.from_params(lk["query"]))
            q = _params(row["query"])
            if (
                q
                and "review" in nav.PAGES
                and st.button("Review these", key=f"{key}_rev", icon=":material/play_arrow:")
            ):
                _start_review(
                    run, ImageQuery.from_params(q), f"{row['group']}: {row['cause_label']}"
                )
        with right:
            fig = tf.cause_figure(row)
            if fig is not None:
                st.plotly_chart(fig, key=f"{key}_fig", config={"displayModeBar": False})


def _words(text: str) -> str:
    """Escaped words between an action's numbers, with their end spaces (safe strips them)."""
    return (" " * text[:1].isspace()) + ui.safe(text) + (" " * text[-1:].isspace())


def _start_review(run: Run, q: ImageQuery, name: str) -> None:
    rows = data.query_rows(run, q)
    sel = save_selection(run.path, run.samples[schema.SAMPLE_ID].to_numpy()[rows])
    nav.go("review", ImageQuery(sel=sel), queue_name=name[:120])


def _rest_table(rest: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "cause": rest["cause_label"].astype(str),
            "detail": rest["detail"].astype(str),
            "adjusted p": [fmt.p_value(p) for p in rest["p_adj"]],
            "share if real": [fmt.pct(s, 0) for s in rest["share"]],
        }
    )


def _params(text) -> dict:
    import json

    try:
        d = json.loads(text or "{}")
    except (TypeError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _json_list(text) -> list:
    import json

    try:
        d = json.loads(text or "[]")
    except (TypeError, ValueError):
        return []
    return [str(x) for x in d] if isinstance(d, list) else []
