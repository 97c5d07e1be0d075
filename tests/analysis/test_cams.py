"""Tests for analysis.explain.cams: CAM registry, explainer, cache, faithfulness, overlay, mask mass."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torchvision.models as tvm
from torch import nn

from analysis.explain.cams import (
    CAM_METHODS,
    COLORMAPS,
    FILLS,
    CamCache,
    CamExplainer,
    Faithfulness,
    compute_cam,
    faithfulness,
    mask_mass_outside,
    overlay,
)
from analysis.schema import CAMS_DIR

# the methods that read a layer; occlusion (input-level, coarse by design) has its own tests in
# test_cams_families.py
METHODS = [m for m in CAM_METHODS if CAM_METHODS[m].needs_layer]
GRADIENT_METHODS = [m for m in METHODS if CAM_METHODS[m].uses_gradients]
SQUARE = (slice(8, 24), slice(8, 24))  # where the bright square of `spot_image` is


def spot_model() -> nn.Module:
    """A CNN whose answer is known: channel 0 of the conv is the pixel's mean of RGB, channel 1
    its negative; after ReLU and a global mean, class 1's logit is +80 x mean(channel 0),
    class 0's is -80 x that, class 2's is always 0."""
    conv = nn.Conv2d(3, 2, kernel_size=3, padding=1, bias=False)
    head = nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, :, 1, 1] = 1 / 3
        conv.weight[1, :, 1, 1] = -1 / 3
        head.weight.copy_(torch.tensor([[-80.0, 0.0], [80.0, 0.0], [0.0, 0.0]]))
    return nn.Sequential(conv, nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), head)


def spot_image(size: int = 64) -> torch.Tensor:
    x = torch.zeros(3, size, size)
    x[:, SQUARE[0], SQUARE[1]] = 1.0
    return x


def square_mask(size: int = 64) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[SQUARE] = True
    return mask


def tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    vit = tvm.VisionTransformer(
        image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=3,
    )  # fmt: skip
    nn.init.normal_(vit.heads.head.weight)  # torchvision zero-initialises the head
    return vit.eval()


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[nn.Module, int]]:
    torch.manual_seed(0)
    return {
        "resnet18": (tvm.resnet18(weights=None, num_classes=3).eval(), 64),
        "mobilenet_v3_small": (tvm.mobilenet_v3_small(weights=None, num_classes=3).eval(), 96),
        "vit": (tiny_vit(), 32),
    }


def hook_counts(model: nn.Module) -> dict[str, tuple[int, ...]]:
    attrs = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return {n: tuple(len(getattr(m, a)) for a in attrs) for n, m in model.named_modules()}


def model_snapshot(model: nn.Module):
    return (
        [m.training for m in model.modules()],
        [(p.requires_grad, p.grad) for p in model.parameters()],
        {k: v.clone() for k, v in model.state_dict().items()},
    )


def assert_unchanged(model: nn.Module, snapshot) -> None:
    training, params, state = snapshot
    assert [m.training for m in model.modules()] == training
    for (flag, grad), p in zip(params, model.parameters(), strict=True):
        assert p.requires_grad == flag
        assert p.grad is grad
    now = model.state_dict()
    assert all(torch.equal(state[k], now[k]) for k in state)


# ----------------------------------------------------------------------------- registry


def test_registry_has_the_required_methods():
    for name in (
        "gradcam",
        "gradcam++",
        "eigencam",
        "layercam",
        "scorecam",
        "xgradcam",
        "hirescam",
    ):
        assert CAM_METHODS[name].name == name
    assert not CAM_METHODS["eigencam"].class_specific
    assert not CAM_METHODS["scorecam"].uses_gradients


def test_importing_cams_does_not_import_torch_or_grad_cam():
    code = (
        "import sys, analysis.explain.cams; "
        "print(any(m in sys.modules for m in ('torch', 'pytorch_grad_cam', 'plotly')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- known answers


@pytest.mark.parametrize("method", METHODS)
def test_map_points_at_the_evidence(method):
    cam = compute_cam(spot_model(), spot_image(), target_class=1, method=method)
    assert cam.shape == (64, 64) and cam.dtype == np.float32
    assert cam[SQUARE].min() > 0.9  # the square is what raises class 1
    assert cam[40:, 40:].max() < 0.1  # far from the square there is nothing
    assert mask_mass_outside(cam, square_mask()) < 0.1


@pytest.mark.parametrize("method", GRADIENT_METHODS)
def test_gradient_map_is_empty_for_a_class_the_evidence_counts_against(method):
    model, x = spot_model(), spot_image()
    assert np.all(compute_cam(model, x, target_class=0, method=method) == 0)
    assert np.all(compute_cam(model, x, target_class=2, method=method) == 0)  # constant logit


def test_eigencam_is_the_same_for_every_class():
    model, x = spot_model(), spot_image()
    maps = [compute_cam(model, x, target_class=c, method="eigencam") for c in range(3)]
    assert np.array_equal(maps[0], maps[1]) and np.array_equal(maps[1], maps[2])
    assert maps[0][SQUARE].min() > 0.9  # sign-corrected: the salient end is positive


# ----------------------------------------------------------------------------- real tiny models


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "vit"])
@pytest.mark.parametrize("method", METHODS)
def test_every_method_returns_a_map_in_unit_range(models, arch, method):
    model, size = models[arch]
    torch.manual_seed(1)
    x = torch.randn(3, size, size)
    flat = True
    # ScoreCAM runs the model once per channel: on ResNet, use the 64-channel layer1
    layer = "layer1" if (arch, method) == ("resnet18", "scorecam") else None
    with CamExplainer(model, input_size=size, method=method, layer=layer, batch_size=64) as explain:
        for c in range(3):
            cam = explain(x, target_class=c)
            assert cam.shape == (size, size) and cam.dtype == np.float32
            assert np.isfinite(cam).all() and cam.min() >= 0 and cam.max() <= 1
            if cam.max() > cam.min():
                flat = False
                break
    assert not flat  # some class has a map that says something


def _hand_cam(model, x, layer_name: str, target: int, method: str) -> np.ndarray:
    """The CAM papers' formulas written out with autograd, independently of pytorch-grad-cam:
    activations A [K, h, w] of the layer and gradients G of the target logit with respect to
    them; Grad-CAM w_k = mean(G_k) (Selvaraju et al. 2017), HiResCAM sum_k G_k * A_k (Draelos &
    Carin 2020), XGradCAM w_k = sum(G_k * A_k) / sum(A_k) (Fu et al. 2020), LayerCAM
    sum_k relu(G_k) * A_k (Jiang et al. 2021); then ReLU, min-max scaling, a bilinear resize to
    the input and min-max scaling again (the library's documented post-processing)."""
    import cv2

    saved = {}
    module = model.get_submodule(layer_name)
    handle = module.register_forward_hook(lambda m, i, o: saved.__setitem__("a", o))
    try:
        logits = model(x.unsqueeze(0))
    finally:
        handle.remove()
    a = saved["a"]
    (g,) = torch.autograd.grad(logits[0, target], a)
    a, g = a[0].detach().double(), g[0].double()
    if method == "gradcam":
        cam = (g.mean(dim=(1, 2))[:, None, None] * a).sum(0)
    elif method == "hirescam":
        cam = (g * a).sum(0)
    elif method == "xgradcam":
        w = (g * a).sum(dim=(1, 2)) / (a.sum(dim=(1, 2)) + 1e-7)
        cam = (w[:, None, None] * a).sum(0)
    else:  # layercam
        cam = (torch.relu(g) * a).sum(0)

    def scale(m):
        m = m - m.min()
        return m / (1e-7 + m.max())

    # the library scales the layer's map, resizes it, and scales the result again
    up = cv2.resize(np.float32(scale(torch.relu(cam).numpy())), tuple(x.shape[-2:][::-1]))
    return scale(np.maximum(up, 0))


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small"])
@pytest.mark.parametrize("method", ["gradcam", "hirescam", "xgradcam", "layercam"])
def test_maps_equal_the_formulas_written_out(models, arch, method):
    """Not only a value range: on real (random) networks the map is the method's formula."""
    from analysis.explain.layers import default_layer

    model, size = models[arch]
    torch.manual_seed(2)
    x = torch.randn(3, size, size)
    layer = default_layer(model, size).name
    for target in range(3):
        got = compute_cam(model, x, target_class=target, method=method)
        ref = _hand_cam(model.eval(), x, layer, target, method)
        if ref.max() <= 0:  # nothing supports the class: the module returns zeros
            assert np.all(got == 0)
            continue
        np.testing.assert_allclose(got, np.clip(ref, 0, 1), atol=2e-4)


def test_same_map_inside_inference_mode_and_no_grad(models):
    model, size = models["resnet18"]
    x = torch.randn(3, size, size)
    expected = compute_cam(model, x, target_class=1, layer="layer3")
    with torch.inference_mode():
        xi = x.clone()
        got = compute_cam(model, xi, target_class=1, layer="layer3")
    with torch.no_grad():
        got2 = compute_cam(model, x, target_class=1, layer="layer3")
    assert expected.max() > 0
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got2, expected, atol=1e-5)


def test_layer_choice_changes_the_map_resolution(models):
    model, size = models["resnet18"]
    x = torch.randn(3, size, size)
    coarse = compute_cam(model, x, target_class=0, method="eigencam", layer="layer4")
    fine = compute_cam(model, x, target_class=0, method="eigencam", layer="layer1")
    assert coarse.shape == fine.shape == (size, size)
    assert not np.allclose(coarse, fine)


# ----------------------------------------------------------------------------- no side effects


def test_hooks_are_removed_after_use(models):
    model, size = models["resnet18"]
    before = hook_counts(model)
    for method in ("gradcam", "scorecam"):
        compute_cam(
            model, torch.randn(3, size, size), target_class=0, method=method, batch_size=128
        )
    assert hook_counts(model) == before


def test_hooks_are_removed_when_it_raises(models):
    model, size = models["resnet18"]
    before = hook_counts(model)
    with pytest.raises(ValueError, match=r"target_class=5 is out of range .* 3 outputs"):
        compute_cam(model, torch.randn(3, size, size), target_class=5)
    assert hook_counts(model) == before
    # an error in the caller's block propagates (the library's __exit__ swallows IndexError)
    with pytest.raises(IndexError, match="boom"):
        with CamExplainer(model, input_size=size) as explain:
            assert hook_counts(model) != before  # hooked while open
            explain(torch.randn(3, size, size), target_class=0)
            raise IndexError("boom")
    assert hook_counts(model) == before


def test_model_and_input_are_not_mutated():
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None, num_classes=3).train()  # train mode on purpose
    sentinel = torch.full_like(model.fc.weight, 7.0)
    model.fc.weight.grad = sentinel
    model.conv1.weight.requires_grad_(False)  # partly frozen
    snapshot = model_snapshot(model)
    x = torch.randn(3, 64, 64)
    x_before = x.clone()
    for method in ("gradcam", "eigencam"):
        compute_cam(model, x, target_class=2, method=method)
    assert_unchanged(model, snapshot)
    assert model.fc.weight.grad is sentinel and torch.all(sentinel == 7)
    assert torch.equal(x, x_before) and not x.requires_grad and x.grad is None


def test_frozen_model_still_gets_gradients():
    model = spot_model()
    for p in model.parameters():
        p.requires_grad_(False)
    cam = compute_cam(model, spot_image(), target_class=1)
    assert cam[SQUARE].min() > 0.9
    assert not any(p.requires_grad for p in model.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_gives_the_cpu_map(models):
    model, size = models["resnet18"]
    x = torch.randn(3, size, size)
    expected = compute_cam(model, x, target_class=1, layer="layer3")
    gpu = tvm.resnet18(weights=None, num_classes=3)
    gpu.load_state_dict(model.state_dict())
    gpu = gpu.eval().cuda()
    got = compute_cam(gpu, x, target_class=1, layer="layer3")  # CPU input, moved for the model
    np.testing.assert_allclose(got, expected, atol=1e-3)
    spot = spot_model().cuda()
    cam = compute_cam(spot, spot_image().cuda(), target_class=1, method="scorecam")
    assert cam[SQUARE].min() > 0.9


# ----------------------------------------------------------------------------- validation


def test_unknown_method_lists_valid_ones(models):
    model, size = models["resnet18"]
    with pytest.raises(
        ValueError, match=r"unknown CAM method 'gradcam\+'; valid: \['gradcam', 'gradcam\+\+'"
    ):
        compute_cam(model, torch.randn(3, size, size), target_class=0, method="gradcam+")


def test_unknown_layer_lists_valid_ones(models):
    model, size = models["resnet18"]
    with pytest.raises(ValueError, match=r"unknown layer 'fc'.*valid: \[.*'layer4'\]"):
        compute_cam(model, torch.randn(3, size, size), target_class=0, layer="fc")


def test_bad_inputs(models):
    model, size = models["resnet18"]
    x = torch.randn(3, size, size)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        compute_cam(lambda t: t, x, target_class=0)
    with pytest.raises(TypeError, match=r"image_tensor must be a torch.Tensor \[3, H, W\]"):
        compute_cam(model, x.numpy(), target_class=0)
    with pytest.raises(ValueError, match=r"normalised float tensor \[3, H, W\], got shape \(1, 3"):
        compute_cam(model, x[None], target_class=0)
    with pytest.raises(ValueError, match="got shape .* dtype torch.uint8"):
        compute_cam(model, torch.zeros(3, size, size, dtype=torch.uint8), target_class=0)
    with pytest.raises(TypeError, match="target_class must be an int, got bool"):
        compute_cam(model, x, target_class=True)
    with pytest.raises(ValueError, match="target_class must be >= 0, got -1"):
        compute_cam(model, x, target_class=-1)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        compute_cam(model, x, target_class=0, method="scorecam", batch_size=0)


def test_explainer_checks_its_use(models):
    model, size = models["resnet18"]
    explainer = CamExplainer(model, input_size=size)
    with pytest.raises(RuntimeError, match="inside a `with` block"):
        explainer(torch.randn(3, size, size), target_class=0)
    with explainer as explain:
        with pytest.raises(ValueError, match=r"image_tensor is \(32, 32\) but .* \(64, 64\)"):
            explain(torch.randn(3, 32, 32), target_class=0)


# ----------------------------------------------------------------------------- cache


class CountForwards:
    def __init__(self, model: nn.Module) -> None:
        self.n = 0
        self.handle = model.register_forward_pre_hook(self)

    def __call__(self, module, args):
        self.n += 1


def test_empty_cache_has_nothing(tmp_path):
    cache = CamCache(tmp_path)
    assert cache.get(sample_id="s1", method="gradcam", layer="layer2", target_class=0) is None
    assert not (tmp_path / CAMS_DIR).exists()  # nothing written by a read


def test_second_call_reads_from_disk_without_running_the_model(tmp_path):
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None, num_classes=3).eval()
    counter = CountForwards(model)
    cache = CamCache(tmp_path)
    x = torch.randn(3, 64, 64)
    first = cache.get_or_compute(model, x, sample_id="s0abc", target_class=1)
    assert counter.n >= 1
    runs = counter.n
    second = cache.get_or_compute(model, x, sample_id="s0abc", target_class=1)
    assert counter.n == runs  # a hit does not run the model
    np.testing.assert_array_equal(first, second)
    assert second.dtype == np.float32 and second.shape == (64, 64)
    path = tmp_path / CAMS_DIR / "s0abc__gradcam__layer2__1.npy"  # default layer at 64 px
    stored = np.load(path)
    assert stored.dtype == np.float16
    np.testing.assert_array_equal(stored.astype(np.float32), first)
    counter.handle.remove()


def test_cache_keys_by_method_layer_and_class(tmp_path):
    model, x = spot_model(), spot_image()
    cache = CamCache(tmp_path)
    cache.get_or_compute(model, x, sample_id="s1", target_class=1)
    cache.get_or_compute(model, x, sample_id="s1", target_class=0)
    cache.get_or_compute(model, x, sample_id="s1", target_class=1, method="eigencam", layer="0")
    names = sorted(p.name for p in (tmp_path / CAMS_DIR).iterdir())
    assert names == ["s1__eigencam__0__1.npy", "s1__gradcam__1__0.npy", "s1__gradcam__1__1.npy"]
    assert cache.get(sample_id="s1", method="gradcam", layer="1", target_class=0).max() == 0


def test_cache_stores_aliases_under_the_candidate_name(tmp_path):
    torch.manual_seed(0)
    model = tvm.resnet18(weights=None, num_classes=3).eval()
    cache = CamCache(tmp_path)
    cache.get_or_compute(
        model, torch.randn(3, 64, 64), sample_id="s2", target_class=0, layer="layer4.1"
    )
    assert (tmp_path / CAMS_DIR / "s2__gradcam__layer4__0.npy").is_file()


def test_unreadable_cache_file_is_recomputed(tmp_path):
    model, x = spot_model(), spot_image()
    cache = CamCache(tmp_path)
    path = cache.path(sample_id="s3", method="gradcam", layer="1", target_class=1)
    path.parent.mkdir()
    path.write_bytes(b"not a numpy file")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cam = cache.get_or_compute(model, x, sample_id="s3", target_class=1)
    assert any("unreadable CAM cache file" in str(w.message) for w in caught)
    assert cam[SQUARE].min() > 0.9
    assert np.load(path).dtype == np.float16  # replaced by a good file


def test_cache_validation(tmp_path):
    with pytest.raises(ValueError, match="is not an existing directory"):
        CamCache(tmp_path / "missing")
    with pytest.raises(TypeError, match="run_dir must be a path, got int"):
        CamCache(3)
    cache = CamCache(tmp_path)
    with pytest.raises(ValueError, match=r"sample_id '\.\./x' cannot be part of a file name"):
        cache.path(sample_id="../x", method="gradcam", layer="layer4", target_class=0)
    with pytest.raises(ValueError, match="layer 'a/b' cannot be part of a file name"):
        cache.path(sample_id="s1", method="gradcam", layer="a/b", target_class=0)
    with pytest.raises(ValueError, match="unknown CAM method 'nope'; valid"):
        cache.path(sample_id="s1", method="nope", layer="layer4", target_class=0)
    with pytest.raises(ValueError, match=r"cam must be a float \[H, W\] array"):
        cache.put(np.zeros((2, 2, 2)), sample_id="s1", method="gradcam", layer="l", target_class=0)


# ----------------------------------------------------------------------------- faithfulness


def test_faithfulness_flat_map_is_nan():
    result = faithfulness(
        spot_model(), spot_image(), np.zeros((64, 64)), target_class=1, method="gradcam"
    )
    assert np.isnan(result.drop_top) and np.isnan(result.drop_random) and np.isnan(result.gap)
    assert 0 < result.prob < 1


@pytest.mark.parametrize("fill", list(FILLS))
def test_faithful_map_beats_random_regions(fill):
    model, x = spot_model(), spot_image()
    cam = compute_cam(model, x, target_class=1)
    result = faithfulness(model, x, cam, target_class=1, method="gradcam", fill=fill, seed=3)
    assert isinstance(result, Faithfulness)
    assert result.method == "gradcam" and result.fill == fill and result.top_fraction == 0.2
    # Grad-CAM is zero off the square: only the square (16 x 16 of 64 x 64) is removed
    assert result.removed_fraction == 256 / 4096
    assert result.prob > 0.95
    assert result.gap == pytest.approx(result.drop_top - result.drop_random)
    if fill == "mean":
        assert result.drop_top > 0.4  # the evidence is gone
        assert result.gap > 0.3
    else:  # a blurred square keeps most of its brightness, which is all this model reads
        assert result.gap > 0


def test_faithfulness_of_a_misleading_map_is_no_better_than_random():
    model, x = spot_model(), spot_image()
    wrong = np.zeros((64, 64))
    wrong[40:56, 40:56] = 1.0  # points at empty background
    result = faithfulness(model, x, wrong, target_class=1, method="gradcam")
    assert result.drop_top < 0.05
    assert result.drop_top < result.drop_random


def test_faithfulness_resizes_the_map_and_leaves_the_model_alone():
    model = spot_model().train()
    snapshot = model_snapshot(model)
    cam = np.zeros((8, 8))
    cam[1:3, 1:3] = 1.0  # the square, at 1/8 resolution
    x = spot_image()
    x_before = x.clone()
    result = faithfulness(model, x, cam, target_class=1, method="gradcam", n_random=2)
    assert result.drop_top > 0.3
    assert_unchanged(model, snapshot)
    assert torch.equal(x, x_before)


def test_faithfulness_real_model_gives_probabilities(models):
    model, size = models["mobilenet_v3_small"]
    x = torch.randn(3, size, size)
    cam = compute_cam(model, x, target_class=0)
    r = faithfulness(model, x, cam, target_class=0, method="gradcam", fill="blur")
    assert 0 <= r.prob <= 1
    assert -1 <= r.drop_top <= 1 and -1 <= r.drop_random <= 1


def test_faithfulness_validation():
    model, x, cam = spot_model(), spot_image(), np.ones((64, 64))
    with pytest.raises(ValueError, match=r"top_fraction must be in \(0, 1\), got 1"):
        faithfulness(model, x, cam, target_class=1, method="gradcam", top_fraction=1)
    with pytest.raises(ValueError, match=r"unknown fill 'noise'; valid: \['mean', 'blur'\]"):
        faithfulness(model, x, cam, target_class=1, method="gradcam", fill="noise")
    with pytest.raises(ValueError, match="unknown CAM method 'grad'"):
        faithfulness(model, x, cam, target_class=1, method="grad")
    with pytest.raises(ValueError, match="n_random must be an int >= 1, got 0"):
        faithfulness(model, x, cam, target_class=1, method="gradcam", n_random=0)
    with pytest.raises(ValueError, match="cam must be finite and non-negative"):
        faithfulness(model, x, -cam, target_class=1, method="gradcam")
    with pytest.raises(ValueError, match=r"cam must be a non-empty 2-D array, got shape \(64,\)"):
        faithfulness(model, x, cam[0], target_class=1, method="gradcam")
    with pytest.raises(ValueError, match="target_class=3 is out of range"):
        faithfulness(model, x, cam * np.arange(64), target_class=3, method="gradcam")


# ----------------------------------------------------------------------------- overlay


def test_overlay_shape_dtype_and_resize():
    image = np.full((40, 30, 3), 128, dtype=np.uint8)
    out = overlay(image, np.random.default_rng(0).random((7, 7)))
    assert out.shape == (40, 30, 3) and out.dtype == np.uint8


def test_overlay_blend_endpoints():
    image = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    cam = np.zeros((8, 8))
    cam[:, 4:] = 1.0
    assert np.array_equal(overlay(image, cam, alpha=0.0), image)
    colours = overlay(image, cam, alpha=1.0, colormap="inferno")
    assert tuple(colours[0, 0]) == (0, 0, 4)  # inferno's low end, #000004
    assert tuple(colours[0, 7]) == (252, 255, 164)  # inferno's high end, #fcffa4
    half = overlay(image, cam, alpha=0.5)
    expected = np.rint(0.5 * image[0, 0] + 0.5 * np.array([0, 0, 4]))
    assert np.array_equal(half[0, 0], expected.astype(np.uint8))


@pytest.mark.parametrize("colormap", COLORMAPS)
def test_every_colormap_draws(colormap):
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    cam = np.linspace(0, 1, 16).reshape(4, 4)
    cam[0, 0] = np.nan
    out = overlay(image, cam, alpha=1.0, colormap=colormap)
    assert out.dtype == np.uint8 and len({tuple(c) for c in out.reshape(-1, 3)}) > 8


def test_overlay_validation():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"image_rgb must be uint8 \[H, W, 3\], got float64"):
        overlay(image.astype(float), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="cam must be a non-empty numeric 2-D array"):
        overlay(image, np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 2"):
        overlay(image, np.zeros((4, 4)), alpha=2)
    with pytest.raises(ValueError, match=r"unknown colormap 'jet'; valid: \['inferno'"):
        overlay(image, np.zeros((4, 4)), colormap="jet")


# ----------------------------------------------------------------------------- mask mass


def test_mask_mass_outside_empty_and_zero_maps_are_nan():
    assert np.isnan(mask_mass_outside(np.zeros((0, 0)), np.zeros((0, 0), dtype=bool)))
    assert np.isnan(mask_mass_outside(np.zeros((3, 3)), np.ones((3, 3), dtype=bool)))


def test_mask_mass_outside_known_values():
    cam = np.ones((4, 4))
    mask = np.zeros((4, 4), dtype=bool)
    mask[:, :2] = True
    assert mask_mass_outside(cam, mask) == 0.5
    cam[:, 2:] = 0
    assert mask_mass_outside(cam, mask) == 0.0
    assert mask_mass_outside(cam, ~mask) == 1.0
    cam = np.array([[3.0, 1.0]])
    assert mask_mass_outside(cam, np.array([[True, False]])) == 0.25


def test_mask_mass_outside_validation():
    with pytest.raises(ValueError, match=r"mask shape \(2, 2\) does not match cam shape \(3, 3\)"):
        mask_mass_outside(np.ones((3, 3)), np.ones((2, 2), dtype=bool))
    with pytest.raises(TypeError, match="mask must be a boolean array, got int64"):
        mask_mass_outside(np.ones((2, 2)), np.ones((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="cam must be finite and non-negative"):
        mask_mass_outside(-np.ones((2, 2)), np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="cam must be a numeric 2-D array"):
        mask_mass_outside(np.ones(4), np.ones(4, dtype=bool))


# ----------------------------------------------------------------------------- batched passes
# The review's speed rests on computing several maps and checks per forward pass (issue 11 §4):
# each batched result must be the one-at-a-time result.


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "hirescam", "eigencam", "occlusion"])
def test_a_batch_of_maps_equals_the_maps_one_at_a_time(models, method):
    model, size = models["resnet18"]
    torch.manual_seed(1)
    xs = torch.randn(3, 3, size, size)
    classes = [0, 2, 1]
    with CamExplainer(model, input_size=size, method=method) as explain:
        batch = explain.batch(torch.stack([xs[0], xs[0], xs[1]]), classes)
        one = [
            explain(x, target_class=c) for x, c in zip([xs[0], xs[0], xs[1]], classes, strict=True)
        ]
    assert batch.shape == (3, size, size) and batch.dtype == np.float32
    for b, o in zip(batch, one, strict=True):
        np.testing.assert_allclose(b, o, atol=1e-4)
    if CAM_METHODS[method].class_specific:  # two classes of one image: two different maps
        assert not np.allclose(batch[0], batch[1])


def test_explainer_batch_checks_its_arguments(models):
    model, size = models["resnet18"]
    with CamExplainer(model, input_size=size) as explain:
        with pytest.raises(ValueError, match="one per image"):
            explain.batch(torch.zeros(2, 3, size, size), [0])
        with pytest.raises(ValueError, match="input size"):
            explain.batch(torch.zeros(1, 3, size + 8, size + 8), [0])
        with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
            explain.batch(torch.zeros(3, size, size), [0])
    with pytest.raises(RuntimeError, match="with"):
        CamExplainer(model, input_size=size).batch(torch.zeros(1, 3, size, size), [0])


def test_faithfulness_of_many_maps_equals_one_at_a_time(models):
    from analysis.explain.cams import faithfulness_batch

    model, size = models["resnet18"]
    torch.manual_seed(2)
    x, y = torch.randn(3, size, size), torch.randn(3, size, size)
    rng = np.random.default_rng(0)
    cam_a, cam_b = rng.random((size, size)), rng.random((size // 2, size // 2))
    flat = np.zeros((size, size))
    items = [(x, cam_a, 0), (x, cam_b, 2), (y, cam_a, 1), (y, flat, 1)]
    many = faithfulness_batch(model, items, method="gradcam", max_batch=7)
    for got, (img, cam, c) in zip(many, items, strict=True):
        want = faithfulness(model, img, cam, target_class=c, method="gradcam")
        assert (got.prob, got.drop_top, got.drop_random, got.removed_fraction) == pytest.approx(
            (want.prob, want.drop_top, want.drop_random, want.removed_fraction),
            abs=1e-5,
            nan_ok=True,
        )
    assert np.isnan(many[3].drop_top) and many[3].removed_fraction == 0.0
    with pytest.raises(ValueError, match="out of range"):
        faithfulness_batch(model, [(x, cam_a, 7)], method="gradcam")


def test_sanity_checks_of_many_maps_equal_one_at_a_time(models):
    from analysis.explain.cams import randomisation_check, randomisation_checks

    model, size = models["resnet18"]
    torch.manual_seed(3)
    xs = [torch.randn(3, size, size) for _ in range(3)]
    rng = np.random.default_rng(3)
    items = [(x, rng.random((size, size)), c) for x, c in zip(xs, [0, 1, 2], strict=True)]
    items.append((xs[0], np.zeros((size, size)), 0))  # a flat map: no check
    many = randomisation_checks(model, items, method="gradcam", max_batch=2)
    for got, (x, cam, c) in zip(many, items, strict=True):
        want = randomisation_check(model, x, cam, target_class=c, method="gradcam")
        assert got.randomised == want.randomised and got.layer == want.layer
        assert got.rank_correlation == pytest.approx(want.rank_correlation, abs=1e-3, nan_ok=True)
    assert np.isfinite([c.rank_correlation for c in many[:3]]).all()
    assert np.isnan(many[3].rank_correlation)
    assert randomisation_checks(model, [], method="gradcam") == []
