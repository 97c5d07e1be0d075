# The two commands of the README:
#   make run    set everything up (once) and open the dashboard on the bundled sample
#   make test   set up what the tests need (once) and run the whole test suite
# Both are idempotent: a second call only re-installs when pyproject.toml changed.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501
export ERRORSCOPE_RUNS_DIR ?= $(CURDIR)/runs
export NUMBA_CACHE_DIR ?= $(HOME)/.cache/errorscope/numba

.PHONY: run test setup setup-test chromium lint bench sample-run

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[timm]'  # timm: the sample's second model (a ViT)
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[test,ray]'
	touch $@

setup: $(VENV)/.installed

setup-test: $(VENV)/.installed-test chromium

# Debian's Chromium drives the end-to-end browser tests (browsers cannot be downloaded here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

sample-run: setup
	$(PY) -m analysis.cli sample

run: sample-run
	$(VENV)/bin/streamlit run dashboard/app.py --server.port $(PORT)

test: setup-test
	$(PY) -m pytest -q -ra $(PYTEST_ARGS)

lint: setup-test
	$(VENV)/bin/ruff check analysis dashboard tests bench
	$(VENV)/bin/ruff format --check analysis dashboard tests bench

bench: setup-test
	for b in bench/bench_*.py; do $(PY) $$b || exit 1; done
