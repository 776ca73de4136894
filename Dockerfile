# Raven's container image: `raven` (crates/raven), run in debian:bookworm-slim as an
# unprivileged user. docs/DEPLOYMENT.md describes the stack around it. Two ways to build:
#
#   docker build -t raven:0.1.0 .          (make docker-build, docker compose build)
#       The multi-stage build: Raven compiled in a Rust image, then the runtime stage.
#       Needs BuildKit for its cache mounts: the default builder of Docker 23+; on
#       Docker 20.10 (Debian's docker.io) set DOCKER_BUILDKIT=1.
#
#   docker build --target runtime-prebuilt -t raven:0.1.0 .
#       The same runtime image around a binary built outside, at target/docker/raven
#       (build argument RAVEN_BINARY). `RAVEN_BUILD_TARGET=runtime-prebuilt make
#       docker-build` builds and strips it on the host first. No Rust image and no
#       second compile; BuildKit and the legacy builder alike. CI builds the image this
#       way. The binary must be x86-64 Linux, linked against the runtime image's glibc
#       (Debian bookworm: 2.36) or an older one.
#
# Plain Dockerfile syntax on purpose (no `# syntax=` line, no heredocs, no COPY
# --chmod): the builder's own frontend parses it, nothing is fetched from a registry,
# and Docker 20.10's builders accept it. Base images are build arguments.

ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

# --- CA certificates -----------------------------------------------------------------
# Debian's CA bundle, built here and copied alone: the package's openssl and libssl3
# (9 MB) are needed only to generate it, and Raven's TLS is rustls.
FROM ${RUNTIME_IMAGE} AS ca-certificates
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# --- runtime base ----------------------------------------------------------------------
# Everything of the runtime image but the binary. debian:bookworm-slim rather than
# distroless: the same glibc the binary was linked against and a shell for `make shell`
# and the entrypoint. About 98 MB with Raven.
FROM ${RUNTIME_IMAGE} AS runtime-base

ARG RUNTIME_IMAGE
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
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"

RUN groupadd --system --gid 10001 raven \
    && useradd --system --uid 10001 --gid raven --home-dir /var/lib/raven --no-create-home \
       --shell /usr/sbin/nologin raven \
    && mkdir -p /var/lib/raven /var/log/raven /etc/raven \
    && chown raven:raven /var/lib/raven /var/log/raven

# The REST snapshots verify the exchanges' certificates against these roots (reqwest
# reads SSL_CERT_FILE; the WebSockets use compiled-in webpki roots, the same Mozilla
# list).
COPY --from=ca-certificates /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
# The default venues (Binance spot, USD-M, COIN-M); docker-compose.yml mounts the file
# named by RAVEN_CONFIG_FILE over it, so editing the venues needs no rebuild.
COPY config/raven.example.toml /etc/raven/raven.toml
# `raven-entrypoint serve` adds --demo for RAVEN_DEMO=1 and tees the log into
# RAVEN_LOG_FILE; see the script.
COPY deploy/raven/entrypoint.sh /usr/local/bin/raven-entrypoint
# COPY keeps the modes of the checkout, which a umask may have narrowed.
RUN chmod 0644 /etc/raven/raven.toml && chmod 0755 /usr/local/bin/raven-entrypoint

ENV RAVEN_CONFIG=/etc/raven/raven.toml \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
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

# --- runtime from a binary built outside -----------------------------------------------
FROM runtime-base AS runtime-prebuilt
ARG RAVEN_BINARY=target/docker/raven
COPY ${RAVEN_BINARY} /usr/local/bin/raven
# As the raven user: the binary runs for it (its mode allows it, its glibc is here).
RUN ["raven", "--version"]

# --- build -----------------------------------------------------------------------------
# The slim Rust image has gcc and libc6-dev: SQLite (rusqlite "bundled"), ring and zstd
# compile their C from source. No protoc: the proto is compiled by the pure-Rust protox.
FROM ${RUST_IMAGE} AS build
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

# --- runtime (the default target) ------------------------------------------------------
FROM runtime-base AS runtime
COPY --from=build /out/raven /usr/local/bin/raven
