# Two commands: `make demo` runs vaultd against an embedded fake AWS; `make test` runs the
# whole suite (lint, types, tests). Both build .venv first if it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[demo,test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/vaultd demo

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The JS SDK client tests need node; without it they are skipped with a visible reason.
tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null; then \
		npm ci --prefix tests/js --no-audit --no-fund --loglevel=error && touch $@; \
	else echo "npm not found: the JavaScript SDK tests will be skipped"; fi

test: lint tests/js/node_modules/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/imds.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
