# Two commands: `make demo` runs vaultd against an embedded fake AWS; `make test` runs the
# whole suite (lint, types, tests). Both build .venv first if it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint bench clean

# The first run installs about 110 packages: say so, and let pip show each one (plain lines,
# no progress bars off a terminal, so CI logs stay readable).
$(VENV)/.installed: pyproject.toml
	@echo "==> creating $(VENV) and installing vaultd with its demo and test tools (about 110 packages, one to three minutes; once)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e '.[demo,test]'
	@# pip compiles a regular install's modules; an editable one's are compiled on first
	@# import, or never where PYTHONDONTWRITEBYTECODE is set, and then every `vaultd status`
	@# compiles its modules again (a third slower). Write them once here, as pip would.
	$(BIN)/python -m compileall -q src
	@touch $@
	@echo "==> installed: vaultd, aws and the test tools are in $(BIN)/"

demo: $(VENV)/.installed
	$(BIN)/vaultd demo

lint: $(VENV)/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# The JS SDK client tests need node; without it, or when npm cannot fetch the SDK (offline,
# a proxy's certificate), they are skipped with a visible reason and the rest still runs.
# npm runs inside tests/js rather than with --prefix, which would hide the machine's npmrc.
tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	@if ! command -v npm >/dev/null; then \
		echo "npm not found: the JavaScript SDK tests will be skipped"; \
	elif echo "==> installing the AWS SDK for JavaScript for the client tests (npm ci)" && \
		(cd tests/js && npm ci --no-audit --no-fund --no-update-notifier --loglevel=error); then \
		touch $@; \
	else echo "npm ci failed (see above): the JavaScript SDK tests will be skipped"; fi

test: lint tests/js/node_modules/.installed
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python bench/imds.py
	$(BIN)/python bench/cli.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
