"""Progress of an analysis (issue 11 §4): each image pass (evaluation and reference) reports
images/s and the time left; the CLI draws a bar on a terminal and plain periodic lines elsewhere;
the dashboard's first-run analysis shows the same messages."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from analysis.cli import ProgressPrinter
from analysis.loading.inference import format_seconds, pass_message
from analysis.pipeline.engine import AnalysisConfig, analyze

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
PASS_LINE = re.compile(
    r"^(evaluation|reference) set: [\d,]+/[\d,]+ images · [\d,.]+ images/s · (about .+ left|took .+)$"
)


def test_pass_messages_say_rate_and_time_left():
    assert pass_message("evaluation set", 0, 1200, 0.0) == "evaluation set: 0/1,200 images"
    assert pass_message("evaluation set", 640, 1200, 16.0) == (
        "evaluation set: 640/1,200 images · 40 images/s · about 14 s left"
    )
    assert pass_message("reference set", 30, 100, 10.0) == (
        "reference set: 30/100 images · 3.0 images/s · about 23 s left"
    )
    assert pass_message("reference set", 100, 100, 200.0).endswith("· took 3 min 20 s")
    assert [format_seconds(s) for s in (0.2, 59.4, 61, 3725)] == [
        "< 1 s",
        "59 s",
        "1 min 01 s",
        "1 h 02 min",
    ]


class _Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_off_a_terminal_pass_progress_is_a_line_every_few_seconds(monkeypatch):
    monkeypatch.delenv("ERRORSCOPE_NO_PROGRESS", raising=False)
    out, clock = io.StringIO(), _Clock()
    p = ProgressPrinter(out, tty=False, every_s=10.0, clock=clock)
    p("loading model", 0.0)
    for done in range(0, 1001, 50):  # a batch every second
        p(pass_message("evaluation set", done, 1000, max(clock.t, 1e-9)), done / 1000)
        clock.t += 1.0
    p("metrics", 0.1)
    lines = out.getvalue().splitlines()
    assert lines[0] == "· loading model" and lines[-1] == "· metrics"
    passes = [ln[2:] for ln in lines if "evaluation set" in ln]
    # the first, one every 10 s, and the last: not one per batch
    assert [ln.split(":")[1].split("/")[0].strip() for ln in passes] == ["0", "500", "1,000"]
    assert all(PASS_LINE.match(ln) for ln in passes[1:]), passes
    assert "\r" not in out.getvalue()


def test_on_a_terminal_pass_progress_is_a_bar_redrawn_in_place(monkeypatch):
    monkeypatch.delenv("ERRORSCOPE_NO_PROGRESS", raising=False)
    out = io.StringIO()
    p = ProgressPrinter(out, tty=True)
    p(pass_message("evaluation set", 0, 100, 0.0), 0.0)
    p(pass_message("evaluation set", 50, 100, 5.0), 0.5)
    p(pass_message("evaluation set", 100, 100, 10.0), 1.0)
    p("metrics", 0.2)
    text = out.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 3 and text.endswith("· metrics\n")
    assert frames[1].startswith("[##########..........]  50% evaluation set: 50/100 images")
    assert "10 images/s · about 5 s left" in frames[1]
    assert frames[2].startswith("[####################] 100%") and "took 10 s" in frames[2]


def test_both_passes_report_progress(image_folder, tiny_resnet, tmp_path, monkeypatch):
    monkeypatch.delenv("ERRORSCOPE_NO_PROGRESS", raising=False)
    out = io.StringIO()
    cfg = AnalysisConfig(
        data=str(image_folder),
        reference=str(image_folder),
        model=str(tiny_resnet),
        arch="resnet18",
        resize=32,
        no_crop=True,
        num_workers=0,
        batch_size=4,
        umap=False,
    )
    analyze(cfg, runs_dir=tmp_path / "runs", progress=ProgressPrinter(out, tty=False, every_s=0))
    lines = [ln[2:] for ln in out.getvalue().splitlines()]
    assert lines[0].startswith("preprocessing: resize to 32x32 (no crop)")
    for which in ("evaluation", "reference"):
        done = [ln for ln in lines if ln.startswith(f"{which} set") and PASS_LINE.match(ln)]
        assert done and done[-1].startswith(f"{which} set: 18/18 images"), lines
        assert any("left" in ln for ln in done) and "took" in done[-1]


@pytest.mark.timeout(600)
def test_the_dashboards_first_run_shows_pass_progress(tmp_path, monkeypatch, tiny_resnet):
    """With no runs yet the dashboard analyses the sample itself; its progress widget gets the
    same per-pass messages (a tiny stand-in sample keeps this fast)."""
    import shutil

    from streamlit.testing.v1 import AppTest

    import analysis.cli as cli
    import analysis.pipeline.engine as engine
    from tests.conftest import make_image_folder

    sample = tmp_path / "sample"
    make_image_folder(sample / "images", n_per_class=3)
    rows = ["path,label"] + [
        f"images/{p.parent.name}/{p.name},{p.parent.name}"
        for p in sorted((sample / "images").rglob("*.png"))
    ]
    (sample / "eval.csv").write_text("\n".join(rows) + "\n")
    (sample / "reference.csv").write_text("\n".join(rows) + "\n")
    import torch
    from safetensors.torch import save_file

    save_file(torch.load(tiny_resnet, weights_only=True), sample / "model.safetensors")
    (sample / "model.json").write_text(json.dumps({"arch": "resnet18", "resize": 32, "crop": None}))
    monkeypatch.setattr(cli, "SAMPLE_DIR", sample)
    seen: list[tuple[str, float]] = []
    real = engine.analyze

    def recording(cfg, *, progress=None, **kw):
        def both(msg, frac):
            seen.append((msg, frac))
            progress(msg, frac)  # the dashboard's own widget

        return real(cfg, progress=both, **kw)

    monkeypatch.setattr(engine, "analyze", recording)
    runs = tmp_path / "runs"
    monkeypatch.setenv("ERRORSCOPE_RUNS_DIR", str(runs))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception
    msgs = [m for m, _ in seen]
    assert msgs[0].startswith("preprocessing: resize to 32x32 (no crop)")
    for which in ("evaluation", "reference"):
        passes = [m for m in msgs if m.startswith(f"{which} set") and PASS_LINE.match(m)]
        assert passes and passes[-1].startswith(f"{which} set: 9/9 images"), msgs
    assert [r for r in runs.iterdir() if not r.name.startswith(".")]
    shutil.rmtree(runs)
