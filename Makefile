# Every target bootstraps the virtual environment it needs; only python3 (3.11+) is required. The set-up
# also installs Debian's Chromium, which the console's browser tests drive, when it is missing.
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: run test lint unit bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)
	touch $(STAMP)

run: $(STAMP)            ## start the service on SQLite with the demo team
	$(BIN)/procession serve --demo

test: lint $(STAMP)      ## the whole suite: lint, types, unit, integration (SQLite + PostgreSQL), end-to-end
	$(BIN)/pytest -n 2 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

bench: $(STAMP)          ## benchmarks (slow; print figures and ratios)
	$(BIN)/python bench/create.py

clean:
	rm -rf $(VENV) procession-data .pytest_cache .mypy_cache .ruff_cache
