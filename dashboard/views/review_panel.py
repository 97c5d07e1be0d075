"""Tagging controls for one image: starter and free tags, a note, a corrected label.

Used by the image detail page and the review queue. Every save appends events to the
workspace review database (nothing is overwritten), keyed by the image's content hash.

A save writes only what this user changed relative to what the form showed when it was drawn
(kept in ``st.session_state``), not relative to the database at save time: between drawing and
saving, another reviewer may have tagged or relabelled the image, and that must survive.
"""

from __future__ import annotations

import uuid

import streamlit as st

from analysis import schema
from analysis.store.review import STARTER_TAGS, ReviewStore, default_db_path
from analysis.store.runstore import Run
from dashboard import components as ui
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


def shown_key(key: str, sample_id: str) -> str:
    """Session-state key of the snapshot of what the form of ``sample_id`` showed."""
    return f"{key}_shown_{sample_id}"


def _shown(key: str, sid: str, now: dict) -> dict:
    """What the form shows: the snapshot taken when its widgets were created.

    Keyed widgets keep their value across reruns, so a tag someone adds later never appears
    in them; the snapshot must live exactly as long as the widgets. The render token in the
    widget keys ties the two together: a new snapshot (first draw, back from another page, or
    after a save) gets new widgets that start from the database state of that moment."""
    snap = st.session_state.get(shown_key(key, sid))
    if snap is None or f"{key}_tags_{sid}_{snap['token']}" not in st.session_state:
        snap = {
            "token": uuid.uuid4().hex[:8],
            "tags": list(now["tags"]),
            "label": now["corrected_label"] or "",
        }
        st.session_state[shown_key(key, sid)] = snap
    return snap


def render(run: Run, row_no: int, *, queue_id: str | None = None, key: str = "rv") -> bool:
    """Draw the controls; returns True when the user saved (so a queue can move on)."""
    s = run.samples.iloc[row_no]
    h = s[schema.CONTENT_HASH]
    now = current(h)
    names = run.class_names
    sid = s[schema.SAMPLE_ID]
    shown = _shown(key, sid, now)
    tok = shown["token"]
    options = list(dict.fromkeys([*STARTER_TAGS, *shown["tags"]]))
    with st.form(key=f"{key}_{sid}", border=True):
        tags = st.pills(
            "Tags",
            options,
            selection_mode="multi",
            default=shown["tags"],
            format_func=ui.safe,
            key=f"{key}_tags_{sid}_{tok}",
        )
        free = st.text_input("Other tags (comma-separated)", key=f"{key}_free_{sid}_{tok}")
        note = st.text_area(
            "Note",
            key=f"{key}_note_{sid}_{tok}",
            height=80,
            placeholder="What is going on in this image?",
        )
        label_opts = ["(keep the given label)", *names]
        # A decided label that is no class of this run shows as "keep": saving unchanged must
        # not withdraw it.
        cur = shown["label"] if shown["label"] in label_opts else ""
        label = st.selectbox(
            "Correct label",
            label_opts,
            index=label_opts.index(cur) if cur in label_opts else 0,
            key=f"{key}_label_{sid}_{tok}",
        )
        saved = st.form_submit_button("Save" + (" and next" if queue_id else ""), type="primary")
    if now["tags"] or now["corrected_label"]:
        st.caption(
            "Current tags: "
            + (", ".join(ui.safe(t) for t in now["tags"]) or "none")
            + (
                f" · corrected label: {ui.safe(now['corrected_label'])}"
                if now["corrected_label"]
                else ""
            )
        )
    if now["notes"]:
        for n in now["notes"]:
            st.caption(f"**{ui.safe(n['reviewer'])}**: {ui.safe(n['text'])}")
    if not saved:
        return False
    who = reviewer()
    if not who:
        st.error("Enter your name in the sidebar first: every tag and note records who made it.")
        return False
    wanted = [*(tags or []), *(t for t in free.split(",") if t.strip())]
    try:
        review_store().save_edits(
            h,
            reviewer=who,
            shown_tags=shown["tags"],
            tags=wanted,
            shown_label=cur,
            label="" if label == label_opts[0] else label,
            note=note,
            run_id=run.run_id,
            relpath=s[schema.RELPATH],
            queue_id=queue_id,
        )
    except ValueError as e:  # a too-long tag or note: say so, keep what the user typed
        st.error(ui.safe(e))
        return False
    # The next draw starts from the saved state with empty note and tag boxes, so saving twice
    # does not append the same note twice.
    st.session_state.pop(shown_key(key, sid), None)
    st.toast("Saved")
    if queue_id is None:  # a queue caller moves on (and reruns) itself
        st.rerun()
    return True
