# Two commands for a fresh machine (Python 3.11 and make):
#   make run    - the server on an embedded PostgreSQL with demo data, and the desktop app on it
#   make test   - the whole test suite (lint, types, layering, tests)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
DATA   ?= .data

.PHONY: run server test check unit slow bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@rm -f $(VENV)/.installed-*
	@touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/ehr-server demo --data-dir $(DATA)

server: $(STAMP)
	$(BIN)/ehr-server serve --data-dir $(DATA) --seed-demo

check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy shared_models sync_server desktop
	$(BIN)/lint-imports

unit: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

slow: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m slow

bench: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -s -m benchmark tests/benchmarks

test: check unit

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
