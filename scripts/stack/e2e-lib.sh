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
