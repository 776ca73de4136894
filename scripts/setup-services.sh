#!/usr/bin/env bash
# Installs the real servers the integration tests start on loopback (each test runs its
# own instance on a free port in a temp dir): redis-server, from Debian's packages.
# Idempotent: does nothing when they are already installed.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} for the integration tests"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's package may start a system instance on 6379; the tests never use it.
