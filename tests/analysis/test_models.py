import json

import pytest
import torch
import torchvision

from analysis.loading.models import CheckpointError, default_preprocessing, load_model


def test_state_dict_loads_and_counts_classes(tiny_resnet):
    m = load_model(tiny_resnet, arch="resnet18", num_classes=3)
    assert m.num_classes == 3 and m.kind == "state_dict" and not m.model.training
    assert len(m.sha256) == 64


def test_wrong_number_of_classes_names_both(tiny_resnet):
    with pytest.raises(CheckpointError, match=r"has 3 classes but the class list has 5"):
        load_model(tiny_resnet, arch="resnet18", num_classes=5)


def test_arch_needed_and_checked(tiny_resnet):
    with pytest.raises(CheckpointError, match="--arch"):
        load_model(tiny_resnet)
    with pytest.raises(CheckpointError, match="did you mean"):
        load_model(tiny_resnet, arch="resnet81")
    with pytest.raises(CheckpointError, match="does not fit resnet34"):
        load_model(tiny_resnet, arch="resnet34")


def test_safetensors_fp16_and_sidecar(tmp_path):
    from safetensors.torch import save_file

    m = torchvision.models.mobilenet_v3_small(weights=None, num_classes=4)
    save_file({k: v.half() for k, v in m.state_dict().items()}, tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text(json.dumps({"arch": "mobilenet_v3_small"}))
    loaded = load_model(tmp_path / "m.safetensors", num_classes=4)
    assert loaded.arch == "mobilenet_v3_small"
    assert next(loaded.model.parameters()).dtype == torch.float32


def test_wrapped_and_prefixed_state_dict(tmp_path):
    m = torchvision.models.resnet18(weights=None, num_classes=2)
    sd = {f"module.{k}": v for k, v in m.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": sd}, tmp_path / "w.pth")
    assert load_model(tmp_path / "w.pth", arch="resnet18").num_classes == 2


def test_torchscript(tmp_path):
    m = torchvision.models.resnet18(weights=None, num_classes=3).eval()
    torch.jit.script(m).save(str(tmp_path / "ts.pt"))
    loaded = load_model(tmp_path / "ts.pt", num_classes=3)
    assert loaded.kind == "torchscript" and loaded.num_classes == 3
    with pytest.raises(CheckpointError, match="TorchScript model's output has 3 classes but"):
        load_model(tmp_path / "ts.pt", num_classes=4)


def test_pickled_module_needs_explicit_trust(tmp_path):
    m = torchvision.models.resnet18(weights=None, num_classes=3)
    torch.save(m, tmp_path / "full.pt")
    with pytest.raises(CheckpointError, match="--trust-checkpoint"):
        load_model(tmp_path / "full.pt", arch="resnet18")
    loaded = load_model(tmp_path / "full.pt", trust_checkpoint=True, num_classes=3)
    assert loaded.kind == "pickled_module"


def test_default_preprocessing_offline():
    p = default_preprocessing("resnet18")
    assert (p.resize, p.crop) == (256, 224)
    assert default_preprocessing("efficientnet_b3").crop == 300
    assert default_preprocessing(None).input_size == 224
