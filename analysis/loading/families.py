"""Model families: one small registry entry per way a classifier can arrive.

Every family turns a model source (a file or a folder, ``--arch`` and the sidecar JSON) into the
same :class:`~analysis.loading.models.LoadedModel`: an ``nn.Module`` that maps a normalised
float batch ``[B, 3, S, S]`` to logits ``[B, C]``, the module whose input is the embedding, and
the family's own preprocessing defaults. The pass, CAMs and robustness never branch on the
family: a new family is one subclass of :class:`Family` added to :data:`FAMILIES`.

- ``torchvision``: an architecture name + state_dict / safetensors, TorchScript, or a pickled
  module behind ``--trust-checkpoint`` (:func:`analysis.loading.models.load_model`'s own path);
- ``timm``: ``--arch timm/<name>`` (or the sidecar) + state_dict / safetensors, built with
  ``pretrained=False`` and the checkpoint's class count; preprocessing from timm's data config;
- ``hf``: a Hugging Face transformers ``save_pretrained`` folder, read with
  ``local_files_only=True`` and never ``trust_remote_code``; class names from ``id2label``;
  preprocessing from the folder's image processor;
- ``onnx``: an ``.onnx`` file run by onnxruntime (batched, CPU or CUDA provider); the logits
  output found by its size or named, embeddings from a named or traced value.

Nothing here touches the network: no family downloads weights or configs.
"""

from __future__ import annotations

import difflib
import importlib
import math
from pathlib import Path
from typing import Any

from .models import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CheckpointError,
    LoadedModel,
    Preprocessing,
    read_state_dict,
)

__all__ = [
    "FAMILIES",
    "Family",
    "MissingExtra",
    "family_for",
    "require",
]


class MissingExtra(CheckpointError):
    """A family's package is not installed; the message names the pip extra."""


def require(module: str, extra: str, what: str) -> Any:
    """Import ``module`` or raise :class:`MissingExtra` saying which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(
            f"{what} models need the '{module}' package: pip install 'errorscope[{extra}]'"
        ) from None


class Family:
    """One way a classifier can arrive. Subclasses override the four methods below.

    Attributes
    ----------
    name : str
        Registry key, recorded in the manifest.
    extra : str or None
        The pip extra that installs what the family needs (``errorscope[<extra>]``).
    """

    name = "base"
    extra: str | None = None

    def claims(self, path: Path, arch: str | None, sidecar: dict) -> bool:
        """Whether this family reads the model at ``path`` (cheap: no weights are read)."""
        raise NotImplementedError

    def load(
        self,
        path: Path,
        *,
        arch: str | None,
        sidecar: dict,
        num_classes: int | None,
        trust_checkpoint: bool,
        device: str,
        options: dict,
    ) -> LoadedModel:
        """The model in ``eval()`` mode on ``device``; checks the class count."""
        raise NotImplementedError

    def default_preprocessing(self, path: Path, arch: str | None, sidecar: dict) -> Preprocessing:
        """The family's own preprocessing for this model (read offline, no weights needed)."""
        return Preprocessing()

    def class_names(self, path: Path, arch: str | None, sidecar: dict) -> list[str] | None:
        """Class names the model itself carries (None: it carries none)."""
        return None


def check_classes(n_out: int, num_classes: int | None, what: str) -> None:
    if num_classes is not None and n_out != num_classes:
        raise CheckpointError(
            f"{what} has {n_out} classes but the class list has {num_classes}: they must match"
            " (check --classes, the label column, or that this is the right checkpoint)"
        )


# ----------------------------------------------------------------------------- torchvision


class TorchvisionFamily(Family):
    """torchvision architectures, TorchScript and trusted pickles (the default family)."""

    name = "torchvision"

    def claims(self, path, arch, sidecar) -> bool:
        return True  # the fallback: the last entry of FAMILIES

    def load(self, path, *, arch, sidecar, num_classes, trust_checkpoint, device, options):
        from .models import _load_torchvision

        return _load_torchvision(
            path,
            arch=arch,
            sidecar=sidecar,
            num_classes=num_classes,
            trust_checkpoint=trust_checkpoint,
            device=device,
        )

    def default_preprocessing(self, path, arch, sidecar) -> Preprocessing:
        from .models import torchvision_preprocessing

        return torchvision_preprocessing(arch)


# ----------------------------------------------------------------------------- timm

TIMM_PREFIX = "timm/"
_JSON_SCALARS = (str, int, float, bool, type(None))


def _model_kwargs(sidecar: dict) -> dict:
    """The sidecar's ``model_kwargs`` (e.g. ``{"img_size": 112, "depth": 6}``) for timm's
    ``create_model``: plain JSON values only, never a model-loading switch."""
    kw = sidecar.get("model_kwargs") or {}
    if not isinstance(kw, dict):
        raise CheckpointError(f"sidecar 'model_kwargs' must be an object, got {kw!r}")
    for k, v in kw.items():
        ok = isinstance(v, _JSON_SCALARS) or (
            isinstance(v, list) and all(isinstance(x, _JSON_SCALARS) for x in v)
        )
        if not ok:
            raise CheckpointError(f"sidecar model_kwargs[{k!r}] = {v!r}: expected a plain value")
        if k in ("pretrained", "pretrained_cfg", "pretrained_cfg_overlay", "checkpoint_path"):
            raise CheckpointError(
                f"sidecar model_kwargs may not set {k!r}: errorscope builds timm models with"
                " pretrained=False and loads only the checkpoint you name"
            )
    return dict(kw)


def _timm_name(arch: str) -> str:
    return arch[len(TIMM_PREFIX) :] if arch.startswith(TIMM_PREFIX) else arch


class TimmFamily(Family):
    """``--arch timm/<name>`` + a state_dict / safetensors checkpoint."""

    name = "timm"
    extra = "timm"

    def claims(self, path, arch, sidecar) -> bool:
        return bool(arch) and arch.startswith(TIMM_PREFIX)

    def _timm(self):
        return require("timm", "timm", "timm")

    def _check_name(self, arch: str) -> str:
        timm = self._timm()
        name = _timm_name(arch)
        if not name or not timm.is_model(name):
            close = difflib.get_close_matches(name, timm.list_models(), n=5)
            hint = f"; did you mean {['timm/' + c for c in close]}?" if close else ""
            raise CheckpointError(f"unknown timm architecture {name!r}{hint}")
        return name

    def _build(self, name: str, kwargs: dict, num_classes: int | None, *, meta: bool):
        import torch

        timm = self._timm()
        extra = {} if num_classes is None else {"num_classes": num_classes}
        try:
            if meta:
                with torch.device("meta"):
                    return timm.create_model(name, pretrained=False, **kwargs, **extra)
            return timm.create_model(name, pretrained=False, **kwargs, **extra)
        except TypeError as e:
            raise CheckpointError(f"timm/{name} does not take these model_kwargs: {e}") from None

    def load(self, path, *, arch, sidecar, num_classes, trust_checkpoint, device, options):
        name = self._check_name(arch)
        kwargs = _model_kwargs(sidecar)
        sd = read_state_dict(path, trust_checkpoint=trust_checkpoint)
        if not isinstance(sd, dict):
            raise CheckpointError(
                f"{path.name} holds a pickled module, not a state_dict: drop --arch to load it"
                " as a torchvision/pickled model"
            )
        probe = self._build(name, kwargs, None, meta=True)
        heads = probe.pretrained_cfg.get("classifier") or "head"
        head = heads[0] if isinstance(heads, list | tuple) else heads
        key = f"{head}.weight"
        if key not in sd:
            raise CheckpointError(
                f"the checkpoint has no {key!r}, the classifier of timm/{name}: is it really a"
                f" timm/{name} state_dict? First keys: {list(sd)[:5]}"
            )
        n_out = int(sd[key].shape[0])
        check_classes(n_out, num_classes, f"the checkpoint ({key!r} is {list(sd[key].shape)})")
        model = self._build(name, kwargs, n_out, meta=False)
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
        result = model.load_state_dict(sd, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(
                f"the checkpoint does not fit timm/{name}"
                f"{' with ' + str(kwargs) if kwargs else ''}: {len(result.missing_keys)} missing"
                f" keys (e.g. {result.missing_keys[:3]}), {len(result.unexpected_keys)}"
                f" unexpected (e.g. {result.unexpected_keys[:3]}). Check --arch and the"
                " sidecar's model_kwargs."
            )
        model.eval().to(device)
        clf = model.get_classifier()
        if isinstance(clf, list | tuple):  # distilled models: (head, head_dist)
            clf = clf[0]
        from .models import sha256_file

        return LoadedModel(
            model,
            f"{TIMM_PREFIX}{name}",
            n_out,
            "state_dict",
            str(path),
            sha256_file(path),
            sidecar,
            family=self.name,
            embedding_head=clf,
            embedding_source=f"timm pre-logits: the input of {head} (forward_head(pre_logits=True))",
        )

    def default_preprocessing(self, path, arch, sidecar) -> Preprocessing:
        timm = self._timm()
        name = self._check_name(arch)
        kwargs = _model_kwargs(sidecar)
        probe = self._build(name, kwargs, None, meta=True)
        cfg = timm.data.resolve_data_config({}, model=probe)
        size = int(cfg["input_size"][-1])
        pe = getattr(probe, "patch_embed", None)
        fixed = getattr(pe, "img_size", None)
        if fixed is not None and not getattr(pe, "dynamic_img_size", False):
            # the model was built for this size (model_kwargs may change it; the data config
            # still names the pretrained one): positional embeddings fit only this input
            size = int(fixed[-1] if isinstance(fixed, list | tuple) else fixed)
        crop_pct = float(cfg.get("crop_pct") or 1.0)
        interp = cfg.get("interpolation", "bilinear")
        return Preprocessing(
            resize=int(math.floor(size / crop_pct)),
            crop=size,
            mean=tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN)),
            std=tuple(float(v) for v in cfg.get("std", IMAGENET_STD)),
            interpolation=interp if interp in ("bilinear", "bicubic", "nearest") else "bilinear",
            squash=cfg.get("crop_mode") == "squash",
        )


# ----------------------------------------------------------------------------- Hugging Face

_PIL_RESAMPLE = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def _logits_only(_module, _args, output):
    """Forward hook: a transformers model returns an output object; the rest of errorscope
    (the pass, CAM targets, faithfulness) expects the logits tensor."""
    return output.logits if hasattr(output, "logits") else output


def _size_get(size, key):
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(key)
    return getattr(size, key, None)


class HuggingFaceFamily(Family):
    """A local ``save_pretrained`` folder of a transformers image classifier."""

    name = "hf"
    extra = "hf"

    def claims(self, path, arch, sidecar) -> bool:
        return path.is_dir()

    def _transformers(self):
        tr = require("transformers", "hf", "Hugging Face transformers")
        tr.logging.set_verbosity_error()
        try:
            tr.utils.logging.disable_progress_bar()
        except AttributeError:  # pragma: no cover - older versions
            pass
        return tr

    def _config(self, path: Path):
        if not (path / "config.json").is_file():
            raise CheckpointError(
                f"{path} is a folder without config.json: a folder model must be a Hugging Face"
                " transformers save_pretrained folder (config.json + weights)"
            )
        tr = self._transformers()
        try:
            cfg = tr.AutoConfig.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False
            )
        except Exception as e:  # noqa: BLE001 - any config problem is the user's folder
            raise CheckpointError(f"cannot read {path / 'config.json'}: {_first_line(e)}") from None
        if getattr(cfg, "auto_map", None):
            raise CheckpointError(
                f"{path / 'config.json'} asks for custom model code (auto_map): errorscope never"
                " runs code from a model folder (trust_remote_code stays off)"
            )
        return cfg

    def load(self, path, *, arch, sidecar, num_classes, trust_checkpoint, device, options):
        import torch

        tr = self._transformers()
        cfg = self._config(path)
        has_st = any(path.glob("*.safetensors"))
        try:
            model = tr.AutoModelForImageClassification.from_pretrained(
                str(path),
                local_files_only=True,
                trust_remote_code=False,
                use_safetensors=True if has_st else None,
                weights_only=True,  # pytorch_model.bin: torch.load(weights_only=True), as ours
            )
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"cannot load {path} as an image classifier"
                f" ({type(cfg).__name__}, model_type {getattr(cfg, 'model_type', '?')!r}):"
                f" {_first_line(e)}"
            ) from None
        model = model.float().eval().to(device)
        model.register_forward_hook(_logits_only)
        n_out = int(cfg.num_labels)
        check_classes(n_out, num_classes, f"the model folder's config (num_labels={n_out})")
        names = _id2label_names(cfg)
        head = None
        for attr in ("classifier", "cls_classifier", "fc", "head"):
            mod = getattr(model, attr, None)
            if isinstance(mod, torch.nn.Linear):
                head = (attr, mod)
                break
        if head is None:
            from .models import find_head

            lin = find_head(model)
            head = ("the last nn.Linear", lin) if lin is not None else None
        from .models import sha256_path

        return LoadedModel(
            model,
            getattr(cfg, "model_type", None),
            n_out,
            "hf_folder",
            str(path),
            sha256_path(path),
            sidecar,
            family=self.name,
            embedding_head=head[1] if head else None,
            embedding_source=None
            if head is None
            else f"Hugging Face pooled output: the input of {head[0]}",
            class_names=names,
        )

    def default_preprocessing(self, path, arch, sidecar) -> Preprocessing:
        if not (path / "preprocessor_config.json").is_file():
            return Preprocessing()
        tr = self._transformers()
        try:
            proc = tr.AutoImageProcessor.from_pretrained(
                str(path), local_files_only=True, trust_remote_code=False
            )
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(
                f"cannot read {path / 'preprocessor_config.json'}: {_first_line(e)}"
            ) from None
        return processor_preprocessing(proc, where=str(path / "preprocessor_config.json"))

    def class_names(self, path, arch, sidecar) -> list[str] | None:
        return _id2label_names(self._config(path))


def model_folder_files(path: Path) -> list[Path]:
    """The files of a model folder that determine its outputs, sorted by name."""
    keep = (".json", ".safetensors", ".bin")
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in keep)


def _id2label_names(cfg) -> list[str] | None:
    """Class names from ``id2label``, or None when they are transformers' placeholders."""
    id2label = getattr(cfg, "id2label", None) or {}
    n = int(cfg.num_labels)
    try:
        names = [str(id2label[i] if i in id2label else id2label[str(i)]) for i in range(n)]
    except KeyError:
        return None
    if all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        return None
    return names


def processor_preprocessing(proc, *, where: str) -> Preprocessing:
    """A transformers image processor's settings as a :class:`Preprocessing`.

    ``size`` ``{"height", "width"}`` resizes to that square (squash); ``{"shortest_edge"}``
    resizes the shorter side; ``crop_pct`` (ConvNeXt) resizes to ``shortest_edge / crop_pct``
    then crops ``shortest_edge`` (below 384 px, as the processor does); ``do_center_crop`` with
    ``crop_size`` crops. Rectangular inputs are refused (the pass feeds squares).
    """
    size = getattr(proc, "size", None)
    do_resize = getattr(proc, "do_resize", True)
    h, w = _size_get(size, "height"), _size_get(size, "width")
    short = _size_get(size, "shortest_edge")
    crop = None
    squash = False
    if h is not None or w is not None:
        if h != w:
            raise CheckpointError(
                f"{where}: the model expects {h}x{w} inputs; errorscope feeds square inputs"
                " (set resize/crop in a sidecar or on the command line)"
            )
        resize, squash = int(h), True
    elif short is not None:
        resize = int(short)
        crop_pct = getattr(proc, "crop_pct", None)
        if crop_pct:
            if resize < 384:
                resize, crop = int(short / crop_pct), int(short)
            else:
                squash = True
    else:
        resize = 224
    if not do_resize:
        squash = False
    if getattr(proc, "do_center_crop", False):
        cs = getattr(proc, "crop_size", None)
        ch, cw = _size_get(cs, "height"), _size_get(cs, "width")
        if ch is not None:
            if ch != cw:
                raise CheckpointError(f"{where}: crop {ch}x{cw} is not square")
            crop = int(ch)
    if crop is None:
        squash = False  # crop None already means "resize to a square"
    rescale = getattr(proc, "rescale_factor", 1 / 255) if getattr(proc, "do_rescale", True) else 1
    if not math.isclose(float(rescale), 1 / 255, rel_tol=1e-6):
        raise CheckpointError(
            f"{where}: rescale_factor {rescale} is not 1/255; errorscope feeds RGB in [0, 1]"
        )
    if getattr(proc, "do_normalize", True):
        mean = tuple(float(v) for v in (getattr(proc, "image_mean", None) or IMAGENET_MEAN))
        std = tuple(float(v) for v in (getattr(proc, "image_std", None) or IMAGENET_STD))
    else:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    resample = getattr(proc, "resample", 2)
    code = int(getattr(resample, "value", resample)) if resample is not None else 2
    return Preprocessing(
        resize=resize,
        crop=crop,
        mean=mean,
        std=std,
        interpolation=_PIL_RESAMPLE.get(code, "bilinear"),
        squash=squash,
    )


# ----------------------------------------------------------------------------- ONNX


class OnnxFamily(Family):
    """An ``.onnx`` file, run with onnxruntime."""

    name = "onnx"
    extra = "onnx"

    def claims(self, path, arch, sidecar) -> bool:
        return path.suffix.lower() == ".onnx"

    def load(self, path, *, arch, sidecar, num_classes, trust_checkpoint, device, options):
        from .onnx_model import OnnxClassifier

        clf = OnnxClassifier(
            path,
            num_classes=num_classes,
            logits_output=options.get("onnx_output") or sidecar.get("onnx_output"),
            embedding_output=options.get("onnx_embeddings") or sidecar.get("onnx_embeddings"),
            device=device,
        )
        check_classes(clf.num_classes, num_classes, f"the ONNX output {clf.logits_name!r}")
        from .models import sha256_file

        return LoadedModel(
            clf,
            arch,
            clf.num_classes,
            "onnx",
            str(path),
            sha256_file(path),
            sidecar,
            family=self.name,
            embedding_source=clf.embedding_source,
            gradients=False,
            notes=list(clf.notes),
        )

    def default_preprocessing(self, path, arch, sidecar) -> Preprocessing:
        from .onnx_model import input_side

        side = input_side(path)
        if side is None:
            return Preprocessing()
        # torchvision's ratio (resize 256, crop 224) at the graph's fixed input size
        return Preprocessing(resize=int(round(side * 256 / 224)), crop=side)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


#: Tried in order; the first family that claims a source loads it (torchvision is the fallback).
FAMILIES: dict[str, Family] = {
    f.name: f for f in (HuggingFaceFamily(), OnnxFamily(), TimmFamily(), TorchvisionFamily())
}


def family_for(path: str | Path, arch: str | None, sidecar: dict) -> Family:
    """The family that reads the model at ``path`` (see :data:`FAMILIES`)."""
    p = Path(path).expanduser()
    for fam in FAMILIES.values():
        if fam.claims(p, arch, sidecar):
            return fam
    raise AssertionError("the torchvision family claims everything")  # pragma: no cover
