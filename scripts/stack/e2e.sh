#!/usr/bin/env bash
# The native stack end to end (`make stack-e2e`, CI): stack up with Raven fed by
# `raven sim` → data visible in InfluxDB, Redis and Prometheus → `make backup` → wipe →
# `make restore BACKUP_NAME=…` → the same data back → stack down cleanly (no process
# left, every port free).
#
# It uses the guide's ports (50051 8080 9090 8086 6379 9091, plus 8088 and 9443), so it
# must not run beside `make test` or another stack. State goes to .stack-e2e/ (not the
# .stack/ of `make start`); the backup goes to docker/backups/ and is deleted on
# success unless E2E_KEEP=1.
set -euo pipefail
# shellcheck source=scripts/stack/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=scripts/stack/e2e-lib.sh
. "$(dirname "$0")/e2e-lib.sh"
cd "$STACK_ROOT"

export STACK=native
export RAVEN_STACK_DIR="${E2E_STACK_DIR:-$STACK_ROOT/.stack-e2e}"
export FOLLOW=0
MAKE="${MAKE:-make}"
PORTS=(50051 8080 9090 8086 8088 6379 9091 9443)
INFLUX=(http://127.0.0.1:8086 market_data raven ravens_fly_at_dawn)
PROM=http://127.0.0.1:9091
E2E_NAME=e2e
SETTLE=$((${BACKUP_SETTLE_SECS:-10} + 2))
backup=""
done_ok=""

on_exit() {
  local rc=$?
  if [ -z "$done_ok" ]; then
    warn "e2e failed (exit $rc); the stack's logs:"
    for f in "$RAVEN_STACK_DIR"/logs/*.log; do
      [ -f "$f" ] || continue
      printf '%s---- %s (last 30 lines)%s\n' "$C_HEAD" "$f" "$C_OFF" >&2
      tail -n 30 "$f" >&2
    done
    scripts/stack/native.sh stop >&2 || true
    [ -z "${E2E_KEEP:-}" ] || say "kept: $RAVEN_STACK_DIR ${backup:+$BACKUP_ROOT/$backup}"
  fi
}
trap on_exit EXIT

redis_raven_keys() { redis-cli -p 6379 --scan --pattern 'raven:*' | wc -l; }

# ------------------------------------------------------------------------------------
timed "checking the ports are free: ${PORTS[*]}"
busy="$(ports_in_use)"
[ -z "$busy" ] || die "ports in use: $busy ($(ss -ltnpH 2>/dev/null | grep -E ":(${busy// /|}) " | tr -s ' ' | head -5))"
scripts/stack/native.sh clean-all >/dev/null

timed "services installed, Raven built (release)"
scripts/setup-services.sh
"${CARGO:-cargo}" build --release --bin raven

timed "make start (InfluxDB 1.x, Redis, Prometheus, raven sim, raven serve)"
"$MAKE" --no-print-directory start

timed "waiting for data in InfluxDB, Redis and Prometheus"
wait_until "trades in InfluxDB older than ${SETTLE}s" 120 positive settled_trades ||
  die "no trades reached InfluxDB"
wait_until "raven:* keys in Redis" 60 positive redis_raven_keys || die "no raven:* keys in Redis"
wait_until "Prometheus: raven_ready == 1" 60 positive prom_value 'raven_ready' ||
  die "Prometheus has no raven_ready == 1"
wait_until "Prometheus: messages_processed_total" 60 positive prom_value 'sum(messages_processed_total)' ||
  die "Prometheus has no messages_processed_total"
# The backup verifies Prometheus at a time 15 s before it: let that hold samples.
wait_until "Prometheus history: 3 scrapes of Raven 16 s ago" 90 \
  positive prom_value "sum(count_over_time(raven_ready[1h] offset 16s)) >= 3" ||
  die "Prometheus keeps no history"
say "  influxdb trades: $(influx_trades)  redis raven:* keys: $(redis_raven_keys)  prometheus raven_ready: $(prom_value raven_ready)  messages_processed_total: $(prom_value 'sum(messages_processed_total)')"

timed "make status / health / urls"
"$MAKE" --no-print-directory status
"$MAKE" --no-print-directory health
"$MAKE" --no-print-directory urls >/dev/null

e2e_backup

timed "wipe: make stop, every store's data deleted, make start (empty)"
"$MAKE" --no-print-directory stop
rm -rf "$RAVEN_STACK_DIR"/influxdb/{meta,data,wal} "$RAVEN_STACK_DIR/redis/dump.rdb" \
  "$RAVEN_STACK_DIR/prometheus/data" "$RAVEN_STACK_DIR/raven/data"
"$MAKE" --no-print-directory start
# Every measurement, candles too: the native wipe runs long after any candle opened.
# shellcheck disable=SC2119 # no measurement left out
e2e_wiped
e2e_restored

timed "make stop: nothing left running, every port free"
pids="$(cat "$RAVEN_STACK_DIR"/run/*.pid 2>/dev/null | tr '\n' ' ')"
"$MAKE" --no-print-directory stop
for p in $pids; do
  # a zombie waiting for its reaper holds nothing; anything else is left over
  stat="$(ps -p "$p" -o stat= 2>/dev/null || true)"
  [ -z "$stat" ] || [ "${stat:0:1}" = Z ] || die "process $p ($(ps -p "$p" -o comm=)) still running after make stop"
done
busy="$(ports_in_use)"
[ -z "$busy" ] || die "ports still in use after make stop: $busy"

if [ -z "${E2E_KEEP:-}" ]; then
  rm -rf "${BACKUP_ROOT:?}/$backup" "$RAVEN_STACK_DIR"
  [ "$(cat "$BACKUP_ROOT/LATEST" 2>/dev/null)" != "$backup" ] || rm -f "$BACKUP_ROOT/LATEST"
fi
done_ok=1
timed "native stack e2e passed"
