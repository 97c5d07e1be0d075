"""Is the model better than chance? (issue 11 §1): the one-sided binomial test against the
majority-class rate, the near-uniform confidence check, and the loud warning they raise in the
CLI, the manifest and at the top of the Overview, on a real small model trained here and then
given deliberately wrong preprocessing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest, fisher_exact

from analysis.stats.sanity import chance_check, subset_error_effect

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")


# -- the statistics, against scipy ------------------------------------------------------------
def test_chance_check_matches_scipy_on_the_same_arrays():
    rng = np.random.default_rng(0)
    labels = rng.choice(4, size=300, p=[0.4, 0.3, 0.2, 0.1])
    good = np.full((300, 4), 0.02)
    good[np.arange(300), labels] = 0.94
    flip = rng.random(300) < 0.3
    good[flip] = np.roll(good[flip], 1, axis=1)  # 30% wrong, confidently
    c = chance_check(labels, good)
    k = int((good.argmax(1) == labels).sum())
    rate = np.bincount(labels).max() / 300
    ref = binomtest(k, 300, rate, alternative="greater")
    assert (c.n, c.n_correct, c.majority_class) == (300, k, 0)
    assert c.majority_rate == pytest.approx(rate) and c.p_value == pytest.approx(ref.pvalue)
    ci = binomtest(k, 300).proportion_ci(method="wilson")
    assert (c.accuracy_low, c.accuracy_high) == pytest.approx((ci.low, ci.high))
    assert c.better_than_chance and not c.near_uniform and c.ok
    ent = -(good * np.log(good)).sum(1) / np.log(4)
    assert c.median_entropy == pytest.approx(np.median(ent))

    always_majority = np.tile([0.7, 0.1, 0.1, 0.1], (300, 1))  # accuracy = the majority rate
    c = chance_check(labels, always_majority)
    assert c.accuracy == pytest.approx(rate) and not c.better_than_chance and not c.ok
    assert (c.top_pred_class, c.top_pred_share) == (0, 1.0)

    untrained = np.full((300, 4), 0.25) + rng.normal(0, 0.003, (300, 4))
    untrained /= untrained.sum(1, keepdims=True)
    assert chance_check(labels, untrained).near_uniform

    # right answers at near-uniform confidence (a softmax of logits squashed by the wrong
    # scale): better than chance, yet every confidence number is meaningless -> not ok
    timid = np.full((300, 4), 0.25)
    timid[np.arange(300), labels] += 0.01
    timid /= timid.sum(1, keepdims=True)
    c = chance_check(labels, timid)
    assert c.better_than_chance and c.near_uniform and not c.ok

    empty = chance_check(np.zeros(0, int), np.zeros((0, 3)))
    assert empty.n == 0 and not empty.ok and np.isnan(empty.p_value)
    with pytest.raises(ValueError, match="one entry per row"):
        chance_check(labels[:5], good)
    with pytest.raises(ValueError, match=r"integers in 0..3"):
        chance_check(labels + 1, good)


def test_subset_error_effect_matches_scipy():
    rng = np.random.default_rng(1)
    correct = rng.random(200) < 0.8
    sub = np.zeros(200, bool)
    sub[:25] = True
    correct[:25] = rng.random(25) < 0.4
    e = subset_error_effect(correct, sub)
    table = [[e.errors, e.n - e.errors], [e.rest_errors, e.rest_n - e.rest_errors]]
    assert e.p_value == pytest.approx(fisher_exact(table, alternative="greater")[1])
    ci = binomtest(e.errors, e.n).proportion_ci(method="wilson")
    assert (e.low, e.high) == pytest.approx((ci.low, ci.high))
    assert e.error_rate == pytest.approx((~correct[:25]).mean())
    assert e.rest_error_rate == pytest.approx((~correct[25:]).mean())


# -- a real small model, trained here, then given the wrong preprocessing ----------------------
PERIODS = (2, 4, 8)  # class = the period of horizontal stripes, in pixels (16 px images)


def _stripes(n_per_class: int, *, size: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for c, p in enumerate(PERIODS):
        for _ in range(n_per_class):
            a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
            while np.abs(a.astype(int) - b).sum() < 150:  # colour carries no class
                b = rng.integers(0, 256, 3)
            rows = ((np.arange(size) + rng.integers(0, p)) // (p // 2)) % 2
            img = np.where(rows[:, None, None] == 0, a, b) * np.ones((size, size, 3))
            xs.append(np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8))
            ys.append(c)
    return np.stack(xs), np.array(ys)


@pytest.fixture(scope="module")
def stripes_model(tmp_path_factory):
    """A TorchScript CNN trained to tell stripe periods apart (~90% on held-out images) with
    resize 16, no crop, mean 0.5, std 0.25; and a labelled folder of held-out images."""
    import torch
    from PIL import Image
    from torch import nn

    root = tmp_path_factory.mktemp("stripes")
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and cheap on a shared machine
    try:
        x, y = _stripes(30, seed=1)
        t = (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
        model = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(8, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 3),
        )
        opt = torch.optim.Adam(model.parameters(), 1e-2)
        for _ in range(80):
            opt.zero_grad()
            nn.functional.cross_entropy(model(t), torch.from_numpy(y)).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    path = root / "stripes.pt"
    torch.jit.script(model.eval()).save(str(path))
    names = [f"period{p}" for p in PERIODS]
    (root / "stripes.json").write_text(json.dumps({"classes": names, "input_size": 16}))
    xe, ye = _stripes(30, seed=2)
    for i, (img, c) in enumerate(zip(xe, ye, strict=True)):
        (root / "data" / names[c]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / "data" / names[c] / f"{i:03d}.png")
    return root / "data", path


RIGHT = ["--resize", "16", "--no-crop", "--mean", "0.5,0.5,0.5", "--std", "0.25,0.25,0.25"]


def _analyze(stripes_model, runs, *options):
    data, model = stripes_model
    return ["analyze", "--data", str(data), "--model", str(model), "--workers", "0"] + [
        "--no-umap",
        "--out",
        str(runs),
        *options,
    ]


def _only_run(runs: Path, before: set) -> Path:
    (new,) = [d for d in runs.iterdir() if not d.name.startswith(".") and d not in before]
    return new


@pytest.mark.parametrize(
    ("options", "settings"),
    [
        ([], "resize shorter side to 256, centre crop 224x224"),  # no flags: ImageNet defaults
        (["--resize", "8", "--no-crop"], "resize to 8x8 (no crop)"),  # too small to see stripes
    ],
)
def test_wrong_preprocessing_raises_a_loud_warning_everywhere(
    stripes_model, tmp_path, capsys, monkeypatch, options, settings
):
    from streamlit.testing.v1 import AppTest

    from analysis.cli import main
    from analysis.store.runstore import open_run

    runs = tmp_path / "runs"
    assert main(_analyze(stripes_model, runs, *RIGHT)) == 0
    assert "WARNING" not in capsys.readouterr().err
    right = open_run(_only_run(runs, set()))
    assert right.manifest["chance_check"]["ok"] is True
    assert right.manifest["chance_check"]["accuracy"] > 0.8

    before = set(runs.iterdir())
    assert main(_analyze(stripes_model, runs, *options)) == 0
    err = capsys.readouterr().err
    assert "WARNING: THIS MODEL IS NO BETTER THAN CHANCE ON THESE IMAGES" in err, err
    flat = " ".join(err.split())
    assert "not above the 33.3% of always answering the most frequent class" in flat, flat
    assert "Likely causes:" in flat and "Class order:" in flat and "Wrong checkpoint" in flat
    assert f"Settings used: {settings}" in flat
    run = open_run(_only_run(runs, before))
    check = run.manifest["chance_check"]  # structured, not only a sentence
    assert check["ok"] is False and check["better_than_chance"] is False
    assert check["accuracy"] <= 0.4 and check["p_value"] > 0.01 and check["n"] == 90
    assert any(w.startswith("the model is no better than chance") for w in run.manifest["warnings"])

    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(runs))
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = run.run_id
    at.run()
    assert not at.exception
    (banner,) = at.error
    # as people read it: user and data text is Markdown-escaped (dashboard.components.safe)
    text = re.sub(r"\\(.)", r"\1", banner.value).replace("\u2060", "")
    assert text.startswith("**This model is no better than chance on these images")
    assert "Likely causes" in text and "Preprocessing:" in text and "Class order:" in text
    assert f"**Settings used:** {settings}" in text
    # the banner comes first: above the headline metrics
    order = [el.type for el in _walk(at.main) if el.type in ("error", "metric")]
    assert order[0] == "error" and "metric" in order, order
    at = AppTest.from_file(APP, default_timeout=180)
    at.query_params["run"] = right.run_id
    at.run()
    assert not at.exception and not [e for e in at.error if "chance" in e.value]


def _walk(node):
    """Elements of an AppTest tree in page order."""
    children = getattr(node, "children", None)
    if not children:
        yield node
        return
    for child in children.values():
        yield from _walk(child)
