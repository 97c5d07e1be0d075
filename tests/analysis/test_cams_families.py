"""CAMs beyond torchvision: layer discovery and reshapes for timm and Hugging Face transformers
and modern CNNs, occlusion for models without gradients, the model-randomisation sanity check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from analysis.explain.cams import (
    CAM_METHODS,
    INPUT_LAYER,
    SANITY_MAX_RHO,
    CamCache,
    compute_cam,
    methods_for,
    occlusion_map,
    randomisation_check,
)
from analysis.explain.layers import (
    architecture_family,
    candidate_layers,
    default_layer,
    reshape_transform,
)
from analysis.loading.families import _logits_only
from analysis.loading.models import load_model
from tests.conftest import save_tiny_hf_vit, save_tiny_onnx, save_tiny_timm


def _timm(tmp_path, kind):
    return load_model(save_tiny_timm(tmp_path / f"{kind}.safetensors", kind)).model


def _hf(config_cls, model_cls, **kw):
    torch.manual_seed(0)
    m = model_cls(config_cls(num_labels=3, **kw)).eval()
    m.register_forward_hook(_logits_only)
    return m


def hf_models():
    from transformers import (
        BeitConfig,
        BeitForImageClassification,
        ConvNextConfig,
        ConvNextForImageClassification,
        DeiTConfig,
        DeiTForImageClassificationWithTeacher,
        SwinConfig,
        SwinForImageClassification,
    )

    vit = dict(
        image_size=32,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    return {
        "deit": (_hf(DeiTConfig, DeiTForImageClassificationWithTeacher, **vit), 32),
        "beit": (_hf(BeitConfig, BeitForImageClassification, **vit), 32),
        "swin": (
            _hf(
                SwinConfig,
                SwinForImageClassification,
                image_size=32,
                patch_size=2,
                embed_dim=16,
                depths=[1, 1],
                num_heads=[1, 2],
                window_size=4,
            ),
            32,
        ),
        "convnext": (
            _hf(
                ConvNextConfig,
                ConvNextForImageClassification,
                hidden_sizes=[8, 16, 32, 64],
                depths=[1, 1, 1, 1],
            ),
            64,
        ),
    }


# ----------------------------------------------------------------------------- layers


def test_timm_vit_blocks_give_their_prenorm_as_a_token_grid(tmp_path):
    model = _timm(tmp_path, "vit")
    found = candidate_layers(model, 64)
    assert [c.name for c in found] == [f"blocks.{i}.norm1" for i in range(6)]
    assert all(c.layout == "tokens" and c.spatial == (8, 8) and c.prefix_tokens == 1 for c in found)
    assert default_layer(model, 64).name == "blocks.5.norm1"
    assert architecture_family(model, 64) == "vit-tokens"


def test_timm_distilled_deit_drops_class_and_distillation_tokens(tmp_path):
    model = _timm(tmp_path, "deit")
    info = default_layer(model, 64)
    assert info.prefix_tokens == 2 and info.spatial == (8, 8)
    tokens = torch.arange(66 * 4, dtype=torch.float32).reshape(1, 66, 4)
    grid = reshape_transform(info)(tokens)
    assert grid.shape == (1, 4, 8, 8)
    assert torch.equal(grid[0, :, 0, 0], tokens[0, 2]) and torch.equal(
        grid[0, :, 7, 7], tokens[0, 65]
    )


def test_timm_swin_is_channels_last_and_convnext_efficientnet_are_maps(tmp_path):
    swin = candidate_layers(_timm(tmp_path, "swin"), 64)
    assert [c.name for c in swin] == ["patch_embed", "layers.0", "layers.1", "norm"]
    assert all(c.layout == "nhwc" for c in swin) and swin[-1].spatial == (8, 8)
    cnx = _timm(tmp_path, "convnext")
    assert [c.name for c in candidate_layers(cnx, 64)] == [
        "stem",
        "stages.0",
        "stages.1",
        "stages.2",
        "stages.3",
    ]  # norm_pre (an Identity) is stages.3's tensor: one candidate
    assert default_layer(cnx, 64).name == "stages.1"  # 8 x 8; stages.2 is 4 x 4
    eff = candidate_layers(_timm(tmp_path, "efficientnet"), 64)
    assert eff[0].name == "conv_stem" and eff[-1].name == "bn2"
    assert all(c.layout == "nchw" and min(c.spatial) >= 2 for c in eff)


def test_hugging_face_families():
    ms = hf_models()
    deit, size = ms["deit"]
    info = default_layer(deit, size)
    assert info.name == "deit.layers.1.layernorm_before" and info.prefix_tokens == 2
    assert default_layer(*ms["beit"]).name == "beit.layers.1.layernorm_before"
    swin = candidate_layers(*ms["swin"])
    assert all(c.layout == "tokens" and c.prefix_tokens == 0 for c in swin)
    assert [c.spatial for c in swin] == [(16, 16), (16, 16), (8, 8), (8, 8), (8, 8)]
    assert default_layer(*ms["swin"]).name == "swin.layernorm"
    cnx = [c.name for c in candidate_layers(*ms["convnext"])]
    assert cnx[0] == "convnext.embeddings" and cnx[-1] == "convnext.encoder.stages.3"


@pytest.mark.parametrize("method", [m for m in CAM_METHODS if m != "scorecam"])
def test_every_method_runs_on_every_family(tmp_path, method):
    models = {k: (_timm(tmp_path, k), 64) for k in ("vit", "convnext", "swin", "efficientnet")}
    models.update(hf_models())
    models["hf_vit"] = (load_model(save_tiny_hf_vit(tmp_path / "hf")).model, 32)
    torch.manual_seed(1)
    for name, (model, size) in models.items():
        cam = compute_cam(model, torch.randn(3, size, size), target_class=1, method=method)
        assert cam.shape == (size, size) and cam.dtype == np.float32, name
        assert 0 <= cam.min() and cam.max() <= 1 and np.isfinite(cam).all(), name


# ----------------------------------------------------------------------------- occlusion


class _Spot(nn.Module):
    """Class 1's logit is the mean of the top-left quarter, class 0's its negative."""

    def forward(self, x):
        v = x[:, :, : x.shape[2] // 2, : x.shape[3] // 2].mean(dim=(1, 2, 3))
        return torch.stack([-v, v, torch.zeros_like(v)], dim=1)


def test_occlusion_points_at_the_evidence_without_gradients():
    x = torch.zeros(3, 48, 48)
    x[:, :24, :24] = 2.0
    cam = occlusion_map(_Spot(), x, target_class=1)
    assert cam[:24, :24].mean() > 5 * cam[24:, 24:].mean()
    assert cam.max() == pytest.approx(1.0)
    # for the class the evidence counts against, covering it helps: an empty map
    assert occlusion_map(_Spot(), x, target_class=0).max() == 0.0


def test_onnx_model_gets_occlusion_only_and_a_cached_map(tmp_path):
    loaded = load_model(save_tiny_onnx(tmp_path / "m.onnx"), num_classes=3)
    assert not loaded.gradients
    assert methods_for(loaded.gradients) == ["occlusion"]
    assert "gradcam" in methods_for(True) and "occlusion" in methods_for(True)
    x = torch.randn(3, 32, 32)
    cache = CamCache(tmp_path)
    cam = cache.get_or_compute(loaded.model, x, sample_id="s1", target_class=2, method="occlusion")
    assert cam.shape == (32, 32)
    assert cache.path(
        sample_id="s1", method="occlusion", layer=INPUT_LAYER, target_class=2
    ).exists()
    check = randomisation_check(loaded.model, x, cam, target_class=2, method="occlusion")
    assert np.isnan(check.rank_correlation) and check.passes is None  # no weights to randomise


# ----------------------------------------------------------------------------- sanity check


def _trained_spot_cnn():
    """A small CNN trained for a few steps to call 'bright square in the top-left' class 1."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, 2),
    )
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        x = torch.randn(32, 3, 24, 24, generator=g) * 0.3
        y = torch.randint(0, 2, (32,), generator=g)
        for i in range(32):
            if y[i] == 1:
                r, c = torch.randint(0, 16, (2,), generator=g)
                x[i, :, r : r + 8, c : c + 8] += 2.0
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def test_randomisation_check_separates_a_class_map_from_an_activation_map():
    net = _trained_spot_cnn()
    x = torch.randn(3, 24, 24, generator=torch.Generator().manual_seed(5)) * 0.3
    x[:, 4:12, 10:18] += 2.0
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grad = compute_cam(net, x, target_class=1, method="gradcam", layer="3")
    g = randomisation_check(net, x, grad, target_class=1, method="gradcam", layer="3")
    eig = compute_cam(net, x, target_class=1, method="eigencam", layer="3")
    e = randomisation_check(net, x, eig, target_class=1, method="eigencam", layer="3")
    # EigenCAM reads only the activations at the layer: re-initialising the head above it
    # changes nothing, the textbook failure; Grad-CAM's weights come from that head
    assert g.randomised == ("6",) and e.randomised == ("6",)
    assert e.rank_correlation > 0.99 and not e.passes
    assert g.rank_correlation < e.rank_correlation
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # a copy


def test_torchscript_model_gets_occlusion_and_no_sanity_check(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=3).eval()
    torch.jit.script(net).save(str(tmp_path / "ts.pt"))
    loaded = load_model(tmp_path / "ts.pt", num_classes=3)
    assert not loaded.gradients and loaded.embedding_head is None
    x = torch.randn(3, 32, 32)
    cam = compute_cam(loaded.model, x, target_class=0, method="occlusion")
    assert cam.shape == (32, 32) and 0 <= cam.min() and cam.max() <= 1
    check = randomisation_check(loaded.model, x, cam, target_class=0, method="occlusion")
    assert check.passes is None and check.layer == INPUT_LAYER


# ----------------------------------------------------------------------------- defaults


def test_default_methods_are_the_benchmarks_choice():
    """DEFAULT_METHODS is bench/bench_cams.py's table (per architecture family, the layer method
    that passes the randomisation check on every benchmarked model of the family, largest
    faithfulness gap), not a hand-picked list."""
    import json
    from pathlib import Path

    from analysis.explain.cams import DEFAULT_METHODS

    results = Path(__file__).resolve().parents[2] / "bench" / "results" / "cams.json"
    table = json.loads(results.read_text())["per_family"]["defaults"]
    chosen = {fam: row["method"] for fam, row in table.items() if row["method"]}
    assert DEFAULT_METHODS == chosen
    for fam, method in chosen.items():
        assert CAM_METHODS[method].needs_layer, fam
        assert table[fam]["rho_max"] < SANITY_MAX_RHO, fam  # it passed on every model


def test_precompute_stores_the_maps_the_detail_page_opens_with(tmp_path, monkeypatch):
    """The analysis-time precompute uses the family's default method (the one the CAM panel
    shows first), so a review opens on stored maps instead of computing them."""
    import pandas as pd
    from PIL import Image

    from analysis import schema
    from analysis.explain import cams
    from analysis.explain.cam_views import method_choices, precompute_cams
    from analysis.loading.models import Preprocessing

    model = _timm(tmp_path, "convnext")
    prep = Preprocessing(resize=64, crop=None)
    monkeypatch.setitem(cams.DEFAULT_METHODS, architecture_family(model, 64), "hirescam")
    assert method_choices(model, prep)[1] == "hirescam"
    img = tmp_path / "a.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(img)
    samples = pd.DataFrame(
        {schema.SAMPLE_ID: ["s1"], schema.PATH: [str(img)], schema.PRED: [1], schema.LABEL: [2]}
    )
    run = tmp_path / "run"
    run.mkdir()
    assert precompute_cams(run, samples, model, prep, [0]) == 1
    maps = sorted(p.name for p in (run / schema.CAMS_DIR).glob("s1__*.npy"))
    assert len(maps) == 2 and all(n.startswith("s1__hirescam__") for n in maps), maps
