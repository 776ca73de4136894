#!/bin/bash
# The Raven image's entrypoint (Dockerfile: /usr/local/bin/raven-entrypoint).
# `raven-entrypoint ARGS` runs `raven ARGS`. For `serve` it adds:
#   RAVEN_DEMO=1     --demo: the in-process synthetic exchange instead of the configured
#                    venues (an offline stack; nothing else changes)
#   RAVEN_LOG_FILE   also append the log to this file (the raven_logs volume), moved to
#                    FILE.1 at start once it is over RAVEN_LOG_MAX_BYTES (100 MiB)
# SIGTERM and SIGINT reach Raven, so shutdown drains the stores. Without a log file Raven
# replaces this script (exec); with one, the script forwards the signal, waits for Raven
# and then for tee, so the last lines (the shutdown's) are written before the container
# ends, which would kill a tee still copying them.
set -euo pipefail
if [ "${1:-}" = serve ]; then
  case "${RAVEN_DEMO:-0}" in
    1 | true | TRUE | True | yes | on) set -- "$@" --demo ;;
    0 | false | FALSE | False | no | off | "") ;;
    *)
      echo "raven-entrypoint: RAVEN_DEMO must be 0 or 1, not '${RAVEN_DEMO}'" >&2
      exit 2
      ;;
  esac
  if [ -n "${RAVEN_LOG_FILE:-}" ]; then
    mkdir -p "$(dirname "$RAVEN_LOG_FILE")"
    if [ -f "$RAVEN_LOG_FILE" ] &&
      [ "$(stat -c %s "$RAVEN_LOG_FILE")" -gt "${RAVEN_LOG_MAX_BYTES:-104857600}" ]; then
      mv -f "$RAVEN_LOG_FILE" "$RAVEN_LOG_FILE.1"
    fi
    exec > >(exec tee -a "$RAVEN_LOG_FILE") 2>&1
    tee_pid=$!
    "${RAVEN_BIN:-raven}" "$@" &
    pid=$!
    trap 'kill -TERM "$pid" 2>/dev/null || true' TERM
    trap 'kill -INT "$pid" 2>/dev/null || true' INT
    # A trapped signal ends `wait` early: wait again until Raven itself has exited, then
    # take its status (bash keeps it for a child already waited for).
    while kill -0 "$pid" 2>/dev/null; do wait "$pid" || true; done
    status=0
    wait "$pid" || status=$?
    # tee ends at the end of its input: this script's copies of the pipe close here.
    exec >&- 2>&-
    wait "$tee_pid" || true
    exit "$status"
  fi
fi
exec "${RAVEN_BIN:-raven}" "$@"
