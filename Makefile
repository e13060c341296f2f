# The two set-up commands of the README:
#   make demo   create .venv, install fusecli, fuse example inputs for every task
#   make test   install the test extra into the same .venv and run the whole suite
# Benchmarks only:
#   make bench-tools   the model card's external competitors: enfuse (Debian package, needs
#                      root) and, in a virtualenv of their own, OpenCV and OpenFocus
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# 2.13.0 is the CPU build on the project machines; newer releases pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo-output
# benchmarks/external.py looks here too (or in $FUSECLI_BENCH_VENV).
BENCH_VENV ?= benchmarks/.venv

.PHONY: demo test install install-test lint format bench bench-tools clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

demo: install
	$(BIN)/fuse demo -o $(DEMO_OUT)

test: install-test
	$(BIN)/python -m pytest -x -q

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/bench_engine.py

bench-tools:
	command -v enfuse >/dev/null 2>&1 || (apt-get update -q && apt-get install -y -q --no-install-recommends enfuse) \
		|| echo "warning: enfuse could not be installed; the model card will list it as not run"
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet -r benchmarks/requirements.txt

clean:
	rm -rf $(VENV) $(DEMO_OUT) build dist *.egg-info
