"""Review data of error-review meetings: tags, notes, corrected labels, queues.

Review data is not derived data: it lives in one workspace-level SQLite file (default
``<runs dir>/review.sqlite``), keyed by the image's content hash, so it survives re-analysis and
follows an image across runs and models. Every edit is an appended event (history is kept,
nothing is overwritten); the current state of an image is folded from its events.

Concurrency: WAL mode, one short ``BEGIN IMMEDIATE`` transaction per write and a busy timeout,
so two browser sessions (threads or processes) writing at once both land. ``synchronous=FULL``:
review notes cannot be re-derived, so a committed write must survive a power loss or OS crash,
not only a crash of the app; the writes are tiny, so the extra fsync per commit costs nothing
noticeable. A crash loses at most the write that was in flight, never a committed one.

Edits from a form are diffed against what that form *showed* (:func:`tag_changes`,
:meth:`ReviewStore.save_edits`), never against the database at save time: otherwise a tag that
another reviewer added after the form was drawn would be written as removed by this one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

STARTER_TAGS = (
    "label error",
    "ambiguous",
    "model error",
    "data quality",
    "needs more data",
    "out of scope",
)
KINDS = ("tag", "untag", "note", "label", "reviewed")
DB_NAME = "review.sqlite"
MAX_TEXT = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    content_hash TEXT NOT NULL,
    kind         TEXT NOT NULL,
    value        TEXT NOT NULL DEFAULT '',
    reviewer     TEXT NOT NULL,
    created      REAL NOT NULL,
    run_id       TEXT,
    relpath      TEXT,
    queue_id     TEXT
);
CREATE INDEX IF NOT EXISTS events_hash ON events(content_hash, id);
CREATE INDEX IF NOT EXISTS events_queue ON events(queue_id);
CREATE TABLE IF NOT EXISTS queues (
    id         TEXT PRIMARY KEY,
    run_id     TEXT NOT NULL,
    name       TEXT NOT NULL,
    query      TEXT NOT NULL DEFAULT '{}',
    sample_ids TEXT NOT NULL,
    hashes     TEXT NOT NULL,
    reviewer   TEXT NOT NULL,
    created    REAL NOT NULL
);
"""


def default_db_path(runs_dir: str | os.PathLike) -> Path:
    """``$ERRORSCOPE_REVIEW_DB`` if set, else ``<runs_dir>/review.sqlite``."""
    env = os.environ.get("ERRORSCOPE_REVIEW_DB")
    return Path(env) if env else Path(runs_dir) / DB_NAME


@dataclass(frozen=True)
class Queue:
    """A review queue: an ordered list of images of one run to step through."""

    id: str
    run_id: str
    name: str
    query: dict
    sample_ids: tuple[str, ...]
    hashes: tuple[str, ...]
    reviewer: str
    created: float


class ReviewStore:
    """Append-only review events in SQLite. Safe to share between threads and processes."""

    def __init__(self, path: str | os.PathLike, *, timeout_s: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(_SCHEMA)

    @contextmanager
    def _connect(self):
        con = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        try:
            con.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            # NORMAL in WAL mode can drop the last commits on power loss; see the module docstring.
            con.execute("PRAGMA synchronous=FULL")
            yield con
        finally:
            con.close()

    @contextmanager
    def _write(self):
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise

    # -- writes ------------------------------------------------------------------------------
    def _event(
        self,
        content_hash: str,
        kind: str,
        value: str,
        *,
        reviewer: str,
        run_id: str | None = None,
        relpath: str | None = None,
        queue_id: str | None = None,
    ) -> int:
        row = _row(content_hash, kind, value, reviewer, run_id, relpath, queue_id)
        with self._write() as con:
            cur = con.execute(_INSERT, row)
            return int(cur.lastrowid)

    def add_tag(self, content_hash: str, tag: str, *, reviewer: str, **where) -> int:
        """Tag an image (free tags allowed besides ``STARTER_TAGS``)."""
        return self._event(content_hash, "tag", _clean_tag(tag), reviewer=reviewer, **where)

    def remove_tag(self, content_hash: str, tag: str, *, reviewer: str, **where) -> int:
        return self._event(content_hash, "untag", _clean_tag(tag), reviewer=reviewer, **where)

    def add_note(self, content_hash: str, text: str, *, reviewer: str, **where) -> int:
        if not text.strip():
            raise ValueError("a note needs some text")
        return self._event(content_hash, "note", text.strip(), reviewer=reviewer, **where)

    def set_label(self, content_hash: str, label: str | None, *, reviewer: str, **where) -> int:
        """Decide the correct label (a class name); ``None`` withdraws the decision."""
        return self._event(content_hash, "label", label or "", reviewer=reviewer, **where)

    def mark_reviewed(
        self, content_hash: str, *, reviewer: str, queue_id: str | None = None, **where
    ) -> int:
        return self._event(
            content_hash, "reviewed", "", reviewer=reviewer, queue_id=queue_id, **where
        )

    def save_edits(
        self,
        content_hash: str,
        *,
        reviewer: str,
        shown_tags: Iterable[str],
        tags: Iterable[str],
        shown_label: str = "",
        label: str = "",
        note: str = "",
        reviewed: bool = True,
        run_id: str | None = None,
        relpath: str | None = None,
        queue_id: str | None = None,
    ) -> tuple[list[str], list[str]]:
        """Save one reviewer's edit form in one transaction; returns (tags added, tags removed).

        ``shown_tags`` / ``shown_label`` are what the form showed when it was drawn, ``tags`` /
        ``label`` what the reviewer submitted (``""`` = the given label / no decision). Only the
        reviewer's own changes are written: a tag or label that someone else set after the form
        was drawn is left alone unless this reviewer changed that very tag or the label. A
        non-blank ``note`` is appended (notes never replace each other)."""
        add, remove = tag_changes(shown_tags, tags)
        where = (run_id, relpath, queue_id)
        rows = [_row(content_hash, "tag", t, reviewer, *where) for t in add]
        rows += [_row(content_hash, "untag", t, reviewer, *where) for t in remove]
        if note.strip():
            rows.append(_row(content_hash, "note", note.strip(), reviewer, *where))
        if (label or "") != (shown_label or ""):
            rows.append(_row(content_hash, "label", label or "", reviewer, *where))
        if reviewed:
            rows.append(_row(content_hash, "reviewed", "", reviewer, *where))
        if rows:
            with self._write() as con:
                con.executemany(_INSERT, rows)
        return add, remove

    def add_tags_many(
        self, items: Iterable[tuple[str, str]], *, reviewer: str, run_id: str | None = None
    ) -> int:
        """Tag many (content_hash, tag) pairs in one transaction; returns how many."""
        rows = [_row(h, "tag", _clean_tag(t), reviewer, run_id, None, None) for h, t in items]
        with self._write() as con:
            con.executemany(_INSERT, rows)
        return len(rows)

    # -- reads -------------------------------------------------------------------------------
    def events(self, content_hashes: Iterable[str] | None = None) -> pd.DataFrame:
        """All events (optionally of some images), oldest first: the full history."""
        q = "SELECT * FROM events"
        args: list = []
        if content_hashes is not None:
            hashes = list(dict.fromkeys(content_hashes))
            if not hashes:
                return pd.DataFrame(
                    columns=[
                        "id",
                        "content_hash",
                        "kind",
                        "value",
                        "reviewer",
                        "created",
                        "run_id",
                        "relpath",
                        "queue_id",
                    ]
                )
            q += f" WHERE content_hash IN ({','.join('?' * len(hashes))})"
            args = hashes
        with self._connect() as con:
            return pd.read_sql_query(q + " ORDER BY id", con, params=args)

    def state(self, content_hashes: Iterable[str] | None = None) -> pd.DataFrame:
        """Current review state per image: tags (sorted list), notes (list of dicts), corrected
        label ('' = none), reviewed (bool), last reviewer and time. One row per reviewed image."""
        ev = self.events(content_hashes)
        return fold_events(ev)

    def history(self, content_hash: str) -> pd.DataFrame:
        return self.events([content_hash])

    def tag_counts(self) -> pd.Series:
        st = self.state()
        if st.empty:
            return pd.Series(dtype=int)
        return st["tags"].explode().dropna().value_counts()

    # -- queues ------------------------------------------------------------------------------
    def create_queue(
        self,
        run_id: str,
        name: str,
        sample_ids: list[str],
        hashes: list[str],
        *,
        reviewer: str,
        query: dict | None = None,
    ) -> Queue:
        if len(sample_ids) != len(hashes):
            raise ValueError(f"{len(sample_ids)} sample ids but {len(hashes)} content hashes")
        if not sample_ids:
            raise ValueError("a review queue needs at least one image")
        qid = uuid.uuid4().hex[:10]
        with self._write() as con:
            con.execute(
                "INSERT INTO queues(id, run_id, name, query, sample_ids, hashes, reviewer, created)"
                " VALUES (?,?,?,?,?,?,?,?)",
                (
                    qid,
                    run_id,
                    name[:200] or "queue",
                    json.dumps(query or {}),
                    json.dumps(list(sample_ids)),
                    json.dumps(list(hashes)),
                    reviewer,
                    time.time(),
                ),
            )
        return self.queue(qid)

    def queue(self, queue_id: str) -> Queue | None:
        with self._connect() as con:
            row = con.execute(
                "SELECT id, run_id, name, query, sample_ids, hashes, reviewer,"
                " created FROM queues WHERE id=?",
                (queue_id,),
            ).fetchone()
        if row is None:
            return None
        return Queue(
            row[0],
            row[1],
            row[2],
            json.loads(row[3]),
            tuple(json.loads(row[4])),
            tuple(json.loads(row[5])),
            row[6],
            row[7],
        )

    def queues(self, run_id: str | None = None) -> pd.DataFrame:
        q = "SELECT id, run_id, name, reviewer, created, sample_ids FROM queues"
        args: tuple = ()
        if run_id:
            q += " WHERE run_id=?"
            args = (run_id,)
        with self._connect() as con:
            df = pd.read_sql_query(q + " ORDER BY created DESC", con, params=args)
        df["size"] = df.pop("sample_ids").map(lambda s: len(json.loads(s)))
        return df

    def queue_progress(self, queue: Queue) -> tuple[int, int, int]:
        """(reviewed, total, position of the first unreviewed image or total) of a queue.

        An image counts as reviewed in this queue once it was marked reviewed from it."""
        with self._connect() as con:
            done = {
                h
                for (h,) in con.execute(
                    "SELECT DISTINCT content_hash FROM events WHERE queue_id=? AND kind='reviewed'",
                    (queue.id,),
                )
            }
        flags = [h in done for h in queue.hashes]
        nxt = next((i for i, f in enumerate(flags) if not f), len(flags))
        return sum(flags), len(flags), nxt


def fold_events(ev: pd.DataFrame) -> pd.DataFrame:
    """Current state from an event log (oldest first); see :meth:`ReviewStore.state`."""
    cols = [
        "content_hash",
        "tags",
        "notes",
        "corrected_label",
        "reviewed",
        "last_reviewer",
        "last_at",
        "relpath",
        "label_by",
        "label_at",
    ]
    if ev.empty:
        return pd.DataFrame(columns=cols)
    out = []
    for h, g in ev.groupby("content_hash", sort=False):
        tags: dict[str, None] = {}
        notes, label, reviewed = [], "", False
        label_by, label_at = "", float("nan")
        for kind, value, who, when in zip(
            g["kind"], g["value"], g["reviewer"], g["created"], strict=True
        ):
            if kind == "tag":
                tags[value] = None
            elif kind == "untag":
                tags.pop(value, None)
            elif kind == "note":
                notes.append({"text": value, "reviewer": who, "at": float(when)})
            elif kind == "label":
                label, label_by, label_at = value, who, float(when)
            elif kind == "reviewed":
                reviewed = True
        rel = g["relpath"].dropna()
        out.append(
            (
                h,
                sorted(tags),
                notes,
                label,
                reviewed,
                g["reviewer"].iloc[-1],
                float(g["created"].iloc[-1]),
                rel.iloc[-1] if len(rel) else None,
                label_by,
                label_at,
            )
        )
    return pd.DataFrame(out, columns=cols)


def relabel_list(samples: pd.DataFrame, state: pd.DataFrame) -> pd.DataFrame:
    """Images whose label someone corrected: path, relpath, given label, corrected label, and
    ``reviewer`` / ``labelled_at`` (epoch seconds): who set the current corrected label and when.

    ``samples`` needs content_hash, path, relpath, label_name; ``state`` is
    :meth:`ReviewStore.state`. A state without ``label_by`` / ``label_at`` (built by hand, older
    callers) falls back to the last reviewer and time of the image."""
    cols = ["path", "relpath", "given_label", "corrected_label", "reviewer", "labelled_at"]
    if state.empty:
        return pd.DataFrame(columns=cols)
    # The last event of an image may be a note or a "reviewed" mark by someone else: crediting
    # last_reviewer would name them as the person who decided the label.
    if "label_by" not in state.columns:
        state = state.assign(label_by=state["last_reviewer"])
    if "label_at" not in state.columns:
        state = state.assign(label_at=state.get("last_at", float("nan")))
    decided = state[state["corrected_label"] != ""]
    merged = samples[["content_hash", "path", "relpath", "label_name"]].merge(
        decided, on="content_hash", how="inner", suffixes=("", "_review")
    )
    merged = merged[merged["corrected_label"] != merged["label_name"]]
    return pd.DataFrame(
        {
            "path": merged["path"],
            "relpath": merged["relpath"],
            "given_label": merged["label_name"],
            "corrected_label": merged["corrected_label"],
            "reviewer": merged["label_by"],
            "labelled_at": merged["label_at"],
        },
        columns=cols,
    ).reset_index(drop=True)


def tag_changes(shown: Iterable[str], chosen: Iterable[str]) -> tuple[list[str], list[str]]:
    """(tags to add, tags to remove) for a reviewer whose form showed ``shown`` and who
    submitted ``chosen``; both are normalised like stored tags, results sorted.

    Diffing against the form rather than the database at save time is what keeps a tag that
    someone else added meanwhile: it is in neither set, so it is neither added nor removed."""
    before = {_clean_tag(t) for t in shown}
    after = {_clean_tag(t) for t in chosen}
    return sorted(after - before), sorted(before - after)


_INSERT = (
    "INSERT INTO events(content_hash, kind, value, reviewer, created, run_id, relpath, queue_id)"
    " VALUES (?,?,?,?,?,?,?,?)"
)


def _row(
    content_hash: str,
    kind: str,
    value: str,
    reviewer: str,
    run_id: str | None,
    relpath: str | None,
    queue_id: str | None,
) -> tuple:
    _check(content_hash, kind, value, reviewer)
    return (content_hash, kind, value, reviewer.strip(), time.time(), run_id, relpath, queue_id)


def _clean_tag(tag: str) -> str:
    t = " ".join(str(tag).split()).lower()
    if not t:
        raise ValueError("a tag cannot be empty")
    if len(t) > 60:
        raise ValueError(f"a tag is at most 60 characters, got {len(t)}")
    return t


def _check(content_hash: str, kind: str, value: str, reviewer: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; valid: {KINDS}")
    if not content_hash or not isinstance(content_hash, str):
        raise ValueError(f"content_hash must be a non-empty string, got {content_hash!r}")
    if not reviewer or not str(reviewer).strip():
        raise ValueError("set a reviewer name before reviewing")
    if len(value) > MAX_TEXT:
        raise ValueError(f"text is at most {MAX_TEXT} characters, got {len(value)}")
