#!/usr/bin/env bash
# The docker compose stack end to end on a real Docker engine (`make docker-e2e`, CI):
#
#   1. Docker: docker.io, docker-compose and debootstrap installed when missing (apt,
#      as root); dockerd started when none answers, and stopped at the end only then.
#   2. Images: debian:bookworm-slim bootstrapped from Debian's packages when the engine
#      has none (scripts/stack/docker-base.sh, cached); Raven's image (runtime-prebuilt:
#      the release binary built here) and the CI stand-ins of the override
#      (deploy/ci/docker-compose.ci.yml: InfluxDB 1.x, Redis, Prometheus from Debian).
#   3. `make deploy` in docker mode, Raven on the demo exchange (RAVEN_DEMO=1): every
#      container healthy; data in InfluxDB, Redis and Prometheus; `make status`,
#      `health`, `urls`, `logs-server`, `shell`, `db-shell`.
#   4. The image as operators get it: non-root, read-only root, no capabilities,
#      data and logs in the named volumes owned by Raven's user, the open-file limit;
#      its size reported.
#   5. `make backup`, wipe (volumes deleted), `make start` (empty), `make restore`:
#      the same data back, verified against the backup's manifest.
#   6. `docker stop` ends Raven within its grace period with exit 0 and flushed stores;
#      `make stop` and `make clean` leave no container, network or port behind.
#
# It uses the guide's host ports (50051 8080 9090 8086 6379 9091), so it must not run
# beside `make test`, `make stack-e2e` or another stack. The compose project is
# raven_e2e (not a deployment's raven); its env file and backups go to
# .stack-docker-e2e/, deleted on success unless E2E_KEEP=1.
set -euo pipefail
# shellcheck source=scripts/stack/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/stack/e2e-lib.sh
. "$(dirname "$0")/e2e-lib.sh"
cd "$STACK_ROOT"

export STACK=docker FOLLOW=0
export COMPOSE_FILE=docker-compose.yml:deploy/ci/docker-compose.ci.yml
export COMPOSE_PROJECT_NAME=raven_e2e
STATE="${E2E_STATE_DIR:-$STACK_ROOT/.stack-docker-e2e}"
export ENV_FILE="$STATE/env" BACKUP_DIR="$STATE/backups"
BACKUP_ROOT="$BACKUP_DIR"
MAKE="${MAKE:-make}"
PORTS=(50051 8080 9090 8086 6379 9091)
INFLUX=(http://127.0.0.1:8086 market_data raven ravens_fly_at_dawn)
PROM=http://127.0.0.1:9091
SETTLE=$((${BACKUP_SETTLE_SECS:-10} + 2))
E2E_NAME=docker-e2e
started_dockerd=""
done_ok=""

dc() { "${COMPOSE[@]}" -p "$COMPOSE_PROJECT_NAME" --env-file "$ENV_FILE" "$@"; }
cid() { dc ps -a -q "$1" 2>/dev/null | head -n 1; }
project_containers() { docker ps -a -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"; }
project_networks() { docker network ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME"; }

stop_dockerd() {
  [ -n "$started_dockerd" ] || return 0
  kill -TERM "$started_dockerd" 2>/dev/null || return 0
  local _
  for _ in $(seq 1 100); do
    kill -0 "$started_dockerd" 2>/dev/null || return 0
    sleep 0.1
  done
  warn "dockerd ($started_dockerd) did not stop within 10 s"
}

on_exit() {
  local rc=$?
  if [ -z "$done_ok" ]; then
    warn "docker-e2e failed (exit $rc)"
    if [ -n "${COMPOSE[*]:-}" ] && [ -f "$ENV_FILE" ]; then
      dc ps -a >&2 || true
      dc logs --tail=40 >&2 || true
      [ -n "${E2E_KEEP:-}" ] || dc down --volumes --remove-orphans >/dev/null 2>&1 || true
    fi
    [ -z "${E2E_KEEP:-}" ] || say "kept: $STATE and the $COMPOSE_PROJECT_NAME containers"
  fi
  stop_dockerd
}
trap on_exit EXIT

# ------------------------------------------------------------------------------------
timed "Docker tools: docker.io, docker-compose, debootstrap"
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || need+=(docker-compose)
command -v debootstrap >/dev/null || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || die "missing ${need[*]}: install them (apt-get install ${need[*]}) or run as root"
  say "  installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null ||
    { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >/dev/null; }
fi

timed "Docker engine"
if ! docker info >/dev/null 2>&1; then
  mkdir -p "$STATE"
  say "  no engine answers: starting dockerd (log: $STATE/dockerd.log)"
  dockerd >"$STATE/dockerd.log" 2>&1 &
  started_dockerd=$!
  wait_until "dockerd to answer" 60 docker info || {
    tail -n 20 "$STATE/dockerd.log" >&2
    die "dockerd did not start"
  }
fi
compose_command || die "no Compose after the install"
say "  engine $(docker version --format '{{.Server.Version}}'), client $(docker version --format '{{.Client.Version}}'), compose: ${COMPOSE[*]} $("${COMPOSE[@]}" version --short 2>/dev/null || true)"

rm -rf "$STATE/backups" "$ENV_FILE"
mkdir -p "$STATE"
# The example settings, Raven on the demo exchange and built from the host's binary.
sed -e 's/^RAVEN_DEMO=.*/RAVEN_DEMO=1/' -e 's/^RAVEN_BUILD_TARGET=.*/RAVEN_BUILD_TARGET=runtime-prebuilt/' \
  -e "s/^COMPOSE_PROJECT_NAME=.*/COMPOSE_PROJECT_NAME=$COMPOSE_PROJECT_NAME/" .env.example >"$ENV_FILE"
# What an earlier run left (E2E_KEEP=1, or killed) goes first.
[ -z "$(project_containers)" ] || dc down --volumes --remove-orphans >/dev/null 2>&1

timed "checking the ports are free: ${PORTS[*]}"
busy="$(ports_in_use)"
[ -z "$busy" ] || die "ports in use: $busy ($(ss -ltnpH 2>/dev/null | grep -E ":(${busy// /|}) " | tr -s ' ' | head -5))"

timed "base image (debian:bookworm-slim from Debian's packages unless the engine has it)"
scripts/stack/docker-base.sh

timed "make deploy (build the images, start, wait until healthy)"
"$MAKE" --no-print-directory deploy

timed "the image: size, user, read-only root, capabilities, volumes, open files"
image="raven:$(sed -n 's/^RAVEN_VERSION=//p' "$ENV_FILE")"
size="$(docker image inspect --format '{{.Size}}' "$image")"
say "  image $image: $((size / 1000000)) MB (target: 100 MB or less)"
[ "$size" -le 100000000 ] || warn "the image is over 100 MB"
raven="$(cid raven)"
[ "$(docker image inspect --format '{{.Config.User}}' "$image")" = 10001:10001 ] || die "the image's USER is not 10001:10001"
[ "$(docker exec "$raven" id -u)" = 10001 ] || die "Raven's container does not run as uid 10001"
[ "$(docker inspect --format '{{.HostConfig.ReadonlyRootfs}}' "$raven")" = true ] || die "the root file system is writable"
# As root, who owns /usr/local/bin: only a read-only file system stops the write.
docker exec -u 0 "$raven" sh -c 'touch /usr/local/bin/x' 2>/dev/null && die "wrote to the read-only root file system"
docker inspect --format '{{.HostConfig.CapDrop}} {{.HostConfig.SecurityOpt}}' "$raven" | grep -q 'ALL.*no-new-privileges' ||
  die "capabilities not dropped or no-new-privileges missing"
# The bounding set of the container's first process: empty only with cap_drop ALL.
[ "$(docker exec "$raven" sh -c 'grep ^CapBnd /proc/1/status')" = "CapBnd:	0000000000000000" ] ||
  die "Raven's container keeps capabilities"
for m in raven_data:/var/lib/raven raven_logs:/var/log/raven; do
  vol="${COMPOSE_PROJECT_NAME}_${m%%:*}" path="${m#*:}"
  docker inspect --format '{{range .Mounts}}{{.Name}}={{.Destination}} {{end}}' "$raven" | grep -q "$vol=$path" ||
    die "volume $vol is not mounted at $path"
  owners="$(docker exec "$raven" find "$path" -printf '%u:%g\n' | sort -u | tr '\n' ' ')"
  [ "$owners" = "raven:raven " ] || die "$path holds files not owned by raven:raven: $owners"
done
docker exec "$raven" test -s /var/log/raven/raven.log || die "no log in the raven_logs volume"
# The compose file's nofile (soft = hard, as make chose it) is what Raven's process has.
nofile="$(docker exec "$raven" sh -c 'echo "$(ulimit -n) $(ulimit -Hn)"')"
set_nofile="$(docker inspect --format '{{range .HostConfig.Ulimits}}{{if eq .Name "nofile"}}{{.Soft}} {{.Hard}}{{end}}{{end}}' "$raven")"
[ "$nofile" = "$set_nofile" ] || die "Raven's open-file limits (soft hard) are '$nofile', the container's '$set_nofile'"
[ "${nofile% *}" = "${nofile#* }" ] || die "Raven's soft and hard open-file limits differ: $nofile"
nofile="${nofile% *}"
# The compose file's limits reach the container (Compose v1 applies deploy.resources).
limits="$(docker inspect --format '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}' "$raven")"
[ "$limits" = "2147483648 2000000000" ] || die "Raven's container limits are '$limits', not 2G and 2 CPUs"
say "  user 10001, read-only root, no capabilities, volumes owned by raven, $nofile open files, 2G and 2 CPUs"

timed "the same image under BuildKit (the Dockerfile parsed whole, stages skipped as BuildKit does)"
# Compose v1 built it with the legacy builder; BuildKit is buildx, or the 20.10 client.
buildkit=()
if docker buildx version >/dev/null 2>&1; then
  buildkit=(docker buildx build --load)
elif [[ "$(/usr/bin/docker version --format '{{.Client.Version}}' 2>/dev/null)" == 20.10* ]]; then
  buildkit=(env DOCKER_BUILDKIT=1 /usr/bin/docker build)
fi
if [ ${#buildkit[@]} -gt 0 ]; then
  "${buildkit[@]}" --progress=plain --target runtime-prebuilt -t raven:e2e-buildkit . >"$STATE/buildkit.log" 2>&1 || {
    tail -n 30 "$STATE/buildkit.log" >&2
    die "the BuildKit build failed"
  }
  same='{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Cmd}} {{json .Config.Healthcheck}} {{json .Config.Env}} {{json .Config.ExposedPorts}}'
  [ "$(docker image inspect --format "$same" raven:e2e-buildkit)" = "$(docker image inspect --format "$same" "$image")" ] ||
    die "BuildKit and the legacy builder made different images"
  docker image rm raven:e2e-buildkit >/dev/null
  say "  BuildKit (${buildkit[*]}): the same user, entrypoint, health check, environment and ports"
else
  warn "no BuildKit client here (buildx, or Docker 20.10's own): skipped"
fi

timed "waiting for data in InfluxDB, Redis and Prometheus"
redis_raven_keys() { dc exec -T redis redis-cli --scan --pattern 'raven:*' | wc -l; }
wait_until "trades in InfluxDB older than ${SETTLE}s" 120 positive settled_trades || die "no trades reached InfluxDB"
wait_until "raven:* keys in Redis" 60 positive redis_raven_keys || die "no raven:* keys in Redis"
wait_until "Prometheus: raven_ready == 1" 90 positive prom_value 'raven_ready' || die "Prometheus has no raven_ready == 1"
# The backup verifies Prometheus at a time 15 s before it: let that hold samples.
wait_until "Prometheus history: 3 scrapes of Raven 16 s ago" 120 \
  positive prom_value "sum(count_over_time(raven_ready[1h] offset 16s)) >= 3" || die "Prometheus keeps no history"
say "  influxdb trades: $(influx_trades)  redis raven:* keys: $(redis_raven_keys)  prometheus raven_ready: $(prom_value raven_ready)"

timed "make status / health / urls / logs-server / shell / db-shell"
"$MAKE" --no-print-directory status
"$MAKE" --no-print-directory health
"$MAKE" --no-print-directory urls
logs="$("$MAKE" --no-print-directory logs-server)"
grep -q '"level":"INFO"' <<<"$logs" || die "make logs-server shows no log of Raven"
[ "$(echo 'id -u' | "$MAKE" --no-print-directory shell 2>/dev/null | tr -d '\r')" = 10001 ] || die "make shell is not a shell in Raven's container"
echo 'SHOW MEASUREMENTS' | "$MAKE" --no-print-directory db-shell 2>/dev/null | grep -qx trades ||
  die "make db-shell does not reach Raven's database"

e2e_backup

timed "wipe: make clean-all (containers and volumes deleted), make start (empty)"
"$MAKE" --no-print-directory clean-all
[ -z "$(docker volume ls -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")" ] ||
  die "volumes left after make clean-all"
"$MAKE" --no-print-directory start
# Candles are left out: a candle is stamped with its open time, which a candle opened
# before the wipe has.
e2e_wiped candles
e2e_restored

timed "docker stop: Raven ends within its grace period, exit 0, stores flushed"
raven="$(cid raven)"
grace="$(docker inspect --format '{{.Config.StopTimeout}}' "$raven")"
t0=$(date +%s%N)
docker stop -t "$grace" "$raven" >/dev/null
took_ms=$((($(date +%s%N) - t0) / 1000000))
code="$(docker inspect --format '{{.State.ExitCode}}' "$raven")"
logs="$(docker logs --tail 50 "$raven" 2>&1)"
[ "$code" = 0 ] || die "Raven exited with $code after docker stop"
[ "$took_ms" -lt $((grace * 1000)) ] || die "docker stop took ${took_ms} ms: Raven was killed at the end of its ${grace}s grace"
grep -q '"stopped"' <<<"$logs" || die "Raven's log has no \"stopped\" line after docker stop"
! grep -q 'did not finish flushing' <<<"$logs" || die "Raven's stores did not finish flushing"
say "  stopped in ${took_ms} ms (grace ${grace}s), exit 0, stores flushed"

timed "make stop, make clean: no container, network or port left"
"$MAKE" --no-print-directory stop
[ -z "$(docker ps -q --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")" ] || die "containers still running after make stop"
"$MAKE" --no-print-directory clean
[ -z "$(project_containers)" ] || die "containers left after make clean"
[ -z "$(project_networks)" ] || die "networks left after make clean"
busy="$(ports_in_use)"
[ -z "$busy" ] || die "ports still in use after make clean: $busy"
"$MAKE" --no-print-directory clean-all >/dev/null

if [ -z "${E2E_KEEP:-}" ]; then rm -rf "$STATE"; fi
done_ok=1
timed "docker stack e2e passed"
