"""Review queue ("meeting mode"): step through a set of images, tag, note, decide; resumable."""

from __future__ import annotations

import streamlit as st

from analysis import schema
from analysis.present import formatting as fmt
from analysis.present.query import P_RUN, ImageQuery, load_selection
from analysis.store.runstore import Run
from dashboard import components as ui
from dashboard import links, nav
from dashboard.views import cam_panel, image_panel, review_panel


def render(run: Run) -> None:
    st.title("Review")
    db = review_panel.review_store()
    qid = links.raw("queue")
    if not qid:
        _start_or_resume(run, db)
        return
    queue = db.queue(qid)
    if queue is None or queue.run_id != run.run_id:
        st.warning(
            f"Queue {ui.safe(repr(qid))} from the link is not a queue of this run: pick one below."
        )
        _start_or_resume(run, db, list_only=True)
        return
    s = run.samples
    rows_by_id = dict(zip(s[schema.SAMPLE_ID], range(len(s)), strict=True))
    done, total, nxt = db.queue_progress(queue)
    resume = min(nxt, total - 1)
    pos = links.int_param("pos", default=resume, lo=0, hi=total - 1, what="position")
    st.progress(done / total, text=f"**{done} of {total} reviewed** — {ui.safe(queue.name)}")
    sid = queue.sample_ids[pos]
    if sid not in rows_by_id:
        st.warning(f"Image {ui.safe(sid)} of this queue is not in the run any more.")
        return
    row = rows_by_id[sid]
    r = s.iloc[row]
    names = run.class_names
    st.subheader(
        f"{pos + 1}/{total}: given **{ui.safe(names[r[schema.LABEL]])}**, predicted"
        f" **{ui.safe(names[r[schema.PRED]])}** ({r[schema.CONFIDENCE]:.2f})"
    )
    with st.container(horizontal=True, vertical_alignment="center"):  # labels never cut
        if st.button("◀ Previous", disabled=pos == 0):
            _goto(queue.id, pos - 1)
        if st.button("Skip ▶", disabled=pos >= total - 1):
            _goto(queue.id, pos + 1)
        nav.link("detail", "Details", ImageQuery(sel=""), sample=sid, origin="review")
        nav.copy_link("review", queue=queue.id, pos=pos)
    left, right = st.columns([3, 2], gap="large")
    with left:
        cam_panel.render(run, row)
    with right:
        image_panel.render(run, row, caption=ui.safe(r[schema.RELPATH]))
        if review_panel.render(run, row, queue_id=queue.id, key="q"):
            _goto(queue.id, min(pos + 1, total - 1))
    if done == total:
        st.success("Every image of this queue is reviewed. Export the report from the Report page.")
    # last, once the page is drawn: the next two images' CAMs in the background (Skip is instant)
    ahead = [rows_by_id[i] for i in queue.sample_ids[pos + 1 : pos + 3] if i in rows_by_id]
    cam_panel.prefetch_next(run, ahead)


def _goto(queue_id: str, pos: int) -> None:
    st.query_params["queue"] = queue_id
    st.query_params["pos"] = str(pos)
    st.rerun()


def _start_or_resume(run: Run, db, *, list_only: bool = False) -> None:
    sel = None if list_only else links.raw("sel")
    if sel:
        q = links.image_query(run)
        if not q.sel:  # the note says why
            nav.link("gallery", "← Gallery", q)
            return
        ids = load_selection(run.path, q.sel) or []
        s = run.samples
        from dashboard.data import query_rows

        rows = query_rows(run, q)
        wanted = set(ids)
        rows = [int(i) for i in rows if s[schema.SAMPLE_ID].iloc[int(i)] in wanted]
        name = st.text_input("Queue name", value=links.raw("queue_name") or "review")
        st.markdown(f"**{fmt.plural(len(rows), 'image')}**, in the gallery's order.")
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
            f"{ui.safe(q['name'])} — {done} of {total} reviewed (by {ui.safe(q['reviewer'])})",
            queue=q["id"],
            pos=int(min(nxt, total - 1)),
        )
