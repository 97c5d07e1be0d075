"""Every page on a run of every model family: a timm ViT and ConvNeXt, a Hugging Face ViT folder,
an ONNX file, a predictions file with an embeddings array. Each run has embeddings (so the
embedding map, clusters and neighbours); the detail page shows the family's maps: gradient CAMs
with their sanity check for the torch families, a labelled occlusion map for ONNX."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis import schema
from analysis.pipeline.engine import AnalysisConfig, analyze
from tests.conftest import (
    CLASSES,
    make_image_folder,
    save_tiny_hf_vit,
    save_tiny_onnx,
    save_tiny_timm,
)

from .conftest import assert_on_page, open_page
from .test_pages_other_runs import _walk


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fam")
    return {
        size: (
            make_image_folder(root / f"eval{size}", n_per_class=8, size=size, seed=1),
            make_image_folder(root / f"ref{size}", n_per_class=6, size=size, seed=2),
        )
        for size in (32, 64)
    }


def _run(family, folders, tmp_path):
    cfg: dict = {"num_workers": 0}
    size = 32
    if family == "timm_vit":
        size = 64
        cfg.update(model=str(save_tiny_timm(tmp_path / "vit.safetensors", "vit")), resize=64)
    elif family == "timm_convnext":
        size = 64
        cfg.update(
            model=str(save_tiny_timm(tmp_path / "cnx.safetensors", "convnext")),
            resize=64,
            no_crop=True,
        )
    elif family == "hf_vit":
        cfg.update(model=str(save_tiny_hf_vit(tmp_path / "hfvit")))
    elif family == "onnx":
        cfg.update(model=str(save_tiny_onnx(tmp_path / "m.onnx")), resize=32, no_crop=True)
    else:  # predictions + embeddings from "another framework"
        from analysis.loading.datasets import load_image_set

        s = load_image_set(folders[32][0]).table
        rng = np.random.default_rng(3)
        labels = s[schema.LABEL].to_numpy()
        p = rng.dirichlet(np.ones(3), size=len(s))
        p[np.arange(len(s)), labels] += 1.0
        pd.DataFrame(p / p.sum(1, keepdims=True), columns=CLASSES).assign(
            path=s[schema.RELPATH]
        ).to_csv(tmp_path / "p.csv", index=False)
        emb = rng.normal(size=(len(s), 8)) + 3 * np.eye(3)[labels] @ rng.normal(size=(3, 8))
        np.save(tmp_path / "e.npy", emb.astype(np.float32))
        cfg.update(predictions=str(tmp_path / "p.csv"), embeddings=str(tmp_path / "e.npy"))
    data, ref = folders[size]
    return analyze(
        AnalysisConfig(
            data=str(data), reference=str(ref) if "predictions" not in cfg else None, **cfg
        ),
        runs_dir=tmp_path / "runs",
    )


@pytest.mark.parametrize("family", ["timm_vit", "timm_convnext", "hf_vit", "onnx", "predictions"])
def test_every_page_on_every_family(family, folders, tmp_path, monkeypatch):
    run = _run(family, folders, tmp_path)
    assert run.manifest["has_embeddings"] and run.embeddings is not None
    assert schema.UMAP_X in run.samples.columns
    at = _walk(run, monkeypatch)
    open_page(at, "embeddings").run()
    assert_on_page(at, "embeddings")
    assert any("Embeddings:" in c.value for c in at.caption), "the page says where they came from"
    sid = run.samples[schema.SAMPLE_ID].iloc[0]
    at.query_params["sample"] = sid
    open_page(at, "detail").run()
    assert_on_page(at, "detail")
    assert not at.exception and not at.error, [e.value for e in at.error]
    captions = " ".join(c.value for c in at.caption)
    if family == "predictions":
        assert any("predictions file" in i.value for i in at.info)
        return
    heads = [h.value for h in at.subheader]
    assert any("Where the model looked" in h for h in heads), heads
    assert "Sanity check" in captions
    if family == "onnx":
        box = at.selectbox(key="cam_method")
        assert "occlusion" in captions and box.value == "occlusion" and len(box.options) == 1
    else:
        from analysis.explain.cam_views import method_choices
        from analysis.loading.models import load_run_model

        loaded, prep = load_run_model(run.manifest)
        # the family's default (bench/bench_cams.py's choice), as the page shows it first
        assert at.selectbox(key="cam_method").value == method_choices(loaded.model, prep)[1]
        assert "rank correlation" in captions  # a number, not "not available"
