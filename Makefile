# The two commands of the README: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
POSTGRES_URL ?= $(BYLINE_TEST_POSTGRES_URL)

.PHONY: run test test-sqlite test-postgres lint bench load clean

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed; installing Debian's python3-venv"; \
	  apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null && \
	  rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

run: $(VENV)/.installed
	$(BIN)/byline serve --host 127.0.0.1 --port 8000

test: $(VENV)/.installed-dev
	$(MAKE) test-sqlite
	@if [ -n "$(POSTGRES_URL)" ]; then $(MAKE) test-postgres; \
	 else echo "BYLINE_TEST_POSTGRES_URL is not set: PostgreSQL run skipped"; fi

test-sqlite: $(VENV)/.installed-dev
	BYLINE_TEST_ENGINE=sqlite $(BIN)/pytest

test-postgres: $(VENV)/.installed-dev
	BYLINE_TEST_ENGINE=postgres BYLINE_TEST_POSTGRES_URL=$(POSTGRES_URL) $(BIN)/pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app

clean:
	rm -rf $(VENV) byline.db byline.db-wal byline.db-shm .pytest_cache .mypy_cache .ruff_cache
