"""Tests for analysis.explain.layers: candidate CAM layers, the default-layer rule, reshapes."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from analysis.explain.layers import (
    MIN_SIDE,
    LayerInfo,
    candidate_layers,
    default_layer,
    reshape_transform,
    resolve_layer,
)


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    return tvm.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=3,
    )  # fmt: skip


def tiny_swin() -> nn.Module:
    torch.manual_seed(0)
    return tvm.SwinTransformer(
        patch_size=[4, 4], embed_dim=16, depths=[1, 2], num_heads=[1, 2], window_size=[2, 2],
        num_classes=3,
    )  # fmt: skip


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return tvm.resnet18(weights=None, num_classes=3)


def hook_counts(model: nn.Module) -> dict[str, tuple[int, ...]]:
    attrs = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {n: tuple(len(getattr(m, a)) for a in attrs) for n, m in model.named_modules()}


# ----------------------------------------------------------------------------- empty / invalid


def test_model_without_feature_maps_has_no_candidates_and_no_default():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))
    assert candidate_layers(mlp, 8) == []
    with pytest.raises(ValueError, match="no layer of this Sequential produces a spatial"):
        default_layer(mlp, 8)


def test_normaliser_before_the_first_conv_is_not_a_candidate():
    model = nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    names = [c.name for c in candidate_layers(model, 16)]
    assert names == ["1", "2"]


def test_rejects_non_module():
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        candidate_layers("resnet18", 64)


@pytest.mark.parametrize("bad", [0, -3, (64,), (64, 64, 3), "64", True, 64.0, (64, 0)])
def test_rejects_bad_input_size(resnet, bad):
    with pytest.raises(ValueError, match="input_size must be"):
        candidate_layers(resnet, bad)


def test_model_that_cannot_run_at_this_size_is_a_value_error():
    with pytest.raises(ValueError, match=r"cannot run on a dummy input of size \(64, 64\)"):
        candidate_layers(tiny_vit(), 64)  # built for 32 px


# ----------------------------------------------------------------------------- ResNet


def test_resnet_candidates_are_blocks_in_forward_order(resnet):
    found = candidate_layers(resnet, 64)
    names = [c.name for c in found]
    assert names == [
        "conv1", "relu", "maxpool", "layer1.0", "layer1", "layer2.0", "layer2",
        "layer3.0", "layer3", "layer4.0", "layer4",
    ]  # fmt: skip
    sides = [c.spatial[0] for c in found]
    assert sides == sorted(sides, reverse=True)
    by_name = {c.name: c for c in found}
    assert by_name["layer4"] == LayerInfo("layer4", (2, 2), 512, "nchw")
    assert by_name["layer2"].spatial == (8, 8) and by_name["layer2"].channels == 128


def test_default_layer_at_64_px_is_not_the_2x2_layer4(resnet):
    info = default_layer(resnet, 64)
    assert info.name == "layer2"
    assert info.spatial == (8, 8)


def test_default_layer_at_224_px_is_layer4(resnet):
    info = default_layer(resnet, 224)
    assert info == LayerInfo("layer4", (7, 7), 512, "nchw")


def test_non_square_input_size(resnet):
    info = default_layer(resnet, (224, 96))
    assert info.name == "layer2" and info.spatial == (28, 12)  # layer3 is 14 x 6: too narrow
    assert resolve_layer(resnet, (224, 96), "layer3").spatial == (14, 6)


def test_resolve_layer_accepts_aliases_and_none(resnet):
    assert resolve_layer(resnet, 64, "layer4.1").name == "layer4"
    assert resolve_layer(resnet, 64, "layer3").spatial == (4, 4)
    assert resolve_layer(resnet, 64, None) == default_layer(resnet, 64)


def test_resolve_layer_unknown_name_lists_valid_names(resnet):
    with pytest.raises(ValueError, match=r"unknown layer 'layer9'.*valid: \[.*'layer4'\]"):
        resolve_layer(resnet, 64, "layer9")
    with pytest.raises(ValueError, match="unknown layer 'layer4.1.conv2'"):
        resolve_layer(resnet, 64, "layer4.1.conv2")  # a module, but not block level
    with pytest.raises(TypeError, match="layer must be a module name"):
        resolve_layer(resnet, 64, 4)


def test_dry_pass_changes_nothing():
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None, num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    hooks = hook_counts(model)
    candidate_layers(model, 40)
    assert all(m.training for m in model.modules())
    assert hook_counts(model) == hooks
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics untouched
    assert all(p.grad is None for p in model.parameters())


def test_wrapped_backbone_is_found_and_prefixed():
    class Normalise(nn.Module):
        def forward(self, x):
            return (x - 0.5) / 0.25

    torch.manual_seed(0)
    model = nn.Sequential(Normalise(), tvm.resnet18(weights=None, num_classes=3))
    names = [c.name for c in candidate_layers(model, 64)]
    assert names[0] == "1.conv1" and names[-1] == "1.layer4"
    assert default_layer(model, 224).name == "1.layer4"


# ----------------------------------------------------------------------------- other families


FAMILIES = [
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "convnext_tiny",
    "densenet121",
    "vgg11",
    "regnet_y_400mf",
    "shufflenet_v2_x0_5",
]


def build(arch: str) -> nn.Module:
    """A random torchvision model; on the meta device (shapes only, no weights) where it can be
    built there: discovery needs shapes only, and it keeps the big ones cheap."""
    if arch.startswith("regnet"):  # computes its widths with real tensors while being built
        return tvm.get_model(arch, weights=None, num_classes=3)
    with torch.device("meta"):
        return tvm.get_model(arch, weights=None, num_classes=3)


def test_meta_device_model_gives_the_same_candidates(resnet):
    with torch.device("meta"):
        meta = tvm.resnet18(weights=None, num_classes=3)
    assert candidate_layers(meta, 96) == candidate_layers(resnet, 96)


@pytest.mark.parametrize("arch", FAMILIES)
def test_cnn_families_default_is_deepest_map_of_at_least_7(arch):
    model = build(arch)
    found = candidate_layers(model, 64)
    modules = dict(model.named_modules())
    assert len(found) >= 4
    assert all(c.name in modules and c.layout == "nchw" for c in found)
    # nothing after the global pool: every candidate is a real map
    assert all(c.spatial[0] >= 2 for c in found)
    info = default_layer(model, 64)
    i = found.index(info)
    assert min(info.spatial) >= MIN_SIDE
    assert all(min(c.spatial) < MIN_SIDE for c in found[i + 1 :])
    assert found[-1].spatial == (2, 2)  # 64 px / 32: the last stage, too coarse to localise


def test_mobilenet_v3_last_candidate_is_the_final_conv():
    model = build("mobilenet_v3_small")
    found = candidate_layers(model, 224)
    assert found[-1] == LayerInfo("features", (7, 7), 576, "nchw")
    assert default_layer(model, 224).name == "features"
    assert resolve_layer(model, 224, "features.12").name == "features"  # alias of the same tensor


def test_vit_candidates_are_ln1_of_each_block_as_token_grids():
    model = tiny_vit()
    found = candidate_layers(model, 32)
    assert found == [
        LayerInfo(f"encoder.layers.encoder_layer_{i}.ln_1", (4, 4), 16, "tokens") for i in (0, 1)
    ]
    assert default_layer(model, (32, 32)).name == "encoder.layers.encoder_layer_1.ln_1"


def test_swin_candidates_are_channels_last():
    model = tiny_swin()
    found = candidate_layers(model, 32)
    assert all(c.layout == "nhwc" for c in found)
    assert [c.name for c in found] == [
        "features.0",
        "features.1",
        "features.2",
        "features.3.0",
        "features.3",
    ]
    assert found[-1].spatial == (4, 4) and found[-1].channels == 32
    assert default_layer(model, 32).name == "features.1"  # 8 x 8; features.3 is 4 x 4


# ----------------------------------------------------------------------------- reshapes


def test_reshape_transform_nchw_is_none():
    assert reshape_transform(LayerInfo("x", (2, 2), 3)) is None


def test_reshape_transform_tokens_drops_class_token_row_major():
    info = LayerInfo("t", (2, 3), 4, "tokens")
    tokens = torch.arange(1 * 7 * 4, dtype=torch.float32).reshape(1, 7, 4)
    out = reshape_transform(info)(tokens)
    assert out.shape == (1, 4, 2, 3)
    # patch token k (k = 0..5, after the class token) sits at row k // 3, column k % 3
    assert torch.equal(out[0, :, 1, 2], tokens[0, 1 + 5])
    assert torch.equal(out[0, :, 0, 0], tokens[0, 1])


def test_reshape_transform_nhwc():
    x = torch.randn(1, 2, 3, 5)
    out = reshape_transform(LayerInfo("s", (2, 3), 5, "nhwc"))(x)
    assert out.shape == (1, 5, 2, 3)
    assert torch.equal(out[0, :, 1, 2], x[0, 1, 2])


def test_reshape_transform_unknown_layout():
    with pytest.raises(ValueError, match="unknown layout 'hwc'; valid"):
        reshape_transform(LayerInfo("s", (2, 3), 5, "hwc"))
