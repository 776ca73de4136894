# shellcheck shell=bash
# Helpers of the stack end-to-end checks (scripts/stack/e2e.sh: native,
# scripts/stack/docker-e2e.sh: docker). Sourced after lib.sh, never run. The caller sets
# E2E_NAME (its log prefix), PORTS (the host ports the stack uses), INFLUX (URL,
# database, user, password), PROM (Prometheus's URL) and SETTLE (seconds after which a
# point is surely written).

T_START=$SECONDS
T_STEP=$SECONDS

timed() { # a new step: prints the time since the start and the previous step's length
  local now=$SECONDS
  printf '%s[%s %4ds, previous step %3ds]%s %s\n' "$C_HEAD" "$E2E_NAME" "$((now - T_START))" "$((now - T_STEP))" "$C_OFF" "$*"
  T_STEP=$now
}

ports_in_use() {
  local p inuse=()
  for p in "${PORTS[@]}"; do port_open 127.0.0.1 "$p" && inuse+=("$p"); done
  echo "${inuse[*]}"
}

influx_trades() { # points in trades older than $1 (ns), or all
  python3 "$STACKUTIL" influx-counts "${INFLUX[@]}" "${1:-$(($(date +%s) * 1000000000 + 10 ** 12))}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin).get("trades", 0))'
}
settled_trades() { influx_trades "$((($(date +%s) - SETTLE) * 1000000000))"; }
trades_above() { [ "$(influx_trades)" -gt "$1" ]; }
prom_value() { python3 "$STACKUTIL" prom-query "$PROM" "$1"; }
positive() { [ "$("$@" 2>/dev/null | cut -d. -f1)" -gt 0 ] 2>/dev/null; }

# The backup round trip's three checks, around the caller's own wipe. They need MAKE and
# redis_raven_keys (raven:* keys in the stack's Redis) from the caller.

# e2e_backup — `make backup`, then what its manifest promises: sets backup (the name),
# manifest, cut (InfluxDB's cut-off, ns), want_influx (points per measurement before it),
# want_redis_keys, want_prom (Prometheus stats). Fails if it holds no trades or keys.
e2e_backup() {
  timed "make backup"
  "$MAKE" --no-print-directory backup
  backup="$(cat "$BACKUP_ROOT/LATEST")"
  manifest="$BACKUP_ROOT/$backup/manifest.json"
  [ -f "$manifest" ] || die "no manifest in $BACKUP_ROOT/$backup"
  cut="$(python3 "$STACKUTIL" get "$manifest" components.influxdb.points_before_ns)"
  want_influx="$(python3 "$STACKUTIL" get "$manifest" components.influxdb.points)"
  want_redis_keys="$(python3 "$STACKUTIL" get "$manifest" components.redis.snapshot.keys)"
  want_prom="$(python3 "$STACKUTIL" get "$manifest" components.prometheus.stats)"
  [ "$(python3 -c 'import json,sys; print(json.loads(sys.argv[1]).get("trades", 0))' "$want_influx")" -gt 0 ] ||
    die "the backup holds no trades"
  [ "$want_redis_keys" -gt 0 ] || die "the backup holds no Redis keys"
}

prom_stats_at_backup() { # Prometheus's stats now, at the time the backup's were taken
  python3 "$STACKUTIL" prom-stats "$PROM" "$(python3 "$STACKUTIL" get "$manifest" components.prometheus.stats.time)"
}

# e2e_wiped [MEASUREMENT...] — after the wipe and a start: InfluxDB has no point from
# before the backup's cut (Raven writes again as soon as it is up, so that is what
# "empty" means) except in the MEASUREMENTs named, and Prometheus has not the backup's
# data at its time.
e2e_wiped() {
  local got
  got="$(python3 "$STACKUTIL" influx-counts "${INFLUX[@]}" "$cut")"
  python3 -c 'import json,sys; sys.exit(any(v for k, v in json.loads(sys.argv[1]).items() if k not in sys.argv[2:]))' "$got" "$@" ||
    die "InfluxDB not empty after the wipe: $got"
  python3 "$STACKUTIL" same "$want_prom" "$(prom_stats_at_backup)" >/dev/null &&
    die "Prometheus still has the old data after the wipe"
  say "  wiped: InfluxDB has no point before the backup's cut, Prometheus none at its time"
}

# e2e_restored — `make restore`, then the data as in the manifest, the stack healthy
# and Raven writing again.
e2e_restored() {
  local got before
  timed "make restore BACKUP_NAME=$backup"
  "$MAKE" --no-print-directory restore BACKUP_NAME="$backup"
  timed "data back: InfluxDB, Redis, Prometheus as in the manifest; Raven healthy and writing"
  got="$(python3 "$STACKUTIL" influx-counts "${INFLUX[@]}" "$cut")"
  python3 "$STACKUTIL" same "$want_influx" "$got" || die "InfluxDB points differ from the manifest"
  python3 "$STACKUTIL" same "$want_prom" "$(prom_stats_at_backup)" || die "Prometheus differs from the manifest"
  [ "$(redis_raven_keys)" -ge "$want_redis_keys" ] || die "fewer raven:* keys than the backup's $want_redis_keys"
  "$MAKE" --no-print-directory health >/dev/null
  before="$(influx_trades)"
  wait_until "new trades after the restore" 60 trades_above "$before" ||
    die "Raven does not write after the restore"
  say "  influxdb $want_influx; redis $want_redis_keys keys; prometheus $want_prom"
}
