"""Every page on runs unlike the sample: an ImageFolder without metadata or reference set, a
predictions-file run (no model: no embeddings, no CAMs), a run with an unreadable image. The
sample exercises every feature; these catch the assumptions it hides."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.pipeline.engine import AnalysisConfig, analyze
from tests.conftest import CLASSES, make_image_folder, save_tiny_resnet

from .conftest import APP, assert_on_page, open_page


def _walk(run, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from dashboard.views import VIEWS

    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(run.path.parent))
    at = AppTest.from_file(APP, default_timeout=300)
    at.query_params["run"] = run.run_id
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    for v in VIEWS:
        open_page(at, v.url).run()
        assert_on_page(at, v.url)
        assert not at.exception, (v.url, [e.value for e in at.exception])
        assert at.title and at.title[0].value, v.url
    return at


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = make_image_folder(tmp_path_factory.mktemp("plain") / "data", n_per_class=8)
    (root / CLASSES[0] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def test_model_run_without_metadata_or_reference(folder, tmp_path, monkeypatch):
    model = save_tiny_resnet(tmp_path / "m.pt")
    run = analyze(
        AnalysisConfig(
            data=str(folder),
            model=str(model),
            arch="resnet18",
            resize=32,
            no_crop=True,
            num_workers=0,
        ),
        runs_dir=tmp_path / "runs",
    )
    assert run.manifest["n_skipped"] == 1 and not run.metadata_columns
    at = _walk(run, monkeypatch)
    # the detail page of the first image: CAMs drawn (the model is there), no error box
    sid = run.samples[schema.SAMPLE_ID].iloc[0]
    at.query_params["sample"] = sid
    open_page(at, "detail").run()
    assert_on_page(at, "detail")
    assert not at.exception and not at.error, [e.value for e in at.error]
    heads = [h.value for h in at.subheader] + [h.value for h in at.header]
    assert any("Where the model looked" in h for h in heads), heads


def test_predictions_file_run(folder, tmp_path, monkeypatch):
    from analysis.loading.datasets import load_image_set

    s = load_image_set(folder).table
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(len(CLASSES)), size=len(s))
    pd.DataFrame(p, columns=CLASSES).assign(path=s[schema.RELPATH]).to_csv(
        tmp_path / "preds.csv", index=False
    )
    run = analyze(
        AnalysisConfig(data=str(folder), predictions=str(tmp_path / "preds.csv"), num_workers=0),
        runs_dir=tmp_path / "runs",
    )
    assert run.embeddings is None
    _walk(run, monkeypatch)


@pytest.mark.parametrize("case", ["two_classes_all_right", "forty_classes"])
def test_edge_shaped_runs(case, tmp_path, monkeypatch):
    """A perfect binary model (nothing to slice, no error to show) and a 40-class problem."""
    from PIL import Image

    k = 2 if case == "two_classes_all_right" else 40
    names = [f"c{i:02d}" for i in range(k)]
    rng = np.random.default_rng(2)
    rows = []
    for i in range(120):
        label = i % k
        rel = f"img/{i:03d}.png"
        (tmp_path / "img").mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path / rel)
        rows.append({"path": rel, "label": names[label], "site": f"s{i % 3}"})
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    (tmp_path / "classes.txt").write_text("\n".join(names) + "\n")
    labels = np.array([i % k for i in range(120)])
    if case == "two_classes_all_right":
        p = np.full((120, k), 0.1)
        p[np.arange(120), labels] = 0.9
    else:
        p = rng.dirichlet(np.ones(k), size=120)
    pd.DataFrame(p / p.sum(1, keepdims=True), columns=names).assign(
        path=[r["path"] for r in rows]
    ).to_csv(tmp_path / "preds.csv", index=False)
    run = analyze(
        AnalysisConfig(
            data=str(tmp_path / "data.csv"), predictions=str(tmp_path / "preds.csv"), num_workers=0
        ),
        runs_dir=tmp_path / "runs",
    )
    assert run.n_classes == k
    at = _walk(run, monkeypatch)
    open_page(at, "gallery").run()
    assert_on_page(at, "gallery")
    at.segmented_control(key="g_correct").set_value("wrong").run()
    assert not at.exception, [e.value for e in at.exception]
