"""AppTest of the Triage page and the Overview's lead on the sample run."""

from __future__ import annotations

import json
import re

from analysis import schema
from analysis.present.query import ImageQuery, apply_query
from analysis.triage.runs import stored_triage

from .conftest import assert_on_page, open_page


def _open(at, page, **params):
    at.run()
    for k, v in params.items():
        at.query_params[k] = v
    open_page(at, page).run()
    assert_on_page(at, page)
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_triage_page_ranks_groups_by_cost_with_causes_and_actions(app_test, sample_run):
    t = stored_triage(sample_run).table
    at = _open(app_test, "triage")
    assert at.title[0].value == "Triage"
    labels = [e.label for e in at.expander]
    ranks = t.drop_duplicates("group_rank").sort_values("group_rank")
    assert len(labels) == len(ranks)
    # the page's order is the table's order, costliest first, each with its claimed causes
    for label, (_, g) in zip(labels, ranks.iterrows(), strict=True):
        assert label.startswith(f"{int(g['group_rank'])}. {g['group']} — ")
    cam = next(lb for lb in labels if "camera is cam_c" in lb)
    assert cam.endswith("· image quality")
    text = " ".join(m.value for m in at.markdown).replace("\\", "")  # data text is escaped
    assert "break the shortcut: triangle images show background is stripes in" in text
    assert "collect or augment about" in text and "lighting is night" in text
    assert "accounts for" in text  # shares with their intervals
    # the bold numbers keep the spaces around them ("remove **37 leaked images** from")
    assert re.search(r"remove \*\*\d+ leaked images\*\* from", text), text[:3000]
    # every number of a claimed cause is a page link to the gallery
    links = [p for p in at.get("page_link")]
    assert any(p.label.startswith("394 images") for p in links)
    assert sum(b.label == "Review these" for b in at.button) >= 4


def test_a_cause_link_opens_exactly_its_images(sample_run):
    t = stored_triage(sample_run).table
    row = t[(t["group"] == "background is stripes") & (t["status"] == "significant")].iloc[0]
    link = json.loads(row["links"])[1]
    rows = apply_query(
        sample_run.samples, ImageQuery.from_params(link["query"]), run_dir=sample_run.path
    )
    s = sample_run.samples.iloc[rows]
    tri = sample_run.class_names.index("triangle")
    assert len(s) == int(link["text"].split()[0])
    assert (s["background"] == "stripes").all() and (s[schema.PRED] == tri).all()
    assert (s[schema.LABEL] != tri).all()


def test_review_queue_starts_from_a_cause(app_test, sample_run, tmp_path, monkeypatch):
    monkeypatch.setenv("ERRORSCOPE_REVIEW_DB", str(tmp_path / "review.sqlite"))
    at = _open(app_test, "triage")
    at.button[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert_on_page(at, "review")
    assert at.query_params.get("sel"), "the queue's images travel as a stored selection"
    assert any("images" in m.value for m in at.markdown)


def test_triage_group_deep_link_opens_that_group(app_test, sample_run):
    at = _open(app_test, "triage", group="4")
    opened = [e for e in at.expander if e.label.startswith("4. ")]
    assert opened and opened[0].proto.expanded


def test_overview_leads_with_the_action_plan(app_test, sample_run):
    at = app_test.run()
    assert not at.exception
    assert any("Triage: why the model fails" in m.value for m in at.markdown)
    links = [p.label for p in at.get("page_link")]
    # the costliest groups lead (the whole set's leakage and label errors may come first)
    lead = [lb for lb in links if re.match(r"\d+\. ", lb)]
    assert any(re.match(r"[12]\. camera is cam_c: image quality \(noisy\) accounts for", lb)
               for lb in lead), links  # fmt: skip
    ranks = [int(lb.split(".")[0]) for lb in lead]
    assert ranks == sorted(ranks)
    assert any(lb.startswith("Open the triage of") for lb in links)
    assert any("augment with Gaussian noise" in c.value for c in at.caption)
