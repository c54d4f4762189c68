# Strongroom — the commands a newcomer needs.
#   make run    start the OP on https://localhost:8443 (SQLite, dev certificates and keys)
#   make try    (another terminal, while `make run` runs) sign in as the demo user, see a token
#   make test   every test, on SQLite and on a throw-away PostgreSQL
SHELL := /bin/bash
CARGO ?= cargo
# nextest runs each test in its own process (parallel, isolated); plain cargo test otherwise.
TEST_RUNNER := $(shell if $(CARGO) nextest --version >/dev/null 2>&1; then echo "nextest run --no-fail-fast"; else echo "test --no-fail-fast"; fi)

.PHONY: admin-fuzz fuzz helm-check demo demo-tpp demo-ciba demo-uk demo-tpp-uk run try build release test test-browser test-sqlite fmt lint check clean-data help image

help:
	@echo "make run | try | test | fmt | lint | build | release"

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release -p strongroom

run:
	$(CARGO) run -p strongroom --bin strongroom -- serve

# The dev client through the built-in flow against `make run` (another
# terminal): prints the authorize URL (and opens it), waits for the browser,
# prints the token summary. TRY_ARGS passes options (strongroom try --help),
# e.g. TRY_ARGS="--no-open --prompt login".
TRY_ARGS ?=
try:
	$(CARGO) run -q -p strongroom --bin strongroom -- try $(TRY_ARGS)

# Strongroom + the demo bank wired through the hooks (docs/hooks.md). Ports
# and paths follow the same overrides as `make run` (STRONGROOM_LISTEN,
# STRONGROOM_MTLS_LISTEN, STRONGROOM_ISSUER, STRONGROOM_DATA_DIR, with the
# same defaults) plus DEMO_BANK_LISTEN (127.0.0.1:8070) for the bank; the
# bank's URLs in config/demo.toml are rewritten to DEMO_BANK_LISTEN in a
# temporary copy. Customers at http://$DEMO_BANK_LISTEN/my/consents. Ctrl-C stops both.
DEMO_ENV = issuer=$${STRONGROOM_ISSUER:-https://localhost:8443}; issuer=$${issuer%/}; \
	data=$${STRONGROOM_DATA_DIR:-data}; bank=$${DEMO_BANK_LISTEN:-127.0.0.1:8070}; \
	mtls_port=$${STRONGROOM_MTLS_LISTEN:-127.0.0.1:8444}; mtls_port=$${mtls_port\#\#*:}; \
	mtls=$$(printf '%s' "$$issuer" | sed -E "s,^(https?://(\[[^]]*\]|[^/:]*))(:[0-9]+)?,\1:$$mtls_port,")
demo:
	$(CARGO) build -p strongroom -p demo-bank
	@$(DEMO_ENV); cfg=$$(mktemp --suffix=.toml); \
	sed "s|http://127.0.0.1:8070/|http://$$bank/|g" config/demo.toml > "$$cfg"; \
	STRONGROOM_CONFIG="$$cfg" $(CARGO) run -q -p strongroom --bin strongroom -- serve & sr=$$!; \
	trap 'kill $$sr 2>/dev/null; rm -f "$$cfg"' EXIT INT TERM; \
	for i in $$(seq 1 50); do [ -f "$$data/dev-ca.pem" ] && break; sleep 0.2; done; \
	DEMO_BANK_LISTEN="$$bank" DEMO_BANK_STRONGROOM="$$issuer" DEMO_BANK_CA="$$data/dev-ca.pem" \
		$(CARGO) run -q -p demo-bank --bin demo-bank

# The demo TPP's walkthrough against a running `make demo` (another terminal,
# same overrides): consent, PAR, the customer at the bank's pages (--auto),
# code exchange, introspection, revocation at the bank.
DEMO_TPP = $(DEMO_ENV); DEMO_TPP_ISSUER="$$issuer" DEMO_TPP_MTLS="$$mtls" DEMO_TPP_BANK="http://$$bank" \
	DEMO_TPP_DATA="$$data" $(CARGO) run -q -p demo-bank --bin demo-tpp --
demo-tpp:
	@$(DEMO_TPP) --auto

# `make demo` in the UK configuration (config/examples/uk-ob.toml, docs/fapi1.md):
# profile uk-ob, one listener that asks every client for an optional
# certificate (UK TPPs never read mtls_endpoint_aliases), the test directory
# trusted for registrations, the demo bank behind the hooks. Same overrides
# as `make demo` (STRONGROOM_MTLS_LISTEN is not used).
demo-uk:
	$(CARGO) build -p strongroom -p demo-bank
	@$(DEMO_ENV); cfg=$$(mktemp --suffix=.toml); \
	sed "s|http://127.0.0.1:8070/|http://$$bank/|g" config/examples/uk-ob.toml > "$$cfg"; \
	STRONGROOM_CONFIG="$$cfg" STRONGROOM_MTLS_LISTEN=none $(CARGO) run -q -p strongroom --bin strongroom -- serve & sr=$$!; \
	trap 'kill $$sr 2>/dev/null; rm -f "$$cfg"' EXIT INT TERM; \
	for i in $$(seq 1 50); do [ -f "$$data/dev-ca.pem" ] && break; sleep 0.2; done; \
	DEMO_BANK_LISTEN="$$bank" DEMO_BANK_STRONGROOM="$$issuer" DEMO_BANK_CA="$$data/dev-ca.pem" \
		$(CARGO) run -q -p demo-bank --bin demo-bank

# The UK TPP walkthrough against a running `make demo-uk` (another
# terminal, same overrides), as Open Banking Connector does it: the test
# directory issues the TPP's software statement, PS256 signing key and
# OBWAC-shaped certificate (strongroom-directory issue --uk, into
# the data dir's directory/), then demo-tpp --uk registers, creates a consent, sends
# the customer through the hybrid flow with a request object by value,
# redeems the code over mTLS and reads the accounts; once signed, once
# encrypted. DEMO_TPP_UK_ARGS (default --auto) passes options, e.g. "" to
# sign in yourself in a browser.
DEMO_TPP_UK_ARGS ?= --auto
demo-tpp-uk:
	@$(DEMO_ENV); dir="$$data/directory"; \
	$(CARGO) run -q -p strongroom --bin strongroom-directory -- issue --uk --out "$$dir" --data "$$data" \
		--directory-key config/demo-directory-key.pem --software-id tppUkDemo01 \
		--org-id 0015800001041REAAY --org-name "Demo UK TPP Ltd" \
		--redirect-uri https://tpp.example/uk/callback --role AISP >/dev/null && \
	$(DEMO_TPP) --uk --directory "$$dir" $(DEMO_TPP_UK_ARGS) && \
	$(DEMO_TPP) --uk --encrypt --directory "$$dir" $(DEMO_TPP_UK_ARGS)

# The decoupled journey (CIBA) against a running `make demo`, same
# overrides: the TPP prints "Approve on the phone: <bank>/my/phone (binding
# message: …)" and polls until the customer (mia / correct horse) answers
# there. DEMO_CIBA_ARGS passes options (demo-tpp --help), e.g. "--auto" to
# approve without a browser (CI), "--auto --deny", "--user noah".
DEMO_CIBA_ARGS ?=
demo-ciba:
	@$(DEMO_TPP) --ciba $(DEMO_CIBA_ARGS)

# PostgreSQL tests need a server: scripts/with-postgres.sh starts one in a temp
# dir (as a non-root user), exports STRONGROOM_TEST_DATABASE_URL and stops it after.
test:
	scripts/with-postgres.sh $(CARGO) $(TEST_RUNNER) --workspace
	$(MAKE) test-browser

# The Helm chart linted, rendered and validated against the Kubernetes API
# schemas (helm and kubernetes-validate from PyPI, scripts/helm-check.sh).
helm-check:
	scripts/helm-check.sh

# The admin API fuzzed from its own OpenAPI document (schemathesis, PyPI:
# pip install schemathesis cryptography): no answer may be a 5xx.
# ADMIN_FUZZ_SECS bounds it (default 60).
admin-fuzz:
	$(CARGO) build -q -p strongroom --bin strongroom
	scripts/admin-fuzz.sh

# Every parser of outside input under libFuzzer (fuzz/README.md; cargo
# fuzz, nightly): the committed regressions first, then FUZZ_SECS of new
# inputs per target.
FUZZ_SECS ?= 20
fuzz:
	scripts/fuzz.sh $(FUZZ_SECS)

# The flows in headless Chromium (tests/browser, docs/testing.md): Debian's
# chromium, Playwright (playwright-core) and axe-core; screenshots of every
# page at 320 and 1280 px land in target/browser-screenshots/.
test-browser:
	$(CARGO) build -p strongroom -p demo-bank
	scripts/browser-tests.sh $(BROWSER_TESTS)

fmt:
	$(CARGO) fmt --all

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean-data:
	rm -rf data

# The container image (deploy/Dockerfile; needs a Docker engine), and the
# demo in containers: docker compose -f deploy/docker-compose.yml up --build
# (docs/operations.md).
image:
	docker build -f deploy/Dockerfile -t strongroom:dev .

# Benchmarks (docs/benchmarks.md): Strongroom beside node-oidc-provider.
#   make bench        release build, SQLite in a fresh data dir; BENCH_DB=postgres
#                     runs it on a throw-away PostgreSQL (scripts/with-postgres.sh)
#   make bench-smoke  a few seconds per case on the debug build (CI: keeps it working)
# BENCH_ARGS passes options through (e.g. BENCH_ARGS="--reps 5 --duration 10").
.PHONY: bench bench-smoke bench-peer
BENCH_ARGS ?=
BENCH_PG := $(if $(filter postgres,$(BENCH_DB)),scripts/with-postgres.sh)
BENCH_PG_FLAG := $(if $(filter postgres,$(BENCH_DB)),--postgres)

bench-peer:
	@if command -v npm >/dev/null 2>&1; then \
	  [ -d bench/peer/node_modules/oidc-provider ] || (cd bench/peer && npm install --no-audit --no-fund --loglevel=error) \
	  || echo "bench: npm install failed; the peer will be skipped"; \
	else echo "bench: npm not found; the node-oidc-provider peer will be skipped"; fi

bench: bench-peer
	$(CARGO) build --release -p strongroom -p strongroom-bench
	$(BENCH_PG) target/release/strongroom-bench --server-bin target/release/strongroom $(BENCH_PG_FLAG) $(BENCH_ARGS)

bench-smoke: bench-peer
	$(CARGO) build -p strongroom -p strongroom-bench
	$(BENCH_PG) target/debug/strongroom-bench --smoke --server-bin target/debug/strongroom --out target/bench-smoke $(BENCH_PG_FLAG) $(BENCH_ARGS)

# Conformance (docs/conformance.md): the OIDF OP test plans mirrored as a
# black-box suite against a real Strongroom; prints module/variant/result and
# "N passed, N failed, N skipped". CONFORMANCE_DB=postgres runs it on a
# throw-away PostgreSQL; CONFORMANCE_ARGS passes options (e.g. --filter par-).
.PHONY: conformance conformance-ciba conformance-fapi1 conformance-kit
CONFORMANCE_ARGS ?=
CONFORMANCE_PG := $(if $(filter postgres,$(CONFORMANCE_DB)),scripts/with-postgres.sh)
CONFORMANCE_PG_FLAG := $(if $(filter postgres,$(CONFORMANCE_DB)),--backend postgres)

conformance:
	$(CARGO) build -p strongroom -p conformance
	$(CONFORMANCE_PG) target/debug/conformance $(CONFORMANCE_PG_FLAG) $(CONFORMANCE_ARGS)

# The FAPI-CIBA plan alone (make conformance runs it with the others).
conformance-ciba:
	$(MAKE) conformance CONFORMANCE_ARGS="--plan ciba $(CONFORMANCE_ARGS)"

# The FAPI 1.0 Advanced plan alone (plain_fapi and openbanking_uk).
conformance-fapi1:
	$(MAKE) conformance CONFORMANCE_ARGS="--plan fapi1 $(CONFORMANCE_ARGS)"

# The kit for the real OIDF suite: plan configurations + matching clients.
conformance-kit:
	conformance/oidf/provision.sh

# Reliability (docs/reliability.md): three Strongroom instances on one
# throw-away PostgreSQL, driven over HTTPS: 64 concurrent uses of each
# one-time value per round, PostgreSQL stopped under load and started again,
# kill -9 of an instance under full flows, a rolling restart, a flood of
# unique one-time values (rows and memory must level off). Rewrites the
# generated part of docs/reliability.md. RELIABILITY_ARGS passes options
# (target/debug/reliability --help), e.g. "--rounds 500 --outage-secs 30".
.PHONY: reliability
RELIABILITY_ARGS ?=
reliability:
	$(CARGO) build -p strongroom -p reliability
	scripts/with-postgres.sh target/debug/reliability $(RELIABILITY_ARGS)
