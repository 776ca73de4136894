# Raven — `make help` lists every target (generated from the ## comments; ##@ starts a
# group).
#
# Deployment targets (deploy, start, stop, status, backup, restore, ...) run against one
# of two stacks, chosen by STACK:
#   STACK=docker  docker compose (docker-compose.yml, .env): the deployment guide's stack
#   STACK=native  InfluxDB 1.x, Redis and Prometheus from Debian's packages and Raven as
#                 plain processes, on the guide's ports, state in .stack/ (no Grafana or
#                 Jaeger: they have no Debian packages)
# Default: docker when a Docker engine answers Compose (v2 `docker compose` or v1
# `docker-compose`), native otherwise.
# Both are scripts/stack/{docker,native}.sh, with the same verbs.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON_VENV := .venv
PY := $(PYTHON_VENV)/bin/python
STACK_SH := scripts/stack/stack.sh
export STACK

.DEFAULT_GOAL := help

##@ Help

.PHONY: help
help: ## Show all commands
	@awk 'BEGIN {FS = ":.*## "} \
		/^##@ / {printf "\n\033[1m%s\033[0m\n", substr($$0, 5); next} \
		/^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@printf '\n  STACK=docker|native picks the deployment stack (now: %s)\n' \
		"$$(STACK_QUIET=1 $(STACK_SH) which 2>/dev/null || echo unknown)"

##@ Development

.PHONY: run
run: ## Run Raven with the offline demo exchange (gRPC :50051, health :8080, metrics :9090)
	$(CARGO) run --release --bin raven -- serve --demo

.PHONY: build
build: ## Build Rust application (release)
	$(CARGO) build --release --workspace

.PHONY: dev-setup
dev-setup: ## Setup development environment (Rust components, Python venv, the servers the tests start)
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
test-integration: ## Integration tests only (replays, faults, gRPC, stores, observability, Python client, deploy checks)
	scripts/setup-python.sh $(PYTHON_VENV)
	scripts/setup-services.sh
	$(CARGO) test --workspace --test '*'
	$(CARGO) build --bin raven
	RAVEN_BIN=target/debug/raven $(PY) -m pytest -q tests/python tests/deploy

.PHONY: lint
lint: ## Run clippy linter (warnings are errors)
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: fmt
fmt: ## Format code
	$(CARGO) fmt --all

.PHONY: fmt-check
fmt-check: ## Check formatting without changing files
	$(CARGO) fmt --all -- --check

.PHONY: lint-scripts
lint-scripts: ## Check the shell scripts with shellcheck (apt: shellcheck)
	shellcheck -x scripts/*.sh scripts/stack/*.sh deploy/raven/*.sh deploy/ci/*/*.sh

.PHONY: dev
dev: ## Run fmt + lint + test
	$(MAKE) fmt
	$(MAKE) lint
	$(MAKE) test

.PHONY: bench
bench: ## Benchmarks: criterion (parse, book, fan-out, SQLite store), InfluxDB store, end to end
	scripts/setup-services.sh
	$(CARGO) bench --workspace --exclude raven
	scripts/bench-e2e.sh

.PHONY: bench-smoke
bench-smoke: ## A short end-to-end latency run (10 k frames/s, 10 subscribers): prints the percentiles, fails only if it cannot run
	scripts/bench-e2e.sh -- latency --rate 14700 --duration 5 --warmup 2

##@ Deployment (STACK=docker|native)

.PHONY: deploy
deploy: ## Deploy full stack: build, start, wait until healthy, show URLs
	@$(STACK_SH) deploy

.PHONY: start
start: ## Start services (waits until each is ready)
	@$(STACK_SH) start

.PHONY: stop
stop: ## Stop services
	@$(STACK_SH) stop

.PHONY: restart
restart: ## Restart services
	@$(STACK_SH) restart

.PHONY: status
status: ## Show running services
	@$(STACK_SH) status

.PHONY: health
health: ## Check service health (exit 1 if any is unhealthy)
	@$(STACK_SH) health

.PHONY: urls
urls: ## Show service URLs
	@$(STACK_SH) urls

.PHONY: docker-build
docker-build: ## Build Docker image only (needs Docker)
	@STACK=docker $(STACK_SH) build

##@ Monitoring & Logs (FOLLOW=0 prints and exits)

.PHONY: logs
logs: ## All service logs
	@$(STACK_SH) logs

.PHONY: logs-server
logs-server: ## Market data server logs
	@$(STACK_SH) logs-server

.PHONY: logs-influx
logs-influx: ## InfluxDB logs
	@$(STACK_SH) logs-influx

.PHONY: logs-grafana
logs-grafana: ## Grafana logs (Docker stack only)
	@$(STACK_SH) logs-grafana

##@ Data Management

.PHONY: backup
backup: ## Create data backup in docker/backups/raven_backup_YYYYmmdd_HHMMSS/
	@$(STACK_SH) backup

.PHONY: restore
restore: ## Restore and verify a backup: make restore BACKUP_NAME=raven_backup_YYYYmmdd_HHMMSS
	@test -n "$(BACKUP_NAME)" || { echo "usage: make restore BACKUP_NAME=raven_backup_YYYYmmdd_HHMMSS"; ls docker/backups 2>/dev/null; exit 2; }
	@$(STACK_SH) restore "$(BACKUP_NAME)"

.PHONY: clean
clean: ## Clean containers/networks (native: stop, remove logs and generated config; data kept)
	@$(STACK_SH) clean

.PHONY: clean-all
clean-all: ## Clean everything including data (backups in docker/backups/ are kept)
	@$(STACK_SH) clean-all

##@ Utilities

.PHONY: shell
shell: ## Open server container shell (native: a shell with the stack's environment)
	@$(STACK_SH) shell

.PHONY: db-shell
db-shell: ## Open InfluxDB shell
	@$(STACK_SH) db-shell

.PHONY: docker-e2e
docker-e2e: ## Docker stack end to end on a real engine (installs docker.io, starts dockerd if needed): build, deploy, backup, wipe, restore, stop, clean
	@scripts/stack/docker-e2e.sh

.PHONY: stack-e2e
stack-e2e: ## Native stack end to end: up, data in InfluxDB/Redis/Prometheus, backup, wipe, restore, down
	@scripts/stack/e2e.sh
