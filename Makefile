# Two entry points (see README "Quick start"): `make demo` runs the main job end to end,
# `make test` runs the whole test suite. Both create or reuse the virtual environment in .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= runs/demo
DEMO_CONFIG ?= configs/tiny.py

.PHONY: demo test lint venv clean-demo

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[dev,deploy]'
	touch $@

test: venv lint
	$(BIN)/python -m pytest

# Style and structure (config in pyproject.toml): ruff's lint and format check, and the import
# layers (import-linter: every package imports only from the layers below it).
lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

demo: venv
	BIN=$(BIN) DEMO_DIR=$(DEMO_DIR) DEMO_CONFIG=$(DEMO_CONFIG) bash tools/demo.sh

clean-demo:
	rm -rf $(DEMO_DIR)
