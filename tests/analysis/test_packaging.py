"""What a non-editable install (a wheel) contains, and how the CLI behaves without the checkout."""

import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.conftest import REPO


def _listed_packages() -> list[str]:
    tomllib = pytest.importorskip("tomllib")
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]


def test_every_source_folder_is_a_listed_package():
    listed = set(_listed_packages())
    for top in ("analysis", "dashboard"):
        for py in (REPO / top).rglob("*.py"):
            folder = py.parent.relative_to(REPO)
            name = ".".join(folder.parts)
            assert name in listed, f"{py.relative_to(REPO)} would be missing from the wheel"
            assert (REPO / folder / "__init__.py").exists(), f"{folder} has no __init__.py"


def test_every_dashboard_page_is_a_module_with_render():
    """Pages are callables (no page folder: Streamlit's legacy multipage mode stays off)."""
    import importlib

    from dashboard.views import VIEWS

    listed = set(_listed_packages())
    for v in VIEWS:
        module = importlib.import_module(v.module)
        assert callable(module.render), v.module
        assert module.__name__.rpartition(".")[0] in listed
    assert not (REPO / "dashboard" / "pages").exists()
    assert len({v.url for v in VIEWS}) == len(VIEWS)


def test_wheel_ships_the_page_modules(tmp_path):
    pytest.importorskip("setuptools")  # built offline with the environment's setuptools
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("analysis", "dashboard"):
        shutil.copytree(REPO / name, src / name, ignore=ignore)
    out = tmp_path / "wheel"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("errorscope-*.whl")
    names = set(zipfile.ZipFile(whl).namelist())
    from dashboard.views import VIEWS

    assert len(VIEWS) > 5
    for v in VIEWS:  # what each page's callable imports
        assert f"{v.module.replace('.', '/')}.py" in names, v.module
    assert "dashboard/app.py" in names and "dashboard/views/overview.py" in names
    assert not any(n.startswith(("sample_data/", "tests/")) for n in names)


def test_sample_without_the_checkout_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    import analysis.cli as cli

    monkeypatch.setattr(cli, "SAMPLE_DIR", tmp_path / "site-packages" / "sample_data")
    assert cli.main(["sample", "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("errorscope: error: no bundled sample at")
    assert "ships with the source checkout" in err and "errorscope analyze" in err
    assert not (tmp_path / "runs").exists()
