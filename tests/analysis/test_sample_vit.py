"""The sample's second model, a timm vision transformer (XCiT): what `make run` shows beside the mobilenet run.

It is analysed like any timm checkpoint (sidecar: arch + model_kwargs), its numbers match what
train_vit.py recorded, its maps are token-grid CAMs of the last block, and Compare has two models
of different families on the same images.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from analysis import schema
from analysis.cli import SAMPLE_DIR

# the first test here analyses both sample models (sample_run, sample_vit_run): a few minutes on
# an idle 2-core machine, past the suite's 900 s hang guard when other jobs share the cores
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]


def test_the_vit_run_is_a_timm_run_with_pre_logit_embeddings(sample_vit_run):
    m = sample_vit_run.manifest
    assert m["inputs"]["model"]["family"] == "timm"
    assert m["inputs"]["model"]["arch"] == "timm/xcit_nano_12_p16_224"
    assert m["has_embeddings"] and "pre-logits" in m["embedding_source"]
    failed = {k: v.get("error") for k, v in m["sections"].items() if v["status"] == "failed"}
    assert not failed, failed
    # the accuracy train_vit.py printed on eval.csv is the run's (same images, same labels)
    side = json.loads((SAMPLE_DIR / "model_vit.json").read_text())
    acc = float(sample_vit_run.samples[schema.CORRECT].mean())
    assert acc == pytest.approx(side["eval_summary"]["accuracy"], abs=0.005)


def test_vit_cams_are_token_grids_with_the_class_token_dropped(sample_vit_run):
    from analysis.explain.cam_views import cam_view, layer_choices
    from analysis.loading.models import load_run_model

    loaded, prep = load_run_model(sample_vit_run.manifest)
    layers, default = layer_choices(loaded.model, prep)
    assert default == "cls_attn_blocks.1.norm1"  # the last block, as for any ViT
    assert all(c.layout == "tokens" and c.spatial == (7, 7) for c in layers)
    assert [c.prefix_tokens for c in layers] == [0, 0, 0, 0, 1, 1]  # the class token joins late
    s = sample_vit_run.samples
    row = int(np.flatnonzero(s[schema.CORRECT].to_numpy())[0])
    view = cam_view(
        sample_vit_run,
        loaded.model,
        prep,
        row,
        classes=[int(s[schema.PRED].iloc[row]), int(s[schema.LABEL].iloc[row])],
    )
    assert view.layer_spatial == (7, 7) and view.cams[0].cam.shape == (112, 112)
    assert view.cams[0].cam.max() > 0 and not np.isnan(view.cams[0].sanity_rho)


def test_compare_has_two_families_on_the_same_images(sample_run, sample_vit_run):
    from analysis.stats.compare import compare_runs

    res = compare_runs(sample_run, sample_vit_run)
    a = sample_run.samples[schema.CORRECT].to_numpy()
    b = sample_vit_run.samples[schema.CORRECT].to_numpy()
    flips = res.flip_table().set_index(["a_correct", "b_correct"])["count"]
    assert res.n_matched == len(a) == len(b)
    assert flips[(True, False)] == int((a & ~b).sum()) > 0  # the ViT's regressions
    assert flips[(False, True)] == int((~a & b).sum()) > 0  # and its improvements


@pytest.mark.slow
def test_make_run_analyses_both_models_and_names_a_missing_family(monkeypatch):
    """`errorscope sample` (what `make run` and the dashboard's first start call) analyses both
    checkpoints, the ViT first so the mobilenet run is the newest; without the ViT's family
    package it analyses the first model alone and says which extra brings the second."""
    from analysis import cli

    assert [c.model for c in cli.sample_configs()] == [
        str(SAMPLE_DIR / "model_vit.safetensors"),
        str(SAMPLE_DIR / "model.safetensors"),
    ]
    assert cli.sample_skipped() == []
    monkeypatch.setitem(cli.SAMPLE_NEEDS, "model_vit.safetensors", ("no_such_pkg_x", "timm"))
    assert [c.model for c in cli.sample_configs()] == [str(SAMPLE_DIR / "model.safetensors")]
    (why,) = cli.sample_skipped()
    assert "model_vit.safetensors" in why and "errorscope[timm]" in why
