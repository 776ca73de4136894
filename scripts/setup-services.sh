#!/usr/bin/env bash
# Installs the real servers the integration tests start on loopback (each test runs its
# own instance on a free port in a temp dir): redis-server and influxd (InfluxDB 1.x),
# from Debian's packages.
# Idempotent: does nothing when they are already installed.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} for the integration tests"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's packages may start system instances on 6379/8086; the tests never use them.
