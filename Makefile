# Two commands on a fresh machine:  make run   (the main job)   and   make test
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PRESET ?= fmnist_quick

.PHONY: setup run app lint test bench clean

$(BIN)/tuner-tui: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(BIN)/tuner-tui

run: setup
	$(BIN)/tuner-tui --preset $(PRESET) --no-ui

app: setup
	$(BIN)/tuner-tui --preset $(PRESET)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/engine_speed.py --quick

clean:
	rm -rf $(VENV) build *.egg-info
