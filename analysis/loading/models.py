"""Loading a classifier of any family, and how an image becomes its input.

Families (one small registry entry each, :mod:`analysis.loading.families`): a torchvision
architecture + state_dict, TorchScript or (opt-in) a pickled module, handled here; a timm
architecture + state_dict (``--arch timm/<name>``), a Hugging Face transformers
``save_pretrained`` folder, an ONNX file. Every family gives the same :class:`LoadedModel`: an
``nn.Module`` mapping a normalised float batch to logits, plus where its embeddings come from.

Checkpoints are loaded with ``torch.load(weights_only=True)``: a full pickled ``nn.Module`` would run
arbitrary code when unpickled, so it is refused unless the caller passes ``trust_checkpoint=True``
(the CLI's ``--trust-checkpoint``). The number of classes is read from the checkpoint itself and
checked against the class list, and both numbers are named when they differ.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as given; the message says why and what to do."""


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes a model input.

    ``resize`` is the shorter side after resizing; with ``crop`` None the image is resized to a
    ``resize`` x ``resize`` square instead (no crop), else centre-cropped to ``crop`` x ``crop``
    (with ``squash``, the resize goes to a square first, as DeiT's and timm's "squash" mode do).
    ``interpolation`` is the resampling filter (antialiased, torchvision's tensor resize, within
    one grey level of PIL's). ``mean``/``std`` normalise RGB in [0, 1]. ``exif_transpose``
    applies a file's EXIF orientation tag before anything else (off: the pixels as stored, as
    torchvision's default loader reads them).
    """

    resize: int = 256
    crop: int | None = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    exif_transpose: bool = False
    interpolation: str = "bilinear"  # or "bicubic" (timm's and many HF models' default)
    squash: bool = False  # resize to resize x resize (aspect not kept) before the crop

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation {self.interpolation!r} is not supported; valid: {INTERPOLATIONS}"
            )

    @property
    def input_size(self) -> int:
        """Side of the square tensor the model sees, in pixels."""
        return self.crop if self.crop is not None else self.resize

    def to_dict(self) -> dict:
        return {
            "resize": self.resize,
            "crop": self.crop,
            "mean": list(self.mean),
            "std": list(self.std),
            "exif_transpose": self.exif_transpose,
            "interpolation": self.interpolation,
            "squash": self.squash,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(
            resize=int(d["resize"]),
            crop=None if d.get("crop") is None else int(d["crop"]),
            mean=tuple(float(x) for x in d.get("mean", IMAGENET_MEAN)),
            std=tuple(float(x) for x in d.get("std", IMAGENET_STD)),
            exif_transpose=bool(d.get("exif_transpose", False)),
            interpolation=str(d.get("interpolation", "bilinear")),
            squash=bool(d.get("squash", False)),
        )

    def describe(self) -> str:
        """One line for people: what happens to every image before the model sees it."""
        geometry = (
            f"resize to {self.resize}x{self.resize} (no crop)"
            if self.crop is None
            else (
                f"resize to {self.resize}x{self.resize}, centre crop {self.crop}x{self.crop}"
                if self.squash
                else f"resize shorter side to {self.resize}, centre crop {self.crop}x{self.crop}"
            )
        )
        geometry += f" ({self.interpolation})"
        nums = ", ".join(f"{v:g}" for v in self.mean), ", ".join(f"{v:g}" for v in self.std)
        exif = (
            "EXIF orientation applied (--exif-transpose)"
            if self.exif_transpose
            else "EXIF orientation ignored, as torchvision's default loader does"
        )
        return f"{geometry}; RGB in [0, 1], mean ({nums[0]}), std ({nums[1]}); {exif}"


@dataclass
class LoadedModel:
    """A model ready for inference (in ``eval()`` mode) and what is known about it.

    Attributes
    ----------
    model : torch.nn.Module
        Normalised float ``[B, 3, S, S]`` -> logits ``[B, C]`` (a tensor, whatever the family
        returns natively). For ONNX it wraps the onnxruntime session and has no gradients.
    family : str
        A key of :data:`analysis.loading.families.FAMILIES`.
    embedding_head : torch.nn.Module or None
        The module whose *input* is the embedding (captured by a forward pre-hook in the pass);
        None when the family gives embeddings another way (ONNX) or not at all.
    embedding_pool : bool
        Average the head's input over its spatial dimensions (a convolutional head).
    embedding_source : str or None
        Where the embeddings come from, in words, for the manifest; None: no embeddings.
    gradients : bool
        Whether gradient CAMs can run (False for ONNX; TorchScript takes no hooks).
    notes : list of str
        Things the user should know about how the model was read (go to the run's warnings).
    """

    model: Any  # torch.nn.Module or torch.jit.ScriptModule
    arch: str | None
    num_classes: int
    kind: str  # "state_dict" | "torchscript" | "pickled_module" | "hf_folder" | "onnx"
    path: str
    sha256: str
    sidecar: dict = field(default_factory=dict)
    family: str = "torchvision"
    embedding_head: Any = None
    embedding_pool: bool = False
    embedding_source: str | None = None
    gradients: bool = True
    class_names: list[str] | None = None  # names the model itself carries (HF id2label)
    preprocessing: Preprocessing | None = None  # the family's defaults for this model
    notes: list[str] = field(default_factory=list)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_path(path: str | Path) -> str:
    """sha256 of a model file, or of a model folder (each weight/config file's name and sha256,
    in name order)."""
    p = Path(path)
    if not p.is_dir():
        return sha256_file(p)
    from .families import model_folder_files

    h = hashlib.sha256()
    for f in model_folder_files(p):
        h.update(f"{f.name}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def read_sidecar(path: str | Path) -> dict:
    """The JSON beside a checkpoint (``<stem>.json``), if any: arch, classes, preprocessing.

    For a model folder, ``<folder>.json`` beside it."""
    p = Path(path)
    side = p.with_suffix(".json") if not p.is_dir() else p.parent / f"{p.name}.json"
    if side.exists() and side != p:
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"sidecar {side} is not valid JSON: {e}") from None
    return {}


def torchvision_architectures() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def default_preprocessing(
    arch: str | None, *, path: str | Path | None = None, sidecar: dict | None = None
) -> Preprocessing:
    """The model family's own preprocessing (read offline, nothing downloaded): torchvision's
    documented transform for ``arch``, timm's data config, a Hugging Face folder's image
    processor, an ONNX graph's input size; ImageNet's 256/224 when unknown."""
    if path is None:
        return torchvision_preprocessing(arch)
    from .families import family_for

    side = sidecar if sidecar is not None else read_sidecar(path)
    p = Path(path).expanduser()
    return family_for(p, arch, side).default_preprocessing(p, arch, side)


def model_class_names(path: str | Path, arch: str | None, sidecar: dict) -> list[str] | None:
    """Class names the model carries itself (a Hugging Face config's ``id2label``), else None."""
    from .families import family_for

    p = Path(path).expanduser()
    if not p.exists():
        return None
    return family_for(p, arch, sidecar).class_names(p, arch, sidecar)


def torchvision_preprocessing(arch: str | None) -> Preprocessing:
    """The preprocessing torchvision's weights for ``arch`` document (resize, crop, resampling,
    mean/std); ImageNet's 256/224 bilinear when unknown."""
    if arch is None:
        return Preprocessing()
    try:
        import torchvision

        weights = torchvision.models.get_model_weights(arch).DEFAULT
        t = weights.transforms()
        crop = t.crop_size[0] if isinstance(t.crop_size, list | tuple) else int(t.crop_size)
        resize = t.resize_size[0] if isinstance(t.resize_size, list | tuple) else int(t.resize_size)
        interp = getattr(getattr(t, "interpolation", None), "value", "bilinear")
        return Preprocessing(
            resize=int(resize),
            crop=int(crop),
            mean=tuple(t.mean),
            std=tuple(t.std),
            interpolation=interp if interp in INTERPOLATIONS else "bilinear",
        )
    except Exception:
        return Preprocessing()


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.startswith("code/") for n in z.namelist())


def _unwrap_state_dict(obj: Any) -> dict:
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model", "net", "weights"):
            inner = obj.get(key)
            if isinstance(inner, dict) and inner and all(isinstance(k, str) for k in inner):
                obj = inner
                break
    import torch

    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(
            "the checkpoint holds no state_dict (no tensors found under the top level or under"
            " 'state_dict' / 'model_state_dict' / 'model')"
        )
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    for prefix in ("module.", "model.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def _head_name(arch: str) -> str:
    """Name of the module that produces the logits (last Linear, or last Conv2d for SqueezeNet)."""
    import torch
    import torchvision

    with torch.device("meta"):
        m = torchvision.models.get_model(arch, weights=None)
    head = None
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.Linear):
            head = name
    if head is None:  # squeezenet's classifier is a 1x1 conv
        for name, mod in m.named_modules():
            if isinstance(mod, torch.nn.Conv2d):
                head = name
    return head


def check_arch(arch: str) -> str:
    names = torchvision_architectures()
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5)
        hint = f"; did you mean {close}?" if close else f"; known: {names[:12]}..."
        raise CheckpointError(f"unknown torchvision architecture {arch!r}{hint}")
    return arch


def load_model(
    path: str | Path,
    *,
    arch: str | None = None,
    num_classes: int | None = None,
    trust_checkpoint: bool = False,
    device: str = "cpu",
    onnx_output: str | None = None,
    onnx_embeddings: str | None = None,
) -> LoadedModel:
    """Load a classifier of any family (:data:`analysis.loading.families.FAMILIES`).

    Parameters
    ----------
    path : path
        ``.pt``/``.pth``/``.bin`` (state_dict or TorchScript), ``.safetensors``, ``.onnx``, or a
        Hugging Face ``save_pretrained`` folder.
    arch : str, optional
        torchvision architecture name (``resnet18``, ``mobilenet_v3_small``, ...) or
        ``timm/<name>``; needed for a state_dict unless a sidecar ``<stem>.json`` names it.
    num_classes : int, optional
        The length of the class list; checked against the checkpoint's output size.
    trust_checkpoint : bool
        Allow unpickling a full ``nn.Module`` (runs code from the file). Off by default.
    device : str
        Where the model runs (``cpu``, ``cuda``; for ONNX, which onnxruntime provider).
    onnx_output, onnx_embeddings : str, optional
        ONNX only: the names of the logits output and of the embedding value.
    """
    from .families import family_for

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    sidecar = read_sidecar(path)
    arch = arch or sidecar.get("arch")
    family = family_for(path, arch, sidecar)
    loaded = family.load(
        path,
        arch=arch,
        sidecar=sidecar,
        num_classes=num_classes,
        trust_checkpoint=trust_checkpoint,
        device=device,
        options={"onnx_output": onnx_output, "onnx_embeddings": onnx_embeddings},
    )
    loaded.preprocessing = family.default_preprocessing(path, arch, sidecar)
    return loaded


def read_state_dict(path: Path, *, trust_checkpoint: bool = False) -> Any:
    """The tensors of a ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` checkpoint as a plain
    state_dict (wrappers such as ``{"state_dict": ...}`` and ``module.`` prefixes removed), or,
    only with ``trust_checkpoint``, the ``nn.Module`` a full pickle holds."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as e:  # SafetensorError: truncated, corrupt, not safetensors
            raise CheckpointError(
                f"{path} is not a readable safetensors file (truncated or corrupt?): {_detail(e)}"
            ) from None
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        if not _needs_unpickling(e):
            raise CheckpointError(
                f"{path} cannot be read as a PyTorch checkpoint (truncated or corrupt?):"
                f" {_detail(e)}"
            ) from None
        if not trust_checkpoint:
            raise CheckpointError(
                f"{path.name} is not a plain state_dict: loading it would unpickle Python objects,"
                " which can run arbitrary code. If you trust where it came from, re-run with"
                f" --trust-checkpoint (trust_checkpoint=True). Detail: {_detail(e)}"
            ) from None
        try:
            obj = torch.load(str(path), map_location="cpu", weights_only=False)
        except Exception as e2:
            raise CheckpointError(f"{path} cannot be unpickled: {_detail(e2)}") from None
        if isinstance(obj, torch.nn.Module):
            return obj
    return _unwrap_state_dict(obj)


def _load_torchvision(
    path: Path,
    *,
    arch: str | None,
    sidecar: dict,
    num_classes: int | None,
    trust_checkpoint: bool,
    device: str,
) -> LoadedModel:
    """The torchvision family: an architecture + state_dict, TorchScript, or a trusted pickle."""
    import torch

    digest = sha256_file(path)

    if path.suffix.lower() != ".safetensors" and _is_torchscript(path):
        try:
            model = torch.jit.load(str(path), map_location=device)
        except Exception as e:
            raise CheckpointError(
                f"{path}: a zip archive with a code/ entry, as TorchScript files are, but"
                f" TorchScript cannot load it (corrupt, or not TorchScript): {_detail(e)}"
            ) from None
        model.eval()
        n_out = _probe_outputs(model, sidecar)
        _check_classes(n_out, num_classes, "the TorchScript model's output")
        return LoadedModel(
            model,
            arch,
            n_out,
            "torchscript",
            str(path),
            digest,
            sidecar,
            gradients=False,
            notes=[
                "TorchScript models take no hooks: no embeddings and no gradient CAMs"
                " (occlusion maps only)"
            ],
        )

    sd = read_state_dict(path, trust_checkpoint=trust_checkpoint)
    if isinstance(sd, torch.nn.Module):
        obj = sd
        obj.eval().to(device)
        n_out = _probe_outputs(obj, sidecar)
        _check_classes(n_out, num_classes, "the pickled model's output")
        head, source = embedding_head(obj)
        return LoadedModel(
            obj,
            arch,
            n_out,
            "pickled_module",
            str(path),
            digest,
            sidecar,
            embedding_head=head,
            embedding_source=source,
        )

    if arch is None:
        raise CheckpointError(
            f"{path.name} is a state_dict: say which torchvision architecture it belongs to with"
            ' --arch (e.g. resnet18, or timm/<name> for a timm model), or put {"arch": ...} in'
            " a sidecar JSON next to it"
        )
    check_arch(arch)
    head = _head_name(arch)
    key = f"{head}.weight"
    if key not in sd:
        raise CheckpointError(
            f"the checkpoint has no {key!r}, the output layer of {arch}: is it really a {arch}"
            f" state_dict? First keys: {list(sd)[:5]}"
        )
    n_out = int(sd[key].shape[0])
    _check_classes(n_out, num_classes, f"the checkpoint ({key!r} is {list(sd[key].shape)})")
    import torchvision

    model = torchvision.models.get_model(arch, weights=None, num_classes=n_out)
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    expected = model.state_dict()
    wrong = [
        f"{k}: {list(v.shape)} in the file, {list(expected[k].shape)} in {arch}"
        for k, v in sd.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise CheckpointError(
            f"{path} does not fit {arch}: {len(wrong)} tensor(s) have the wrong shape ("
            + "; ".join(wrong[:3])
            + ("; ..." if len(wrong) > 3 else "")
            + "). Check --arch, or that this is the right checkpoint"
        )
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"the checkpoint does not fit {arch}: {len(result.missing_keys)} missing keys"
            f" (e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)} unexpected"
            f" (e.g. {result.unexpected_keys[:3]}). Check --arch."
        )
    model.eval().to(device)
    emb_head, source = embedding_head(model)
    return LoadedModel(
        model,
        arch,
        n_out,
        "state_dict",
        str(path),
        digest,
        sidecar,
        embedding_head=emb_head,
        embedding_source=source,
    )


def _needs_unpickling(e: Exception) -> bool:
    """Did ``torch.load(weights_only=True)`` refuse the file because it holds Python objects (as
    opposed to failing on a truncated or corrupt file)?"""
    import pickle

    msg = str(e)
    return isinstance(e, pickle.UnpicklingError) and (
        "Weights only load failed" in msg or "Unsupported global" in msg or "weights_only" in msg
    )


def _detail(e: Exception, limit: int = 200) -> str:
    """The first line of an exception, without terminal colour codes, at most ``limit`` chars."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    first = text.splitlines()[0].strip() if text else type(e).__name__
    if len(first) > limit and ". " in first:  # long library messages: their first sentence
        first = first.split(". ")[0]
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _check_classes(n_out: int, num_classes: int | None, what: str) -> None:
    if num_classes is not None and n_out != num_classes:
        raise CheckpointError(
            f"{what} has {n_out} classes but the class list has {num_classes}: they must match"
            " (check --classes, the label column, or that this is the right checkpoint)"
        )


def _probe_outputs(model, sidecar: dict) -> int:
    import torch

    size = int(sidecar.get("input_size", 224))
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.inference_mode():
        out = model(torch.zeros(1, 3, size, size, device=dev))
    if isinstance(out, tuple | list):
        out = out[0]
    return int(out.shape[-1])


def find_head(model) -> Any:
    """The last ``nn.Linear`` of a model (its input is the penultimate embedding), or None."""
    import torch

    head = None
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            head = mod
    return head


def embedding_head(model) -> tuple[Any, str | None]:
    """(module whose input is the embedding, where that is in words) for a torch classifier.

    The last ``nn.Linear`` (its input: the penultimate features, also behind a ``Sequential``
    head with dropout); without one, the last 1x1 ``Conv2d`` of a convolutional head
    (SqueezeNet), whose input map the pass averages over its positions; (None, None) when
    neither exists."""
    import torch

    names = {id(m): n for n, m in model.named_modules()}
    head = find_head(model)
    if head is not None:
        return head, f"input of {names.get(id(head), 'the last nn.Linear')} (the last nn.Linear)"
    conv = None
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d) and tuple(mod.kernel_size) == (1, 1):
            conv = mod
    if conv is not None:
        return conv, (
            f"input of {names.get(id(conv), 'the last 1x1 convolution')} (a convolutional"
            " classifier head), averaged over its positions"
        )
    return None, None


def load_run_model(manifest: dict, *, device: str = "cpu") -> tuple[LoadedModel, Preprocessing]:
    """The model and preprocessing a run was made with (for CAMs and robustness passes).

    Raises :class:`CheckpointError` when the run was built from a predictions file or the
    checkpoint moved or changed since (its sha256 is checked)."""
    info = (manifest.get("inputs") or {}).get("model")
    if not info:
        raise CheckpointError("this run was built from a predictions file: it has no model")
    path = Path(info["path"])
    if not path.exists():
        raise CheckpointError(f"the run's checkpoint {path} is gone; CAMs need the model file")
    if info.get("sha256") and sha256_path(path) != info["sha256"]:
        raise CheckpointError(f"{path} changed since the run was made (sha256 differs)")
    cfg = manifest.get("config", {})
    loaded = load_model(
        path,
        arch=info.get("arch"),
        num_classes=len(manifest["class_names"]),
        trust_checkpoint=bool(cfg.get("trust_checkpoint")),
        device=device,
        onnx_output=cfg.get("onnx_output"),
        onnx_embeddings=cfg.get("onnx_embeddings"),
    )
    return loaded, Preprocessing.from_dict(manifest["preprocessing"])
