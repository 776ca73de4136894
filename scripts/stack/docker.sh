#!/usr/bin/env bash
# The deployment stack under Docker: docker compose (docker-compose.yml, settings in
# .env) with raven, influxdb (2.x), redis, prometheus, grafana and jaeger.
#
#   scripts/stack/docker.sh VERB [ARG]
#   VERB: deploy start stop restart status health urls logs logs-server logs-influx
#         logs-grafana backup restore NAME clean clean-all shell db-shell build
#
# Compose v2 (`docker compose`) or v1 (`docker-compose` 1.27+, Debian's), whichever is
# here. COMPOSE_FILE picks the files as Compose itself does (the CI override adds
# deploy/ci/docker-compose.ci.yml); services scaled to 0 there are not expected to run.
#
# Backups (docker/backups/raven_backup_YYYYmmdd_HHMMSS/): InfluxDB through `influx
# backup` (2.x; restored with `influx restore --full`) or `influxd backup -portable`
# (1.x, the CI image), Redis through BGSAVE and its RDB, Prometheus through a TSDB
# snapshot (admin API) or, when that is off, a copy taken with the container paused,
# Grafana's /var/lib/grafana and Raven's data dir copied with their container paused
# (crash-consistent, a few seconds), and manifest.json.
set -euo pipefail
# shellcheck source=scripts/stack/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$STACK_ROOT"

compose_command || die "neither docker compose (v2) nor docker-compose (v1) works here: without Docker use STACK=native"
ENV_FILE="${ENV_FILE:-.env}"
# OCI labels of the image: which commit, when, from where.
BUILD_ARGS=(--build-arg "VCS_REF=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  --build-arg "BUILD_DATE=$(date -u +%FT%TZ)"
  --build-arg "SOURCE_URL=$(git remote get-url origin 2>/dev/null || true)")
ALL_SERVICES=(raven influxdb redis prometheus grafana jaeger)
RAVEN_DATA_DIR_IN=/var/lib/raven # RAVEN_DATA_DIR in docker-compose.yml
NOFILE_DEFAULT=65536             # RAVEN_NOFILE's default in docker-compose.yml

ensure_env() {
  if [ ! -f "$ENV_FILE" ]; then
    cp .env.example "$ENV_FILE"
    warn "created $ENV_FILE from .env.example with the guide's public default credentials: change them (docs/DEPLOYMENT.md)"
  elif ! grep -q '^[[:space:]]*COMPOSE_PROJECT_NAME=' "$ENV_FILE"; then
    # An .env from before the compose file lost its `name: raven`: without this, plain
    # `docker compose` would name the project after the directory (new, empty volumes).
    printf '\n# The compose project (docs/DEPLOYMENT.md); added by make.\nCOMPOSE_PROJECT_NAME=raven\n' >>"$ENV_FILE"
    warn "added COMPOSE_PROJECT_NAME=raven to $ENV_FILE (the compose file no longer names the project)"
  fi
}

env_get() { # env_get KEY DEFAULT — a value of .env (KEY=VALUE lines, optional quotes)
  local v
  v="$(sed -n "s/^[[:space:]]*$1=//p" "$ENV_FILE" 2>/dev/null | tail -n 1)"
  v="${v%\"}" v="${v#\"}" v="${v%\'}" v="${v#\'}"
  printf '%s\n' "${v:-$2}"
}

# The project name: COMPOSE_PROJECT_NAME (environment, then .env), else raven. Passed
# as -p so that every Compose version names containers and volumes alike.
compose_init() {
  local project
  project="${COMPOSE_PROJECT_NAME:-$(env_get COMPOSE_PROJECT_NAME raven)}"
  DC=("${COMPOSE[@]}" -p "$project" --env-file "$ENV_FILE")
  REDIS_CLI=("${DC[@]}" exec -T redis redis-cli)
  # The services that run: all but those scaled to 0 (the CI override's), in the order
  # above; the full list when the configuration cannot be read this way.
  local config running s
  # v2 prints JSON when asked; v1 has only YAML (and ignores the option, printing nothing).
  config="$("${DC[@]}" config --format json 2>/dev/null || true)"
  [ -n "$config" ] || config="$("${DC[@]}" config 2>/dev/null || true)"
  running="$(python3 "$STACKUTIL" compose-services <<<"$config" 2>/dev/null || true)"
  SERVICES=()
  for s in "${ALL_SERVICES[@]}"; do
    if [ -z "$running" ] || grep -qx "$s" <<<"$running"; then SERVICES+=("$s"); fi
  done
}

runs() { # runs SERVICE — whether SERVICE is one of the running services
  local s
  for s in "${SERVICES[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

# The file-descriptor limit of Raven's container (RAVEN_NOFILE, default 65536), lowered
# to what the engine can grant when it cannot grant that: a container cannot get a hard
# limit above the engine's own (`error setting rlimit type 7: operation not permitted`).
nofile_init() { # nofile_init IMAGE — tried with a throwaway container of IMAGE
  local want hard
  want="${RAVEN_NOFILE:-$(env_get RAVEN_NOFILE "$NOFILE_DEFAULT")}"
  case "$want" in '' | *[!0-9]*) die "RAVEN_NOFILE must be a number of files, not '$want'" ;; esac
  if docker image inspect "$1" >/dev/null 2>&1 &&
    ! docker run --rm --ulimit "nofile=$want:$want" --entrypoint true "$1" >/dev/null 2>&1; then
    hard="$(docker run --rm --entrypoint sh "$1" -c 'ulimit -Hn' 2>/dev/null || true)"
    case "$hard" in
      '' | *[!0-9]*) warn "the engine refuses RAVEN_NOFILE=$want open files and shows no limit of its own" ;;
      *)
        warn "this Docker engine cannot grant RAVEN_NOFILE=$want open files: Raven gets its limit, $hard"
        want="$hard"
        ;;
    esac
  fi
  export RAVEN_NOFILE="$want"
}

raven_image() { printf 'raven:%s\n' "$(env_get RAVEN_VERSION 0.1.0)"; }

# The build target (RAVEN_BUILD_TARGET: runtime or runtime-prebuilt) and what it needs:
# runtime-prebuilt gets Raven built here, release, without debug info (as the image's
# own build stage strips it), at target/docker/raven; runtime with Compose v1 builds
# through the docker CLI, whose BuildKit the cache mounts need.
build_init() {
  local target bin
  target="${RAVEN_BUILD_TARGET:-$(env_get RAVEN_BUILD_TARGET runtime)}"
  export RAVEN_BUILD_TARGET="$target"
  case "$target" in
    runtime)
      if [ "${COMPOSE[0]}" = docker-compose ]; then
        export COMPOSE_DOCKER_CLI_BUILD="${COMPOSE_DOCKER_CLI_BUILD:-1}" DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-1}"
      fi
      ;;
    runtime-prebuilt)
      step "building Raven on the host for the runtime-prebuilt image"
      "${CARGO:-cargo}" build --release --locked --bin raven
      bin="${CARGO_TARGET_DIR:-target}/release/raven"
      mkdir -p target/docker
      if command -v objcopy >/dev/null; then
        objcopy --strip-debug "$bin" target/docker/raven.tmp
      else
        cp "$bin" target/docker/raven.tmp
      fi
      chmod 0755 target/docker/raven.tmp
      mv -f target/docker/raven.tmp target/docker/raven
      ;;
    *) die "RAVEN_BUILD_TARGET is runtime or runtime-prebuilt, not '$target'" ;;
  esac
}

cid() { "${DC[@]}" ps -a -q "$1" 2>/dev/null | head -n 1; }

state_of() { # healthy / unhealthy / starting / running (no health check) / exited / missing
  local id
  id="$(cid "$1")"
  [ -n "$id" ] || {
    echo missing
    return
  }
  docker inspect --format '{{if eq .State.Status "running"}}{{if .State.Health}}{{.State.Health.Status}}{{else}}running{{end}}{{else}}{{.State.Status}}{{end}}' "$id"
}

all_healthy() {
  local s st
  for s in "${SERVICES[@]}"; do
    st="$(state_of "$s")"
    [ "$st" = healthy ] || [ "$st" = running ] || return 1
  done
}

wait_healthy() {
  step "waiting for every service to be healthy (up to ${STACK_TIMEOUT}s)"
  local deadline=$((SECONDS + STACK_TIMEOUT)) s st
  until all_healthy; do
    for s in "${SERVICES[@]}"; do
      st="$(state_of "$s")"
      case "$st" in exited | dead | unhealthy) die "$s is $st: make logs" ;; esac
    done
    [ "$SECONDS" -lt "$deadline" ] || {
      "${DC[@]}" ps
      die "not healthy after ${STACK_TIMEOUT}s (STACK_TIMEOUT): make logs"
    }
    sleep 2
  done
  say "all services healthy"
}

# influx_major — 1 or 2: the InfluxDB the stack runs (2.x upstream; 1.x in the CI
# override), from the version header /ping answers with.
influx_major() {
  local v
  v="$(curl -s -m 5 -o /dev/null -D - http://127.0.0.1:8086/ping 2>/dev/null |
    tr -d '\r' | sed -n 's/^[Xx]-[Ii]nflux[Dd][Bb]-[Vv]ersion: *v\{0,1\}\([0-9]*\).*/\1/p')"
  printf '%s\n' "${v:-2}"
}

cmd_urls() {
  local rows=()
  if runs grafana; then
    rows+=("Grafana Dashboard|http://localhost:3000|$(env_get GRAFANA_ADMIN_USER raven) / $(env_get GRAFANA_ADMIN_PASSWORD ravens_see_all)")
  fi
  if runs prometheus; then rows+=("Prometheus|http://localhost:9091|-"); fi
  if runs jaeger; then rows+=("Jaeger Tracing|http://localhost:16686|-"); fi
  if runs influxdb; then
    if [ "$(influx_major)" = 1 ]; then
      rows+=("InfluxDB (1.x API)|http://localhost:8086|$(env_get INFLUXDB_USERNAME raven) / $(env_get INFLUXDB_PASSWORD ravens_fly_at_dawn)")
    else
      rows+=("InfluxDB UI|http://localhost:8086|$(env_get INFLUXDB_ADMIN_USERNAME raven) / $(env_get INFLUXDB_ADMIN_PASSWORD ravens_fly_at_dawn)")
    fi
  fi
  rows+=("Health Check|http://localhost:8080/health|-" "Metrics|http://localhost:9090/metrics|-" "gRPC Server|localhost:50051|-")
  url_table "${rows[@]}"
}

# Each service's URL on the host, checked by `make health` (redis has none: its state is
# its health check).
service_url() {
  case "$1" in
    raven) echo http://localhost:8080/health/ready http://localhost:9090/metrics ;;
    # 2.x's /health says whether it is healthy; 1.6 has only /ping.
    influxdb) if [ "$(influx_major)" = 1 ]; then echo http://localhost:8086/ping; else echo http://localhost:8086/health; fi ;;
    prometheus) echo http://localhost:9091/-/ready ;;
    grafana) echo http://localhost:3000/api/health ;;
    jaeger) echo http://localhost:16686/ ;;
  esac
}

cmd_health() {
  local bad=0 s st url
  for s in "${SERVICES[@]}"; do
    st="$(state_of "$s")"
    if [ "$st" = healthy ] || [ "$st" = running ]; then say "  ${C_OK}ok${C_OFF}   $s ($st)"; else
      say "  ${C_BAD}FAIL${C_OFF} $s ($st)"
      bad=1
    fi
  done
  for s in "${SERVICES[@]}"; do
    for url in $(service_url "$s"); do
      if http_ok "$url"; then say "  ${C_OK}ok${C_OFF}   $url"; else
        say "  ${C_BAD}FAIL${C_OFF} $url"
        bad=1
      fi
    done
  done
  return $bad
}

# helper_run VOLUMES_FROM_SERVICE COMMAND... — a throwaway root container with the
# service's volumes at their paths, from the Redis image (it has sh, cp, chown, stat).
helper_run() {
  local from img
  from="$(cid "$1")"
  shift
  img="$(docker inspect --format '{{.Image}}' "$(cid redis)")"
  docker run --rm --user 0 --entrypoint sh --volumes-from "$from" -v "$BACKUP_DIR_ABS:/backup:ro" "$img" -c "$*"
}

# replace_dir SERVICE PATH BACKUP_SUBDIR — the service (stopped) gets PATH's contents
# replaced by the backup's, owned like PATH was.
replace_dir() {
  helper_run "$1" "set -e; o=\$(stat -c %u:%g '$2'); find '$2' -mindepth 1 -maxdepth 1 ! -name dashboards -exec rm -rf {} +; cp -a '/backup/$3/.' '$2/'; find '$2' -mindepth 1 -maxdepth 1 ! -name dashboards -exec chown -R \$o {} +"
}

influx_token_args() {
  local t
  t="$(env_get INFLUXDB_ADMIN_TOKEN "")"
  [ -z "$t" ] || printf '%s\n' -t "$t"
}

influx_cut_counts() {
  python3 "$STACKUTIL" influx-counts http://127.0.0.1:8086 "$(env_get INFLUXDB_DATABASE market_data)" \
    "$(env_get INFLUXDB_USERNAME raven)" "$(env_get INFLUXDB_PASSWORD ravens_fly_at_dawn)" "$1"
}

influx_as_raven() { # Raven's user can query its database (the v1 API, both majors)
  influx_cut_counts 0 >/dev/null
}

redis_cli() { "${DC[@]}" exec -T redis redis-cli "$@" | tr -d '\r'; }

redis_pong() { [ "$(redis_cli ping)" = PONG ]; }

redis_keys_stats() {
  echo "{\"keys\": $(redis_cli dbsize), \"names_sha256\": \"$(redis_cli --scan | LC_ALL=C sort | sha256sum | cut -c1-64)\"}"
}

cmd_backup() {
  ensure_env
  all_healthy || die "the stack is not healthy: make health"
  local name dir parts t0=$SECONDS targs=()
  name="$(backup_name)"
  dir="$BACKUP_ROOT/$name"
  mkdir -p "$dir"
  parts="$(mktemp -d)"
  PARTIAL_BACKUP="$dir" PARTS_TMP="$parts"
  mapfile -t targs < <(influx_token_args)
  step "backup $name (docker stack) -> $dir"

  # InfluxDB: `influx backup` (2.x) or `influxd backup -portable` (1.x) inside the
  # container; counts older than the cut, equal before and after the backup.
  local cut before after attempt backup_cmd tool
  if [ "$(influx_major)" = 1 ]; then
    backup_cmd=(influxd backup -portable -host 127.0.0.1:8088 /tmp/raven_backup)
    tool="influxd backup -portable"
  else
    backup_cmd=(influx backup "${targs[@]}" /tmp/raven_backup)
    tool="influx backup"
  fi
  for attempt in 1 2 3; do
    cut=$((($(date +%s) - ${BACKUP_SETTLE_SECS:-10}) * 1000000000))
    before="$(influx_cut_counts "$cut")"
    "${DC[@]}" exec -T influxdb sh -c 'rm -rf /tmp/raven_backup'
    "${DC[@]}" exec -T influxdb "${backup_cmd[@]}" >/dev/null
    after="$(influx_cut_counts "$cut")"
    [ "$before" = "$after" ] && break
    [ $attempt -lt 3 ] || die "InfluxDB kept changing below the cut: backup not verifiable"
  done
  rm -rf "$dir/influxdb"
  docker cp "$(cid influxdb):/tmp/raven_backup" "$dir/influxdb" >/dev/null
  "${DC[@]}" exec -T influxdb rm -rf /tmp/raven_backup
  echo "{\"tool\": \"$tool\", \"points_before_ns\": $cut, \"points\": $before}" >"$parts/influxdb.json"
  say "  influxdb    points: $before"

  # Redis: BGSAVE, wait for LASTSAVE to move, copy the RDB. Keys counted around it.
  local keys_before keys_after
  keys_before="$(redis_keys_stats)"
  redis_bgsave || die "Redis BGSAVE failed: make logs"
  keys_after="$(redis_keys_stats)"
  [ "$keys_before" = "$keys_after" ] || warn "Redis key set changed during the backup: verification uses the count after"
  mkdir -p "$dir/redis"
  docker cp "$(cid redis):/data/dump.rdb" "$dir/redis/dump.rdb" >/dev/null
  echo "{\"tool\": \"BGSAVE + dump.rdb\", \"snapshot\": $keys_after}" >"$parts/redis.json"
  say "  redis       $keys_after"

  # Prometheus: TSDB snapshot when the admin API is on, else a copy with it paused.
  local at snap pstats
  at=$(($(date +%s) - 15))
  pstats="$(python3 "$STACKUTIL" prom-stats http://127.0.0.1:9091 "$at")"
  if snap="$(curl -sf -m 60 -XPOST http://127.0.0.1:9091/api/v1/admin/tsdb/snapshot 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["name"])' 2>/dev/null)"; then
    docker cp "$(cid prometheus):/prometheus/snapshots/$snap" "$dir/prometheus" >/dev/null
    echo "{\"tool\": \"admin API tsdb snapshot\", \"stats\": $pstats}" >"$parts/prometheus.json"
  else
    "${DC[@]}" pause prometheus >/dev/null
    docker cp "$(cid prometheus):/prometheus" "$dir/prometheus" >/dev/null || true
    "${DC[@]}" unpause prometheus >/dev/null
    rm -rf "$dir/prometheus/snapshots"
    echo "{\"tool\": \"copy while paused (admin API off)\", \"stats\": $pstats}" >"$parts/prometheus.json"
  fi
  say "  prometheus  $pstats"

  # Grafana and Raven: their data copied while the container is paused.
  local svc path sub
  for svc in grafana:/var/lib/grafana:grafana raven:$RAVEN_DATA_DIR_IN:raven_data; do
    IFS=: read -r svc path sub <<<"$svc"
    runs "$svc" || continue
    "${DC[@]}" pause "$svc" >/dev/null
    docker cp "$(cid "$svc"):$path" "$dir/$sub" >/dev/null || {
      "${DC[@]}" unpause "$svc" >/dev/null
      die "copying $svc:$path failed"
    }
    "${DC[@]}" unpause "$svc" >/dev/null
    rm -rf "$dir/grafana/dashboards" # the repository's, mounted read-only
    echo "{\"tool\": \"docker cp while paused\", \"path\": \"$path\"}" >"$parts/$sub.json"
    say "  $sub  $(du -sh "$dir/$sub" | cut -f1)"
  done

  python3 "$STACKUTIL" manifest "$dir" "$parts" name="$name" mode=docker created="$(date -u +%FT%TZ)" \
    "images=\"$(for svc in "${SERVICES[@]}"; do docker inspect --format '{{.Config.Image}}' "$(cid "$svc")"; done | sort -u | tr '\n' ' ')\""
  PARTIAL_BACKUP=""
  echo "$name" >"$BACKUP_ROOT/LATEST"
  say "backup done in $((SECONDS - t0))s: $dir"
  say "restore with: make restore BACKUP_NAME=$name"
}

cmd_restore() {
  ensure_env
  local dir m t0=$SECONDS failed=0 targs=()
  dir="$(resolve_backup "${1:-}")"
  m="$dir/manifest.json"
  [ -f "$m" ] || die "$dir has no manifest.json"
  BACKUP_DIR_ABS="$dir"
  mapfile -t targs < <(influx_token_args)
  nofile_init "$(raven_image)"
  step "restore $(basename "$dir") -> docker stack"
  python3 "$STACKUTIL" verify-files "$dir" | sed 's/^/  /'
  "${DC[@]}" up -d influxdb redis >/dev/null
  local s
  for s in raven grafana prometheus redis; do
    if runs "$s"; then "${DC[@]}" stop "$s" >/dev/null; fi
  done
  wait_until "influxdb" "$STACK_TIMEOUT" http_ok http://127.0.0.1:8086/ping || die "InfluxDB does not answer: make logs-influx"

  if [ -d "$dir/influxdb" ]; then
    "${DC[@]}" exec -T -u 0 influxdb rm -rf /tmp/raven_restore
    docker cp "$dir/influxdb" "$(cid influxdb):/tmp/raven_restore" >/dev/null
    # docker cp keeps the backup's owner and modes (influxd writes it 0700): readable by
    # the user the server and its CLI run as.
    "${DC[@]}" exec -T -u 0 influxdb chmod -R a+rX /tmp/raven_restore
    if [ "$(influx_major)" = 1 ]; then
      # A portable restore creates the database, so the current one goes first (as the
      # admin, once the image's entrypoint has made it); the restart gives Raven's user
      # its grant on the restored database back.
      # shellcheck disable=SC2016 # expanded in the container, from its environment
      wait_until "InfluxDB 1.x: DROP DATABASE as the admin" "$STACK_TIMEOUT" \
        "${DC[@]}" exec -T influxdb sh -c 'influx -host 127.0.0.1 -username "$DOCKER_INFLUXDB_INIT_USERNAME" -password "$DOCKER_INFLUXDB_INIT_PASSWORD" -execute "DROP DATABASE \"$INFLUXDB_DATABASE\""' ||
        die "InfluxDB 1.x: cannot drop the database before the restore"
      "${DC[@]}" exec -T influxdb influxd restore -portable -host 127.0.0.1:8088 /tmp/raven_restore >/dev/null
      "${DC[@]}" exec -T -u 0 influxdb rm -rf /tmp/raven_restore
      "${DC[@]}" restart influxdb >/dev/null
      wait_until "influxdb healthy" "$STACK_TIMEOUT" influx_as_raven || die "InfluxDB not ready after the restore: make logs-influx"
    else
      "${DC[@]}" exec -T influxdb influx restore "${targs[@]}" --full /tmp/raven_restore
      "${DC[@]}" exec -T -u 0 influxdb rm -rf /tmp/raven_restore
    fi
  fi
  if [ -f "$dir/redis/dump.rdb" ]; then
    # Redis runs with appendonly yes: it would load the (newer) AOF and ignore the RDB,
    # so the RDB becomes the AOF's base file and the AOF starts empty.
    helper_run redis "set -e; cd /data; rm -rf appendonlydir dump.rdb; mkdir appendonlydir
      cp /backup/redis/dump.rdb dump.rdb; cp dump.rdb appendonlydir/appendonly.aof.1.base.rdb
      : > appendonlydir/appendonly.aof.1.incr.aof
      printf 'file appendonly.aof.1.base.rdb seq 1 type b\nfile appendonly.aof.1.incr.aof seq 1 type i\n' > appendonlydir/appendonly.aof.manifest
      chown -R redis:redis /data"
  fi
  [ ! -d "$dir/prometheus" ] || replace_dir prometheus /prometheus prometheus
  [ ! -d "$dir/grafana" ] || replace_dir grafana /var/lib/grafana grafana
  [ ! -d "$dir/raven_data" ] || replace_dir raven "$RAVEN_DATA_DIR_IN" raven_data

  # Verified before Raven writes again.
  "${DC[@]}" up -d redis prometheus >/dev/null
  wait_until "redis" "$STACK_TIMEOUT" redis_pong
  wait_until "prometheus" "$STACK_TIMEOUT" http_ok http://127.0.0.1:9091/-/ready
  local want got
  want="$(python3 "$STACKUTIL" get "$m" components.influxdb.points)"
  got="$(influx_cut_counts "$(python3 "$STACKUTIL" get "$m" components.influxdb.points_before_ns)")"
  if python3 "$STACKUTIL" same "$want" "$got"; then say "  ${C_OK}influxdb verified${C_OFF}"; else failed=1; fi
  want="$(python3 "$STACKUTIL" get "$m" components.redis.snapshot)"
  got="$(redis_keys_stats)"
  if python3 "$STACKUTIL" same "$want" "$got"; then say "  ${C_OK}redis verified${C_OFF}"; else failed=1; fi
  want="$(python3 "$STACKUTIL" get "$m" components.prometheus.stats)"
  got="$(python3 "$STACKUTIL" prom-stats http://127.0.0.1:9091 "$(python3 "$STACKUTIL" get "$m" components.prometheus.stats.time)")"
  if python3 "$STACKUTIL" same "$want" "$got"; then say "  ${C_OK}prometheus verified${C_OFF}"; else failed=1; fi
  [ $failed = 0 ] || die "restore verification failed (raven and grafana left stopped)"
  "${DC[@]}" up -d
  wait_healthy
  say "restore of $(basename "$dir") done and verified in $((SECONDS - t0))s"
}

PARTIAL_BACKUP="" PARTS_TMP="" BACKUP_DIR_ABS="$BACKUP_ROOT"
on_exit() {
  [ -z "$PARTS_TMP" ] || rm -rf "$PARTS_TMP"
  if [ -n "$PARTIAL_BACKUP" ]; then
    warn "backup incomplete: $PARTIAL_BACKUP removed"
    rm -rf "$PARTIAL_BACKUP"
  fi
}
trap on_exit EXIT

follow=(-f)
[ "${FOLLOW:-1}" != 0 ] || follow=()
# exec with a terminal only when there is one: `echo 'id -u' | make shell` works too.
tty=()
[ -t 0 ] || tty=(-T)

ensure_env
compose_init
verb="${1:-}"
shift || true
case "$verb" in
  deploy)
    build_init
    step "building the images"
    "${DC[@]}" build "${BUILD_ARGS[@]}"
    nofile_init "$(raven_image)"
    step "starting the stack"
    "${DC[@]}" up -d
    wait_healthy
    cmd_health || true
    echo
    cmd_urls
    ;;
  start)
    nofile_init "$(raven_image)"
    "${DC[@]}" up -d
    wait_healthy
    ;;
  stop) "${DC[@]}" stop ;;
  restart)
    nofile_init "$(raven_image)"
    "${DC[@]}" restart
    wait_healthy
    ;;
  status) "${DC[@]}" ps -a ;;
  health) cmd_health ;;
  urls) cmd_urls ;;
  logs) "${DC[@]}" logs "${follow[@]}" --tail=100 ;;
  logs-server) "${DC[@]}" logs "${follow[@]}" --tail=100 raven ;;
  logs-influx) "${DC[@]}" logs "${follow[@]}" --tail=100 influxdb ;;
  logs-grafana) "${DC[@]}" logs "${follow[@]}" --tail=100 grafana ;;
  build)
    build_init
    "${DC[@]}" build "${BUILD_ARGS[@]}" raven
    ;;
  backup) cmd_backup ;;
  restore) cmd_restore "${1:-${BACKUP_NAME:-}}" ;;
  clean) "${DC[@]}" down --remove-orphans ;;
  clean-all) "${DC[@]}" down --volumes --remove-orphans --rmi local ;;
  shell) "${DC[@]}" exec "${tty[@]}" raven bash ;;
  db-shell)
    if [ "$(influx_major)" = 1 ]; then
      # InfluxQL as Raven's user, on its database (the 1.x CLI of the CI image).
      # shellcheck disable=SC2016 # expanded in the container, from its environment
      "${DC[@]}" exec "${tty[@]}" influxdb sh -c 'exec influx -host 127.0.0.1 -username "$INFLUXDB_USERNAME" -password "$INFLUXDB_PASSWORD" -database "$INFLUXDB_DATABASE"'
    else
      # InfluxQL as the v1 user Raven writes with (the influx CLI in the influxdb image).
      "${DC[@]}" exec "${tty[@]}" influxdb influx v1 shell
    fi
    ;;
  *) die "usage: $0 deploy|start|stop|restart|status|health|urls|logs|logs-server|logs-influx|logs-grafana|build|backup|restore NAME|clean|clean-all|shell|db-shell" ;;
esac
