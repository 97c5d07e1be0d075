"""Per-section code versions: what a code change makes stale, and what an upgrade recomputes.

The fingerprints are computed on the real source with one file edited in memory (the ``read``
hook), so these tests follow the code as it is, not a list kept by hand.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.pipeline import versions as V
from analysis.pipeline.engine import analyze
from analysis.pipeline.sections import NEEDS, OPTIONAL, SECTIONS
from analysis.version import ROOT, module_closure, read_source
from tests.conftest import make_image_folder, tiny_config

EDIT = "\n# an edit that changes nothing but the source\n"


def _editing(*relpaths: str, replace: tuple[str, str] | None = None):
    """A source reader that edits the files ``relpaths`` (under analysis/) in memory."""
    targets = {(ROOT / r).resolve() for r in relpaths}

    def read(path):
        text = read_source(path)
        if path.resolve() in targets:
            if replace:  # an edit that finds nothing to replace would test nothing
                assert replace[0] in text, f"{replace[0]!r} is not in {path}"
                return text.replace(*replace)
            return text + EDIT
        return text

    return read


def _codes(read=None) -> dict[str, str]:
    out = {name: V.section_code(name, read=read).fingerprint for name in SECTIONS}
    out["<pass>"] = V.pass_code(read=read).fingerprint
    return out


def _changed(read) -> set[str]:
    before, after = _codes(), _codes(read)
    return {k for k in before if before[k] != after[k]}


# ---------------------------------------------------------------------------------------------
# fingerprints


def test_presentation_code_never_makes_a_run_stale():
    present = [p.relative_to(ROOT).as_posix() for p in (ROOT / "present").rglob("*.py")] + [
        "cli.py"
    ]
    assert "present/figures.py" in present and "present/report/render_html.py" in present
    assert _changed(_editing(*present)) == set()
    for name in SECTIONS:  # nothing a section or the pass imports is presentation
        mods = V.section_code(name).modules
        assert not [m for m in mods if m.startswith(("analysis.present", "analysis.cli"))], name
    assert not [m for m in V.pass_code().modules if m.startswith("analysis.present")]


def test_a_module_change_stales_the_sections_that_import_it():
    # triage imports the outlier rules (its image-quality cause); the class hierarchy's
    # per-superclass metrics import the per-class metrics
    assert _changed(_editing("data_issues/outliers.py")) == {"outliers", "triage"}
    assert _changed(_editing("stats/metrics.py")) == {"metrics", "class_hierarchy"}
    assert _changed(_editing("stats/hierarchy.py")) == {"class_hierarchy"}
    assert _changed(_editing("stats/discovery.py")) == {"discovered_slices"}
    # discovery builds on the single-predicate slices: both follow slices.py (and what else uses
    # its tests, e.g. outliers' Fisher test)
    assert _changed(_editing("stats/slices.py")) >= {"slices", "discovered_slices"}
    assert "<pass>" not in _changed(_editing("explain/embeddings.py"))
    # the pass: its loaders, or the engine functions that run it
    assert _changed(_editing("loading/inference.py")) >= {"<pass>"}
    assert "<pass>" in _changed(
        _editing("pipeline/engine.py", replace=('desc="evaluation set"', 'desc="eval"'))
    )


MODULES = sorted(
    p.relative_to(ROOT).as_posix()
    for d in ("stats", "data_issues", "explain")
    for p in (ROOT / d).glob("*.py")
    if p.name != "__init__.py"
)


@pytest.mark.parametrize("relpath", MODULES)
def test_an_edit_stales_exactly_the_parts_whose_recorded_modules_hold_it(relpath):
    """What a run records as a section's modules is what its fingerprint covers."""
    module = "analysis." + relpath[: -len(".py")].replace("/", ".")
    expected = {n for n in SECTIONS if module in V.section_code(n).modules}
    if module in V.pass_code().modules:
        expected.add("<pass>")
    assert _changed(_editing(relpath)) == expected


def test_a_section_function_edit_changes_that_section_only():
    edit = ("found = find_outliers(table)", "found = find_outliers(table)  # same")
    assert _changed(_editing("pipeline/sections.py", replace=edit)) == {"outliers"}
    # code outside the functions that make results (the manifest, the reuse decision) is free
    assert _changed(_editing("pipeline/engine.py")) == set()
    assert _changed(_editing("pipeline/refresh.py", "pipeline/versions.py")) == set()


def test_only_the_schema_names_in_use_count():
    new_name = ("SCHEMA_VERSION = ", 'SOMETHING_NEW = "x"\nSCHEMA_VERSION = ')
    assert _changed(_editing("schema.py", replace=new_name)) == set()
    renamed = ('OUTLIERS = "outliers.parquet"', 'OUTLIERS = "outliers2.parquet"')
    assert _changed(_editing("schema.py", replace=renamed)) == {"outliers", "triage"}
    props = ('NOISE = "noise"', 'NOISE = "noise_sigma"')  # in PROPERTY_COLUMNS: pass and more
    assert {"<pass>", "outliers", "slices"} <= _changed(_editing("schema.py", replace=props))


def test_triage_needs_every_section_above_it():
    """NEEDS is written out (a NEEDS derived from SECTIONS put every section function into
    every section's fingerprint); a section added above triage must be added there too."""
    assert NEEDS["triage"] == tuple(SECTIONS)[: list(SECTIONS).index("triage")]
    for name in SECTIONS:  # one section's code is its own function, not the registry's
        assert V.section_code(name).functions.count(SECTIONS[name].__name__) == 1
        others = {f.__name__ for n, f in SECTIONS.items() if n != name}
        assert not others & set(V.section_code(name).functions), name


def test_the_graph_sees_lazy_imports():
    mods = module_closure(["analysis.pipeline.sections"])
    assert "analysis.stats.slices" in mods and "analysis.explain.embeddings" in mods
    assert "analysis.present.figures" not in mods and "analysis" not in mods


# ---------------------------------------------------------------------------------------------
# runs


def _cfg(root, model):
    return tiny_config(root / "data", model, reference=str(root / "ref"), min_support=3)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_resnet):
    root = tmp_path_factory.mktemp("versions")
    make_image_folder(root / "data", n_per_class=8)
    make_image_folder(root / "ref", n_per_class=6, seed=1)
    # two evaluation images copied into the reference set: leakage for the duplicates section
    for i, p in enumerate(sorted((root / "data" / "ant").glob("*.png"))[:2]):
        shutil.copy(p, root / "ref" / "ant" / f"copy_{i}.png")
    return root, tiny_resnet


@pytest.fixture
def fresh(inputs, tmp_path):
    root, model = inputs
    return analyze(_cfg(root, model), runs_dir=tmp_path / "runs")


@pytest.fixture
def code_changed(monkeypatch):
    """Make the installed code differ from the code that made a run, one file at a time."""

    def change(read):
        monkeypatch.setattr(V, "read_source", read)
        V.forget_current_code()

    yield change
    monkeypatch.undo()
    V.forget_current_code()


@pytest.fixture
def no_pass(monkeypatch):
    """Any run of the model pass fails the test."""
    import analysis.pipeline.engine as engine

    def boom(*a, **k):
        raise AssertionError("the model pass ran")

    monkeypatch.setattr(engine, "run_pass", boom)
    monkeypatch.setattr(engine, "load_model", boom)


def _inodes(run) -> dict[str, int]:
    return {
        str(p.relative_to(run.path)): p.stat().st_ino
        for p in run.path.rglob("*")
        if p.is_file() and p.name != schema.MANIFEST
    }


def test_a_run_records_the_code_of_every_part(fresh):
    m = fresh.manifest
    assert m["versions"]["pass_code"] == V.pass_code().fingerprint
    assert "analysis_code" not in m["versions"]
    assert "class_hierarchy" in OPTIONAL and "class_hierarchy" not in m["sections"]  # not asked
    for name in (n for n in SECTIONS if n not in OPTIONAL):
        entry = m["sections"][name]
        assert entry["code"] == V.section_code(name).fingerprint, name
        assert entry["code_modules"] == list(V.section_code(name).modules)
    assert m["sections"]["outliers"]["files"] == [schema.OUTLIERS, schema.OUTLIER_SUMMARY]
    assert m["sections"]["label_issues"]["columns"] == [
        schema.LABEL_ISSUE_SCORE,
        schema.IS_LABEL_ISSUE,
        schema.SUGGESTED_LABEL,
    ]
    assert (fresh.path / schema.SIGNATURES).exists()  # stored: duplicates can run again
    assert (fresh.path / schema.REFERENCE_SIGNATURES).exists()
    assert V.staleness(m).current


def test_a_figure_or_template_change_leaves_the_run_current(fresh, inputs, code_changed, no_pass):
    root, model = inputs
    code_changed(_editing("present/figures.py", "present/report/render_html.py"))
    assert V.staleness(fresh.manifest).current
    before = (fresh.path / schema.MANIFEST).stat().st_mtime_ns
    again = analyze(_cfg(root, model), runs_dir=fresh.path.parent)
    assert (again.path / schema.MANIFEST).stat().st_mtime_ns == before  # reused as it was


def test_a_section_change_recomputes_that_section_only(fresh, inputs, code_changed, no_pass):
    root, model = inputs
    old_files, old_samples = _inodes(fresh), fresh.samples
    outliers_before = fresh.table(schema.OUTLIERS)
    code_changed(_editing("data_issues/outliers.py"))
    stale = V.staleness(fresh.manifest)
    # outliers, and triage, which reads every section's results (NEEDS) and imports the
    # outlier rules; nothing else
    assert NEEDS["triage"] and "outliers" in NEEDS["triage"]
    assert (stale.pass_stale, stale.sections) == (False, ("outliers", "triage"))
    redone = ("outliers", "triage")
    said = []
    new = analyze(
        _cfg(root, model), runs_dir=fresh.path.parent, progress=lambda m, f: said.append(m)
    )
    assert new.path == fresh.path and V.staleness(new.manifest).current
    assert any("outliers, triage computed by other analysis code" in s for s in said), said
    assert new.manifest["refreshed"][-1]["sections"] == list(redone)
    assert (
        new.manifest["sections"]["outliers"]["code"]
        != fresh.manifest["sections"]["outliers"]["code"]
    )
    files = _inodes(new)
    rewritten = {f for f in files if old_files.get(f) != files[f]}
    outputs = {f for n in redone for f in new.manifest["sections"][n]["files"]}
    assert {schema.OUTLIERS, schema.OUTLIER_SUMMARY, schema.TRIAGE} <= outputs
    # the two sections' files (selections/ holds the triage's per-number image lists)
    assert {f for f in rewritten if not f.startswith("selections/")} == outputs | {schema.SAMPLES}
    for name in fresh.manifest["sections"]:  # the others' entries (and timings) are the old ones
        if name not in redone:
            assert new.manifest["sections"][name] == fresh.manifest["sections"][name]
    pd.testing.assert_frame_equal(new.table(schema.OUTLIERS), outliers_before)
    pd.testing.assert_frame_equal(new.samples, old_samples)


def test_a_changed_section_recomputes_the_sections_that_read_it(fresh, code_changed, no_pass):
    edit = ("ctx.new_columns[schema.CLUSTER] = m", "ctx.new_columns[schema.CLUSTER] =  m")
    code_changed(_editing("pipeline/sections.py", replace=edit))
    readers = [n for n, need in NEEDS.items() if "embedding_map" in need]
    assert set(readers) == {"slices", "discovered_slices", "triage"}
    assert V.staleness(fresh.manifest).sections == ("embedding_map", *readers)


def test_refreshing_every_section_reproduces_a_fresh_run(fresh, inputs, code_changed, no_pass):
    """Sections read the stored pass outputs in a fresh run too: a refresh computes the same."""
    root, model = inputs
    keep = fresh.path.parent / "copy"
    shutil.copytree(fresh.path, keep)
    edit = ("#: the section running now", "#: the section running now (edited)")
    code_changed(_editing("pipeline/sections.py", replace=edit))  # SectionContext: every section
    stale = V.staleness(fresh.manifest)
    given = tuple(n for n in SECTIONS if n not in OPTIONAL)  # no class hierarchy given
    assert not stale.pass_stale and stale.sections == given
    new = analyze(_cfg(root, model), runs_dir=fresh.path.parent)
    for name in sorted(os.listdir(keep)):
        if name.endswith(".parquet"):
            pd.testing.assert_frame_equal(
                pd.read_parquet(new.path / name), pd.read_parquet(keep / name), obj=name
            )
        elif name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(new.path / name), np.load(keep / name))
        elif name.endswith(".json") and name != schema.MANIFEST:
            got, want = (json.loads((d / name).read_text()) for d in (new.path, keep))
            for d in (got, want):  # how long it took is not a result (triage.json keeps it)
                d.pop("timings_s", None)
            assert got == want, name
    assert new.table(schema.DUPLICATES)["scope"].eq("leak").any()  # the signatures were used


@pytest.fixture
def with_hierarchy(inputs, tmp_path):
    """A fresh run analysed with a class hierarchy, and its config."""
    root, model = inputs
    h = tmp_path / "hierarchy.json"
    h.write_text(json.dumps({"ant": "insect", "bee": "insect", "cat": "mammal"}))
    cfg = tiny_config(
        root / "data", model, reference=str(root / "ref"), min_support=3, class_hierarchy=str(h)
    )
    return cfg, analyze(cfg, runs_dir=tmp_path / "runs")


def test_a_run_with_a_class_hierarchy_refreshes_with_it(with_hierarchy, code_changed, no_pass):
    """The optional section is recorded and refreshed when the run was made with it; the
    slices that read its superclass columns are refreshed with it and see the same columns."""
    cfg, run = with_hierarchy
    assert run.manifest["sections"]["class_hierarchy"]["status"] == "ok"
    sc = schema.SUPERCLASS_PREFIX + "1"
    slices_before, samples_before = run.table(schema.SLICES), run.samples
    metrics_before = run.table(schema.HIERARCHY_METRICS)
    assert (slices_before["column"] == sc).any()  # the superclass is a slice source
    code_changed(_editing("stats/hierarchy.py"))
    stale = V.staleness(run.manifest)
    readers = {n for n, need in NEEDS.items() if "class_hierarchy" in need}
    assert readers == {"slices", "discovered_slices", "triage"}
    assert not stale.pass_stale and set(stale.sections) == {"class_hierarchy", *readers}
    new = analyze(cfg, runs_dir=run.path.parent)
    assert new.path == run.path and V.staleness(new.manifest).current
    assert new.manifest["sections"]["class_hierarchy"]["status"] == "ok"
    assert new.manifest["hierarchy_columns"] == run.manifest["hierarchy_columns"]
    assert new.manifest["refreshed"][-1]["sections"] == list(stale.sections)
    pd.testing.assert_frame_equal(new.samples, samples_before)
    pd.testing.assert_frame_equal(new.table(schema.SLICES), slices_before)
    pd.testing.assert_frame_equal(new.table(schema.HIERARCHY_METRICS), metrics_before)


def test_a_pass_change_analyses_again(fresh, code_changed):
    code_changed(_editing("loading/images.py"))
    stale = V.staleness(fresh.manifest)
    assert stale.pass_stale and stale.sections == tuple(SECTIONS)


def test_caches_made_by_changed_code_are_dropped_and_others_kept(
    fresh, inputs, code_changed, no_pass
):
    root, model = inputs
    for d in (schema.CAMS_DIR, schema.ROBUSTNESS_DIR):
        (fresh.path / d).mkdir(exist_ok=True)  # the cams section precomputed some maps
        (fresh.path / d / "x.npy").write_bytes(b"cached")
    code_changed(_editing("explain/cams.py"))
    stale = V.staleness(fresh.manifest)
    # the CAM precompute section and triage (its shortcut rows read CAM mass) use that code
    assert (stale.sections, stale.caches) == (("cams", "triage"), (schema.CAMS_DIR,))
    new = analyze(_cfg(root, model), runs_dir=fresh.path.parent)
    assert not (new.path / schema.CAMS_DIR).exists()
    assert (new.path / schema.ROBUSTNESS_DIR / "x.npy").read_bytes() == b"cached"
    assert V.staleness(new.manifest).current


def test_cli_lists_what_is_stale(fresh, code_changed, capsys):
    from analysis.cli import main

    code_changed(_editing("stats/metrics.py"))
    assert main(["runs", "--out", str(fresh.path.parent)]) == 0
    out = capsys.readouterr().out
    # metrics and triage, which NEEDS it (the hierarchy's metrics were not asked for)
    assert "(metrics, triage computed by other analysis code: analyse again to refresh)" in out


def test_dashboard_says_which_sections_are_out_of_date(fresh, code_changed, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.dashboard.conftest import APP

    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(fresh.path.parent))
    code_changed(_editing("data_issues/outliers.py"))
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    notes = [c.value for c in at.sidebar.caption if "other analysis code" in c.value]
    assert len(notes) == 1 and notes[0].count("outliers") == 1, notes
    assert "without running the model" in notes[0]


def test_installed_fingerprints_are_remembered_on_disk_under_a_source_stamp(tmp_path, monkeypatch):
    """A fresh process reads the installed code's fingerprints from the memo (no parsing) while
    the source files are unchanged; a changed stamp (an edit, an upgrade) or source read from
    memory (the tests above) computes them again."""
    monkeypatch.setenv("ERRORSCOPE_CACHE", str(tmp_path))
    V.forget_current_code()
    real = V._current_section("metrics")
    memo = tmp_path / "code_fingerprints.json"
    stored = json.loads(memo.read_text())
    assert stored["fingerprints"]["section:metrics"] == real
    assert stored["stamp"] == V._source_stamp()

    stored["fingerprints"]["section:metrics"] = "from-the-memo"
    memo.write_text(json.dumps(stored))
    V.forget_current_code()
    assert V._current_section("metrics") == "from-the-memo"  # read, not recomputed

    monkeypatch.setattr(V, "_source_stamp", lambda root=None: "another checkout")
    V.forget_current_code()
    assert V._current_section("metrics") == real  # a different stamp: computed again
    assert json.loads(memo.read_text())["stamp"] == "another checkout"

    monkeypatch.undo()
    monkeypatch.setenv("ERRORSCOPE_CACHE", str(tmp_path))
    memo.write_text(json.dumps({"stamp": V._source_stamp(), "fingerprints": {"pass": "stale"}}))
    monkeypatch.setattr(V, "read_source", lambda p: p.read_text(encoding="utf-8"))
    V.forget_current_code()
    assert V._current_pass() == V.pass_code().fingerprint != "stale"  # edited source: bypassed
    monkeypatch.undo()
    V.forget_current_code()
