"""Tagging controls for one image: starter and free tags, a note, a corrected label.

Used by the image detail page and the review queue. Every save appends events to the
workspace review database (nothing is overwritten), keyed by the image's content hash.
"""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.review import STARTER_TAGS, ReviewStore, default_db_path
from analysis.runstore import Run
from dashboard import data


@st.cache_resource(show_spinner=False)
def store(path: str) -> ReviewStore:
    return ReviewStore(path)


def review_store() -> ReviewStore:
    return store(str(default_db_path(data.runs_dir())))


def reviewer() -> str:
    return (st.session_state.get("reviewer") or "").strip()


def reviewer_box() -> None:
    """Sidebar: the reviewer's name, asked once per session."""
    st.sidebar.text_input(
        "Your name (for review notes)",
        key="reviewer",
        placeholder="e.g. Ana",
        help="Saved with every tag and note you add.",
    )


def current(content_hash: str) -> dict:
    st_ = review_store().state([content_hash])
    if st_.empty:
        return {"tags": [], "notes": [], "corrected_label": "", "reviewed": False}
    return st_.iloc[0].to_dict()


def render(run: Run, row_no: int, *, queue_id: str | None = None, key: str = "rv") -> bool:
    """Draw the controls; returns True when the user saved (so a queue can move on)."""
    s = run.samples.iloc[row_no]
    h = s[schema.CONTENT_HASH]
    now = current(h)
    names = run.class_names
    options = list(dict.fromkeys([*STARTER_TAGS, *now["tags"]]))
    sid = s[schema.SAMPLE_ID]
    with st.form(key=f"{key}_{sid}", border=True):
        tags = st.pills(
            "Tags", options, selection_mode="multi", default=now["tags"], key=f"{key}_tags_{sid}"
        )
        free = st.text_input("Other tags (comma-separated)", key=f"{key}_free_{sid}")
        note = st.text_area(
            "Note",
            key=f"{key}_note_{sid}",
            height=80,
            placeholder="What is going on in this image?",
        )
        label_opts = ["(keep the given label)", *names]
        cur = now["corrected_label"]
        label = st.selectbox(
            "Correct label",
            label_opts,
            index=label_opts.index(cur) if cur in label_opts else 0,
            key=f"{key}_label_{sid}",
        )
        saved = st.form_submit_button("Save" + (" and next" if queue_id else ""), type="primary")
    if now["tags"] or now["corrected_label"]:
        st.caption(
            "Current tags: "
            + (", ".join(now["tags"]) or "none")
            + (f" · corrected label: {now['corrected_label']}" if now["corrected_label"] else "")
        )
    if now["notes"]:
        for n in now["notes"]:
            st.caption(f"**{n['reviewer']}**: {n['text']}")
    if not saved:
        return False
    who = reviewer()
    if not who:
        st.error("Enter your name in the sidebar first: every tag and note records who made it.")
        return False
    db = review_store()
    where = {"run_id": run.run_id, "relpath": s[schema.RELPATH]}
    wanted = set(tags or []) | {t.strip().lower() for t in free.split(",") if t.strip()}
    for t in sorted(wanted - set(now["tags"])):
        db.add_tag(h, t, reviewer=who, **where)
    for t in sorted(set(now["tags"]) - wanted):
        db.remove_tag(h, t, reviewer=who, **where)
    if note.strip():
        db.add_note(h, note, reviewer=who, **where)
    new_label = "" if label == label_opts[0] else label
    if new_label != cur:
        db.set_label(h, new_label or None, reviewer=who, **where)
    db.mark_reviewed(h, reviewer=who, queue_id=queue_id, **where)
    st.toast("Saved")
    return True
