"""Review queue ("meeting mode"): step through a set of images, tag, note, decide; resumable."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.present.query import P_RUN, ImageQuery, load_selection
from analysis.store.runstore import Run
from dashboard import nav
from dashboard.views import cam_panel, review_panel


def render(run: Run) -> None:
    st.title("Review")
    db = review_panel.review_store()
    qid = st.query_params.get("queue")
    if not qid:
        _start_or_resume(run, db)
        return
    queue = db.queue(qid)
    if queue is None or queue.run_id != run.run_id:
        st.error(f"Queue {qid!r} does not belong to this run.")
        return
    s = run.samples
    rows_by_id = dict(zip(s[schema.SAMPLE_ID], range(len(s)), strict=True))
    done, total, nxt = db.queue_progress(queue)
    pos = int(st.query_params.get("pos", nxt if nxt < total else total - 1))
    pos = min(max(pos, 0), total - 1)
    st.progress(done / total, text=f"**{done} of {total} reviewed** — {queue.name}")
    sid = queue.sample_ids[pos]
    if sid not in rows_by_id:
        st.warning(f"Image {sid} of this queue is not in the run any more.")
        return
    row = rows_by_id[sid]
    r = s.iloc[row]
    names = run.class_names
    head = st.columns([5, 1, 1, 1])
    head[0].subheader(
        f"{pos + 1}/{total}: given **{names[r[schema.LABEL]]}**, predicted"
        f" **{names[r[schema.PRED]]}** ({r[schema.CONFIDENCE]:.2f})"
    )
    if head[1].button("◀ Previous", disabled=pos == 0):
        _goto(queue.id, pos - 1)
    if head[2].button("Skip ▶", disabled=pos >= total - 1):
        _goto(queue.id, pos + 1)
    with head[3]:
        nav.link("detail", "Details", ImageQuery(sel=""), sample=sid, origin="review")
    left, right = st.columns([3, 2], gap="large")
    with left:
        cam_panel.render(run, row)
    with right:
        st.image(r[schema.PATH], caption=r[schema.RELPATH], width="stretch")
        if review_panel.render(run, row, queue_id=queue.id, key="q"):
            _goto(queue.id, min(pos + 1, total - 1))
    if done == total:
        st.success("Every image of this queue is reviewed. Export the report from the Report page.")


def _goto(queue_id: str, pos: int) -> None:
    st.query_params["queue"] = queue_id
    st.query_params["pos"] = str(pos)
    st.rerun()


def _start_or_resume(run: Run, db) -> None:
    sel = st.query_params.get("sel")
    if sel:
        ids = load_selection(run.path, sel) or []
        q = ImageQuery.from_params(st.query_params.to_dict())
        s = run.samples
        from dashboard.data import query_rows

        rows = query_rows(run, q)
        wanted = set(ids)
        rows = [int(i) for i in rows if s[schema.SAMPLE_ID].iloc[int(i)] in wanted]
        name = st.text_input("Queue name", value=st.query_params.get("queue_name", "review"))
        st.markdown(f"**{len(rows)} images**, in the gallery's order.")
        if st.button("Start the review", type="primary", disabled=not rows):
            who = review_panel.reviewer()
            if not who:
                st.error("Enter your name in the sidebar first.")
                return
            queue = db.create_queue(
                run.run_id,
                name,
                s[schema.SAMPLE_ID].to_numpy()[rows].tolist(),
                s[schema.CONTENT_HASH].to_numpy()[rows].tolist(),
                reviewer=who,
                query=q.to_params(),
            )
            st.query_params.from_dict({P_RUN: run.run_id})  # the queue's run, nothing else
            _goto(queue.id, 0)
        return
    st.caption(
        "Start a queue from any set of images: open it in the gallery (from a confusion"
        " cell, a slice, a cluster or a data-issue list) and press *Review these*."
    )
    queues = db.queues(run.run_id)
    if queues.empty:
        st.info("No review queues for this run yet.")
        nav.link("gallery", "Start with the misclassified images →", ImageQuery(correct="wrong"))
        return
    st.subheader("Resume a queue")
    for _, q in queues.iterrows():
        queue = db.queue(q["id"])
        done, total, nxt = db.queue_progress(queue)
        nav.link(
            "review",
            f"{q['name']} — {done} of {total} reviewed (by {q['reviewer']})",
            queue=q["id"],
            pos=int(min(nxt, total - 1)),
        )
