"""Time class activation maps on a random torchvision resnet18 (CPU, one thread).

Run: ``.venv/bin/python bench/bench_cams.py``. Writes ``bench/results/cams.json`` and prints it.
Reports, per input size: one plain forward pass, the layer discovery (first call, a dry pass),
each CAM method on the default layer (best of a few), the cache hit, and faithfulness; plus the
one-time import of pytorch-grad-cam (cv2, matplotlib, ...), which the first CAM of a process pays.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torchvision  # noqa: E402

from analysis.explain import cams, layers  # noqa: E402

REPEATS = 3
SIZES = (224, 64)
SCORECAM_SIZES = (64,)  # one forward per channel: minutes at 224 on one CPU thread


def best_of(fn, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    torch.set_num_threads(1)
    start = time.perf_counter()
    cams._method_classes()  # imports pytorch_grad_cam
    import_s = time.perf_counter() - start
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=10).eval()
    result: dict = {
        "model": "resnet18 (random weights, 10 classes)",
        "device": "cpu",
        "threads": 1,
        "repeats": REPEATS,
        "import_pytorch_grad_cam_s": import_s,
        "sizes": {},
    }
    for size in SIZES:
        x = torch.randn(3, size, size)
        start = time.perf_counter()
        info = layers.default_layer(model, size)
        discovery_s = time.perf_counter() - start
        with torch.no_grad():
            forward_s = best_of(lambda x=x: model(x[None]))
        per_method = {}
        for method in cams.CAM_METHODS:
            if method == "scorecam" and size not in SCORECAM_SIZES:
                continue
            repeats = 1 if method == "scorecam" else REPEATS
            per_method[method] = best_of(
                lambda x=x, m=method: cams.compute_cam(model, x, target_class=3, method=m),
                repeats,
            )
        cam = cams.compute_cam(model, x, target_class=3)
        faith_s = best_of(
            lambda x=x, cam=cam: cams.faithfulness(model, x, cam, target_class=3, method="gradcam")
        )
        with tempfile.TemporaryDirectory() as run_dir:
            cache = cams.CamCache(run_dir)
            cache.get_or_compute(model, x, sample_id="s0", target_class=3)
            hit_s = best_of(
                lambda x=x, c=cache: c.get_or_compute(model, x, sample_id="s0", target_class=3)
            )
        result["sizes"][str(size)] = {
            "default_layer": info.name,
            "default_layer_spatial": list(info.spatial),
            "forward_s": forward_s,
            "discovery_first_call_s": discovery_s,
            "cam_s": per_method,
            "faithfulness_s": faith_s,
            "cache_hit_s": hit_s,
        }
    result["python"] = platform.python_version()
    result["torch"] = torch.__version__
    out = Path(__file__).resolve().parent / "results" / "cams.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
