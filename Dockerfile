# syntax=docker/dockerfile:1.7
#
# Raven's container image: `raven` (crates/raven), built in a Rust image, run in
# debian:bookworm-slim as an unprivileged user. Build it with `make docker-build` or
# `docker compose build raven`; docs/DEPLOYMENT.md describes the stack around it.
#
# Needs BuildKit (the default builder of Docker 23+ and of `docker compose`; on Docker
# 20.10 set DOCKER_BUILDKIT=1) for the cache mounts and the inline entrypoint below.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- build -----------------------------------------------------------------------------
# The slim Rust image has gcc and libc6-dev: SQLite (rusqlite "bundled"), ring and zstd
# compile their C from source. No protoc: the proto is compiled by the pure-Rust protox.
FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# No debug info in the shipped binary (the workspace's release profile keeps some for
# profiling); symbols stay, so RUST_BACKTRACE=1 still names the functions.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=debuginfo \
    CARGO_TERM_COLOR=never
COPY Cargo.toml Cargo.lock ./
COPY proto ./proto
COPY crates ./crates
# The registry and target caches survive between builds; the binary is copied out of the
# cached target directory, which is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin raven \
    && install -D -m 0755 target/release/raven /out/raven \
    && /out/raven --version

# --- runtime ---------------------------------------------------------------------------
# debian:bookworm-slim rather than distroless: the same glibc the binary was linked
# against, ca-certificates for the REST snapshots (reqwest verifies against the system
# roots; the WebSockets use compiled-in webpki roots), and a shell for `make shell` and
# the entrypoint. About 80 MB with Raven.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

ARG DEBIAN_RELEASE
ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
# The repository's URL (`git remote get-url origin`); the Makefile passes it.
ARG SOURCE_URL=""
LABEL org.opencontainers.image.title="raven" \
      org.opencontainers.image.description="Raven market data server: exact live order books and trades from crypto exchanges, streamed over gRPC" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.base.name="docker.io/library/debian:${DEBIAN_RELEASE}-slim"

RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 raven \
    && useradd --system --uid 10001 --gid raven --home-dir /var/lib/raven --no-create-home \
       --shell /usr/sbin/nologin raven \
    && mkdir -p /var/lib/raven /var/log/raven /etc/raven \
    && chown raven:raven /var/lib/raven /var/log/raven

COPY --from=build /out/raven /usr/local/bin/raven
# The default venues (Binance spot, USD-M, COIN-M); docker-compose.yml mounts the file
# named by RAVEN_CONFIG_FILE over it, so editing the venues needs no rebuild.
COPY config/raven.example.toml /etc/raven/raven.toml

# `raven-entrypoint ARGS` runs `raven ARGS`. For `serve` it adds:
#   RAVEN_DEMO=1     --demo: the in-process synthetic exchange instead of the configured
#                    venues (an offline stack; nothing else changes)
#   RAVEN_LOG_FILE   also append the log to this file (the raven_logs volume), moved to
#                    FILE.1 at start once it is over RAVEN_LOG_MAX_BYTES (100 MiB)
# Raven stays the process that receives SIGTERM (exec), so shutdown drains the stores.
COPY --chmod=0755 <<'EOF' /usr/local/bin/raven-entrypoint
#!/bin/bash
set -euo pipefail
if [ "${1:-}" = serve ]; then
  case "${RAVEN_DEMO:-0}" in
    1 | true | TRUE | True | yes | on) set -- "$@" --demo ;;
    0 | false | FALSE | False | no | off | "") ;;
    *) echo "raven-entrypoint: RAVEN_DEMO must be 0 or 1, not '${RAVEN_DEMO}'" >&2; exit 2 ;;
  esac
  if [ -n "${RAVEN_LOG_FILE:-}" ]; then
    mkdir -p "$(dirname "$RAVEN_LOG_FILE")"
    if [ -f "$RAVEN_LOG_FILE" ] \
      && [ "$(stat -c %s "$RAVEN_LOG_FILE")" -gt "${RAVEN_LOG_MAX_BYTES:-104857600}" ]; then
      mv -f "$RAVEN_LOG_FILE" "$RAVEN_LOG_FILE.1"
    fi
    exec > >(exec tee -a "$RAVEN_LOG_FILE") 2>&1
  fi
fi
exec "${RAVEN_BIN:-raven}" "$@"
EOF

ENV RAVEN_CONFIG=/etc/raven/raven.toml \
    RAVEN_DATA_DIR=/var/lib/raven \
    SERVER_HOST=0.0.0.0 \
    SERVER_PORT=50051 \
    HEALTH_PORT=8080 \
    METRICS_PORT=9090 \
    RUST_LOG=info \
    RUST_BACKTRACE=1 \
    LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/raven
EXPOSE 50051 8080 9090

# Ready = at least one book in sync and every venue connected (GET /health/ready).
# `raven health` is the client in the image; there is no curl.
HEALTHCHECK --interval=30s --timeout=10s --start-period=40s --retries=3 \
    CMD ["raven", "health", "--timeout", "5"]

ENTRYPOINT ["raven-entrypoint"]
CMD ["serve"]
