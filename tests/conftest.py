"""Shared fixtures: tiny image sets and tiny random models built in code (nothing downloaded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("ERRORSCOPE_NO_PROGRESS", "1")
# a page error fails its test instead of becoming the friendly message visitors get
os.environ.setdefault("ERRORSCOPE_RAISE", "1")
# no background CAM fill: a test sees only the maps it asks for (tests/dashboard/test_prefetch.py
# turns it on where it tests it)
os.environ.setdefault("ERRORSCOPE_PREFETCH_FILL", "0")
# the dashboard's config hides error details from visitors; tests want them in at.exception
os.environ.setdefault("STREAMLIT_CLIENT_SHOW_ERROR_DETAILS", "full")

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["ant", "bee", "cat"]


def make_image_folder(root: Path, n_per_class: int = 6, size: int = 40, seed: int = 0) -> Path:
    """root/<class>/<i>.png with a colour per class, so a model can tell them apart."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            arr = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
            arr[8:32, 8:32] = colours[c]
            Image.fromarray(arr).save(root / name / f"{name}_{i:02d}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    return make_image_folder(tmp_path / "data")


def save_tiny_resnet(path: Path, num_classes: int = 3, seed: int = 0) -> Path:
    import torch
    import torchvision

    torch.manual_seed(seed)
    m = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    torch.save(m.state_dict(), path)
    return path


def tiny_config(data, model, **kw):
    """The AnalysisConfig of a tiny test run: the tiny resnet at 32 px, in-process, no UMAP."""
    from analysis.pipeline.engine import AnalysisConfig

    defaults = dict(arch="resnet18", resize=32, no_crop=True, num_workers=0, batch_size=8)
    return AnalysisConfig(data=str(data), model=str(model), **{**defaults, "umap": False, **kw})


@pytest.fixture(scope="session")
def tiny_resnet(tmp_path_factory) -> Path:
    return save_tiny_resnet(tmp_path_factory.mktemp("models") / "tiny.pt")


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """The bundled sample, analysed once per test session (as `errorscope sample` does)."""
    from analysis.cli import SAMPLE_DIR, sample_config
    from analysis.pipeline.engine import analyze

    if not (SAMPLE_DIR / "model.safetensors").exists():
        pytest.fail("sample_data/model.safetensors is missing: run sample_data/train.py")
    runs = tmp_path_factory.mktemp("runs")
    return analyze(sample_config(), runs_dir=runs)


@pytest.fixture(scope="session")
def planted():
    import json

    return json.loads((REPO / "sample_data" / "planted.json").read_text())


@pytest.fixture(scope="session")
def thousand_class_run(tmp_path_factory):
    """A 1,000-class predictions-mode run with a two-level class hierarchy (issue 17): 2,000
    tiny images, 5% flipped labels, ImageNet-like long names. In its own runs folder (the
    sample's tests open the newest run of theirs)."""
    from tests.synthetic_classes import analyze_world, many_class_world

    world = many_class_world(1000, 2, seed=0, noise=0.05)
    root = tmp_path_factory.mktemp("thousand")
    run, paths = analyze_world(world, root / "inputs", root / "runs")
    return run, world, paths


# ----------------------------------------------------------------------------- other families
# Tiny random models of every family errorscope reads, built in code (nothing downloaded).

TIMM_TINY = {
    # timm's own test architectures, shrunk to 64 px: a ViT (8 x 8 patches of 8 px + a class
    # token) and a ConvNeXt; a Swin and an EfficientNet for the CAM layer tests
    "vit": ("timm/test_vit", {"img_size": 64, "patch_size": 8}),
    "convnext": ("timm/test_convnext", {}),
    "efficientnet": ("timm/test_efficientnet", {}),
    "swin": (
        "timm/swin_tiny_patch4_window7_224",
        {"img_size": 64, "embed_dim": 16, "depths": [1, 1], "num_heads": [1, 2], "window_size": 4},
    ),
    "deit": (
        "timm/deit_tiny_distilled_patch16_224",
        {"img_size": 64, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
    ),
}


def save_tiny_timm(path: Path, kind: str = "vit", num_classes: int = 3, seed: int = 0) -> Path:
    """A random timm model as safetensors + sidecar JSON (arch, model_kwargs, classes)."""
    import json

    import timm
    import torch
    from safetensors.torch import save_file

    arch, kwargs = TIMM_TINY[kind]
    torch.manual_seed(seed)
    m = timm.create_model(arch[5:], pretrained=False, num_classes=num_classes, **kwargs)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, str(path))
    side = {"arch": arch, "model_kwargs": kwargs, "classes": CLASSES[:num_classes]}
    path.with_suffix(".json").write_text(json.dumps(side))
    return path


def save_tiny_hf_vit(folder: Path, num_classes: int = 3, seed: int = 0, size: int = 32) -> Path:
    """A random transformers ViT saved with save_pretrained (config, safetensors, processor)."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    names = CLASSES[:num_classes]
    cfg = ViTConfig(
        image_size=size,
        patch_size=8,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=num_classes,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    torch.manual_seed(seed)
    ViTForImageClassification(cfg).eval().save_pretrained(folder)
    ViTImageProcessor(size={"height": size, "width": size}).save_pretrained(folder)
    return folder


def save_tiny_onnx(path: Path, num_classes: int = 3, seed: int = 0, size: int = 32) -> Path:
    """A random torchvision resnet18 exported to ONNX (dynamic batch, one 'logits' output)."""
    import warnings

    import torch
    import torchvision

    torch.manual_seed(seed)
    m = torchvision.models.resnet18(weights=None, num_classes=num_classes).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            m,
            torch.zeros(1, 3, size, size),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


@pytest.fixture(scope="session")
def sample_vit_run(sample_run):
    """The sample's second model (a timm XCiT vision transformer), analysed beside the first
    run, so Compare and transformer CAMs have the two runs `make run` shows."""
    from analysis.cli import SAMPLE_DIR, sample_config
    from analysis.pipeline.engine import analyze

    if not (SAMPLE_DIR / "model_vit.safetensors").exists():
        pytest.fail("sample_data/model_vit.safetensors is missing: run sample_data/train_vit.py")
    return analyze(sample_config("model_vit.safetensors"), runs_dir=sample_run.path.parent)
