# The two entry points of the README: `make run` (demo pipeline) and `make test` (lint, types, all tests).
# Everything is installed into the project: .venv/ (Python) and .cache/ (uv, Maven repository, Kafka, Apicurio).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
UV_VERSION := 0.13.8
UV := .cache/uv/bin/uv
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install run test lint typecheck unit integration chromium promtool asyncapi bench bench-scale bench-classify bench-dashboard bench-preview chaos soak clean

$(UV):
	$(PYTHON) -m venv .cache/uv
	.cache/uv/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(BIN)/multichannel: $(UV) pyproject.toml uv.lock
	UV_PYTHON_DOWNLOADS=never $(UV) sync --frozen --python $(PYTHON)
	@touch $@

install: $(BIN)/multichannel

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install promtool
	$(BIN)/pytest tests/unit

# Debian's chromium for the dashboard's browser tests (installed when missing and root; else a message).
chromium:
	bash deploy/local/chromium.sh

# Debian's promtool for the tests of the alert and recording rules in deploy/prometheus/ (same way as chromium).
promtool:
	bash deploy/local/promtool.sh

integration: install chromium
	$(BIN)/pytest tests/integration

test: lint typecheck chromium promtool
	$(BIN)/pytest

# docs/asyncapi.yaml from the settings' defaults and schemas/*.avsc (`--check` in the tests keeps it current).
asyncapi: install
	$(BIN)/multichannel asyncapi

run: install
	$(BIN)/multichannel demo

# The whole comparison in about 20 minutes on 2 cores (5 of them the CSP data shapes and the realistic workload's
# row; `--shapes quick` or `none` for less); `multichannel bench` alone defaults to 1M events.
BENCH_ARGS ?= --events 200000 --accounts 20000
bench: install
	UV_PYTHON_DOWNLOADS=never $(UV) sync --frozen --group bench --python $(PYTHON)
	$(BIN)/multichannel bench $(BENCH_ARGS)

# State at scale: the exactly-once service once over 1,000,000 accounts, then its restore; writes
# docs/benchmarks-scale.md. About 15 minutes on 2 cores, 3 GB of memory and several GB of disk.
bench-scale: install
	$(BIN)/multichannel bench --scale --accounts 1000000 --events 3000000 --no-peer

# The rule engine alone and the classify command end to end, on a generated 1,000,000-event stream,
# with a sampling profile of the command (py-spy, from the bench group): about 3 minutes.
bench-classify: install
	UV_PYTHON_DOWNLOADS=never $(UV) sync --frozen --group bench --python $(PYTHON)
	$(BIN)/python -m benchmarks.bench_classify

# The rule-book preview (`multichannel rules preview --to current`) over a seed deployment of 1,000,000 accounts
# written to a local broker, with 1 and 2 workers (seconds, peak memory of the process tree); writes
# docs/benchmarks-preview.md. About 6 minutes on 2 cores, most of it writing the deployment's changelog.
bench-preview: install
	$(BIN)/python -m benchmarks.bench_preview

# The dashboard at 100,000 accounts and 1,000,000 decisions (memory, page times), then live on the local
# stack (commit → open overview page); writes docs/dashboard-benchmarks.md. About 2 minutes.
bench-dashboard: install chromium
	$(BIN)/python -m tests.bench_dashboard

# The fault suite on its own local broker and registry: 50+ instance kills, 3 broker restarts, a zombie, a
# registry outage and a burst in exactly-once mode, then a shorter at-least-once run; writes
# docs/reliability.md. About 25 minutes on 2 cores; CHAOS_SEED=N repeats a run.
chaos: install
	$(BIN)/python -m tests.chaos $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

# Three instances at 80% of their measured maximum rate for 10 minutes (lag, RSS, error logs); writes the
# Soak section of docs/reliability.md. About 13 minutes.
soak: install
	$(BIN)/python -m tests.chaos.soak $(if $(CHAOS_SEED),--seed $(CHAOS_SEED))

clean:
	rm -rf $(VENV) .cache/uv .pytest_cache .mypy_cache .ruff_cache
