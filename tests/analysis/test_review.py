"""Review data: append-only events, folded state, queues, concurrency, crash safety."""

import multiprocessing as mp
import sqlite3
import threading

import pandas as pd
import pytest

from analysis.store.review import (
    STARTER_TAGS,
    ReviewStore,
    fold_events,
    relabel_list,
    tag_changes,
)


def test_empty_store(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    assert s.state().empty and s.events().empty and s.tag_counts().empty


def test_tags_notes_labels_fold_and_keep_history(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    s.add_tag("h1", "Label  Error", reviewer="ana")
    s.add_tag("h1", "ambiguous", reviewer="bo")
    s.remove_tag("h1", "ambiguous", reviewer="ana")
    s.add_note("h1", "looks like a star", reviewer="bo")
    s.set_label("h1", "star", reviewer="ana")
    st = s.state(["h1"]).iloc[0]
    assert st["tags"] == ["label error"] and st["corrected_label"] == "star"
    assert [n["text"] for n in st["notes"]] == ["looks like a star"]
    assert len(s.history("h1")) == 5  # nothing overwritten
    s.set_label("h1", None, reviewer="ana")
    assert s.state(["h1"]).iloc[0]["corrected_label"] == ""
    assert "label error" in STARTER_TAGS


def test_validation_messages(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="set a reviewer name"):
        s.add_tag("h", "x", reviewer=" ")
    with pytest.raises(ValueError, match="a tag cannot be empty"):
        s.add_tag("h", "  ", reviewer="a")
    with pytest.raises(ValueError, match="a note needs some text"):
        s.add_note("h", "", reviewer="a")
    with pytest.raises(ValueError, match="content_hash must be a non-empty string"):
        s.add_tag("", "x", reviewer="a")


def test_queue_progress_and_resume(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    q = s.create_queue("run1", "worst", ["a", "b", "c"], ["ha", "hb", "hc"], reviewer="ana")
    assert s.queue_progress(q) == (0, 3, 0)
    s.mark_reviewed("ha", reviewer="ana", queue_id=q.id)
    s.mark_reviewed("hb", reviewer="ana", queue_id=q.id)
    assert s.queue_progress(q) == (2, 3, 2)
    again = ReviewStore(tmp_path / "r.sqlite").queue(q.id)  # a new session resumes
    assert again == q and s.queue_progress(again)[2] == 2
    assert list(s.queues("run1")["size"]) == [3]
    with pytest.raises(ValueError, match="at least one image"):
        s.create_queue("run1", "x", [], [], reviewer="a")


def _writer(path, start, n):
    s = ReviewStore(path)
    for i in range(start, start + n):
        s.add_tag(f"h{i}", "model error", reviewer=f"w{start}")


def test_two_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "r.sqlite"
    ReviewStore(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, k * 500, 500)) for k in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    st = ReviewStore(path).state()
    assert len(st) == 1000 and all(t == ["model error"] for t in st["tags"])


def test_threads_share_one_store(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    ts = [
        threading.Thread(
            target=lambda k=k: [s.add_note(f"h{k}", f"n{i}", reviewer="t") for i in range(50)]
        )
        for k in range(4)
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert len(s.events()) == 200


def test_crash_mid_transaction_keeps_committed_data(tmp_path):
    path = tmp_path / "r.sqlite"
    s = ReviewStore(path)
    s.add_tag("h1", "ambiguous", reviewer="a")
    con = sqlite3.connect(path, isolation_level=None)  # a writer that dies mid-transaction
    con.execute("BEGIN IMMEDIATE")
    con.execute(
        "INSERT INTO events(content_hash, kind, value, reviewer, created) "
        "VALUES ('h2','tag','x','a',0)"
    )
    con.close()  # never committed
    st = ReviewStore(path).state()
    assert list(st["content_hash"]) == ["h1"]


def test_relabel_list():
    samples = pd.DataFrame(
        {
            "content_hash": ["h1", "h2"],
            "path": ["/a.png", "/b.png"],
            "relpath": ["a.png", "b.png"],
            "label_name": ["cat", "dog"],
        }
    )
    ev = pd.DataFrame(
        {
            "content_hash": ["h1", "h2"],
            "kind": ["label", "label"],
            "value": ["dog", "dog"],
            "reviewer": ["ana", "bo"],
            "created": [1.0, 2.0],
            "relpath": [None, None],
        }
    )
    rl = relabel_list(samples, fold_events(ev))
    assert rl.to_dict("records") == [
        {
            "path": "/a.png",
            "relpath": "a.png",
            "given_label": "cat",
            "corrected_label": "dog",
            "reviewer": "ana",
            "labelled_at": 1.0,
        }
    ]


def _samples(*hashes):
    return pd.DataFrame(
        {
            "content_hash": list(hashes),
            "path": [f"/{h}.png" for h in hashes],
            "relpath": [f"{h}.png" for h in hashes],
            "label_name": ["cat"] * len(hashes),
        }
    )


def test_relabel_list_credits_who_set_the_label_not_the_last_reviewer(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    s.set_label("h1", "dog", reviewer="ana")
    at = s.events(["h1"])["created"].iloc[-1]
    s.add_note("h1", "agree, a dog", reviewer="bo")
    s.mark_reviewed("h1", reviewer="carl")
    rl = relabel_list(_samples("h1"), s.state())
    assert rl[["corrected_label", "reviewer"]].values.tolist() == [["dog", "ana"]]  # not carl
    assert rl["labelled_at"].tolist() == [at]
    s.set_label("h1", "bee", reviewer="bo")  # the latest decision counts
    s.add_tag("h1", "ambiguous", reviewer="carl")
    row = relabel_list(_samples("h1"), s.state()).iloc[0]
    assert (row["corrected_label"], row["reviewer"]) == ("bee", "bo")
    assert row["labelled_at"] == s.events(["h1"]).query("kind == 'label'")["created"].iloc[-1]


def test_synchronous_full_on_every_connection(tmp_path):
    """NORMAL (1) in WAL mode can lose committed review notes on power loss; FULL is 2."""
    s = ReviewStore(tmp_path / "r.sqlite")
    with s._connect() as con:
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = ReviewStore(tmp_path / "r.sqlite")  # reopening an existing file, too
    with again._connect() as con:
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 2


def test_tag_changes_diff_against_what_was_shown():
    assert tag_changes([], ["Model  Error"]) == (["model error"], [])
    assert tag_changes(["ambiguous", "label error"], ["label error", "x"]) == (["x"], ["ambiguous"])
    assert tag_changes(["ambiguous"], ["ambiguous"]) == ([], [])


def test_concurrent_tagging_keeps_the_other_reviewers_tag(tmp_path):
    """Ana opens an image (no tags), Bo adds "ambiguous", Ana picks "model error" and saves."""
    s = ReviewStore(tmp_path / "r.sqlite")
    shown = s.state(["h1"])  # what Ana's form showed
    assert shown.empty
    s.add_tag("h1", "ambiguous", reviewer="Bo")
    s.set_label("h1", "dog", reviewer="Bo")
    s.save_edits(
        "h1",
        reviewer="Ana",
        shown_tags=[],
        tags=["model error"],
        shown_label="",
        label="",  # Ana left the label alone: Bo's decision stands
        note="tail is cut off",
    )
    st = s.state(["h1"]).iloc[0]
    assert st["tags"] == ["ambiguous", "model error"]
    assert st["corrected_label"] == "dog" and st["label_by"] == "Bo"
    assert [n["text"] for n in st["notes"]] == ["tail is cut off"] and st["reviewed"]
    ev = s.history("h1")
    assert "untag" not in set(ev["kind"])
    assert ev[ev["reviewer"] == "Ana"]["kind"].tolist() == ["tag", "note", "reviewed"]


def test_save_edits_removes_what_the_user_removed(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    s.add_tag("h1", "ambiguous", reviewer="Bo")
    s.add_tag("h1", "label error", reviewer="Bo")
    shown = s.state(["h1"]).iloc[0]["tags"]
    s.add_tag("h1", "data quality", reviewer="Carl")  # after Ana's form was drawn
    added, removed = s.save_edits(
        "h1",
        reviewer="Ana",
        shown_tags=shown,
        tags=["label error"],
        shown_label="",
        label="cat",
        reviewed=False,
    )
    assert (added, removed) == ([], ["ambiguous"])
    st = s.state(["h1"]).iloc[0]
    assert st["tags"] == ["data quality", "label error"]
    assert st["corrected_label"] == "cat" and not st["reviewed"]
    # Ana withdraws her label decision explicitly: that is a change, so it is written.
    s.save_edits(
        "h1", reviewer="Ana", shown_tags=st["tags"], tags=st["tags"], shown_label="cat", label=""
    )
    assert s.state(["h1"]).iloc[0]["corrected_label"] == ""


def test_save_edits_is_one_transaction(tmp_path):
    s = ReviewStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="at most 60 characters"):
        s.save_edits("h1", reviewer="Ana", shown_tags=[], tags=["ok", "x" * 61], note="n")
    assert s.events().empty  # nothing half-written


def test_tags_survive_a_reanalysis(image_folder, tiny_resnet, tmp_path):
    """A forced re-analysis writes a new run; tags keyed by content hash still apply to it."""
    from analysis.pipeline.engine import analyze
    from tests.conftest import tiny_config

    cfg = tiny_config(image_folder, tiny_resnet)
    first = analyze(cfg, runs_dir=tmp_path / "runs")
    db = ReviewStore(tmp_path / "runs" / "review.sqlite")
    hashes = first.samples["content_hash"].tolist()
    db.add_tags_many([(h, "model error") for h in hashes[:5]], reviewer="ana", run_id=first.run_id)
    mtime = (first.path / "manifest.json").stat().st_mtime_ns
    second = analyze(cfg, runs_dir=tmp_path / "runs", force=True)
    assert (second.path / "manifest.json").stat().st_mtime_ns != mtime  # really re-written
    st = ReviewStore(tmp_path / "runs" / "review.sqlite").state(second.samples["content_hash"])
    assert len(st) == 5 and all(t == ["model error"] for t in st["tags"])
