# carepath: `make demo` sets up and runs the main job on embedded defaults; `make test` sets up
# and runs every test (the CI entry point, .ci/run, calls exactly `make test`).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo simulate test lint postgres chromium compose clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The service on embedded defaults: local Temporal dev server (state in .carepath/), SQLite,
# the worker and the API on http://127.0.0.1:8000 (worklist at /, OpenAPI at /docs). Ctrl-C stops it.
demo: setup
	$(BIN)/carepath dev --demo

# The example stories through the production workflow, activities and a temporary SQLite file.
simulate: setup
	$(BIN)/carepath simulate examples/*.json

# The test suite runs against a real PostgreSQL server too; install it when missing (CI is root).
postgres:
	@if ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing PostgreSQL (apt-get install -y postgresql)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	else echo "PostgreSQL is missing: run 'sudo apt-get install -y postgresql'"; exit 1; fi

# The browser test drives Debian's Chromium through Playwright (Playwright's own browser
# download cannot work offline).
chromium:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Chromium (apt-get install -y chromium)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else echo "Chromium is missing: run 'sudo apt-get install -y chromium'"; exit 1; fi

# docker-compose.yml is validated by a compose CLI (no Docker engine runs here).
compose:
	@if docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing a compose validator (apt-get install -y docker-compose)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	else echo "No compose CLI: run 'sudo apt-get install -y docker-compose'"; exit 1; fi

test: setup postgres chromium compose
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
