# The two set-up commands of the README:
#   make demo   create .venv, install fusecli, fuse example inputs for every task
#   make test   install the test extra into the same .venv and run the whole suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# 2.13.0 is the CPU build on the project machines; newer releases pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo-output

.PHONY: demo test install install-test lint format bench clean

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

clean:
	rm -rf $(VENV) $(DEMO_OUT) build dist *.egg-info
