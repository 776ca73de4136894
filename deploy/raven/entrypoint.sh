#!/bin/bash
# The Raven image's entrypoint (Dockerfile: /usr/local/bin/raven-entrypoint).
# `raven-entrypoint ARGS` runs `raven ARGS`. For `serve` it adds:
#   RAVEN_DEMO=1     --demo: the in-process synthetic exchange instead of the configured
#                    venues (an offline stack; nothing else changes)
#   RAVEN_LOG_FILE   also append the log to this file (the raven_logs volume), moved to
#                    FILE.1 at start once it is over RAVEN_LOG_MAX_BYTES (100 MiB)
# Raven stays the process that receives SIGTERM (exec), so shutdown drains the stores.
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
  fi
fi
exec "${RAVEN_BIN:-raven}" "$@"
