# Strongroom — the commands a newcomer needs.
#   make run    start the OP on https://localhost:8443 (SQLite, dev certificates and keys)
#   make test   every test, on SQLite and on a throw-away PostgreSQL
SHELL := /bin/bash
CARGO ?= cargo
# nextest runs each test in its own process (parallel, isolated); plain cargo test otherwise.
TEST_RUNNER := $(shell if $(CARGO) nextest --version >/dev/null 2>&1; then echo "nextest run --no-fail-fast"; else echo "test --no-fail-fast"; fi)

.PHONY: run build release test test-sqlite fmt lint check clean-data help

help:
	@echo "make run | test | fmt | lint | build | release"

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p strongroom

run:
	$(CARGO) run -p strongroom -- serve

# PostgreSQL tests need a server: scripts/with-postgres.sh starts one in a temp
# dir (as a non-root user), exports STRONGROOM_TEST_DATABASE_URL and stops it after.
test:
	scripts/with-postgres.sh $(CARGO) $(TEST_RUNNER) --workspace

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-data:
	rm -rf data
