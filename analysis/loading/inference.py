"""The one batched pass: decode, measure image properties, run the model, keep everything.

DataLoader workers decode and resize (uint8, so little is copied between processes); the main
process turns a batch into floats once, measures brightness/contrast/sharpness/saturation on that
tensor, normalises it and runs the model in ``eval()`` under ``inference_mode``. A forward pre-hook
on the module the model's family names (:attr:`~analysis.loading.models.LoadedModel.embedding_head`:
the classifier's input, timm's pre-logits, a Hugging Face pooled output) captures the embedding in
the same forward call; a model that computes its embeddings itself (ONNX) gives them with its
logits through ``forward_with_embeddings``.

Workers die with the process that started them, ``kill -9`` included (``PR_SET_PDEATHSIG`` on
Linux, a parent watchdog elsewhere): a worker blocked on a full pipe to a dead parent would
otherwise hold its memory for as long as the machine runs.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .. import schema
from ..checks import row_losses
from .images import ImageReadError, decode_image
from .models import LoadedModel, Preprocessing, find_head

Progress = Callable[[str, float], None]


@dataclass
class PassResult:
    """What one pass over an image set produced, for the images that could be read.

    Attributes
    ----------
    ok_index : np.ndarray
        int64 [N] row positions (in the input table) of the images that were analysed, ascending.
    logits : np.ndarray or None
        float32 [N, C]; None when no model ran.
    embeddings : np.ndarray or None
        float32 [N, D] inputs of the classifier head; None without a hookable head.
    properties : pd.DataFrame
        [N rows] the columns of ``schema.PROPERTY_COLUMNS`` plus ``content_hash``, ``phash`` and
        ``exif_orientation``.
    latency_ms : np.ndarray
        float32 [N] model milliseconds per image (batch time / batch size).
    skipped : list of dict
        ``{"relpath", "reason"}`` for every image that could not be read.
    seconds : float
        Wall time of the pass.
    signatures : np.ndarray or None
        float16 [N, 768]: appearance signatures for near-duplicate search (only when thumbnails
        were written).
    """

    ok_index: np.ndarray
    logits: np.ndarray | None
    embeddings: np.ndarray | None
    properties: pd.DataFrame
    latency_ms: np.ndarray
    skipped: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    signatures: np.ndarray | None = None  # float16 [N, 768] appearance signatures (thumbnails)


def load_item(
    path: str,
    i: int,
    prep: Preprocessing,
    *,
    max_pixels: int | None = None,
    max_file_bytes: int | None = None,
    thumbnails: bool = False,
) -> dict:
    """Everything the pass needs from one file, computed where it is read (a DataLoader worker,
    a Ray task): the uint8 model input, size, hashes and, with ``thumbnails``, the gallery JPEG
    (bytes), its perceptual hash and appearance signature. A failure is returned as
    ``{"i", "error"}``, never raised: one bad file must not stop the pass."""
    try:
        kw = {} if max_pixels is None else {"max_pixels": max_pixels}
        if max_file_bytes is not None:
            kw["max_file_bytes"] = max_file_bytes
        img = decode_image(path, exif_transpose=prep.exif_transpose, **kw)
    except ImageReadError as e:
        return {"i": i, "error": str(e)}
    except Exception as e:  # never let one file kill the pass
        return {"i": i, "error": f"unexpected error: {type(e).__name__}: {e}"}
    thumb, phash_hex, sig = None, "", None
    if thumbnails:
        thumb, phash_hex, sig = make_thumbnail(img.rgb)
    return {
        "i": i,
        "x": to_model_tensor(img.rgb, prep),
        "width": img.width,
        "height": img.height,
        "file_size": img.file_size,
        "content_hash": img.content_hash,
        "phash": phash_hex,
        "sig": sig,
        "thumb": thumb,
        "orientation": img.orientation,
    }


class _ImageDataset:
    """torch-style dataset over file paths; a failure is returned, not raised."""

    def __init__(
        self,
        paths: list[str],
        prep: Preprocessing,
        max_pixels: int | None = None,
        thumbnails: bool = False,
        max_file_bytes: int | None = None,
    ):
        self.paths = paths
        self.prep = prep
        self.max_pixels = max_pixels
        self.thumbnails = thumbnails
        self.max_file_bytes = max_file_bytes

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return load_item(
            self.paths[i],
            i,
            self.prep,
            max_pixels=self.max_pixels,
            max_file_bytes=self.max_file_bytes,
            thumbnails=self.thumbnails,
        )


def _worker_init(parent_pid: int, _worker_id: int) -> None:
    """Tie a DataLoader worker's life to the process that started the pass.

    On Linux the kernel kills the worker the moment its parent dies (``PR_SET_PDEATHSIG``); a
    daemon thread that watches for the parent to change covers other systems and start methods.
    Without this a worker blocked on sending a batch to a killed parent lives on indefinitely."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except Exception:  # no libc prctl: the watchdog below still works
            pass
    ppid = os.getppid()
    if ppid != parent_pid and not _pid_alive(parent_pid):  # died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True, name="parent-watch").start()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but another user's
        return True
    return True


def _watch_parent(ppid: int, interval_s: float = 1.0) -> None:
    while True:
        time.sleep(interval_s)
        if os.getppid() != ppid:  # re-parented: the parent is gone
            os._exit(1)


THUMB_SIZE = 160  # longest side of gallery thumbnails, px


def make_thumbnail(rgb: np.ndarray, size: int = THUMB_SIZE) -> tuple[bytes, str, np.ndarray]:
    """A small JPEG for the gallery (never full images in a grid) as bytes, with the image's
    64-bit perceptual hash (16 hex digits) and its appearance signature (float16 [768]), both
    computed on the small image, so they stay cheap for huge photos. The bytes go back to the
    process that writes the run (:class:`analysis.store.thumbs.ThumbnailWriter`): workers on
    other machines of a cluster never write into the run folder."""
    import io

    from PIL import Image

    from .fingerprints import appearance_signature, phash

    im = Image.fromarray(rgb)
    im.thumbnail((size, size))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue(), np.packbits(phash(im)).tobytes().hex(), appearance_signature(im)


def to_model_tensor(rgb: np.ndarray, prep: Preprocessing):
    """uint8 [H, W, 3] -> uint8 tensor [3, S, S] resized (and cropped) per ``prep``.

    torchvision's antialiased tensor resize with ``prep.interpolation`` (within one grey level of
    PIL's, which torchvision's, timm's and transformers' own transforms use); an image already
    at the target size is not resampled."""
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
    mode = InterpolationMode(prep.interpolation)
    h, w = t.shape[-2:]
    if prep.crop is None or prep.squash:
        if (h, w) != (prep.resize, prep.resize):
            t = F.resize(t, [prep.resize, prep.resize], interpolation=mode, antialias=True)
    elif min(h, w) != prep.resize:
        t = F.resize(t, prep.resize, interpolation=mode, antialias=True)
    if prep.crop is None:
        return t
    return F.center_crop(t, [prep.crop, prep.crop])


def _collate(items):
    import torch

    ok = [it for it in items if "error" not in it]
    bad = [(it["i"], it["error"]) for it in items if "error" in it]
    if not ok:
        return {"ok": False, "bad": bad}
    return {
        "ok": True,
        "bad": bad,
        "i": torch.tensor([it["i"] for it in ok]),
        "x": torch.stack([it["x"] for it in ok]),
        "width": [it["width"] for it in ok],
        "height": [it["height"] for it in ok],
        "file_size": [it["file_size"] for it in ok],
        "content_hash": [it["content_hash"] for it in ok],
        "phash": [it["phash"] for it in ok],
        "sig": [it["sig"] for it in ok],
        "thumb": [it["thumb"] for it in ok],
        "orientation": [it["orientation"] for it in ok],
    }


def tensor_properties(x):
    """Image properties of a float batch in [0, 1].

    Parameters
    ----------
    x : torch.Tensor
        float [B, 3, S, S], RGB in [0, 1] (before normalisation).

    Returns
    -------
    torch.Tensor
        float [B, 5]: brightness (mean Rec.601 luma, [0, 1]), contrast (std of luma, [0, 0.5]),
        sharpness (variance of the 3x3 Laplacian of luma in 8-bit units, at the model's input
        size, so images of different sizes compare fairly; < ~100 looks blurry), saturation (mean
        HSV saturation, [0, 1]), noise (estimated sigma of additive noise in luma, 8-bit grey
        levels: ~1-3 for clean photos, 5+ for grainy low-light ones; texture adds to it).
    """
    import torch

    # Written as in-place slices and moments rather than conv2d / Tensor.var, with as few
    # full-size temporaries as possible: on CPU the straightforward version cost ~20% of a
    # mobilenet_v3_small forward at 112 px (allocation and memory traffic, not arithmetic).
    luma = x[:, 0] * 0.299
    luma.add_(x[:, 1], alpha=0.587).add_(x[:, 2], alpha=0.114)
    flat = luma.reshape(luma.shape[0], -1)
    brightness = flat.mean(dim=1)
    # two-pass for the contrast: E[x^2] - E[x]^2 cancels badly on flat images in float32
    contrast = (
        torch.linalg.vector_norm(flat - brightness[:, None], dim=1)
        / max(flat.shape[1] - 1, 1) ** 0.5
    )
    lap = luma[:, :-2, 1:-1] + luma[:, 2:, 1:-1]  # the 3x3 Laplacian over the valid region
    lap.add_(luma[:, 1:-1, :-2]).add_(luma[:, 1:-1, 2:]).add_(luma[:, 1:-1, 1:-1], alpha=-4.0)
    sharpness = _mean_var(lap)[1].clamp_min(0.0) * (255.0 * 255.0)  # in 8-bit units
    # Immerkaer's noise estimate: the 3x3 mask [[1,-2,1],[-2,4,-2],[1,-2,1]] (separable: a
    # second difference down, then across) cancels smooth image structure and keeps pixel
    # noise; sigma = sqrt(pi / 2) / 6 * mean |response|. Sensor noise raises the Laplacian
    # variance too, so a noisy blurred image looks "sharp": this column tells the two apart.
    d2 = luma[:, :-2, :] + luma[:, 2:, :]
    d2.add_(luma[:, 1:-1, :], alpha=-2.0)
    resp = d2[:, :, :-2] + d2[:, :, 2:]
    resp.add_(d2[:, :, 1:-1], alpha=-2.0)
    noise = resp.abs_().reshape(resp.shape[0], -1).mean(dim=1) * (255.0 * _IMMERKAER)
    mx = x.amax(dim=1)
    spread = x.amin(dim=1).neg_().add_(mx)
    sat = spread.div_(mx.clamp_min_(1e-8))  # 0 where max = 0 (min = 0 there too)
    return torch.stack([brightness, contrast, sharpness, sat.flatten(1).mean(dim=1), noise], dim=1)


_IMMERKAER = math.sqrt(math.pi / 2.0) / 6.0


def _mean_var(v):
    """Per-image mean and unbiased variance of [B, H, W] from the first two moments, without a
    squared copy of the input (for zero-mean data such as a Laplacian, where the moment form
    does not cancel)."""
    import torch

    f = v.reshape(v.shape[0], -1)
    n = f.shape[1]
    mean = f.mean(dim=1)
    sq = torch.linalg.vector_norm(f, ord=2, dim=1).square_().div_(n)
    return mean, (sq - mean * mean) * (n / max(n - 1, 1))


def pick_device(device: str | None = None) -> str:
    """``device`` if given, else CUDA when available, else CPU."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class EmbeddingHook:
    """Context manager capturing the input of the embedding head on every forward call.

    ``head`` is the module whose input is the embedding (a family's
    :attr:`~analysis.loading.models.LoadedModel.embedding_head`); with ``search`` and no head,
    the model's last ``nn.Linear``."""

    def __init__(self, model, *, head=None, search: bool = True):
        self.model = model
        self.head = head
        self.search = search
        self.value = None
        self._handle = None

    def __enter__(self):
        head = self.head
        if head is None and self.search:
            try:
                head = find_head(self.model)
            except Exception:
                head = None
        if head is not None and hasattr(head, "register_forward_pre_hook"):
            try:
                self._handle = head.register_forward_pre_hook(self._hook)
            except Exception:  # TorchScript modules do not take hooks
                self._handle = None
        return self

    def _hook(self, _mod, args):
        self.value = args[0]

    def embeddings(self):
        """The captured value as float ``[B, D]`` on the CPU (a 4-D map, the input of a
        convolutional head, is averaged over its positions), or None."""
        v = self.value
        if v is None:
            return None
        if v.ndim == 4:
            v = v.mean(dim=(2, 3))
        return v.flatten(1).float().cpu()

    @property
    def active(self) -> bool:
        return self._handle is not None

    def __exit__(self, *exc):
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        return False


class PassSink:
    """Collects the pass's per-batch outputs, in input order, into a :class:`PassResult`.

    Both engines feed it (the local DataLoader loop in :func:`run_pass`, the Ray pipeline in
    :mod:`analysis.loading.ray_pass`), so they produce the same result from the same batches.
    With ``files`` the per-image arrays are streamed to ``.npy`` files as they come
    (:class:`analysis.store.npy.NpyRowWriter`; ``"logits"`` float32, ``"embeddings"`` and
    ``"signatures"`` float16, the precision a run stores) and the result holds them
    memory-mapped: nothing of size N x D stays in memory. Without it they are kept in memory
    (float32 embeddings), as robustness passes and tests want.

    Parameters
    ----------
    relpaths : list of str
        Names of the input images, for the skipped-file list.
    files : dict, optional
        ``{"logits" | "embeddings" | "signatures": path}``; a kind not named stays in memory.
    thumbnails : callable(int, bytes), optional
        Receives ``(input row, JPEG bytes)`` of every thumbnail, in order.
    """

    def __init__(
        self,
        relpaths: list[str],
        *,
        files: dict | None = None,
        thumbnails: Callable[[int, bytes], None] | None = None,
    ):
        self.relpaths = relpaths
        self.files = dict(files or {})
        self.thumbnails = thumbnails
        self.skipped: list[dict] = []
        self._writers: dict = {}
        self._mem: dict[str, list] = {"logits": [], "embeddings": [], "signatures": []}
        self._idx: list[np.ndarray] = []
        self._props: list[np.ndarray] = []
        self._lat: list[np.ndarray] = []
        self._cols: dict[str, list] = {
            k: [] for k in ("width", "height", "file_size", "content_hash", "phash", "orientation")
        }
        self._n_emb = 0
        self._has_sig = True
        self._last = -1

    def skip(self, i: int, reason: str) -> None:
        self.skipped.append({"relpath": self.relpaths[i], "reason": reason})

    def _put(self, kind: str, block: np.ndarray, dtype) -> None:
        if kind in self.files:
            if kind not in self._writers:
                from ..store.npy import NpyRowWriter

                self._writers[kind] = NpyRowWriter(self.files[kind], block.shape[1:], dtype)
            self._writers[kind].append(block)
        else:
            self._mem[kind].append(np.asarray(block))

    def add(self, batch: dict, props, logits, emb, latency_ms: float) -> None:
        """One decoded batch (the ok rows of :func:`_collate`'s output) and its forward outputs
        (CPU tensors or arrays: properties [b, 5], logits [b, C] or None, embeddings [b, D] or
        None, the model's milliseconds per image)."""
        rows = np.asarray(batch["i"], dtype=np.int64)
        if rows.size == 0:
            return
        if rows[0] <= self._last or (np.diff(rows) <= 0).any():
            raise RuntimeError("pass batches arrived out of order")  # both engines keep order
        self._last = int(rows[-1])
        self._idx.append(rows)
        self._props.append(np.asarray(props, dtype=np.float32))
        for k in self._cols:
            self._cols[k].extend(batch[k])
        sigs = batch.get("sig") or []
        if self._has_sig and sigs and all(x is not None for x in sigs):
            self._put("signatures", np.stack(sigs), np.float16)
        else:
            self._has_sig = False
        if self.thumbnails is not None:
            for i, jpeg in zip(rows, batch.get("thumb") or [], strict=False):
                if jpeg is not None:
                    self.thumbnails(int(i), jpeg)
        if logits is not None:
            self._put("logits", np.asarray(logits, dtype=np.float32), np.float32)
            self._lat.append(np.full(rows.size, latency_ms, dtype=np.float32))
            if emb is not None:
                self._put("embeddings", np.asarray(emb, dtype=np.float32), np.float16)
                self._n_emb += rows.size

    def _finish(self, kind: str, n: int, dtype):
        if kind in self._writers:
            writer = self._writers.pop(kind)
            arr = writer.close()
            if arr.shape[0] == n:
                return arr
            writer.path.unlink(missing_ok=True)  # not every image had one: none is stored
            return None
        if kind in self.files:  # nothing came: no file
            return None
        parts = self._mem[kind]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else None

    def result(self, seconds: float) -> PassResult:
        ok_index = np.concatenate(self._idx) if self._idx else np.zeros(0, np.int64)
        n = ok_index.size
        prop = np.concatenate(self._props) if self._props else np.zeros((0, 5), np.float32)
        c = self._cols
        w = np.asarray(c["width"], dtype=np.int64)
        h = np.asarray(c["height"], dtype=np.int64)
        properties = pd.DataFrame(
            {
                schema.BRIGHTNESS: prop[:, 0],
                schema.CONTRAST: prop[:, 1],
                schema.SHARPNESS: prop[:, 2],
                schema.SATURATION: prop[:, 3],
                schema.NOISE: prop[:, 4],
                schema.WIDTH: w,
                schema.HEIGHT: h,
                schema.ASPECT_RATIO: w.astype(float) / np.maximum(1, h),
                schema.FILE_SIZE: np.asarray(c["file_size"], dtype=np.int64),
                schema.CONTENT_HASH: c["content_hash"],
                schema.PHASH: c["phash"],
                schema.EXIF_ORIENTATION: np.asarray(c["orientation"], dtype=np.int64),
            }
        )
        logits = self._finish("logits", n, np.float32)
        emb = self._finish("embeddings", n, np.float32)
        sig = self._finish("signatures", n, np.float16) if self._has_sig else None
        if not self._has_sig and "signatures" in self._writers:
            self._writers.pop("signatures").abort()
        return PassResult(
            ok_index=ok_index,
            logits=logits,
            embeddings=emb if self._n_emb == n else None,
            properties=properties,
            latency_ms=np.concatenate(self._lat) if self._lat else np.full(n, np.nan, np.float32),
            skipped=sorted(self.skipped, key=lambda r: r["relpath"]),
            seconds=seconds,
            signatures=sig,
        )

    def abort(self) -> None:
        for wr in self._writers.values():
            wr.abort()
        self._writers.clear()


def model_and_hook(model, *, want_embeddings: bool = True):
    """(the module to run, its embedding hook or None) for what the pass is given.

    A :class:`~analysis.loading.models.LoadedModel` brings its family's embedding head (timm's
    pre-logits, a Hugging Face pooled output, a SqueezeNet conv head; none for TorchScript); a
    bare ``nn.Module`` gets its last ``nn.Linear``. Any engine that runs the pass's per-batch
    step (:func:`_forward`) builds its hook here, so every family works the same way in it.
    The hook is not entered yet (``with hook:`` or ``hook.__enter__()``)."""
    if model is None:
        return None, None
    if isinstance(model, LoadedModel):
        loaded, module = model, model.model
        kw = {"head": loaded.embedding_head, "search": False}
    else:
        module, kw = model, {}
    return module, (EmbeddingHook(module, **kw) if want_embeddings else None)


def run_pass(
    paths: list[str],
    prep: Preprocessing,
    *,
    model=None,
    relpaths: list[str] | None = None,
    batch_size: int = 64,
    num_workers: int | None = None,
    device: str | None = None,
    perturb: Callable | None = None,
    want_embeddings: bool = True,
    max_pixels: int | None = None,
    max_file_bytes: int | None = None,
    thumbnails: Callable[[int, bytes], None] | None = None,
    files: dict | None = None,
    progress: Progress | None = None,
    desc: str = "analysing",
) -> PassResult:
    """Stream ``paths`` through decoding, properties and (optionally) ``model`` once.

    Parameters
    ----------
    paths : list of str
        Absolute image paths, in the order of the input table.
    prep : Preprocessing
    model : LoadedModel or torch.nn.Module, optional
        Without a model only properties and hashes are computed (predictions-file mode). A
        :class:`~analysis.loading.models.LoadedModel` brings its family's embedding head; a bare
        module gives the input of its last ``nn.Linear``.
    perturb : callable, optional
        ``f(x) -> x`` on the float batch [B, 3, S, S] in [0, 1] before normalisation (robustness).
    progress : callable(str, float), optional
        Called after every batch with a message (``"<desc>: 640/1,200 images · 41 images/s ·
        about 14 s left"``, see :func:`pass_message`) and the fraction done; the CLI draws it as
        a bar, the dashboard as its progress widget. Nothing is printed without it.
    max_pixels, max_file_bytes : int, optional
        Limits of :func:`analysis.loading.images.decode_image` (its defaults when None).
    thumbnails : callable(int, bytes), optional
        Receives each image's gallery thumbnail (input row, JPEG bytes); appearance signatures
        and perceptual hashes are computed with them (none without it).
    files : dict, optional
        Stream per-image arrays to these ``.npy`` files (see :class:`PassSink`).
    """
    import torch
    from torch.utils.data import DataLoader

    relpaths = relpaths if relpaths is not None else paths
    device = pick_device(device)
    if num_workers is None:
        num_workers = max(0, min(4, (os.cpu_count() or 1) - 1))
    # Properties on the batch in this process. (Per image in the DataLoader workers was tried:
    # on 2 cores the worker, which also decodes and writes thumbnails, became the bottleneck
    # and the whole sample pass went from 2.4 s to 3.1-3.9 s.)
    ds = _ImageDataset(list(paths), prep, max_pixels, thumbnails is not None, max_file_bytes)
    loader = DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=_collate,
        persistent_workers=False,
        pin_memory=device.startswith("cuda"),
        worker_init_fn=functools.partial(_worker_init, os.getpid()) if num_workers else None,
    )
    mean = torch.tensor(prep.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(prep.std, device=device).view(1, 3, 1, 1)

    sink = PassSink(list(relpaths), files=files, thumbnails=thumbnails)
    t_start = time.perf_counter()
    done = 0
    if progress is not None:
        progress(pass_message(desc, 0, len(ds), 0.0), 0.0)
    model, hook = model_and_hook(model, want_embeddings=want_embeddings)
    try:
        if hook is not None:
            hook.__enter__()
        with torch.inference_mode():
            for batch in loader:
                for i, reason in batch["bad"]:
                    sink.skip(i, reason)
                n_batch = len(batch["bad"])
                if batch["ok"]:
                    p, out, emb, dt = _forward(
                        batch["x"],
                        model=model,
                        mean=mean,
                        std=std,
                        hook=hook,
                        perturb=perturb,
                        device=device,
                    )
                    batch["i"] = batch["i"].numpy()
                    sink.add(batch, p.numpy(), _np(out), _np(emb), dt)
                    n_batch += len(batch["i"])
                done += n_batch
                if progress is not None:
                    elapsed = time.perf_counter() - t_start
                    progress(pass_message(desc, done, len(ds), elapsed), done / max(1, len(ds)))
    except BaseException:
        sink.abort()
        raise
    finally:
        if hook is not None:
            hook.__exit__(None, None, None)
    return sink.result(time.perf_counter() - t_start)


def _np(t):
    return None if t is None else t.numpy()


def _forward(x8, *, model, mean, std, hook, perturb, device: str):
    """The pass's work on one decoded uint8 batch [B, 3, S, S]: properties, then (with a model)
    logits, the hooked embedding and the model's latency per image in ms. Everything returned is
    on the CPU; logits/embedding are None without a model."""
    import torch

    x = x8.to(device, non_blocking=True).float().div_(255.0)
    if perturb is not None:
        x = perturb(x).clamp_(0.0, 1.0)
    props = tensor_properties(x).cpu()
    if model is None:
        return props, None, None, float("nan")
    n = x.shape[0]
    # normalise in place (x is our own float copy): keeping a second full-size input alive
    # while the model runs cost a small model ~30% (its activations lose the cache-warm block)
    x.sub_(mean).div_(std)
    t0 = time.perf_counter()
    emb = None
    if hook is not None and hasattr(model, "forward_with_embeddings"):
        out, emb = model.forward_with_embeddings(x)  # a family that returns its own (ONNX)
    else:
        out = model(x)
    del x
    if isinstance(out, tuple | list):
        out = out[0]
    out = out.float()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) * 1000.0 / max(1, n)
    if emb is not None:
        emb = emb.flatten(1).float().cpu()
    elif hook is not None:
        emb = hook.embeddings()
    return props, out.cpu(), emb, dt


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, float32 [N, C], numerically stable."""
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def prediction_columns(probs: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Per-image prediction columns from probabilities.

    Parameters
    ----------
    probs : float [N, C], rows sum to 1.
    labels : int [N], given labels.

    Returns
    -------
    DataFrame with pred, confidence, true_prob, margin, loss (nats), entropy (nats), correct.
    """
    n, c = probs.shape
    p = probs.astype(np.float64)
    pred = p.argmax(axis=1) if n else np.zeros(0, np.int64)
    if c >= 2 and n:
        top2 = np.partition(p, c - 2, axis=1)[:, c - 2 :]
        margin = top2.max(axis=1) - top2.min(axis=1)
    else:
        margin = np.ones(n)
    true_p = p[np.arange(n), labels] if n else np.zeros(0)
    eps = 1e-12  # entropy only: 0 log 0 = 0
    return pd.DataFrame(
        {
            schema.PRED: pred.astype(np.int64),
            schema.CONFIDENCE: p.max(axis=1) if n else np.zeros(0),
            schema.TRUE_PROB: true_p,
            schema.MARGIN: margin,
            schema.LOSS: row_losses(probs, labels),  # the log-loss metric's own clipping
            schema.ENTROPY: -(p * np.log(np.clip(p, eps, 1.0))).sum(axis=1),
            schema.CORRECT: pred == labels,
        }
    )


def pass_message(desc: str, done: int, total: int, seconds: float) -> str:
    """``"<desc>: 640/1,200 images · 41 images/s · about 14 s left"`` (rate and time left once
    something is done)."""
    msg = f"{desc}: {done:,}/{total:,} images"
    if done and seconds > 0:
        rate = done / seconds
        msg += f" · {rate:,.1f} images/s" if rate < 10 else f" · {rate:,.0f} images/s"
        if done < total:
            msg += f" · about {format_seconds((total - done) / rate)} left"
        else:
            msg += f" · took {format_seconds(seconds)}"
    return msg


def format_seconds(s: float) -> str:
    """``"14 s"``, ``"3 min 20 s"``, ``"1 h 05 min"``."""
    s = max(0.0, float(s))
    if s < 60:
        return f"{s:.0f} s" if s >= 1 else "< 1 s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def estimate_seconds(n_images: int, input_size: int, images_per_second_224: float = 12.0) -> float:
    """Rough CPU time for a resnet18-class model: cost grows with the pixel count."""
    rate = images_per_second_224 * (224.0 / max(16, input_size)) ** 2
    return n_images / max(rate, 1e-6) if not math.isnan(rate) else float("nan")
