#!/bin/sh
# The upstream image is built with protected mode off: without a password it accepts the
# other containers' connections, which Debian's default (protected mode on) refuses.
# `redis-server ARGS` (the compose file's command) keeps that behaviour here.
set -eu
if [ "${1:-}" = redis-server ]; then
  shift
  exec redis-server --protected-mode no "$@"
fi
exec "$@"
