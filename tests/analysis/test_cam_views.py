"""What the CAM panel says about maps that cannot be read, and how it names layers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.explain.cam_views import (
    cam_view,
    is_cached,
    layer_label,
    map_problem,
    precompute_cams,
    precompute_order,
    review_rows,
    stored_layers,
)
from analysis.explain.layers import MIN_SIDE, LayerInfo
from analysis.loading.models import Preprocessing


def test_flat_maps_get_a_plain_explanation():
    empty = map_problem(np.zeros((64, 64), np.float32), "layer4", (2, 2))
    assert "no location" in empty and "2×2" in empty and "too coarse" in empty
    same = map_problem(np.full((64, 64), 0.4, np.float32), "layer3", (8, 8))
    assert "the same everywhere" in same and "too coarse" not in same
    assert "nan" not in (empty + same).lower()


def test_a_map_with_structure_has_no_problem():
    cam = np.zeros((64, 64), np.float32)
    cam[10:20, 10:20] = 1.0
    assert map_problem(cam, "layer4", (2, 2)) is None  # coarse, but it points somewhere


def test_layer_labels_show_the_map_size_and_mark_coarse_layers():
    coarse = LayerInfo("layer4", (2, 2), 512)
    fine = LayerInfo("layer2", (MIN_SIDE, MIN_SIDE), 128)
    assert layer_label(coarse, default="layer2") == "layer4 (2×2 map) — too coarse to say where"
    assert layer_label(fine, default="layer2") == f"layer2 ({MIN_SIDE}×{MIN_SIDE} map) — default"


# ----------------------------------------------------------------------------- precompute


@pytest.fixture(scope="module")
def model_run(tmp_path_factory):
    """A run of a tiny random resnet18 on 18 images at 48 px (errors are most of them)."""
    from analysis.pipeline.engine import AnalysisConfig, analyze
    from tests.conftest import make_image_folder, save_tiny_resnet

    root = tmp_path_factory.mktemp("camrun")
    folder = make_image_folder(root / "data")
    model = save_tiny_resnet(root / "m.pt")
    cfg = AnalysisConfig(
        data=str(folder),
        model=str(model),
        arch="resnet18",
        resize=48,
        no_crop=True,
        num_workers=0,
    )
    return analyze(cfg, runs_dir=root / "runs")


def _no_model():
    raise AssertionError("the model was loaded although every map is cached")


def test_review_rows_put_label_issues_first_then_errors_by_loss():
    s = pd.DataFrame(
        {
            schema.CORRECT: [True, False, False, False, True, False],
            schema.LOSS: [0.1, 2.0, 5.0, 1.0, 0.2, 3.0],
            schema.IS_LABEL_ISSUE: [False, False, True, False, True, True],
            schema.LABEL_ISSUE_SCORE: [0.9, 0.5, 0.3, 0.6, 0.05, 0.2],
        }
    )
    assert review_rows(s).tolist() == [4, 5, 2, 1, 3]
    assert review_rows(s.drop(columns=[schema.IS_LABEL_ISSUE])).tolist() == [2, 5, 1, 3]


def test_precompute_order_takes_both_lists_in_turns():
    """The queue starts from the label-issue list, Next on the detail page from the errors by
    loss: the first images of both are precomputed (issue 11 §4)."""
    s = pd.DataFrame(
        {
            schema.CORRECT: [True, False, False, False, True, False, False],
            schema.LOSS: [0.1, 2.0, 5.0, 1.0, 0.2, 3.0, 9.0],
            schema.IS_LABEL_ISSUE: [False, False, True, False, True, True, False],
            schema.LABEL_ISSUE_SCORE: [0.9, 0.5, 0.3, 0.6, 0.05, 0.2, 0.01],
        }
    )
    assert review_rows(s).tolist() == [4, 5, 2, 6, 1, 3]
    # review: 4 5 2 6 1 3; by loss: 6 2 5 1 3 -> in turns, each once
    assert precompute_order(s).tolist() == [4, 6, 5, 2, 1, 3]
    no_flags = s.drop(columns=[schema.IS_LABEL_ISSUE])
    assert precompute_order(no_flags).tolist() == review_rows(no_flags).tolist()


def test_the_analysis_precomputes_what_a_review_opens_first(model_run):
    """The 'cams' section stored the first review image's maps, faithfulness, model input and
    the layer list: its CAM view needs no model (and equals a fresh computation)."""
    from analysis.loading.models import load_run_model

    assert model_run.sections["cams"]["status"] == "ok", model_run.sections["cams"]
    first = int(review_rows(model_run.samples)[0])
    prep = Preprocessing.from_dict(model_run.manifest["preprocessing"])
    assert stored_layers(model_run.path, prep) is not None
    view = cam_view(
        model_run, None, prep, first, classes=_classes(model_run, first), load_model=_no_model
    )
    loaded, _ = load_run_model(model_run.manifest)
    names = [p.name for p in (model_run.path / schema.CAMS_DIR).iterdir()]
    for p in names:  # recompute everything from scratch
        (model_run.path / schema.CAMS_DIR / p).unlink()
    fresh = cam_view(model_run, loaded.model, prep, first, classes=_classes(model_run, first))
    assert view.layer == fresh.layer and view.layer_spatial == fresh.layer_spatial
    np.testing.assert_array_equal(view.image, fresh.image)
    for a, b in zip(view.cams, fresh.cams, strict=True):
        np.testing.assert_array_equal(a.cam, b.cam)
        assert (a.prob, a.drop_top, a.drop_random) == pytest.approx(
            (b.prob, b.drop_top, b.drop_random), nan_ok=True
        )
    assert sorted(p.name for p in (model_run.path / schema.CAMS_DIR).iterdir()) == sorted(
        p
        for p in names
        if p.startswith(model_run.samples[schema.SAMPLE_ID].iloc[first]) or p == "layers.json"
    )


def _classes(run, row):
    s = run.samples.iloc[row]
    return [int(s[schema.PRED]), int(s[schema.LABEL])]


def test_precompute_stops_at_its_budget_and_skips_what_is_cached(model_run, tmp_path):
    from analysis.loading.models import load_run_model

    loaded, prep = load_run_model(model_run.manifest)
    rows = review_rows(model_run.samples)
    assert len(rows) >= 3
    assert precompute_cams(tmp_path, model_run.samples, loaded.model, prep, rows, budget_s=0.0) == 0
    assert precompute_cams(tmp_path, model_run.samples, loaded.model, prep, rows[:2]) == 2
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / schema.CAMS_DIR).glob("*.npy")}
    assert len(stamp) >= 2
    assert precompute_cams(tmp_path, model_run.samples, loaded.model, prep, rows[:2]) == 2
    again = {p.name: p.stat().st_mtime_ns for p in (tmp_path / schema.CAMS_DIR).glob("*.npy")}
    assert again == stamp  # nothing recomputed


def test_precompute_does_its_minimum_whatever_the_budget(model_run, tmp_path):
    """At least ``min_images`` images, even when the set-up alone used the budget; every one
    of them then opens without the model."""
    from analysis.loading.models import load_run_model

    loaded, prep = load_run_model(model_run.manifest)
    rows = precompute_order(model_run.samples)
    n = precompute_cams(
        tmp_path, model_run.samples, loaded.model, prep, rows, budget_s=0.0, min_images=3
    )
    assert 3 <= n < len(rows)
    layer = stored_layers(tmp_path, prep)[1]
    s = model_run.samples
    for row in rows[:n]:
        sid = s[schema.SAMPLE_ID].iloc[row]
        assert is_cached(
            tmp_path, sid, method="gradcam", layer=layer, classes=_classes(model_run, row)
        )
    sid = s[schema.SAMPLE_ID].iloc[rows[n]]
    assert not is_cached(
        tmp_path, sid, method="gradcam", layer=layer, classes=_classes(model_run, rows[n])
    )
