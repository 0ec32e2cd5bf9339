# Two commands on a fresh machine:  make run   |   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test install install-test bytecode browser lint bench bench-service bench-dataset bench-methods clean

$(BIN)/convscope: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	touch $(BIN)/convscope

install: $(BIN)/convscope

## The project's own modules byte-compiled (pip does this for installed packages, not for an
## editable install): where Python writes no bytecode (PYTHONDONTWRITEBYTECODE, a read-only
## checkout), every `convscope` command otherwise compiles them from source as it starts.
## Bytecode older than its source is ignored, so a stale one costs only that compile.
bytecode: install
	$(BIN)/python -m compileall -q models worker service

## Install and start convscope with the embedded default (Redis, worker, API on :8000).
run: install bytecode
	$(BIN)/convscope up

## Install test dependencies (Python packages, Debian's Chromium) and run the whole suite.
test: install browser
	$(BIN)/python -m pytest -q

browser:
	@scripts/install-browser.sh

lint: install
	$(BIN)/ruff check models worker service tests benchmarks
	$(BIN)/mypy models worker service

bench: install bytecode
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python benchmarks/engine.py

## The service (convscope up, 1 and 2 workers) against the engine and tf-keras-vis, one run.
bench-service: install bytecode
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python benchmarks/service.py

## Dataset jobs (top_examples, 5,000 shapes images) with 1 and 2 workers against an in-process loop.
bench-dataset: install bytecode
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python benchmarks/dataset.py

## Every CAM and saliency method on 320 two-shape images: pointing game, deletion/insertion AUC,
## time per image, agreement with tf-keras-vis, integrated gradients' completeness (one table).
bench-methods: install bytecode
	$(BIN)/pip install -q -e ".[test,bench]"
	$(BIN)/python benchmarks/methods.py

clean:
	rm -rf $(VENV) .pytest_cache

## docker-compose.yml in a real Docker engine (started here if none runs; root): builds the
## images on a Debian base made from Debian's packages, runs the stack and its failure drills.
.PHONY: compose-test
compose-test: install
	@why=$$(scripts/docker-engine.sh start) || { echo "compose test: no Docker engine: $$why"; exit 1; }
	deploy/base-image.sh convscope-base:bookworm
	CONVSCOPE_COMPOSE_TEST=1 CONVSCOPE_BASE_IMAGE=convscope-base:bookworm \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/compose
