"""A run and a review database full of user text that Markdown or HTML would interpret.

Class names, file names, a metadata column and its values, the model's name, a queue, a
reviewer, tags, notes and a corrected label all hold a link, HTML and a bare web address. The
AppTest and the browser tests walk every page of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from tests.conftest import save_tiny_resnet

LINK = "[x](http://phish.example)"
HTML = "<b>bold</b> & <i>co</i>"
BARE = "www.phish.example"
FILE_LINK = "[f](phish.example)"  # a file name cannot hold "/": a relative link
#: substrings that must never reach a Markdown renderer unescaped
RAW = (LINK, "<b>bold</b>", BARE, "](http", FILE_LINK)
CLASSES = [LINK, HTML, BARE]
META_COLUMN = f"site {LINK}"


def make_hostile_run(root: Path):
    """A 3-class run (tiny random resnet18, 24 images) whose every user-visible string is
    hostile; returns (run, review store path, queue id)."""
    from PIL import Image

    from analysis import schema
    from analysis.pipeline.engine import AnalysisConfig, analyze
    from analysis.store.review import ReviewStore

    rng = np.random.default_rng(0)
    data = root / "data"
    (data / "img").mkdir(parents=True)
    rows = []
    for i in range(24):
        rel = f"img/{FILE_LINK} {i:02d}.png"
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(data / rel)
        rows.append(
            {
                "path": rel,
                "label": CLASSES[i % 3],
                META_COLUMN: [LINK, HTML, BARE][i % 3],
                "score": float(i),  # a numeric column with many values: a range slider
            }
        )
    pd.DataFrame(rows).to_csv(data / "eval.csv", index=False)
    # a JSON list: a classes.txt whose first line starts with "[" is read as JSON
    (data / "classes.txt").write_text(json.dumps(CLASSES))
    model = save_tiny_resnet(root / f"{FILE_LINK}.pt")
    run = analyze(
        AnalysisConfig(
            data=str(data / "eval.csv"),
            model=str(model),
            arch="resnet18",
            resize=32,
            no_crop=True,
            num_workers=0,
        ),
        runs_dir=root / "runs",
    )
    db_path = root / "review.sqlite"
    db = ReviewStore(db_path)
    s = run.samples
    for _, r in s.head(3).iterrows():
        h = r[schema.CONTENT_HASH]
        db.add_tag(h, LINK, reviewer=HTML)
        db.add_note(h, f"{LINK}\n# heading {HTML} {BARE}", reviewer=LINK)
        db.set_label(h, CLASSES[1], reviewer=BARE)
    queue = db.create_queue(
        run.run_id,
        LINK,
        s[schema.SAMPLE_ID].head(5).tolist(),
        s[schema.CONTENT_HASH].head(5).tolist(),
        reviewer=HTML,
        query={},
    )
    return run, db_path, queue.id


def markdown_sources(at) -> list[str]:
    """Every string of an AppTest's rendered tree that Streamlit draws as Markdown: bodies of
    markdown, captions, headings and alerts, widget and link labels, help texts, progress texts,
    image captions, pill options, expander and tab labels."""
    from google.protobuf.descriptor import FieldDescriptor

    fields = {"body", "label", "help", "caption", "text", "content"}
    out: list[str] = []

    def walk_proto(msg) -> None:
        for fd, value in msg.ListFields():
            if fd.type == FieldDescriptor.TYPE_STRING:
                if fd.name in fields:
                    out.extend([value] if isinstance(value, str) else value)
            elif fd.type == FieldDescriptor.TYPE_MESSAGE:
                for m in value if hasattr(value, "__len__") else [value]:
                    walk_proto(m)

    def walk(node) -> None:
        proto = getattr(node, "proto", None)
        if _is_html(node):
            pass  # plain HTML, not Markdown: html_sources checks it
        elif proto is not None and hasattr(proto, "ListFields"):
            walk_proto(proto)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return out


def _is_html(node) -> bool:
    proto = getattr(node, "proto", None)
    return getattr(node, "type", None) == "html" or type(proto).__name__ == "Html"


def html_sources(at) -> list[str]:
    """The bodies of every ``st.html`` element of an AppTest's rendered tree (drawn as HTML: user
    text in them must be HTML-escaped; Markdown syntax is shown literally)."""
    out: list[str] = []

    def walk(node) -> None:
        if _is_html(node):
            out.append(node.proto.body)
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return out
