# liftlab — the two commands: `make demo` (main job on the embedded Postgres) and `make test`.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
DBT_VENV := .venv-dbt
GBSTATS_VENV := .venv-gbstats
SIZES ?= S,M
comma := ,
BIN := $(VENV)/bin
UV = $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
MANIFEST := dbt_project/target/manifest.json
DBT_SOURCES := $(shell find dbt_project -name '*.sql' -o -name '*.yml' 2>/dev/null | grep -v '/target/' | grep -v '/logs/')

.PHONY: setup demo test test-fast browser-deps dev psql stop decisions validate lock bench clean workers

setup: $(VENV)/.installed $(DBT_VENV)/.installed $(MANIFEST)

$(VENV)/.installed: requirements.lock pyproject.toml
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv
	$(UV) venv -q --allow-existing -p $(PYTHON) $(VENV)
	$(UV) pip install -q -p $(BIN)/python -r requirements.lock
	$(UV) pip install -q -p $(BIN)/python --no-deps -e .
	@touch $@

# dbt-core's pins conflict with causalml's (pathspec/black), so dbt gets its own virtualenv;
# Dagster calls it through DbtCliResource(dbt_executable=.venv-dbt/bin/dbt).
$(DBT_VENV)/.installed: requirements-dbt.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv
	$(UV) venv -q --allow-existing -p $(PYTHON) $(DBT_VENV)
	$(UV) pip install -q -p $(DBT_VENV)/bin/python -r requirements-dbt.lock
	@touch $@

$(MANIFEST): $(DBT_VENV)/.installed $(DBT_SOURCES)
	cd dbt_project && DBT_SEND_ANONYMOUS_USAGE_STATS=false ../$(DBT_VENV)/bin/dbt parse --quiet --profiles-dir .

demo: setup  ## generate the synthetic world, run every asset, print the decisions
	$(BIN)/liftlab demo

# Two workers, one group per module (tests/conftest.py): the session's world is built once per run
# (on the first worker that needs it, under a file lock) and shared by both; writers copy it with
# CREATE DATABASE … TEMPLATE. The build and its asset-by-asset second pass go first, the long
# modules next, the modules that read the world after them, the short ones last.
test: setup browser-deps $(GBSTATS_VENV)/.installed  ## the whole suite against real Postgres (embedded + the server at 127.0.0.1:5432)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --durations=15

test-fast: setup  ## pure tests and one small end-to-end run (a team's warehouse), for every edit
	$(BIN)/python -m pytest -n 2 --dist loadgroup -m "not heavy and not slow and not browser" --durations=10

# Browser tests drive Debian's Chromium through chromedriver (no browser download at test time).
browser-deps:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else echo "browser tests need: sudo apt-get install chromium chromium-driver"; fi; \
	fi

# make bench: the whole pipeline at sizes S (~10M events) and M (~100M events), every stage next
# to a baseline measured in the same run (psql \copy, dbt vs polars vs pandas, a bare polars
# group_by, GrowthBook's gbstats), each run in a process of its own as the UI launches it (wall
# time against the sum of the steps, every analyse_experiment run's wall time); then the study jobs
# on 1 and 2 Celery workers at the first size, and the pushdown aggregation vs the polars path at
# S and M. Results in bench/results/. `make bench SIZES=L` on demand.
bench: setup $(GBSTATS_VENV)/.installed
	$(BIN)/python bench/pipeline.py --sizes $(SIZES)
	$(BIN)/python bench/scaleout.py --size $(firstword $(subst $(comma), ,$(SIZES)))
	$(BIN)/python bench/pushdown.py --sizes S,M

# gbstats 0.8 pins numpy<2 and pandas<2: the benchmark's baseline gets its own virtualenv.
$(GBSTATS_VENV)/.installed: bench/requirements-gbstats.lock
	@command -v uv >/dev/null 2>&1 || $(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv
	$(UV) venv -q --allow-existing -p $(PYTHON) $(GBSTATS_VENV)
	$(UV) pip install -q -p $(GBSTATS_VENV)/bin/python -r bench/requirements-gbstats.lock
	@touch $@

# A local Redis (redis-server from the OS packages, on a free port) and two Celery workers on this
# machine, in the foreground (Ctrl-C stops them); it prints the variables that send a run's steps to
# them (LIFTLAB_EXECUTOR=celery …) for `make dev` in another shell. docs/scaling.md.
workers: setup  ## a local Redis and two Celery workers for the `celery` executor
	eval "$$($(BIN)/liftlab db env)" && $(BIN)/python -m liftlab.workers --workers 2

dev: setup  ## Dagster UI with the daemon on http://localhost:3000
	$(BIN)/liftlab dev

psql: setup  ## SQL shell on liftlab's database (embedded or DATABASE_URL)
	$(BIN)/liftlab psql

decisions: setup
	$(BIN)/liftlab decisions

validate: setup  ## validate the experiment specs and the Dagster definitions
	$(BIN)/liftlab validate
	eval "$$($(BIN)/liftlab db env)" && $(BIN)/dagster definitions validate -w platform/liftlab/dev_workspace.yaml

stop:  ## stop the embedded Postgres
	$(BIN)/liftlab db stop

lock:  ## re-resolve the locked dependencies
	$(UV) pip compile pyproject.toml --extra dev -p 3.11 -o requirements.lock
	$(UV) pip compile requirements-dbt.in -p 3.11 -o requirements-dbt.lock
	$(UV) pip compile bench/requirements-gbstats.in -p 3.11 -o bench/requirements-gbstats.lock

clean:
	rm -rf $(VENV) $(DBT_VENV) $(GBSTATS_VENV) bench/work .dagster_home dbt_project/target dbt_project/logs .pytest_cache
