# The two commands of the README: `make run` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
POSTGRES_URL ?= $(BYLINE_TEST_POSTGRES_URL)

.PHONY: run test test-sqlite test-postgres lint bench load clean
.PHONY: bench-tools bench-data bench-reads bench-ingest bench-profile bench-removals bench-report
.PHONY: bench-feeds

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

# Benchmarks (bench/README.md): `make bench` loads BENCH_ROWS articles (default 1,000,000)
# into SQLite and PostgreSQL if not loaded yet, then measures, profiles and prints the table.
# `BENCH_ROWS=100000 make bench` is the quick pass. PostgreSQL: BENCH_POSTGRES_URL (the
# server; the benchmark database byline_bench is created on it).
BENCH_ROWS ?= 1000000
BENCH_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
BENCH = BENCH_ROWS=$(BENCH_ROWS) BENCH_POSTGRES_URL=$(BENCH_POSTGRES_URL) $(BIN)/python -m
DATASETTE_VENV := bench/data/venv-datasette

$(VENV)/.installed-bench: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[bench]'
	@touch $@

# Datasette, the peer of the read benchmark, in a venv of its own (its pins are not ours).
$(DATASETTE_VENV)/bin/datasette:
	$(PYTHON) -m venv $(DATASETTE_VENV)
	$(DATASETTE_VENV)/bin/pip install -q datasette

bench-tools: $(VENV)/.installed-bench $(DATASETTE_VENV)/bin/datasette
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  pg_ctlcluster --skip-systemctl-redirect "$$(ls /etc/postgresql | head -n 1)" main start; \
	  for _ in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

bench: bench-data bench-reads bench-ingest bench-profile bench-removals bench-report

bench-data: bench-tools
	$(BENCH) bench.generate

bench-reads: bench-tools
	$(BENCH) bench.reads

bench-ingest: bench-tools
	$(BENCH) bench.ingest

bench-profile: bench-tools
	$(BENCH) bench.profile

# 100,000 queued removals drained on copies of the benchmark databases (1, 2, 4 `byline
# worker` on PostgreSQL; `byline serve`'s embedded scheduler on SQLite), then filing-to-451
# latency; timed parts take /tmp/byline-bench.lock. Results: bench/out/removals.{json,md}.
bench-removals: bench-tools
	$(BENCH) bench.removals

# Feed polling against lemon24's `reader` (bench/README.md, "Feeds"): BENCH_FEEDS feeds
# (default 10,000; 1,000 is the quick pass) served on 127.0.0.1 by server processes of its
# own; byline on PostgreSQL (1 and 4 worker processes, database byline_bench_feeds) and
# SQLite (1), reader (1 and 4 workers), two cycles each. Results: bench/out/feeds-<N>.json.
BENCH_FEEDS ?= 10000

bench-feeds: $(VENV)/.installed-bench
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  pg_ctlcluster --skip-systemctl-redirect "$$(ls /etc/postgresql | head -n 1)" main start; \
	  for _ in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	$(BENCH) bench.feeds --feeds $(BENCH_FEEDS)

bench-report:
	@$(BENCH) bench.report

# Mixed load and the zero-loss checks after it (bench/README.md, "Mixed load"): 5 minutes on
# PostgreSQL (serve --workers 2 and a separate worker, database byline_load on
# LOAD_POSTGRES_URL's server), then 60 s on SQLite with the embedded scheduler.
LOAD_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres

load: $(VENV)/.installed
	@pg_isready -q -h 127.0.0.1 -p 5432 || { \
	  pg_ctlcluster --skip-systemctl-redirect "$$(ls /etc/postgresql | head -n 1)" main start; \
	  for _ in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }
	LOAD_POSTGRES_URL=$(LOAD_POSTGRES_URL) $(BIN)/python -m bench.load --engine postgres --duration 300
	$(BIN)/python -m bench.load --engine sqlite --duration 60

clean:
	rm -rf $(VENV) byline.db byline.db-wal byline.db-shm .pytest_cache .mypy_cache .ruff_cache
