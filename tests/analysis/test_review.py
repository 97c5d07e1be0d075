"""Review data: append-only events, folded state, queues, concurrency, crash safety."""

import multiprocessing as mp
import sqlite3
import threading

import pandas as pd
import pytest

from analysis.review import STARTER_TAGS, ReviewStore, fold_events, relabel_list


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
        }
    ]


def test_tags_survive_a_reanalysis(image_folder, tiny_resnet, tmp_path):
    """A forced re-analysis writes a new run; tags keyed by content hash still apply to it."""
    from analysis.pipeline import AnalysisConfig, analyze

    cfg = AnalysisConfig(
        data=str(image_folder),
        model=str(tiny_resnet),
        arch="resnet18",
        resize=32,
        no_crop=True,
        num_workers=0,
        umap=False,
    )
    first = analyze(cfg, runs_dir=tmp_path / "runs")
    db = ReviewStore(tmp_path / "runs" / "review.sqlite")
    hashes = first.samples["content_hash"].tolist()
    db.add_tags_many([(h, "model error") for h in hashes[:5]], reviewer="ana", run_id=first.run_id)
    mtime = (first.path / "manifest.json").stat().st_mtime_ns
    second = analyze(cfg, runs_dir=tmp_path / "runs", force=True)
    assert (second.path / "manifest.json").stat().st_mtime_ns != mtime  # really re-written
    st = ReviewStore(tmp_path / "runs" / "review.sqlite").state(second.samples["content_hash"])
    assert len(st) == 5 and all(t == ["model error"] for t in st["tags"])
