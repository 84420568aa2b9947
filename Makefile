# HelloQuitteX — two commands on a fresh machine: `make install` then `make run`; `make test`.
SHELL       := /bin/bash
PYTHON      ?= python3
VENV        := .venv
TOOLS       := .tools
UV_VERSION  := 0.13.9
UV          := $(TOOLS)/bin/uv
SHARED      ?= $(abspath ../shared)
BIN         := $(VENV)/bin
export UV_PYTHON := $(PYTHON)

.PHONY: install venv peers browser run test lint fmt bench chaos clean

install: venv peers browser ## venv from uv.lock + ingest's C fast path, the test peers, Chromium

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install -q "uv==$(UV_VERSION)"

venv: $(UV)
	$(UV) sync --frozen
	$(BIN)/python -m services.ingest.fastpath

peers: ## the local Bluesky PDS and Mastodon peer (state outside the repo, see their READMEs)
	@if [ -d "$(SHARED)/peers" ]; then \
	  bash "$(SHARED)/peers/bluesky/install.sh" && bash "$(SHARED)/peers/mastodon/install.sh"; \
	else echo "no $(SHARED)/peers: skipping test peers (needed by make test only)"; fi

browser: ## Debian's Chromium for the browser test (never a downloaded browser build)
	@if command -v chromium >/dev/null; then echo "chromium: $$(command -v chromium)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	  || echo "could not install chromium"; \
	else echo "install Debian's chromium package for the browser test (sudo apt-get install chromium)"; fi

run: ## the whole platform on embedded servers unless NATS_URL / REDIS_URL / DATABASE_URL are set
	$(BIN)/hqx up

test:
	$(BIN)/pytest -q -p no:cacheprovider

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy hqx services

fmt:
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: ## speed and memory targets, as ratios to baselines of the same run -> BENCHMARKS.md
	$(BIN)/python -m bench $(BENCH_ARGS)

chaos: ## exodus day under faults: kills, store restarts, network drops; checks exactly-once
	$(BIN)/python -m bench.exodus --quick --chaos $(BENCH_ARGS)

clean:
	rm -rf .hqx artifacts
