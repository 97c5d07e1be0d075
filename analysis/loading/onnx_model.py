"""An ONNX classifier behind the same interface as a torch one.

:class:`OnnxClassifier` is an ``nn.Module`` without parameters whose ``forward`` runs the graph
with onnxruntime, so the pass, faithfulness and occlusion maps call it like any model (no
gradients flow through it: gradient CAMs are not offered for ONNX runs).

- **Logits**: the output named by ``--onnx-output``, else the one output whose last dimension is
  the number of classes (a graph that ends in a ``Softmax`` is read at the softmax's input, so
  probabilities are not squashed twice).
- **Embeddings**: the value named by ``--onnx-embeddings`` (a graph output or any intermediate
  value, which is then exposed as an extra output in memory; the file is never changed), else a
  second two-dimensional output, else the input of the final ``Gemm`` / ``MatMul`` that produces
  the logits (the penultimate features of a classifier exported from any framework).
- **Batching**: the graph's batch dimension is used as is; a graph exported with a fixed batch
  size runs in chunks of that size. A channels-last input ``[N, H, W, 3]`` (TensorFlow exports)
  is fed transposed.

Importing this module does not import onnx, onnxruntime or torch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .families import require
from .models import CheckpointError

_PASS_THROUGH = {"Identity", "Flatten", "Reshape", "Squeeze", "Cast"}


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return []
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def input_side(path: str | Path) -> int | None:
    """The fixed square side of the graph's image input, or None when it is dynamic."""
    onnx = require("onnx", "onnx", "ONNX")
    model = onnx.load(str(path), load_external_data=False)
    inputs = _real_inputs(model)
    if not inputs:
        return None
    dims = _dims(inputs[0])
    if len(dims) != 4:
        return None
    h, w = (dims[1], dims[2]) if dims[3] == 3 and dims[1] != 3 else (dims[2], dims[3])
    return int(h) if isinstance(h, int) and h == w and h > 0 else None


def _real_inputs(model) -> list:
    """Graph inputs that are not initialisers (older exporters list weights as inputs)."""
    inits = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in inits]


def _producers(model) -> dict:
    return {out: node for node in model.graph.node for out in node.output}


def _traced_embedding(model, logits_name: str) -> str | None:
    """The input of the Gemm/MatMul that makes ``logits_name`` (through Add/Identity/...)."""
    prod = _producers(model)
    inits = {i.name for i in model.graph.initializer}
    name = logits_name
    for _ in range(8):
        node = prod.get(name)
        if node is None:
            return None
        if node.op_type in ("Gemm", "MatMul"):
            data = [i for i in node.input[:2] if i not in inits]
            return data[0] if data else None
        if node.op_type == "Add" or node.op_type in _PASS_THROUGH:
            data = [i for i in node.input if i not in inits]
            if len(data) != 1:
                return None
            name = data[0]
            continue
        return None
    return None


class OnnxClassifier:
    """Placeholder replaced by the torch subclass on first use (keeps torch out of imports)."""

    def __new__(cls, *args, **kwargs):
        return _torch_class()(*args, **kwargs)


_CLASS = None


def session_options(ort):
    """onnxruntime's session options for the pass.

    Its worker threads busy-wait after each run by default (``allow_spinning``): between two
    batches they take the cores the pass needs for the rest of its batch work (image properties,
    softmax, the next batch's conversion in torch), which cost the pass 30% against a bare
    ``session.run`` loop in ``bench/bench_pass.py``. Threads that sleep when idle cost nothing
    when the model runs back to back.
    """
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return opts


def _torch_class():
    global _CLASS
    if _CLASS is not None:
        return _CLASS
    import torch

    class _OnnxClassifier(torch.nn.Module):
        """Normalised float ``[B, 3, S, S]`` -> logits ``[B, C]`` with onnxruntime."""

        def __init__(
            self,
            path,
            *,
            num_classes: int | None = None,
            logits_output: str | None = None,
            embedding_output: str | None = None,
            device: str = "cpu",
        ) -> None:
            super().__init__()
            onnx = require("onnx", "onnx", "ONNX")
            ort = require("onnxruntime", "onnx", "ONNX")
            self.path = str(path)
            self.notes: list[str] = []
            try:
                model = onnx.load(self.path)
            except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
                raise CheckpointError(
                    f"{Path(path).name} is not a readable ONNX model: {e}"
                ) from None
            inputs = _real_inputs(model)
            if len(inputs) != 1:
                raise CheckpointError(
                    f"{Path(path).name} has {len(inputs)} inputs"
                    f" ({[i.name for i in inputs]}); expected one image input"
                )
            self.input_name = inputs[0].name
            dims = _dims(inputs[0])
            if len(dims) != 4:
                raise CheckpointError(
                    f"{Path(path).name}: input {self.input_name!r} has shape {dims}; expected"
                    " [N, 3, H, W] (or [N, H, W, 3])"
                )
            self.channels_last = dims[3] == 3 and dims[1] != 3
            self.fixed_batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
            outputs = {o.name: _dims(o) for o in model.graph.output}
            self.logits_name = self._pick_logits(outputs, logits_output, num_classes, path)
            added: list[str] = []
            prod = _producers(model)
            node = prod.get(self.logits_name)
            if node is not None and node.op_type in ("Softmax", "LogSoftmax"):
                self.notes.append(
                    f"the ONNX graph ends in {node.op_type}: errorscope reads its input"
                    f" {node.input[0]!r} as the logits"
                )
                self.logits_name = node.input[0]
                added.append(self.logits_name)
            self.embedding_name, self.embedding_source = self._pick_embedding(
                model, outputs, embedding_output
            )
            if self.embedding_name is not None and self.embedding_name not in outputs:
                added.append(self.embedding_name)
            for name in added:
                if name not in outputs:
                    model.graph.output.append(onnx.ValueInfoProto(name=name))
            last = (outputs.get(self.logits_name) or [None])[-1]
            self.num_classes = last if isinstance(last, int) else 0
            providers = ["CPUExecutionProvider"]
            if str(device).startswith("cuda"):
                if "CUDAExecutionProvider" in ort.get_available_providers():
                    providers.insert(0, "CUDAExecutionProvider")
                else:
                    self.notes.append(
                        "onnxruntime has no CUDA provider here (install onnxruntime-gpu):"
                        " the ONNX model ran on the CPU"
                    )
            opts = session_options(ort)
            try:
                blob = model.SerializeToString() if added else self.path
                self.session = ort.InferenceSession(blob, sess_options=opts, providers=providers)
            except Exception as e:  # noqa: BLE001
                raise CheckpointError(
                    f"onnxruntime cannot run {Path(path).name}: {str(e).splitlines()[0]}"
                ) from None
            self.providers = self.session.get_providers()
            self._fetch = [self.logits_name] + (
                [self.embedding_name] if self.embedding_name else []
            )
            if not self.num_classes:  # a traced logits value: its size is known only by running
                side = input_side(self.path) or 224
                probe = np.zeros((self.fixed_batch or 1, 3, side, side), np.float32)
                self.num_classes = int(self._run(probe)[0].shape[-1])

        @staticmethod
        def _pick_logits(outputs: dict, wanted, num_classes, path) -> str:
            name = Path(path).name
            shapes = ", ".join(f"{k} {v}" for k, v in outputs.items())
            if wanted:
                if wanted not in outputs:
                    raise CheckpointError(
                        f"{name} has no output {wanted!r} (--onnx-output); outputs: {shapes}"
                    )
                return wanted
            if len(outputs) == 1:
                return next(iter(outputs))
            two_d = [k for k, v in outputs.items() if len(v) == 2]
            if num_classes is not None:
                fits = [k for k in two_d if outputs[k][-1] == num_classes]
                if len(fits) == 1:
                    return fits[0]
            raise CheckpointError(
                f"{name} has several outputs ({shapes}) and none is the only one with"
                f" {num_classes} classes: name the logits with --onnx-output"
            )

        def _pick_embedding(self, model, outputs: dict, wanted) -> tuple:
            if wanted:
                known = set(outputs) | {o for n in model.graph.node for o in n.output}
                if wanted not in known:
                    raise CheckpointError(
                        f"{Path(self.path).name} has no value {wanted!r} (--onnx-embeddings);"
                        f" outputs: {list(outputs)}"
                    )
                return wanted, f"ONNX value {wanted!r} (named with --onnx-embeddings)"
            others = [k for k, v in outputs.items() if k != self.logits_name and len(v) == 2]
            if len(others) == 1:
                return others[0], f"ONNX output {others[0]!r} (the graph's second 2-D output)"
            traced = _traced_embedding(model, self.logits_name)
            if traced is not None:
                return traced, (
                    f"ONNX value {traced!r}: the input of the final layer that makes the logits"
                )
            self.notes.append(
                "no embedding value found in the ONNX graph (name one with --onnx-embeddings):"
                " no embedding map, neighbours or embedding duplicates"
            )
            return None, None

        def _run(self, x: np.ndarray) -> list[np.ndarray]:
            if self.channels_last:
                x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
            step = max(self.fixed_batch or len(x), 1)
            parts = []
            for i in range(0, len(x), step):
                chunk = x[i : i + step]
                n = len(chunk)
                if self.fixed_batch and n < step:  # a fixed-batch graph: pad the last chunk
                    pad = np.zeros((step - n, *chunk.shape[1:]), chunk.dtype)
                    chunk = np.concatenate([chunk, pad])
                parts.append(
                    [o[:n] for o in self.session.run(self._fetch, {self.input_name: chunk})]
                )
            return [np.concatenate([p[k] for p in parts]) for k in range(len(self._fetch))]

        def forward_with_embeddings(self, x):
            """(logits float32 ``[B, C]``, embeddings float32 ``[B, D]`` or None), on x's device."""
            arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
            out = self._run(arr)
            logits = torch.from_numpy(out[0].astype(np.float32, copy=False)).to(x.device)
            emb = None
            if len(out) > 1:
                e = out[1].reshape(len(out[1]), -1).astype(np.float32, copy=False)
                emb = torch.from_numpy(e).to(x.device)
            return logits, emb

        def forward(self, x):
            return self.forward_with_embeddings(x)[0]

    _CLASS = _OnnxClassifier
    return _CLASS
