# Raven — developer targets. `make help` lists them (generated from the ## comments).
# Deployment targets (deploy, start, stop, ...) arrive with the docker compose stack.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON_VENV := .venv
PY := $(PYTHON_VENV)/bin/python

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show all commands
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: ## Run Raven with the offline demo exchange (gRPC :50051, health :8080, metrics :9090)
	$(CARGO) run --release --bin raven -- serve --demo

.PHONY: build
build: ## Build Rust application (release)
	$(CARGO) build --release --workspace

.PHONY: dev-setup
dev-setup: ## Setup development environment (Rust components, Python venv, redis-server for the tests)
	rustup component add rustfmt clippy 2>/dev/null || true
	scripts/setup-python.sh $(PYTHON_VENV)
	scripts/setup-services.sh

.PHONY: test
test: ## Run all tests (Rust unit + integration, Python gRPC client)
	$(MAKE) test-unit
	$(MAKE) test-integration

.PHONY: test-unit
test-unit: ## Unit tests only (every crate's lib and property tests)
	$(CARGO) test --workspace --lib --bins

.PHONY: test-integration
test-integration: ## Integration tests only (capture replays, faults, gRPC end to end, Redis, Python client)
	scripts/setup-python.sh $(PYTHON_VENV)
	scripts/setup-services.sh
	$(CARGO) test --workspace --test '*'
	$(CARGO) build --bin raven
	RAVEN_BIN=target/debug/raven $(PY) -m pytest -q tests/python

.PHONY: lint
lint: ## Run clippy linter (warnings are errors)
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: fmt
fmt: ## Format code
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## Check formatting without changing files
	$(CARGO) fmt --all -- --check

.PHONY: dev
dev: ## Run fmt + lint + test
	$(MAKE) fmt
	$(MAKE) lint
	$(MAKE) test

.PHONY: bench
bench: ## Benchmarks: criterion (parse, book, fan-out) and the end-to-end harness
	$(CARGO) bench --workspace
	scripts/bench-e2e.sh
