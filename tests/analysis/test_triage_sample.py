"""Triage on the bundled sample: every planted failure gets its planted cause and no other.

Ground truth is sample_data/planted.json (documented in sample_data/README.md): night is
under-represented (and dark), cam_c blurred and noisy, stripes a shortcut to triangle, hexagon
rare in training, 48 flipped labels, 36 leaked near-copies. The triage defaults were chosen on
random planted worlds (bench/bench_triage.py), not on the sample.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.present.query import ImageQuery, apply_query, load_selection
from analysis.triage.plan import action_plan, fill, plan_text
from analysis.triage.runs import load_triage, stored_triage
from analysis.triage.table import TRIAGE_COLUMNS

pytestmark = pytest.mark.slow

# planted failure -> (its group, the causes that must be claimed, the causes allowed besides)
PLANTED = {
    "night": ("lighting is night", {"under_represented"}, {"image_quality"}),
    "cam_c": ("camera is cam_c", {"image_quality"}, set()),
    "stripes": ("background is stripes", {"shortcut"}, set()),
    "hexagon": ("true class is hexagon", {"under_represented"}, set()),
}


@pytest.fixture(scope="module")
def triaged(sample_run):
    res = stored_triage(sample_run)
    assert res is not None, "the pipeline wrote no triage.parquet"
    return res


def _claimed(t: pd.DataFrame, group: str) -> pd.DataFrame:
    return t[(t["group"] == group) & (t["status"] == "significant")]


def test_the_section_ran_and_the_table_has_its_columns(sample_run, triaged):
    assert sample_run.section_ok("triage")
    assert list(triaged.table.columns) == TRIAGE_COLUMNS
    assert triaged.info["n_tests"] > 50
    # the nearest-reference distance is a documented samples column
    d = sample_run.samples[schema.REFERENCE_DISTANCE].to_numpy()
    assert np.isfinite(d).all() and (d >= 0).all()


@pytest.mark.parametrize("name", list(PLANTED))
def test_each_planted_failure_gets_its_planted_cause_and_no_other(triaged, name):
    group, must, may = PLANTED[name]
    t = triaged.table
    assert group in set(t["group"]), f"{group!r} is not a failure group"
    got = set(_claimed(t, group)["cause"])
    assert must <= got, f"{group}: {got} lacks {must}"
    assert got <= must | may, f"{group}: claims {got - must - may} besides {must}"


def test_the_planted_details(triaged):
    t = triaged.table
    stripes = _claimed(t, "background is stripes")
    assert stripes["detail"].tolist() == ["background is stripes → triangle"]
    assert stripes["share"].iloc[0] > 0.5
    cam = _claimed(t, "camera is cam_c")
    assert "noisy" in set(cam["detail"])  # noise, not the Laplacian's "blurry"
    night = _claimed(t, "lighting is night")
    row = night[night["cause"] == "under_represented"].iloc[0]
    num = json.loads(row["numbers"])
    assert num["ref_n"] == 54 and num["ref_share"] == pytest.approx(0.03)
    assert num["eval_share"] == pytest.approx(117 / 1200)
    hexa = _claimed(t, "true class is hexagon")
    assert hexa["detail"].tolist() == ["true class is hexagon"]
    # night is dark, and the triage shows it; but darkness is not what fails there: the few
    # dark day images fail no more than the rest, so "dark" is tested and not claimed
    dark = t[(t["group"] == "lighting is night") & (t["detail"] == "dark")].iloc[0]
    num = json.loads(dark["numbers"])
    assert num["share_group_cause"] > 0.6 and num["share_baseline_cause"] < 0.1
    assert num["rate_cause"] <= num["rate_comparison"] and dark["status"] == "not significant"
    assert "of the group's images are dark" in dark["evidence"]


def _ids(run, query_json: str) -> set[str]:
    q = ImageQuery.from_params(json.loads(query_json))
    rows = apply_query(run.samples, q, run_dir=run.path)
    return set(run.samples[schema.RELPATH].to_numpy()[rows])


def test_flipped_labels_are_label_noise_and_leaked_pairs_leakage(sample_run, triaged, planted):
    t = triaged.table
    whole = t[t["group_kind"] == "whole_set"].set_index("cause")
    assert whole.loc["label_noise", "status"] == "found"
    assert whole.loc["leakage", "status"] == "found"
    flips = {f["path"] for f in planted["flipped_labels"]}
    flagged = _ids(sample_run, whole.loc["label_noise", "query"])
    assert len(flagged & flips) >= 0.5 * len(flips)  # the relabel list finds them
    # leaving the shortcut's confident errors out makes the list no less precise than the
    # label-issues section's own flags (how precise those are is that section's business)
    s = sample_run.samples
    all_flags = set(s.loc[s[schema.IS_LABEL_ISSUE].fillna(False).astype(bool), schema.RELPATH])
    assert len(flagged & flips) / len(flagged) >= len(all_flags & flips) / len(all_flags)
    leaks = {p["eval_path"] for p in planted["leaked_pairs"]}
    leaked = _ids(sample_run, whole.loc["leakage", "query"])
    assert leaks <= leaked and len(leaked) <= len(leaks) + 3
    # label noise is claimed for no planted group: their errors are not flipped labels
    for group, _, _ in PLANTED.values():
        assert "label_noise" not in set(_claimed(t, group)["cause"])


def test_every_number_of_the_plan_opens_its_images(sample_run, triaged):
    t = triaged.table
    claimed = t[t["status"].isin(["significant", "found"])]
    assert len(claimed)
    for _, row in claimed.iterrows():
        for lk in json.loads(row["links"]):
            q = lk["query"]
            assert q, f"{row['group']} / {row['cause']}: {lk['text']!r} has no link"
            if "sel" in q:
                assert load_selection(sample_run.path, q["sel"]), q
    night = _claimed(t, "lighting is night").iloc[0]
    links = json.loads(night["links"])
    imgs = _ids(sample_run, json.dumps(links[0]["query"]))
    s = sample_run.samples.set_index(schema.RELPATH)
    assert imgs and (s.loc[sorted(imgs), "lighting"] == "night").all()
    text = fill(night, lambda s, q: f"[{s}]")
    assert "collect or augment about [" in text and "lighting is night" in text


def test_the_plan_reads_in_order_and_says_none_plainly(triaged):
    t = triaged.table
    plan = action_plan(t)
    assert plan["rank"].is_monotonic_increasing
    text = plan_text(t, triaged.info)
    assert text.index("camera is cam_c") < text.index("true class is hexagon")
    assert "none of these" in text or (t["status"] == "none").sum() == 0


def test_review_decisions_move_the_label_noise_evidence(sample_run, triaged, planted):
    """A confirmed label error joins the relabel list; a confirmed right label leaves it."""
    t = triaged.table
    s = sample_run.samples
    whole = t[(t["group_kind"] == "whole_set") & (t["cause"] == "label_noise")].iloc[0]
    before = _ids(sample_run, whole["query"])
    keep = sorted(before)[0]
    flips = {f["path"]: f["true_label"] for f in planted["flipped_labels"]}
    missed = sorted(set(flips) - before)[0]
    by_path = s.set_index(schema.RELPATH)
    state = pd.DataFrame(
        {
            "content_hash": [by_path.loc[keep, schema.CONTENT_HASH],
                             by_path.loc[missed, schema.CONTENT_HASH]],
            "tags": [["model error"], ["label error"]],
            "corrected_label": [by_path.loc[keep, schema.LABEL_NAME], flips[missed]],
            "reviewed": [True, True],
        }
    )  # fmt: skip
    res = load_triage(sample_run, review=state)
    row = res.table[
        (res.table["group_kind"] == "whole_set") & (res.table["cause"] == "label_noise")
    ]
    after = _ids(sample_run, row["query"].iloc[0])
    assert missed in after and keep not in after
    assert res.info["reviewed"] == 2


def test_cli_prints_the_action_plan(sample_run, capsys, tmp_path, monkeypatch):
    from analysis.cli import main

    monkeypatch.setenv("ERRORSCOPE_REVIEW_DB", str(tmp_path / "none.sqlite"))
    out_csv = tmp_path / "triage.csv"
    assert main(["triage", str(sample_run.path), "--csv", str(out_csv)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Action plan for run {sample_run.run_id}")
    assert "camera is cam_c [slice]" in out and "image quality (noisy): accounts for" in out
    assert "→ break the shortcut: triangle images show background is stripes" in out
    assert "→ relabel these" in out and "→ deduplicate the splits" in out
    assert "hypotheses tested, BH at 0.05" in out
    table = pd.read_csv(out_csv)
    assert list(table.columns) == TRIAGE_COLUMNS and len(table) == len(
        stored_triage(sample_run).table
    )


def test_a_robustness_run_confirms_cam_c_by_noise_and_shows_blur(sample_run):
    """cam_c's measured degradation is noise (noise hides blur from the Laplacian): a noise run
    at cam_c's measured level must hurt the other images (the check can veto the cause); a blur
    run is shown beside it as evidence. On this model blur barely hurts clean images (it was
    never trained with it, but its features tolerate it: measured, not assumed), so the blur
    curve is evidence only and cannot confirm or veto a noisy group."""
    from analysis.stats.robustness import run_robustness
    from analysis.triage.runs import triage_run

    res = run_robustness(
        sample_run,
        perturbations=["gaussian_noise", "gaussian_blur"],
        severities=[2, 5],
        subset=240,
        seed=0,
    )
    t = triage_run(sample_run, robustness=res).table
    cam = t[t["group"] == "camera is cam_c"]
    row = cam[(cam["cause"] == "image_quality") & (cam["detail"] == "noisy")].iloc[0]
    assert row["status"] == "significant"
    num = json.loads(row["numbers"])
    noise = num["robustness"]
    assert noise["perturbation"] == "gaussian_noise"
    assert noise["matched_severity"] == 2  # cam_c's noise sigma ~0.07 of the range: severity 2
    assert noise["p_robustness"] < 0.05 and noise["hurts_from"] == 2
    assert [r["perturbation"] for r in num["robustness_other"]] == ["gaussian_blur"]
    assert "Robustness run: gaussian_noise lowers the accuracy" in row["evidence"]
    assert "Robustness run: gaussian_blur" in row["evidence"]
    assert "Gaussian noise makes other images fail like these" in row["recommendation"] or (
        "Gaussian noise hurts other images from severity 2" in row["recommendation"]
    )
    # still the only cause claimed for cam_c
    assert set(cam.loc[cam["status"] == "significant", "cause"]) == {"image_quality"}


def _plan_section(html: str) -> str:
    """The Action plan section, without the plotly.js its first chart inlines."""
    import re

    start = html.index('<section id="action-plan">')
    sec = html[start : html.index("</section>", start)]
    return re.sub(r"<script\b.*?</script>", "", sec, flags=re.S)


def test_the_report_has_the_action_plan_with_every_number_linked(sample_run, triaged, tmp_path):
    """HTML, Markdown and CSV: every claimed cause in plan order, and every number a link to
    exactly its images in the dashboard's gallery."""
    import html as htmlmod
    import re
    from urllib.parse import parse_qsl, urlsplit

    from analysis.present.query import P_RUN
    from analysis.present.report import build_report, to_csv_tables, to_html, to_markdown

    base = "http://meeting-room:8600"
    rep = build_report(sample_run, review_state=None, dashboard_url=base)
    assert rep.action_plan is not None
    page = to_html(rep, sample_run)
    sec = _plan_section(page)
    # the plan's own table: a robustness run stored by an earlier test makes it a fresh triage
    t = rep.action_plan.causes
    claimed = t[t["status"].isin(["significant", "found"])]
    text = htmlmod.unescape(re.sub(r"<[^>]+>", "", sec))
    # groups in the plan's order, each claimed cause's action with its numbers
    order = [text.index(f"{g}") for g in dict.fromkeys(claimed["group"])]
    assert order == sorted(order)
    for _, row in claimed.iterrows():
        assert fill(row, lambda s, q: s) in text, row["group"]
    hrefs = [htmlmod.unescape(h) for h in re.findall(r'<a href="([^"]+)"', sec)]
    n_links = sum(len([lk for lk in json.loads(r["links"]) if lk["query"]])
                  for _, r in claimed.iterrows())  # fmt: skip
    assert len(hrefs) >= n_links > 5
    for h in hrefs:
        u = urlsplit(h)
        assert f"{u.scheme}://{u.netloc}" == base and u.path == "/gallery"
        assert dict(parse_qsl(u.query))[P_RUN] == sample_run.run_id
    # the night item's numbers ("about 135 more", "9.8% of evaluation") open its night images
    night = claimed[(claimed["group"] == "lighting is night")].iloc[0]
    lk = json.loads(night["links"])[0]
    want = _ids(sample_run, json.dumps(lk["query"]))
    href = next(h for h in hrefs if h == rep.action_plan.url(lk["query"]))
    params = {k: v for k, v in parse_qsl(urlsplit(href).query) if k != P_RUN}
    got = _ids(sample_run, json.dumps(params))
    s = sample_run.samples
    night_ids = set(s.loc[s["lighting"] == "night", schema.RELPATH])
    assert got == want == night_ids and len(got) == 117
    assert "collect or augment about" in text and "break the shortcut" in text
    assert "hypotheses tested, BH at 0.05" in text
    # its evidence charts are drawn (the cam_c item's chart among them)
    assert sec.count('class="figure"') >= len(claimed[claimed["cause"] != "label_noise"])

    md = to_markdown(rep)
    plan_md = md[md.index("## Action plan") : md.index("\n## ", md.index("## Action plan") + 5)]
    assert "camera is cam\\_c" in plan_md and "break the shortcut" in plan_md
    md_links = re.findall(r"\]\((http[^)]+)\)", plan_md)
    assert len(md_links) >= n_links and all(u.startswith(base + "/gallery?") for u in md_links)

    csv = pd.read_csv(__import__("io").StringIO(to_csv_tables(rep)["action_plan"]))
    assert len(csv) == len(t[t["status"].isin(["significant", "found", "none"])])
    assert csv["images_url"].fillna("").str.startswith(base + "/gallery?").sum() >= len(claimed)
    assert csv["rank"].is_monotonic_increasing


def test_a_report_of_a_run_without_triage_says_so(sample_run, monkeypatch):
    from analysis.present.report import build_report, to_html

    real = type(sample_run).table
    monkeypatch.setattr(
        type(sample_run),
        "table",
        lambda self, name: None if name == schema.TRIAGE else real(self, name),
    )
    rep = build_report(sample_run, review_state=None)
    assert rep.action_plan is None
    assert any(n.startswith("Action plan (root-cause triage): not in this run") for n in rep.notes)
    assert 'id="action-plan"' not in to_html(rep, sample_run)


def test_cli_report_links_the_plan_to_the_given_dashboard(sample_run, tmp_path, monkeypatch):
    from analysis.cli import main

    monkeypatch.setenv("ERRORSCOPE_REVIEW_DB", str(tmp_path / "none.sqlite"))
    out = tmp_path / "rep"
    args = ["report", str(sample_run.path), "--format", "md", "--out", str(out)]
    assert main([*args, "--dashboard-url", "http://review-box:9000"]) == 0
    md = (out / "report.md").read_text()
    assert "## Action plan" in md and "(http://review-box:9000/gallery?" in md
