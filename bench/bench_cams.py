"""CAM cost, faithfulness and sanity per model family and method (CPU).

Run: ``.venv/bin/python bench/bench_cams.py`` (``--families-only`` / ``--timing-only`` for one
part; ``--resume`` keeps the models a stopped families run already measured). Writes
``bench/results/cams.json`` (after each model of the families part too) and prints it.

Timing (random torchvision resnet18, one thread): per input size, one plain forward pass, the
layer discovery (first call, a dry pass), each CAM method on the default layer (best of a few),
the cache hit, and faithfulness; plus the one-time import of pytorch-grad-cam (cv2, matplotlib,
...), which the first CAM of a process pays.

Families (two threads): for each model family and each method, on the default layer, over
``N_IMAGES`` evaluation images and their predicted class:

- ``gap``: the faithfulness figure the app shows, drop of p(class) when the map's top 20% is
  removed minus the drop for a same-shape region elsewhere (mean; > 0 = the map points at
  evidence the model uses);
- ``rho``: Adebayo et al.'s model-randomisation check (NeurIPS 2018), the Spearman correlation
  between the map and the same method's map on a copy whose layers above the map's layer are
  re-initialised (mean; near 1 = the map does not depend on what the model learned); a method
  passes below ``SANITY_MAX_RHO``;
- ``seconds``: time per map (one image, one class).

The models must have learned something, or the randomisation check compares noise with noise:
the two shipped sample checkpoints (torchvision mobilenet_v3_small, timm XCiT ViT) and tiny timm
ConvNeXt, EfficientNet and Swin models and a Hugging Face ViT trained here for a few epochs. All
are evaluated, and the small ones trained, on a *fresh* synthetic world (sample_data/generate.py
with another seed, written to a temporary folder): the defaults are chosen on data the tests never
see. Within one model, the best method is the one with the largest mean gap among the layer
methods that pass. The defaults (``analysis.explain.cams.DEFAULT_METHODS``) are keyed by the
architecture family :func:`analysis.explain.layers.architecture_family` reads (``"vit-tokens"``
holds the sample's XCiT and the Hugging Face ViT; ``"generic"`` holds timm's ConvNeXt,
EfficientNet and Swin): per family, the layer method that passes the check on *every* model of
the family and stays interactive (at most ``INTERACTIVE_MAX_RATIO`` x Grad-CAM's time per map:
ScoreCAM is never a default), with the largest gap averaged over them (:func:`choose_defaults`;
written to the
JSON's ``per_family.defaults`` with the evidence). ``--choose-only`` recomputes that table from
the stored rows without measuring again.
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
    os.environ.setdefault(var, "2")

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from analysis.explain import cams, layers  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORLD_SEED = 7  # the sample is seed 20240611; tests use only that one
N_IMAGES = 8
N_SLOW = 2  # images for scorecam and occlusion (tens to hundreds of forwards per map)
EVAL_ACCURACY_IMAGES = 200
TRAIN_EPOCHS = 5
SMALL = 64  # px, the tiny families' input

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


def timing() -> dict:
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
    return result


# ----------------------------------------------------------------------------- families


def _world(tmp: Path) -> Path:
    import subprocess

    subprocess.run(
        [sys.executable, str(ROOT / "sample_data" / "generate.py"), "--out", str(tmp),
         "--seed", str(WORLD_SEED)],
        check=True, capture_output=True,
    )  # fmt: skip
    return tmp


def _images(world: Path, split: str, size: int, limit: int | None = None):
    """uint8 [N, 3, size, size] and int labels of a world split (the given labels)."""
    import csv

    from PIL import Image

    classes = (world / "classes.txt").read_text().split()
    rows = list(csv.DictReader((world / f"{split}.csv").open()))[:limit]
    xs = []
    for r in rows:
        im = Image.open(world / r["path"]).convert("RGB")
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        xs.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    return torch.stack(xs), torch.tensor([classes.index(r["label"]) for r in rows])


def _normalise(x8, mean, std):
    return (x8.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1
    )


def _tiny_models() -> dict:
    """name -> (builder, mean, std) of the families trained here at SMALL px."""
    import timm
    from transformers import ViTConfig, ViTForImageClassification

    from analysis.loading.families import _logits_only

    def hf_vit():
        m = ViTForImageClassification(
            ViTConfig(
                image_size=SMALL, patch_size=8, hidden_size=64, num_hidden_layers=4,
                num_attention_heads=4, intermediate_size=128, num_labels=6,
            )
        )  # fmt: skip
        m.register_forward_hook(_logits_only)
        return m

    half, imnet = ((0.5,) * 3, (0.5,) * 3), ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return {
        "timm ConvNeXt (test_convnext)": (
            lambda: timm.create_model("test_convnext", num_classes=6),
            *half,
        ),
        "timm EfficientNet (test_efficientnet)": (
            lambda: timm.create_model("test_efficientnet", num_classes=6),
            *imnet,
        ),
        "timm Swin (swin_tiny, shrunk)": (
            lambda: timm.create_model(
                "swin_tiny_patch4_window7_224",
                num_classes=6,
                img_size=SMALL,
                embed_dim=24,
                depths=[2, 2],
                num_heads=[2, 4],
                window_size=4,
            ),
            *imnet,
        ),  # fmt: skip
        "Hugging Face ViT": (hf_vit, *half),
    }


def _train(model, x8, y, mean, std, epochs: int = TRAIN_EPOCHS):
    """A few epochs of AdamW with flips: enough to learn the shapes, not to be good."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.02)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x8), generator=g)
        for i in range(0, len(x8), 32):
            idx = order[i : i + 32]
            xb = x8[idx]
            flip = torch.rand(len(idx), generator=g) < 0.5
            xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            loss = torch.nn.functional.cross_entropy(model(_normalise(xb, mean, std)), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def _sample_models() -> dict:
    """The two shipped checkpoints: name -> (model, input size, mean, std)."""
    from analysis.loading.models import load_model

    out = {}
    for name, file in (
        ("torchvision mobilenet_v3_small (sample)", "model.safetensors"),
        ("timm XCiT ViT (sample)", "model_vit.safetensors"),
    ):
        path = ROOT / "sample_data" / file
        if path.exists():
            loaded = load_model(path)
            side = loaded.sidecar
            out[name] = (loaded.model, int(side["resize"]), side["mean"], side["std"])
    return out


def _score(model, x, cls, method, layer) -> dict:
    t = time.perf_counter()
    cam = cams.compute_cam(model, x, target_class=cls, method=method, layer=layer)
    seconds = time.perf_counter() - t
    faith = cams.faithfulness(model, x, cam, target_class=cls, method=method)
    check = cams.randomisation_check(model, x, cam, target_class=cls, method=method, layer=layer)
    return {"gap": faith.gap, "rho": check.rank_correlation, "seconds": seconds}


def families(*, save=None, done: dict | None = None) -> dict:
    """The per-family table. ``save(partial)`` is called after each model (a long run on a
    shared machine keeps what it measured); models in ``done`` (rows of an earlier partial
    run with the same settings) are kept, not measured again."""
    import tempfile

    torch.set_num_threads(2)
    out: dict = {
        "world_seed": WORLD_SEED,
        "images": N_IMAGES,
        "images_slow_methods": N_SLOW,
        "sanity_max_rho": cams.SANITY_MAX_RHO,
        "chosen_on": (
            f"a fresh synthetic world (sample_data/generate.py --seed {WORLD_SEED}; the tests use"
            " only the sample's seed 20240611): the tiny models trained on its reference split,"
            f" every model scored on the first {N_IMAGES} images of its eval split"
            f" ({N_SLOW} for scorecam and occlusion), each for its predicted class"
        ),
        "families": dict(done or {}),
    }
    with tempfile.TemporaryDirectory() as tmp:
        world = _world(Path(tmp))
        todo = {}
        for name, (model, size, mean, std) in _sample_models().items():
            todo[name] = (lambda m=model: (m, None), size, mean, std)
        xr, yr = None, None
        for name, (build, mean, std) in _tiny_models().items():

            def trained(build=build, mean=mean, std=std):
                nonlocal xr, yr
                if xr is None:
                    xr, yr = _images(world, "reference", SMALL)
                t = time.perf_counter()
                torch.manual_seed(0)
                return _train(build(), xr, yr, mean, std), time.perf_counter() - t

            todo[name] = (trained, SMALL, mean, std)
        for name, (make, size, mean, std) in todo.items():
            if name in out["families"]:
                continue
            model, train_s = make()
            out["families"][name] = _family_row(world, name, model, size, mean, std, train_s)
            if save is not None:
                save(out)
    out["defaults"] = choose_defaults(out["families"])
    return out


def _family_row(world, name, model, size, mean, std, train_s) -> dict:
    xe, ye = _images(world, "eval", size, limit=EVAL_ACCURACY_IMAGES)
    x = _normalise(xe, mean, std)
    with torch.no_grad():
        pred = torch.cat([model(x[i : i + 50]) for i in range(0, len(x), 50)]).argmax(1)
    info = layers.default_layer(model, size)
    fam = layers.architecture_family(model, size)
    row = {
        "architecture_family": fam,
        "input_size": size,
        "default_layer": info.name,
        "layer_map": list(info.spatial),
        "eval_accuracy": round(float((pred == ye).float().mean()), 3),
        "eval_accuracy_images": len(ye),
        "train_seconds": None if train_s is None else round(train_s, 1),
        "methods": {},
    }
    # warm-up (imports, layer discovery, the randomised copy, shared by every layer method at
    # the default layer), not timed
    _score(model, x[N_IMAGES], int(pred[N_IMAGES]), "gradcam", None)
    for method in cams.CAM_METHODS:
        n = N_SLOW if method in ("scorecam", "occlusion") else N_IMAGES
        scores = [
            _score(model, x[i], int(pred[i]), method, None) for i in range(n)
        ]  # the first n eval images, each for its predicted class
        rhos = [s["rho"] for s in scores if not np.isnan(s["rho"])]
        gaps = [s["gap"] for s in scores if not np.isnan(s["gap"])]
        rho = float(np.mean(rhos)) if rhos else float("nan")
        row["methods"][method] = {
            "gap": round(float(np.mean(gaps)), 4) if gaps else None,
            "rho": round(rho, 4) if rhos else None,
            "passes": bool(rho < cams.SANITY_MAX_RHO) if rhos else None,
            "seconds_per_map": round(float(np.median([s["seconds"] for s in scores])), 4),
            "n": n,
        }
        print(name, method, row["methods"][method], flush=True)
    passing = {
        m: v["gap"]
        for m, v in row["methods"].items()
        if v["passes"] and v["gap"] is not None and cams.CAM_METHODS[m].needs_layer
    }
    row["best_passing_method"] = max(passing, key=passing.get) if passing else None
    return row


#: A default must stay interactive: at most this many times Grad-CAM's time per map on the same
#: model (ScoreCAM, one forward per channel, is ~20x: it stays selectable, never the default).
INTERACTIVE_MAX_RATIO = 3.0
#: A model is evidence for its family's default only if it learned the task: the randomisation
#: check and the gap compare a map with what the model uses, which is noise for a model near
#: chance (the tiny timm and Hugging Face models trained here for a few epochs reach 0.22-0.27
#: on 6 classes, chance 0.17; the shipped samples 0.79 and 0.88).
EVIDENCE_MIN_ACCURACY = 0.5


def choose_defaults(rows: dict) -> dict:
    """Per architecture family: the layer method that passes the randomisation check on every
    model of the family and is interactive there (at most ``INTERACTIVE_MAX_RATIO`` x Grad-CAM's
    time per map), with the largest mean gap over those models (ties: registry order).

    ``rows``: ``per_family.families`` of the JSON (model name -> row). Returns family ->
    ``{"method", "models", "gap_mean", "rho_max", "seconds_per_map", "candidates"}`` where
    ``candidates`` holds every passing method's mean gap; ``method`` is None (the code's
    fallback, gradcam) when no method passes on all of them or no model of the family reached
    ``EVIDENCE_MIN_ACCURACY`` (those are listed in ``not_evidence`` with their accuracy).
    """
    by_family: dict[str, list[str]] = {}
    weak: dict[str, list[str]] = {}
    for name, row in rows.items():
        fam = row["architecture_family"]
        learned = (row.get("eval_accuracy") or 0) >= EVIDENCE_MIN_ACCURACY
        (by_family if learned else weak).setdefault(fam, []).append(name)
        by_family.setdefault(fam, [])
    out = {}
    for fam, names in by_family.items():
        candidates = {}
        for method, spec in cams.CAM_METHODS.items():
            if not spec.needs_layer:
                continue
            vals = [rows[n]["methods"].get(method) for n in names]
            fast = [
                v is not None
                and v["seconds_per_map"]
                <= INTERACTIVE_MAX_RATIO * rows[n]["methods"]["gradcam"]["seconds_per_map"]
                for n, v in zip(names, vals, strict=True)
            ]
            if (
                names
                and all(v and v["passes"] and v["gap"] is not None for v in vals)
                and all(fast)
            ):
                candidates[method] = round(float(np.mean([v["gap"] for v in vals])), 4)
        best = max(candidates, key=candidates.get) if candidates else None
        vals = [rows[n]["methods"][best] for n in names] if best else []
        out[fam] = {
            "method": best,
            "models": names,
            "gap_mean": candidates.get(best),
            "rho_max": max(v["rho"] for v in vals) if vals else None,
            "seconds_per_map": {n: v["seconds_per_map"] for n, v in zip(names, vals, strict=True)},
            "candidates": candidates,
            "not_evidence": {n: rows[n].get("eval_accuracy") for n in weak.get(fam, [])},
            "rule": (
                "over the family's models with eval accuracy >= "
                f"{EVIDENCE_MIN_ACCURACY:g}: passes the randomisation check (rho <"
                f" SANITY_MAX_RHO) on every one, at most {INTERACTIVE_MAX_RATIO:g}x Grad-CAM's"
                " time per map; largest mean gap (no such model: Grad-CAM, the code's fallback)"
            ),
        }
    return out


LOAD_AT_START = os.getloadavg()


def main() -> None:
    result: dict = {}
    out = Path(__file__).resolve().parent / "results" / "cams.json"
    if out.exists():
        result = json.loads(out.read_text())
    if "--families-only" not in sys.argv and "--choose-only" not in sys.argv:
        result.update(timing())
    if "--choose-only" in sys.argv:
        result["per_family"]["defaults"] = choose_defaults(result["per_family"]["families"])
    elif "--timing-only" not in sys.argv:
        old = result.get("per_family") or {}
        same = old.get("world_seed") == WORLD_SEED and old.get("images") == N_IMAGES
        done = old.get("families") if "--resume" in sys.argv and same else None

        def save(partial):
            result["per_family"] = {**partial, "partial": True}
            out.write_text(json.dumps(result, indent=2) + "\n")

        result["per_family"] = families(save=save, done=done)
    result["python"] = platform.python_version()
    result["torch"] = torch.__version__
    result["load_avg_at_start"] = LOAD_AT_START
    result["load_avg_at_end"] = os.getloadavg()
    result["note"] = "measured on the shared 2-core development machine (other jobs running)"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
