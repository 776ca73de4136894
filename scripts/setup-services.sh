#!/usr/bin/env bash
# Installs the real servers the integration tests start on loopback (each test runs its
# own instance on a free port in a temp dir): redis-server, influxd (InfluxDB 1.x) and
# prometheus (with promtool, for the dashboards and alert rules test), from Debian's
# packages; also shellcheck, which `make lint-scripts` runs over the scripts. The native
# stack (`make deploy` without Docker, `make stack-e2e`) runs the same packages.
# Idempotent: does nothing when they are already installed.
set -euo pipefail
missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v influxd >/dev/null 2>&1 || missing+=(influxdb)
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} for the integration tests"
$sudo apt-get update -qq
# policy-rc.d exit 101: the packages' install scripts must not start system instances.
# Prometheus's would take :9090, Raven's default metrics port (`make run`); the tests
# never use any of them.
policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  made_policy=1
fi
status=0
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
[ -n "$made_policy" ] && $sudo rm -f "$policy"
[ $status -eq 0 ] || exit $status
# Where systemd runs, policy-rc.d does not stop a unit from being enabled for the next
# boot: disable (and stop) the system Prometheus so it never holds :9090.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v systemctl >/dev/null 2>&1 \
  && [ -d /run/systemd/system ]; then
  $sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
