"""Every model family through the whole analysis: timm, Hugging Face, ONNX, predictions +
embeddings, torchvision heads that are not one nn.Linear. Tiny random models built in code, the
network blocked, probabilities checked against each family's own inference."""

from __future__ import annotations

import json
import socket

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import schema
from analysis.loading.families import MissingExtra
from analysis.loading.models import CheckpointError, load_model
from analysis.pipeline.engine import AnalysisConfig, analyze
from tests.conftest import (
    CLASSES,
    make_image_folder,
    save_tiny_hf_vit,
    save_tiny_onnx,
    save_tiny_timm,
)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test.

    The hub's offline switches (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE) are left as they are, so
    what keeps a load off the network is errorscope's own ``local_files_only`` and
    ``pretrained=False``, not the test's environment."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    tried = []

    def refuse(self, address, *a, **k):
        tried.append(address)
        raise OSError(f"network access attempted: {address}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    with pytest.raises(OSError, match="network access attempted"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)  # the block itself holds
    tried.clear()
    yield tried
    assert not tried, f"the code tried to reach {tried}"


def _analyze(tmp_path, data, **cfg):
    return analyze(
        AnalysisConfig(data=str(data), num_workers=0, umap=False, **cfg),
        runs_dir=tmp_path / "runs",
    )


def _pil(path):
    from PIL import Image

    return Image.open(path).convert("RGB")


# ----------------------------------------------------------------------------- timm


@pytest.fixture(scope="module")
def folder67(tmp_path_factory):
    """67 px images: timm's transform for a 64 px model with crop_pct 0.95 resizes to 67 and
    crops 64, so both pipelines resample nothing and must agree exactly."""
    return make_image_folder(tmp_path_factory.mktemp("d67") / "data", n_per_class=4, size=67)


def test_timm_vit_probabilities_equal_timms_own_inference(tmp_path, folder67, no_network):
    import timm

    ckpt = save_tiny_timm(tmp_path / "vit.safetensors", "vit")
    run = _analyze(tmp_path, folder67, model=str(ckpt))
    man = run.manifest
    assert man["inputs"]["model"]["family"] == "timm"
    assert man["inputs"]["model"]["arch"] == "timm/test_vit"
    assert man["preprocessing"]["interpolation"] == "bicubic"  # timm's data config
    assert (man["preprocessing"]["resize"], man["preprocessing"]["crop"]) == (67, 64)

    model = load_model(ckpt).model
    cfg = timm.data.resolve_data_config({"input_size": (3, 64, 64)}, model=model)
    tf = timm.data.create_transform(**cfg)
    x = torch.stack([tf(_pil(p)) for p in run.samples[schema.PATH]])
    with torch.no_grad():
        feats = model.forward_features(x)
        want = torch.softmax(model.forward_head(feats), 1).numpy()
        pre = model.forward_head(feats, pre_logits=True).numpy()
    np.testing.assert_allclose(run.probs, want, atol=1e-5)
    # embeddings: timm's pre-logits features, and the manifest says so
    np.testing.assert_allclose(run.embeddings.astype(np.float32), pre, atol=2e-2, rtol=1e-2)
    assert man["has_embeddings"] and "pre-logits" in man["embedding_source"]


def test_timm_preprocessing_follows_the_data_config_and_each_key_is_overridable(tmp_path):
    from analysis.pipeline.engine import _preprocessing

    ckpt = save_tiny_timm(tmp_path / "cnx.safetensors", "convnext")
    side = json.loads(ckpt.with_suffix(".json").read_text())

    def prep(side_extra=None, **cli):
        return _preprocessing(
            AnalysisConfig(data="d", model=str(ckpt), **cli),
            side["arch"],
            {**side, **(side_extra or {})},
        )

    p = prep()
    # test_convnext's data config: 160 px, crop_pct 0.95, bicubic, mean/std 0.5
    assert (p.resize, p.crop, p.interpolation, p.mean) == (168, 160, "bicubic", (0.5, 0.5, 0.5))
    assert prep({"interpolation": "bilinear"}).interpolation == "bilinear"
    assert prep({"crop": 64}).crop == 64 and prep({"crop": 64}).resize == 168
    q = prep(resize=72, crop=64, mean=(0.1, 0.2, 0.3))
    assert (q.resize, q.crop, q.mean, q.std) == (72, 64, (0.1, 0.2, 0.3), (0.5, 0.5, 0.5))


def test_timm_loading_errors_name_the_problem(tmp_path):
    ckpt = save_tiny_timm(tmp_path / "vit.safetensors", "vit")
    with pytest.raises(CheckpointError, match=r"has 3 classes but the class list has 5"):
        load_model(ckpt, num_classes=5)
    with pytest.raises(CheckpointError, match="unknown timm architecture 'test_vitt'.*test_vit"):
        load_model(ckpt, arch="timm/test_vitt")
    with pytest.raises(CheckpointError, match="does not fit timm/test_vit2 with .*model_kwargs"):
        load_model(ckpt, arch="timm/test_vit2")
    with pytest.raises(CheckpointError, match="test_convnext does not take these model_kwargs"):
        load_model(ckpt, arch="timm/test_convnext")
    side = json.loads(ckpt.with_suffix(".json").read_text())
    side["model_kwargs"]["pretrained"] = True
    ckpt.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match="may not set 'pretrained'"):
        load_model(ckpt)


def test_a_missing_family_package_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_timm(name, *a, **k):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real(name, *a, **k)

    ckpt = save_tiny_timm(tmp_path / "vit.safetensors", "vit")
    monkeypatch.delitem(__import__("sys").modules, "timm", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_timm)
    import importlib

    monkeypatch.setattr(importlib, "import_module", lambda n, *a: no_timm(n))
    with pytest.raises(MissingExtra, match=r"pip install 'errorscope\[timm\]'"):
        load_model(ckpt)


# ----------------------------------------------------------------------------- Hugging Face


@pytest.fixture(scope="module")
def folder32(tmp_path_factory):
    return make_image_folder(tmp_path_factory.mktemp("d32") / "data", n_per_class=4, size=32)


def test_hf_vit_folder_probabilities_equal_the_processor_and_model(tmp_path, folder32, no_network):
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    hf = save_tiny_hf_vit(tmp_path / "hfvit")
    run = _analyze(tmp_path, folder32, model=str(hf))
    man = run.manifest
    assert man["inputs"]["model"]["family"] == "hf"
    assert run.class_names == CLASSES  # from id2label, no class list given
    assert any("id2label" in w for w in man["warnings"])

    proc = AutoImageProcessor.from_pretrained(hf, local_files_only=True)
    model = AutoModelForImageClassification.from_pretrained(hf, local_files_only=True).eval()
    images = [_pil(p) for p in run.samples[schema.PATH]]
    pixels = proc(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
        want = torch.softmax(out.logits, 1).numpy()
        pooled = model.vit(pixel_values=pixels).last_hidden_state[:, 0].numpy()
    np.testing.assert_allclose(run.probs, want, atol=1e-5)
    np.testing.assert_allclose(run.embeddings.astype(np.float32), pooled, atol=2e-2, rtol=1e-2)
    assert "pooled output" in man["embedding_source"]


def test_hf_labels_the_model_does_not_know_are_named(tmp_path, folder32):
    hf = save_tiny_hf_vit(tmp_path / "hfvit")
    cfg = json.loads((hf / "config.json").read_text())
    cfg["id2label"] = {"0": "ant", "1": "bee", "2": "dog"}
    cfg["label2id"] = {"ant": 0, "bee": 1, "dog": 2}
    (hf / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"\['cat'\].*id2label"):
        _analyze(tmp_path, folder32, model=str(hf))


def test_hf_id2label_disagreeing_with_a_class_list_is_a_warning(tmp_path, folder32):
    hf = save_tiny_hf_vit(tmp_path / "hfvit")
    (tmp_path / "classes.txt").write_text("bee\nant\ncat\n")
    run = _analyze(tmp_path, folder32, model=str(hf), classes=str(tmp_path / "classes.txt"))
    assert run.class_names == ["bee", "ant", "cat"]
    msg = next(w for w in run.manifest["warnings"] if "disagrees" in w)
    assert "output 0: model says 'ant'" in msg and "'bee'" in msg


def test_hf_folder_with_custom_code_is_refused(tmp_path):
    hf = save_tiny_hf_vit(tmp_path / "hfvit")
    cfg = json.loads((hf / "config.json").read_text())
    cfg["auto_map"] = {"AutoModelForImageClassification": "evil.EvilModel"}
    (hf / "config.json").write_text(json.dumps(cfg))
    (hf / "evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(CheckpointError, match="custom model code.*trust_remote_code stays off"):
        load_model(hf)


def test_a_folder_without_config_is_explained(tmp_path):
    (tmp_path / "weights").mkdir()
    with pytest.raises(CheckpointError, match="without config.json"):
        load_model(tmp_path / "weights")


# ----------------------------------------------------------------------------- ONNX


def test_onnx_probabilities_equal_onnxruntime_on_the_same_array(tmp_path, folder32, no_network):
    import onnxruntime as ort

    from analysis.explain.cam_views import model_input
    from analysis.loading.inference import softmax

    path = save_tiny_onnx(tmp_path / "r18.onnx")
    (tmp_path / "r18.json").write_text(json.dumps({"resize": 32, "crop": None}))
    run = _analyze(tmp_path, folder32, model=str(path), batch_size=5)
    man = run.manifest
    assert man["inputs"]["model"]["family"] == "onnx" and not man["inputs"]["model"]["gradients"]
    from analysis.loading.models import Preprocessing

    p = Preprocessing.from_dict(man["preprocessing"])
    x = torch.stack([model_input(q, p)[1] for q in run.samples[schema.PATH]]).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = sess.run(["logits"], {"image": x})[0]
    np.testing.assert_allclose(run.probs, softmax(logits), atol=1e-5)
    # embeddings traced to the input of the final Gemm: resnet18's pooled 512 features
    assert run.embeddings.shape == (len(x), 512)
    assert "final layer" in man["embedding_source"]


def test_onnx_embeddings_from_a_named_output_and_a_fixed_batch(tmp_path, folder32):
    import torchvision

    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.m = torchvision.models.mobilenet_v3_small(num_classes=3).eval()

        def forward(self, x):
            f = self.m.avgpool(self.m.features(x)).flatten(1)
            return self.m.classifier(f), f

    net = TwoHeads().eval()
    path = tmp_path / "two.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            torch.zeros(4, 3, 32, 32),
            str(path),
            dynamo=False,
            input_names=["x"],
            output_names=["scores", "features"],
        )  # no dynamic axes: batch fixed at 4
    (tmp_path / "two.json").write_text(json.dumps({"resize": 32, "crop": None}))
    run = _analyze(tmp_path, folder32, model=str(path), batch_size=7)  # 7 = 4 + 3 padded
    assert run.embeddings.shape[1] == 576
    assert "'features'" in run.manifest["embedding_source"]
    from analysis.explain.cam_views import model_input
    from analysis.loading.models import Preprocessing

    xs = torch.stack([model_input(q, Preprocessing(32, None))[1] for q in run.samples[schema.PATH]])
    with torch.no_grad():
        logits, feats = net(xs)
    np.testing.assert_allclose(run.probs, torch.softmax(logits, 1).numpy(), atol=1e-4)
    np.testing.assert_allclose(run.embeddings.astype(np.float32), feats.numpy(), atol=2e-2)
    with pytest.raises(CheckpointError, match="no output 'logits'.*scores"):
        load_model(path, onnx_output="logits")


def test_onnx_model_that_ends_in_softmax_is_read_before_it(tmp_path):
    import torchvision

    torch.manual_seed(0)
    base = torchvision.models.resnet18(num_classes=3).eval()
    net = torch.nn.Sequential(base, torch.nn.Softmax(dim=1)).eval()
    path = tmp_path / "sm.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 3, 32, 32), str(path), dynamo=False)
    loaded = load_model(path, num_classes=3)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        np.testing.assert_allclose(loaded.model(x).numpy(), base(x).numpy(), atol=1e-4)
    assert any("Softmax" in n for n in loaded.notes)


def test_onnx_session_threads_sleep_between_runs(tmp_path):
    """Busy-waiting onnxruntime threads took the cores from the rest of the pass's batch work
    (1.30x a bare loop in bench_pass.py; 1.00x with them sleeping)."""
    loaded = load_model(save_tiny_onnx(tmp_path / "m.onnx"), num_classes=3)
    opts = loaded.model.session.get_session_options()
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert opts.get_session_config_entry("session.inter_op.allow_spinning") == "0"


# ----------------------------------------------------------------------------- other frameworks


def test_predictions_with_embeddings_file(tmp_path, folder32):
    from analysis.loading.datasets import load_image_set

    s = load_image_set(folder32).table
    rng = np.random.default_rng(0)
    order = rng.permutation(len(s))  # the predictions file lists images in its own order
    preds = pd.DataFrame(rng.dirichlet(np.ones(3), size=len(s)), columns=CLASSES)
    preds["path"] = s[schema.RELPATH].to_numpy()[order]
    preds.to_csv(tmp_path / "p.csv", index=False)
    emb = rng.normal(size=(len(s), 16)).astype(np.float32)
    np.save(tmp_path / "e.npy", emb)
    run = _analyze(
        tmp_path, folder32, predictions=str(tmp_path / "p.csv"), embeddings=str(tmp_path / "e.npy")
    )
    by_path = dict(zip(preds["path"], emb, strict=True))
    want = np.stack([by_path[r] for r in run.samples[schema.RELPATH]])
    np.testing.assert_allclose(run.embeddings.astype(np.float32), want, atol=1e-2)
    assert run.manifest["has_embeddings"] and "e.npy" in run.manifest["embedding_source"]
    assert run.manifest["sections"]["embedding_map"]["status"] == "ok"
    np.save(tmp_path / "short.npy", emb[:-1])
    with pytest.raises(ValueError, match=rf"shape \[{len(s) - 1}, 16\]; expected \[{len(s)}, D\]"):
        _analyze(
            tmp_path,
            folder32,
            predictions=str(tmp_path / "p.csv"),
            embeddings=str(tmp_path / "short.npy"),
        )


def test_embeddings_file_needs_predictions(tmp_path, folder32):
    np.save(tmp_path / "e.npy", np.zeros((12, 4)))
    ckpt = save_tiny_onnx(tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="--embeddings goes with --predictions"):
        _analyze(tmp_path, folder32, model=str(ckpt), embeddings=str(tmp_path / "e.npy"))


def test_squeezenet_conv_head_gives_pooled_embeddings(tmp_path, folder32):
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.squeezenet1_1(num_classes=3).eval()
    torch.save(m.state_dict(), tmp_path / "sq.pt")
    run = _analyze(
        tmp_path, folder32, model=str(tmp_path / "sq.pt"), arch="squeezenet1_1", resize=64,
        no_crop=True,
    )  # fmt: skip
    assert run.embeddings is not None and run.embeddings.shape[1] == 512
    assert "averaged over its positions" in run.manifest["embedding_source"]
    from analysis.explain.cam_views import model_input
    from analysis.loading.models import Preprocessing

    x = model_input(run.samples[schema.PATH].iloc[0], Preprocessing(64, None))[1]
    with torch.no_grad():
        want = m.features(x[None]).mean(dim=(2, 3))[0].numpy()
    np.testing.assert_allclose(run.embeddings[0].astype(np.float32), want, rtol=2e-2, atol=2e-2)


def test_sequential_head_with_dropout_gives_the_features_it_reads(tmp_path, folder32):
    import torchvision

    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=3)
    m.fc = torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(512, 3))
    torch.save(m.eval(), tmp_path / "full.pt")  # a whole module: only with --trust-checkpoint
    run = _analyze(
        tmp_path, folder32, model=str(tmp_path / "full.pt"), trust_checkpoint=True, resize=32,
        no_crop=True,
    )  # fmt: skip
    from analysis.explain.cam_views import model_input
    from analysis.loading.models import Preprocessing

    x = model_input(run.samples[schema.PATH].iloc[0], Preprocessing(32, None))[1]
    with torch.no_grad():
        feats = torch.flatten(m.avgpool(m.layer4(m.layer3(m.layer2(m.layer1(
            m.maxpool(m.relu(m.bn1(m.conv1(x[None]))))))))), 1)[0].numpy()  # fmt: skip
    np.testing.assert_allclose(run.embeddings[0].astype(np.float32), feats, rtol=2e-2, atol=2e-2)
    assert "fc.1" in run.manifest["embedding_source"]
