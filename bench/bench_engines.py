"""Images per second of the pass: the local engine, and Ray Data with 1 and 2 model workers.

The pass as ``analyze`` runs it (decode, resize, properties, model, embeddings, hashes,
thumbnails and signatures, arrays streamed to .npy files) on the bundled sample's evaluation
images with its mobilenet_v3_small at 112 px, at two sizes: the 1,200 images once and repeated
four times (4,800). The difference of the two times gives the steady rate (images/s once
workers are up and the model is loaded); the rest is the fixed cost of a pass (worker start,
model load). Ray runs on a local Ray started once for all its passes (its start is reported
separately). The driver's own cost per image (receiving a batch, writing thumbnails and rows)
bounds how many workers one driver can feed; it is measured too.

From these, the README projects the pass over 1,000,000 images on N workers:
``fixed + 1e6 / min(N * per_worker_rate, driver_rate)``, a projection that assumes every worker
gets its own cores as on this machine (decoding plus one model copy), images of the sample's
size, and storage that keeps up; it is not a measurement.

    .venv/bin/python bench/bench_engines.py   -> bench/results/engines.json
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("ERRORSCOPE_NO_PROGRESS", "1")

from analysis import schema  # noqa: E402
from analysis.cli import sample_config  # noqa: E402
from analysis.loading.datasets import load_image_set  # noqa: E402
from analysis.loading.inference import PassSink, run_pass  # noqa: E402
from analysis.loading.models import load_model, read_sidecar  # noqa: E402
from analysis.pipeline.engine import _preprocessing  # noqa: E402

REPEAT = 4


def _files(tmp: Path, tag: str) -> dict:
    return {k: tmp / f"{tag}-{k}.npy" for k in ("logits", "embeddings", "signatures")}


PEAKS: dict[str, float] = {}


def _peak_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed_pass(fn, paths, tmp: Path, tag: str) -> tuple[float, int]:
    n_thumbs = [0]

    def thumbs(i, jpeg):
        n_thumbs[0] += 1

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak resident set to the current one
    t = time.perf_counter()
    res = fn(paths, thumbnails=thumbs, files=_files(tmp, tag))
    seconds = time.perf_counter() - t
    PEAKS[tag] = round(_peak_mib(), 1)  # this process (the driver): flat in N when streaming
    assert len(res.ok_index) == len(paths) and n_thumbs[0] == len(paths)
    return seconds, len(paths)


def driver_cost(res_batch_rows: int = 64, repeats: int = 50) -> float:
    """Seconds per image the driver spends receiving one batch (PassSink.add with thumbnails
    and streamed rows), measured on synthetic batches of the sample's shapes."""
    import numpy as np

    with tempfile.TemporaryDirectory() as d:
        sink = PassSink(
            ["x"] * (res_batch_rows * repeats),
            files=_files(Path(d), "driver"),
            thumbnails=lambda i, jpeg: None,
        )
        rng = np.random.default_rng(0)
        t = time.perf_counter()
        for b in range(repeats):
            rows = np.arange(b * res_batch_rows, (b + 1) * res_batch_rows)
            batch = {
                "i": rows,
                "width": [112] * len(rows),
                "height": [112] * len(rows),
                "file_size": [5000] * len(rows),
                "content_hash": ["0" * 64] * len(rows),
                "phash": ["0" * 16] * len(rows),
                "orientation": [1] * len(rows),
                "sig": list(rng.standard_normal((len(rows), 768)).astype(np.float16)),
                "thumb": [b"\xff\xd8" + bytes(4000)] * len(rows),
            }
            sink.add(
                batch,
                rng.random((len(rows), 5), dtype=np.float32),
                rng.random((len(rows), 6), dtype=np.float32),
                rng.random((len(rows), 576), dtype=np.float32),
                1.0,
            )
        sink.result(0.0)
        return (time.perf_counter() - t) / (res_batch_rows * repeats)


def main() -> None:
    cfg = sample_config()
    data = load_image_set(cfg.data)
    side = read_sidecar(cfg.model)
    prep = _preprocessing(cfg, side.get("arch"), side)
    paths = data.table[schema.PATH].tolist()
    many = paths * REPEAT
    spec = {
        "path": cfg.model,
        "arch": side.get("arch"),
        "num_classes": len(data.class_names),
        "trust_checkpoint": False,
    }
    model = load_model(**spec, device="cpu").model
    out: dict = {"images": len(paths), "repeated": len(many), "engines": {}}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)

        def local(p, **kw):
            return run_pass(p, prep, model=model, device="cpu", **kw)

        timed_pass(local, paths[:64], tmp, "warm")  # imports, first-call costs
        rows = {}
        for tag, p in (("small", paths), ("large", many)):
            rows[tag] = timed_pass(local, p, tmp, f"local-{tag}")
        out["engines"]["local"] = _rates(rows)
        print("local", out["engines"]["local"], flush=True)

        from analysis.loading.ray_pass import ray_session, run_pass_ray

        t = time.perf_counter()
        with ray_session(num_cpus=os.cpu_count()):
            out["ray_start_s"] = round(time.perf_counter() - t, 2)
            for workers in (1, 2):

                def on_ray(p, workers=workers, **kw):
                    return run_pass_ray(p, prep, model_spec=spec, workers=workers, **kw)

                timed_pass(on_ray, paths[:64], tmp, "ray-warm")
                rows = {}
                for tag, p in (("small", paths), ("large", many)):
                    rows[tag] = timed_pass(on_ray, p, tmp, f"ray{workers}-{tag}")
                out["engines"][f"ray_{workers}_workers"] = _rates(rows) | {"workers": workers}
                print(f"ray {workers}", out["engines"][f"ray_{workers}_workers"], flush=True)
    out["driver_seconds_per_image"] = driver_cost()
    r1 = out["engines"]["ray_1_workers"]["steady_images_per_s"]
    r2 = out["engines"]["ray_2_workers"]["steady_images_per_s"]
    out["per_worker_images_per_s"] = {"1_worker": r1, "2_workers": round(r2 / 2, 1)}
    out["scaling_1_to_2_workers"] = round(r2 / r1, 2)
    driver_rate = 1.0 / out["driver_seconds_per_image"]
    fixed = out["engines"]["ray_1_workers"]["fixed_s"]
    out["projection_1M"] = {
        str(w): round((fixed + 1e6 / min(w * r1, driver_rate)) / 3600, 2) for w in (1, 8, 32, 128)
    }
    out["projection_note"] = (
        "hours for 1,000,000 images on N workers = fixed + 1e6 / min(N x per-worker rate,"
        " driver rate); a projection from this machine's numbers (each worker with the"
        " cores one worker has here), not a measurement"
    )
    out["max_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["driver_peak_rss_mib_per_pass"] = PEAKS
    out["machine"] = f"{os.cpu_count()} cpus, shared with other jobs; load {os.getloadavg()}"
    dest = ROOT / "bench" / "results" / "engines.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


def _rates(rows: dict) -> dict:
    (ts, ns), (tl, nl) = rows["small"], rows["large"]
    steady = (nl - ns) / max(tl - ts, 1e-9)
    return {
        "seconds_small": round(ts, 2),
        "seconds_large": round(tl, 2),
        "images_per_s_large": round(nl / tl, 1),
        "steady_images_per_s": round(steady, 1),
        "fixed_s": round(max(0.0, ts - ns / steady), 2),
    }


if __name__ == "__main__":
    main()
