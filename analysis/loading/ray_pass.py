"""The pass on a Ray cluster: ``errorscope analyze --engine ray [--ray-address ADDRESS]``.

The same work as :func:`analysis.loading.inference.run_pass`, spread over a cluster with Ray Data
and streamed: read tasks decode, resize, hash and thumbnail the files
(:func:`~analysis.loading.inference.load_item`, the local engine's per-image function); an actor
pool runs the model, one copy per actor, on a GPU each when the cluster has GPUs
(:func:`~analysis.loading.inference._forward`, the local engine's per-batch function: properties,
logits, the hooked embedding); the driver receives the batches in input order and feeds the same
:class:`~analysis.loading.inference.PassSink` the local engine feeds, which streams the per-image
arrays into the run folder and the thumbnails into their packs. Workers never write into the run
folder (on a cluster it is not theirs); skipped files come back with their reasons like any row.

Without an address a local Ray is started on this machine, bound to 127.0.0.1, without its
dashboard or usage reporting, and stopped afterwards; with one, the driver joins that cluster
(``ray://host:10001`` or ``host:6379``) and ships this package's code to its workers. Image files
and the checkpoint must be readable at the same paths from every node (a shared filesystem), as
for any Ray Data job that reads files by path.

Ray is an optional extra: ``pip install 'errorscope[ray]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .inference import PassResult, PassSink, Progress, load_item, pass_message
from .models import Preprocessing

__all__ = ["ray_session", "run_pass_ray"]

#: Object store of a local Ray: enough for a few hundred batches in flight, far from the 30% of
#: memory Ray takes by default on a machine shared with other work.
LOCAL_OBJECT_STORE_BYTES = 512 << 20


def _import_ray():
    # no usage statistics leave the machine (Ray asks a server otherwise)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # the optional extra is not installed
        raise ImportError(
            "--engine ray needs Ray Data: pip install 'errorscope[ray]' (or 'ray[data]')"
        ) from exc
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, *, num_cpus: int | None = None) -> Iterator[None]:
    """Ray for the length of the block: joins ``address``, or starts a local Ray on 127.0.0.1
    (no dashboard) and stops it at the end. An already initialised Ray is used as it is."""
    ray = _import_ray()
    if ray.is_initialized():
        yield
        return
    if address:
        import analysis

        ray.init(
            address=address,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env={"py_modules": [str(Path(analysis.__file__).resolve().parent)]},
        )
    else:
        _loopback_only(True)
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            include_dashboard=False,
            object_store_memory=LOCAL_OBJECT_STORE_BYTES,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
    try:
        yield
    finally:
        ray.shutdown()
        _loopback_only(False)


def _loopback_only(on: bool) -> None:
    """Make a local Ray bind 127.0.0.1 instead of the machine's network address.

    Ray has no public option for it (``_node_ip_address="127.0.0.1"`` is re-resolved to the
    routable address); its switch for laptops, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, makes
    every process of the instance listen on the loopback interface only (checked in
    tests/analysis/test_ray_engine.py). The flag is read at import and at start, so both are set.
    """
    from ray._private import ray_constants

    if on:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
    else:
        os.environ.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
        ray_constants.ENABLE_RAY_CLUSTER = not ray_constants.IS_WINDOWS_OR_OSX


# ----------------------------------------------------------------------------- stages


def _decode(batch: dict, *, prep: Preprocessing, max_pixels, max_file_bytes, thumbnails: bool):
    """Read task: one batch of ``{"i", "path"}`` rows -> fixed-shape columns (a failed row has
    its reason in ``error`` and zeros elsewhere)."""
    items = [
        load_item(
            str(p),
            int(i),
            prep,
            max_pixels=max_pixels,
            max_file_bytes=max_file_bytes,
            thumbnails=thumbnails,
        )
        for i, p in zip(batch["i"], batch["path"], strict=True)
    ]
    ok = [it for it in items if "error" not in it]
    size = prep.crop or prep.resize
    shape = tuple(ok[0]["x"].shape) if ok else (3, size, size)
    n = len(items)
    x = np.zeros((n, *shape), dtype=np.uint8)
    sig = np.zeros((n, 768), dtype=np.float16)
    has_sig = np.zeros(n, dtype=bool)
    out = {
        "i": np.asarray([it["i"] for it in items], dtype=np.int64),
        "error": np.asarray([it.get("error", "") for it in items], dtype=object),
        "width": np.zeros(n, np.int64),
        "height": np.zeros(n, np.int64),
        "file_size": np.zeros(n, np.int64),
        "orientation": np.zeros(n, np.int64),
        "content_hash": np.full(n, "", dtype=object),
        "phash": np.full(n, "", dtype=object),
        "thumb": np.full(n, b"", dtype=object),
    }
    for r, it in enumerate(items):
        if "error" in it:
            continue
        x[r] = it["x"].numpy()
        for k in ("width", "height", "file_size", "orientation", "content_hash", "phash"):
            out[k][r] = it[k]
        if it["sig"] is not None:
            sig[r], has_sig[r] = it["sig"], True
        if it["thumb"] is not None:
            out["thumb"][r] = it["thumb"]
    out.update(x=x, sig=sig, has_sig=has_sig)
    return out


class _Model:
    """Actor: one copy of the model, run on each batch with the local engine's ``_forward``."""

    def __init__(self, model_spec: dict | None, prep: Preprocessing, device: str | None):
        import torch

        from .inference import model_and_hook, pick_device

        self.device = pick_device(device)
        self.model = None
        self.hook = None
        if model_spec is not None:
            from .models import load_model

            # the family's module and embedding head, as the local engine runs them
            self.model, hook = model_and_hook(load_model(**model_spec, device=self.device))
            self.hook = hook.__enter__() if hook is not None else None
        self.mean = torch.tensor(prep.mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(prep.std, device=self.device).view(1, 3, 1, 1)

    def __call__(self, batch: dict) -> dict:
        import torch

        from .inference import _forward

        ok = batch["error"] == ""
        n = ok.size
        x = torch.from_numpy(np.ascontiguousarray(batch.pop("x")[ok]))
        out = dict(batch)
        out["props"] = np.full((n, 5), np.nan, np.float32)
        out["latency_ms"] = np.full(n, np.nan, np.float32)
        if not ok.any():
            return out
        with torch.inference_mode():
            p, logits, emb, dt = _forward(
                x,
                model=self.model,
                mean=self.mean,
                std=self.std,
                hook=self.hook if self.hook is not None and self.hook.active else None,
                perturb=None,
                device=self.device,
            )
        out["props"][ok] = p.numpy()
        out["latency_ms"][ok] = dt
        if logits is not None:
            lg = np.zeros((n, logits.shape[1]), np.float32)
            lg[ok] = logits.numpy()
            out["logits"] = lg
        if emb is not None:
            e = np.zeros((n, emb.shape[1]), np.float32)
            e[ok] = emb.numpy()
            out["emb"] = e
        return out


# ----------------------------------------------------------------------------- the pass


def run_pass_ray(
    paths: list[str],
    prep: Preprocessing,
    *,
    model_spec: dict | None = None,
    relpaths: list[str] | None = None,
    batch_size: int = 64,
    max_pixels: int | None = None,
    max_file_bytes: int | None = None,
    thumbnails: Callable[[int, bytes], None] | None = None,
    files: dict | None = None,
    progress: Progress | None = None,
    desc: str = "analysing",
    address: str | None = None,
    workers: int | None = None,
    device: str | None = None,
) -> PassResult:
    """:func:`~analysis.loading.inference.run_pass` on Ray; the same :class:`PassResult`.

    Parameters
    ----------
    model_spec : dict, optional
        Keyword arguments of :func:`analysis.loading.models.load_model` (``path``, ``arch``,
        ``num_classes``, ``trust_checkpoint``): each actor loads its own copy. None: no model
        (predictions-file mode), properties and hashes only.
    address : str, optional
        A running cluster to join; None starts a local Ray for this call unless one is running
        (see :func:`ray_session`).
    workers : int, optional
        Model actors. Default: one per GPU when the cluster has GPUs, else half its CPUs (the
        other half decodes).
    device : str, optional
        ``"cpu"`` keeps the model on CPUs even on a cluster with GPUs.

    Other parameters are those of :func:`~analysis.loading.inference.run_pass`.
    """
    ray = _import_ray()
    relpaths = relpaths if relpaths is not None else paths
    with ray_session(address):
        import pandas as pd

        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # rows come back in input order
        ctx.enable_progress_bars = False  # the pass reports progress like the local engine
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        resources = ray.cluster_resources()
        gpus = 0 if device == "cpu" else int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        n_actors = workers or (gpus if gpus else max(1, cpus // 2))
        n = len(paths)
        table = pd.DataFrame({"i": np.arange(n, dtype=np.int64), "path": list(map(str, paths))})
        step = max(batch_size, 1)
        ds = ray.data.from_pandas([table.iloc[s : s + step] for s in range(0, n, step)] or [table])
        ds = ds.map_batches(
            _decode,
            batch_size=step,
            fn_kwargs={
                "prep": prep,
                "max_pixels": max_pixels,
                "max_file_bytes": max_file_bytes,
                "thumbnails": thumbnails is not None,
            },
            num_cpus=1,
            batch_format="numpy",
        )
        ds = ds.map_batches(
            _Model,
            batch_size=step,
            fn_constructor_kwargs={
                "model_spec": model_spec,
                "prep": prep,
                "device": "cuda" if gpus else (device or "cpu"),
            },
            compute=ray.data.ActorPoolStrategy(size=n_actors),
            num_gpus=1 if gpus else 0,
            num_cpus=0 if gpus else 1,
            batch_format="numpy",
        )
        sink = PassSink(list(relpaths), files=files, thumbnails=thumbnails)
        t0 = time.perf_counter()
        done = 0
        if progress is not None:
            progress(pass_message(desc, 0, n, 0.0), 0.0)
        try:
            for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
                _feed(sink, batch)
                done += len(batch["i"])
                if progress is not None:
                    msg = pass_message(desc, done, n, time.perf_counter() - t0)
                    progress(msg, done / max(1, n))
        except BaseException:
            sink.abort()
            raise
        return sink.result(time.perf_counter() - t0)


def _feed(sink: PassSink, batch: dict) -> None:
    """One batch from the cluster into the sink: its skipped rows, then its ok rows."""
    err = batch["error"]
    ok = err == ""
    for i, reason in zip(batch["i"][~ok], err[~ok], strict=True):
        sink.skip(int(i), str(reason))
    if not ok.any():
        return
    rows = {
        "i": batch["i"][ok],
        **{
            k: batch[k][ok].tolist()
            for k in ("width", "height", "file_size", "content_hash", "phash", "orientation")
        },
        "sig": [
            s if h else None for s, h in zip(batch["sig"][ok], batch["has_sig"][ok], strict=True)
        ],
        "thumb": [t if len(t) else None for t in batch["thumb"][ok]],
    }
    lat = batch["latency_ms"][ok]
    sink.add(
        rows,
        batch["props"][ok],
        batch["logits"][ok] if "logits" in batch else None,
        batch["emb"][ok] if "emb" in batch else None,
        float(lat[0]) if lat.size else float("nan"),
    )
