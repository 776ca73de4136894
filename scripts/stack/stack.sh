#!/usr/bin/env bash
# The Makefile's deployment targets land here: `scripts/stack/stack.sh VERB [ARG]` runs
# VERB in the docker stack (docker compose) or the native one (Debian packages + Raven
# as processes), by STACK=docker|native, or by default docker when a Docker engine
# answers and Compose (v2 `docker compose` or v1 `docker-compose`) is here, native
# otherwise.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/stack/lib.sh
. "$here/lib.sh"
mode="${STACK:-}"
if [ -z "$mode" ]; then
  if compose_command && docker info >/dev/null 2>&1; then
    mode=docker
  else
    mode=native
  fi
fi
case "$mode" in
  docker | native) ;;
  *)
    echo "STACK is docker or native, not '$mode'" >&2
    exit 2
    ;;
esac
if [ "${1:-}" = which ]; then
  echo "$mode"
  exit 0
fi
[ -n "${STACK_QUIET:-}" ] || echo "[stack: $mode${STACK:+ (STACK=$STACK)}]" >&2
exec "$here/$mode.sh" "$@"
