"""The ``errorscope`` command line.

errorscope analyze --model M --data D [--reference R] [--arch A] [--out runs/]
    M: a state_dict / safetensors (--arch resnet50 or --arch timm/vit_small_patch16_224),
    TorchScript, an .onnx file, or a Hugging Face save_pretrained folder
errorscope analyze --predictions P.csv [--embeddings E.npy] --data D
errorscope sample                 analyse the bundled sample (once; reused afterwards)
errorscope runs                   list runs
errorscope report RUN [--format html|md|csv] [--out DIR]
errorscope triage RUN [--all] [--json]   the action plan: why each failure happens, what to do
errorscope dashboard [--address A] open the dashboard on 127.0.0.1 (A: open it on a network)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time
from pathlib import Path

from .store.runstore import runs_dir_from_env

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO_ROOT / "sample_data"


#: The bundled sample's checkpoints: a torchvision CNN and, of another family, a timm ViT.
SAMPLE_MODELS = ("model.safetensors", "model_vit.safetensors")
#: The package a sample checkpoint needs beyond the base install, and the extra that brings it
#: (`make run` installs it; a bare `pip install -e .` analyses the first model only).
SAMPLE_NEEDS = {"model_vit.safetensors": ("timm", "timm")}


def sample_config(model: str = SAMPLE_MODELS[0]):
    """The AnalysisConfig of a bundled sample run (default: the mobilenet_v3_small one)."""
    from .pipeline.engine import AnalysisConfig

    return AnalysisConfig(
        data=str(SAMPLE_DIR / "eval.csv"),
        model=str(SAMPLE_DIR / model),
        reference=str(SAMPLE_DIR / "reference.csv"),
    )


def _sample_missing(model: str) -> str | None:
    """Why a bundled sample checkpoint cannot be analysed here (its family's package is not
    installed), or None."""
    import importlib.util

    module, extra = SAMPLE_NEEDS.get(model, (None, None))
    if module is None or importlib.util.find_spec(module) is not None:
        return None
    return (
        f"sample_data/{model} needs the '{module}' package: pip install 'errorscope[{extra}]'"
        " (or `make run`) to analyse it too"
    )


def sample_configs() -> list:
    """Every bundled sample run whose family can be loaded here, the second model first, so the
    first one is the newest (the dashboard opens the newest run); see :func:`sample_skipped`."""
    present = [m for m in SAMPLE_MODELS if (SAMPLE_DIR / m).exists() and not _sample_missing(m)]
    return [sample_config(m) for m in reversed(present)]


def sample_skipped() -> list[str]:
    """One line per bundled checkpoint left out of :func:`sample_configs` and why."""
    return [why for m in SAMPLE_MODELS if (SAMPLE_DIR / m).exists() and (why := _sample_missing(m))]


def _floats3(s: str) -> tuple[float, float, float]:
    parts = [float(x) for x in s.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected three comma-separated numbers, got {s!r}")
    return tuple(parts)


def _pixel_count(s: str) -> int:
    try:
        n = int(s)  # accepts 256_000_000 too
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number of pixels, got {s!r}")
    return n


_BYTE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def _byte_count(s: str) -> int:
    """``268435456``, ``256_000_000``, ``512M``, ``512MiB``, ``1G`` (units are powers of 1024)."""
    m = re.fullmatch(r"\s*([0-9][0-9_]*)\s*([kmgt]?)(?:i?b)?\s*", s, flags=re.IGNORECASE)
    n = int(m.group(1)) * _BYTE_UNITS[m.group(2).lower()] if m else 0
    if n < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive number of bytes (e.g. 268435456 or 256M), got {s!r}"
        )
    return n


def _parser() -> argparse.ArgumentParser:
    from .loading.images import DEFAULT_MAX_FILE_BYTES, DEFAULT_MAX_PIXELS

    p = argparse.ArgumentParser(
        prog="errorscope", description="Error analysis for image classifiers."
    )
    sub = p.add_subparsers(dest="cmd", required=True)

    a = sub.add_parser("analyze", help="analyse a model on a labelled image set")
    a.add_argument("--data", required=True, help="ImageFolder root or CSV/Parquet manifest")
    src = a.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--model",
        help="a .pt/.pth/.safetensors state_dict (with --arch), TorchScript, an .onnx file, or a"
        " Hugging Face save_pretrained folder",
    )
    src.add_argument("--predictions", help="CSV/Parquet: path + one probability column per class")
    a.add_argument("--reference", help="optional reference (training) set, same formats as --data")
    a.add_argument(
        "--arch",
        help="architecture of a state_dict: a torchvision name (resnet18) or timm/<name>"
        " (timm/vit_small_patch16_224)",
    )
    a.add_argument(
        "--embeddings",
        help="with --predictions: a .npy [N, D] of embeddings, row i = row i of the predictions"
        " file (embedding map, neighbours, clusters, duplicates, drift)",
    )
    a.add_argument("--onnx-output", help="ONNX: name of the logits output (default: found)")
    a.add_argument(
        "--onnx-embeddings",
        help="ONNX: name of the value holding the embeddings (default: the input of the final"
        " layer, or a second 2-D output)",
    )
    a.add_argument("--classes", help="text file with one class name per line (model output order)")
    a.add_argument(
        "--class-hierarchy",
        metavar="FILE",
        help="optional superclasses: a CSV/TSV 'class,parent' per line (any depth) or a JSON"
        " object {class: parent}; adds per-superclass confusion, metrics and slices",
    )
    a.add_argument(
        "--trust-checkpoint",
        action="store_true",
        help="allow unpickling a full nn.Module (runs code from the file!)",
    )
    a.add_argument("--resize", type=int, help="shorter side after resize (px)")
    a.add_argument("--crop", type=int, help="centre crop (px)")
    a.add_argument("--no-crop", action="store_true", help="resize to a square, no crop")
    a.add_argument("--mean", type=_floats3, help="normalisation mean, e.g. 0.485,0.456,0.406")
    a.add_argument("--std", type=_floats3, help="normalisation std, e.g. 0.229,0.224,0.225")
    a.add_argument(
        "--exif-transpose",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="apply each photo's EXIF orientation before the model sees it, for pipelines that"
        " call ImageOps.exif_transpose (default: off, pixels as stored, as torchvision's default"
        " loader reads them; a sidecar 'exif_transpose' also sets it)",
    )
    a.add_argument(
        "--labels-are",
        choices=["names", "indices"],
        help="how to read a label column of whole numbers when the class names are numbers too:"
        " as class names or as positions in the class list (asked for only when they differ)",
    )
    a.add_argument("--batch-size", type=int, default=64)
    a.add_argument(
        "--workers", type=int, default=None, help="DataLoader workers (default: cores-1)"
    )
    a.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda if available)")
    a.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="where the pass runs: this process and its DataLoader workers (local), or Ray Data"
        " (decoding tasks and an actor pool with one model each, GPUs when the cluster has"
        " them); both write the same run. Needs the ray extra: pip install 'errorscope[ray]'",
    )
    a.add_argument(
        "--ray-address",
        help="join this Ray cluster (e.g. ray://head:10001); without it --engine ray starts a"
        " local Ray on 127.0.0.1 for the run. Images and model must be readable from every node",
    )
    a.add_argument(
        "--ray-workers",
        type=int,
        help="model actors on Ray (default: one per GPU, else half the cluster's CPUs)",
    )
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--min-support", type=int, default=20, help="smallest slice reported")
    a.add_argument("--no-umap", action="store_true", help="skip the 2-D embedding map")
    a.add_argument(
        "--max-pixels",
        type=_pixel_count,
        help="skip images with more pixels than this as possible decompression bombs"
        f" (default: {DEFAULT_MAX_PIXELS:_}, about 16k x 16k)",
    )
    a.add_argument(
        "--max-file-bytes",
        type=_byte_count,
        help="skip image files larger than this, e.g. 1G (default:"
        f" {DEFAULT_MAX_FILE_BYTES // 2**20} MiB); only regular files are ever read",
    )
    a.add_argument("--out", help="runs folder (default: $ERRORSCOPE_RUNS_DIR or ./runs)")
    a.add_argument("--force", action="store_true", help="recompute even if an identical run exists")

    s = sub.add_parser("sample", help="analyse the bundled sample data (reused once done)")
    s.add_argument("--out", help="runs folder")
    s.add_argument("--force", action="store_true")

    r = sub.add_parser("runs", help="list runs")
    r.add_argument("--out", help="runs folder")
    r.add_argument("--json", action="store_true")

    rp = sub.add_parser("report", help="export a slice report of a run (HTML, Markdown, CSV)")
    rp.add_argument("run", help="run folder, or a run id under --runs-dir")
    rp.add_argument(
        "--format",
        action="append",
        choices=["html", "md", "csv"],
        help="repeat for several (default: all three)",
    )
    rp.add_argument("--out", help="output folder (default: <run>/report)")
    rp.add_argument("--runs-dir", help="runs folder (default: $ERRORSCOPE_RUNS_DIR or ./runs)")
    rp.add_argument("--title", help="report title")
    rp.add_argument(
        "--dashboard-url",
        default="http://127.0.0.1:8501",
        help="the dashboard the action plan's numbers link to (default: %(default)s)",
    )

    tr = sub.add_parser(
        "triage", help="print the action plan: the causes of each failure group and what to do"
    )
    tr.add_argument("run", help="run folder, or a run id under --runs-dir")
    tr.add_argument("--runs-dir", help="runs folder (default: $ERRORSCOPE_RUNS_DIR or ./runs)")
    tr.add_argument(
        "--all", action="store_true", help="every hypothesis tested, not only the claimed ones"
    )
    tr.add_argument("--csv", help="also write the full triage table to this CSV file")

    rb = sub.add_parser("robustness", help="accuracy under perturbations at 5 severities")
    rb.add_argument("run", help="run folder, or a run id under --runs-dir")
    rb.add_argument("--perturbation", action="append", help="repeat; default: all")
    rb.add_argument("--subset", type=int, help="at most this many images (stratified by class)")
    rb.add_argument("--dry-run", action="store_true", help="only print the cost estimate")
    rb.add_argument("--runs-dir", help="runs folder")
    rb.add_argument("--seed", type=int, default=0)

    cp = sub.add_parser("compare", help="model A vs B on the same images, or drift of set A vs B")
    cp.add_argument("run_a")
    cp.add_argument("run_b")
    cp.add_argument("--runs-dir", help="runs folder")
    cp.add_argument("--json", action="store_true", help="print the full result as JSON")

    d = sub.add_parser("dashboard", help="open the dashboard")
    d.add_argument("--runs-dir", help="runs folder")
    d.add_argument("--port", type=int, default=8501)
    d.add_argument(
        "--address",
        default=LOCAL_ADDRESS,
        help="interface to listen on (default 127.0.0.1: this machine only); 0.0.0.0 opens it"
        " to the network: there is no login",
    )
    return p


LOCAL_ADDRESS = "127.0.0.1"


def dashboard_command(
    *, port: int = 8501, address: str = LOCAL_ADDRESS, runs_dir: str | None = None
) -> tuple[list[str], dict[str, str], str | None]:
    """(command, environment, warning or None) that start the dashboard.

    The safety settings are flags, not only the checkout's ``.streamlit/config.toml`` (which
    Streamlit reads from the current directory): listen on ``address``, send no usage
    statistics, show visitors no tracebacks (they go to this process's log). A non-loopback
    ``address`` gets a one-line warning: there is no login.
    """
    import ipaddress

    env = dict(os.environ)
    if runs_dir:
        env["ERRORSCOPE_RUNS_DIR"] = str(Path(runs_dir).resolve())
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(REPO_ROOT / "dashboard" / "app.py"),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.showErrorDetails",
        "none",
        "--server.enableXsrfProtection",
        "true",
        "--server.fileWatcherType",
        "none",
        "--runner.postScriptGC",  # see .streamlit/config.toml
        "false",
    ]
    try:
        local = address == "localhost" or ipaddress.ip_address(address).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        local = False
    warning = (
        None
        if local
        else f"errorscope: warning: the dashboard listens on {address}:{port}, so anyone who can"
        " reach this machine can open it: there is no login (read, tag, relabel, export)."
    )
    return cmd, env, warning


def main(argv: list[str] | None = None) -> int:
    from .store.runstore import RunError

    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("interrupted: no run was written", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, OSError, RunError) as e:
        print(f"errorscope: error: {e}", file=sys.stderr)
        return 2


def _dispatch(args) -> int:
    from .store.runstore import RunError

    if args.cmd == "analyze":
        from .pipeline.engine import AnalysisConfig, analyze

        cfg = AnalysisConfig(
            data=args.data,
            model=args.model,
            predictions=args.predictions,
            reference=args.reference,
            arch=args.arch,
            classes=args.classes,
            class_hierarchy=args.class_hierarchy,
            trust_checkpoint=args.trust_checkpoint,
            resize=args.resize,
            crop=args.crop,
            no_crop=args.no_crop,
            mean=args.mean,
            std=args.std,
            batch_size=args.batch_size,
            num_workers=args.workers,
            device=args.device,
            seed=args.seed,
            min_support=args.min_support,
            umap=not args.no_umap,
            max_pixels=args.max_pixels,
            max_file_bytes=args.max_file_bytes,
            exif_transpose=args.exif_transpose,
            labels_are=args.labels_are,
            engine=args.engine,
            ray_address=args.ray_address,
            ray_workers=args.ray_workers,
            onnx_output=args.onnx_output,
            onnx_embeddings=args.onnx_embeddings,
            embeddings=args.embeddings,
        )
        run = analyze(
            cfg, runs_dir=runs_dir_from_env(args.out), force=args.force, progress=_printer()
        )
        _print_summary(run)
        return 0
    if args.cmd == "sample":
        from .pipeline.engine import analyze

        needed = ("eval.csv", "reference.csv", "model.safetensors", "model.json")
        missing = [n for n in needed if not (SAMPLE_DIR / n).exists()]
        if missing:  # an installed wheel: sample_data/ is not part of the package
            raise FileNotFoundError(
                f"no bundled sample at {SAMPLE_DIR} (missing {', '.join(missing)}): the sample"
                " ships with the source checkout, not with the installed package; clone the"
                " errorscope repository and run `errorscope sample` (or `make run`) inside it,"
                " or analyse your own data with `errorscope analyze --model M --data D`"
            )
        for why in sample_skipped():
            print(f"· skipped: {why}")
        for cfg in sample_configs():
            run = analyze(
                cfg,
                runs_dir=runs_dir_from_env(args.out),
                force=args.force,
                progress=_printer(),
            )
            _print_summary(run)
        return 0
    if args.cmd == "runs":
        from .pipeline.versions import list_runs_with_status

        rows = list_runs_with_status(runs_dir_from_env(args.out))
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for r in rows:
                stale = "" if r["current"] else f"  ({r['stale']}: analyse again to refresh)"
                print(f"{r['run_id']:<50} {r['n_samples'] or '?':>7} images  {r['created']}{stale}")
            if not rows:
                print(f"no runs under {runs_dir_from_env(args.out)}")
        return 0
    if args.cmd == "report":
        from .present.report import build_report, write_report
        from .store.review import ReviewStore, default_db_path
        from .store.runstore import open_run

        runs_dir = runs_dir_from_env(args.runs_dir)
        path = Path(args.run) if Path(args.run).exists() else runs_dir / args.run
        run = open_run(path)
        db = default_db_path(path.parent)
        state = ReviewStore(db).state() if db.exists() else None
        report = build_report(
            run, review_state=state, title=args.title, dashboard_url=args.dashboard_url
        )
        out = Path(args.out) if args.out else run.path / "report"
        for f in write_report(
            report, run, out, formats=tuple(args.format or ("html", "md", "csv"))
        ):
            print(f)
        return 0
    if args.cmd == "triage":
        return _triage(args)
    if args.cmd == "robustness":
        from .stats.robustness import PERTURBATIONS, estimate_cost, run_robustness

        run = _open(args.run, args.runs_dir)
        names = args.perturbation or list(PERTURBATIONS)
        cost = estimate_cost(run, perturbations=names, subset=args.subset)
        print(
            f"{len(names)} perturbations x 5 severities"
            f" on {min(args.subset or run.manifest['n_samples'], run.manifest['n_samples'])}"
            f" images: about {cost / 60:.1f} min on this machine",
            file=sys.stderr,
        )
        if args.dry_run:
            return 0
        res = run_robustness(
            run, perturbations=names, subset=args.subset, seed=args.seed, progress=_printer()
        )
        cols = ["perturbation", "severity", "accuracy", "low", "high", "drop", "flip_rate"]
        print(res.summary[cols].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        return 0
    if args.cmd == "compare":
        return _compare(
            _open(args.run_a, args.runs_dir), _open(args.run_b, args.runs_dir), as_json=args.json
        )
    if args.cmd == "dashboard":
        cmd, env, warning = dashboard_command(
            port=args.port, address=args.address, runs_dir=args.runs_dir
        )
        if warning:
            print(warning, file=sys.stderr, flush=True)
        os.execvpe(cmd[0], cmd, env)
    raise RunError(f"unknown command {args.cmd}")


def _triage(args) -> int:
    """Print the action plan (recomputed when robustness runs or reviews arrived since)."""
    from .store.review import ReviewStore, default_db_path
    from .triage.plan import plan_text
    from .triage.runs import load_triage

    run = _open(args.run, args.runs_dir)
    db = default_db_path(run.path.parent)
    state = ReviewStore(db).state() if db.exists() else None
    result = load_triage(run, review=state)
    t = result.table
    print(f"Action plan for run {run.run_id} ({run.manifest.get('n_samples', '?')} images)\n")
    print(plan_text(t, result.info), end="")
    if args.all and len(t):
        cols = ["group_rank", "group", "cause", "detail", "status", "p_adj", "share"]
        print()
        print(t[cols].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.csv:
        from .triage.plan import csv_text

        Path(args.csv).write_text(csv_text(t))
        print(f"\ntriage table written to {args.csv}")
    return 0


def _open(name: str, runs_dir: str | None):
    from .store.runstore import open_run

    path = Path(name) if Path(name).exists() else runs_dir_from_env(runs_dir) / name
    return open_run(path)


def _compare(a, b, *, as_json: bool) -> int:
    from .stats.compare import align_samples

    try:
        overlap = align_samples(a.samples, b.samples)
        same_images = overlap.n_matched >= 0.5 * min(len(a.samples), len(b.samples))
    except ValueError:  # no image in common: a drift comparison
        same_images = False
    if same_images:
        from .stats.compare import compare_runs

        res = compare_runs(a, b)
        if as_json:
            print(json.dumps(res.to_dict(), indent=2, default=str))
            return 0
        print(f"model A vs B on {overlap.n_matched} shared images")
        print(res.flip_table().to_string())
        print(res.regressions().head(10).to_string(index=False))
        return 0
    from .stats.drift import drift_runs

    rep = drift_runs(a, b)
    if as_json:
        print(json.dumps(rep.to_dict(), indent=2, default=str))
        return 0
    print(f"set A ({len(a.samples)} images) vs set B ({len(b.samples)} images): drift")
    print(rep.features.to_string(index=False))
    return 0


_PASS = re.compile(r": ([0-9,]+)/([0-9,]+) images")


class ProgressPrinter:
    """An analysis's progress on stderr.

    Each stage is announced on its own line (``· loading model``). The image passes (evaluation
    set, reference set, robustness passes) report after every batch: on a terminal a bar redrawn
    in place with images/s and time left; elsewhere (a log, CI, a pipe) a plain line at most
    every ``every_s`` seconds, plus the first and the last. ``$ERRORSCOPE_NO_PROGRESS`` keeps
    only the stage lines.
    """

    def __init__(self, stream=None, *, tty: bool | None = None, every_s: float = 10.0, clock=None):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.tty = bool(isatty()) if tty is None else tty
        self.every_s = every_s
        self.clock = clock or time.monotonic
        self.quiet = bool(os.environ.get("ERRORSCOPE_NO_PROGRESS"))
        self.stage: str | None = None
        self.last_line = -math.inf
        self.bar_open = False

    def __call__(self, msg: str, frac: float) -> None:
        hit = _PASS.search(msg)
        stage = msg[: hit.start()] if hit else msg.split(":")[0]
        new_stage = stage != self.stage
        if new_stage:
            self._close_bar()
            self.stage = stage
            self.last_line = -math.inf
        if hit is None:
            if new_stage:
                self._line(f"· {msg}")
            return
        if self.quiet:
            return
        done = frac >= 1.0
        if self.tty:
            width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)
            filled = int(round(20 * min(max(frac, 0.0), 1.0)))
            text = f"[{'#' * filled}{'.' * (20 - filled)}] {frac:4.0%} {msg}"
            self.stream.write("\r" + text[:width].ljust(width))
            self.bar_open = True
            if done:
                self._close_bar()
            else:
                self.stream.flush()
            return
        now = self.clock()
        if new_stage or done or now - self.last_line >= self.every_s:
            self._line(f"· {msg}")
            self.last_line = now

    def _line(self, text: str) -> None:
        self._close_bar()
        print(text, file=self.stream, flush=True)

    def _close_bar(self) -> None:
        if self.bar_open:
            self.stream.write("\n")
            self.stream.flush()
            self.bar_open = False


def _printer() -> ProgressPrinter:
    return ProgressPrinter()


def _print_chance_warning(run, stream=None) -> None:
    """The loud warning of a run whose model is no better than chance, framed so it is seen."""
    import textwrap

    from .present.findings import chance_banner

    banner = chance_banner(run)
    if banner is None:
        return
    stream = stream if stream is not None else sys.stderr
    rule = "!" * 78
    lines = [rule, f"WARNING: {banner.title.upper()}"]
    for text in [*banner.facts, "Likely causes:", *(f"- {c}" for c in banner.causes)]:
        lines += textwrap.wrap(text, 78, subsequent_indent="  ", break_on_hyphens=False)
    lines += textwrap.wrap(
        f"Settings used: {banner.settings}", 78, subsequent_indent="  ", break_on_hyphens=False
    )
    lines.append(rule)
    print("\n".join(lines), file=stream, flush=True)


def _print_summary(run) -> None:
    m = run.manifest
    _print_chance_warning(run)
    print(f"run: {run.path}")
    print(
        f"  {m['n_samples']} images analysed, {m['n_skipped']} skipped"
        f" ({m['images_per_second']} images/s)"
    )
    metrics = run.json("metrics.json")
    if metrics:
        acc = metrics["accuracy"]
        print(f"  accuracy {acc['value']:.3f} [{acc['low']:.3f}, {acc['high']:.3f}]")
    for name, s in m.get("sections", {}).items():
        if s.get("status") != "ok":
            print(f"  section {name}: {s.get('status')} {s.get('error', s.get('reason', ''))}")
    for skip in m.get("skipped", [])[:10]:
        print(f"  skipped {skip['relpath']}: {skip['reason']}")
    if m.get("n_skipped", 0) > 10:
        print(f"  ... and {m['n_skipped'] - 10} more skipped (see manifest.json)")


if __name__ == "__main__":
    sys.exit(main())
