# Two entry points for a newcomer: `make run` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TYPED_PACKAGES := -p costline.schemas -p costline.ingest -p costline.pipeline

.PHONY: install system-deps run test lint typecheck check schema clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[server,dev]'
	touch $(STAMP)

install: $(STAMP)

## Start costline on its embedded defaults (local broker, embedded ClickHouse, demo traffic).
run: install
	$(BIN)/costline up

# Debian packages some tests drive: Chromium (dashboard screenshots) and docker-compose (validates
# deploy/compose offline). Installed when missing and we are root; otherwise those tests skip, saying why.
SYSTEM_PACKAGES := chromium docker-compose
system-deps:
	@if ! command -v chromium >/dev/null || ! command -v docker-compose >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES); \
	  else echo "note: $(SYSTEM_PACKAGES) not installed (needs root + apt); browser and compose tests will skip"; fi; \
	fi

## Lint and run the whole test suite (what CI runs).
test: install system-deps lint typecheck
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy cannot follow setuptools' editable finder, so it reads a link tree shaped like the installed package.
typecheck: install
	rm -rf build/typecheck && mkdir -p build/typecheck/costline
	for f in costline/*.py; do ln -s ../../../$$f build/typecheck/costline/; done
	for d in schemas ingest pipeline dashboard; do ln -s ../../../$$d build/typecheck/costline/$$d; done
	MYPYPATH=build/typecheck $(BIN)/mypy $(TYPED_PACKAGES)

## Same as test (kept for habit: make check mirrors CI).
check: test typecheck

## Re-export the UsageEvent JSON Schema after changing the model.
schema: install
	$(BIN)/python -m costline.schemas.json_schema

clean:
	rm -rf $(VENV) build .costline .pytest_cache .mypy_cache .ruff_cache
