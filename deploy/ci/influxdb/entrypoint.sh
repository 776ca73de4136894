#!/bin/bash
# InfluxDB 1.x with the compose file's credentials (CI stand-in image). At every start,
# once influxd answers: the admin (DOCKER_INFLUXDB_INIT_USERNAME / _PASSWORD, the 2.x
# owner) is created if there is no user yet (1.x lets the first admin be created without
# credentials), then the database INFLUXDB_DATABASE and Raven's user INFLUXDB_USERNAME
# with read and write on it. Every step is idempotent, so a restored or dropped database
# gets its grant back on the next start.
set -euo pipefail

admin="${DOCKER_INFLUXDB_INIT_USERNAME:?DOCKER_INFLUXDB_INIT_USERNAME is not set}"
admin_pw="${DOCKER_INFLUXDB_INIT_PASSWORD:?DOCKER_INFLUXDB_INIT_PASSWORD is not set}"
db="${INFLUXDB_DATABASE:-market_data}"
user="${INFLUXDB_USERNAME:?INFLUXDB_USERNAME is not set}"
user_pw="${INFLUXDB_PASSWORD:?INFLUXDB_PASSWORD is not set}"

quote() { printf "'%s'" "${1//\'/\\\'}"; }
as_admin() { influx -host 127.0.0.1 -port 8086 -username "$admin" -password "$admin_pw" -execute "$1"; }

influxd -config /etc/influxdb/influxdb.conf &
pid=$!
# docker stop: SIGTERM reaches this script (PID 1: the service has no init); influxd
# gets it and the script exits with influxd's status.
trap 'kill -TERM "$pid" 2>/dev/null || true' TERM INT

# Ready when /ping answers 204 (bash's /dev/tcp: the image has no curl).
ping() {
  exec 3<>/dev/tcp/127.0.0.1/8086 && printf 'GET /ping HTTP/1.0\r\n\r\n' >&3 &&
    head -n 1 <&3 | grep -q ' 204'
}
until (ping) 2>/dev/null; do
  kill -0 "$pid" 2>/dev/null || {
    wait "$pid" || exit $?
    exit 1
  }
  sleep 0.2
done
if ! as_admin 'SHOW USERS' >/dev/null 2>&1; then
  # No user yet: auth is on, and 1.x accepts exactly this statement without credentials.
  influx -host 127.0.0.1 -port 8086 -execute \
    "CREATE USER \"$admin\" WITH PASSWORD $(quote "$admin_pw") WITH ALL PRIVILEGES" || {
    echo "ci-influxdb-entrypoint: cannot log in as $admin, nor create it (another admin exists?)" >&2
    kill -TERM "$pid"
    exit 1
  }
fi
as_admin "CREATE DATABASE \"$db\""
if [ "$user" != "$admin" ]; then
  as_admin "SHOW USERS" | awk 'NR > 2 {print $1}' | grep -qx "$user" ||
    as_admin "CREATE USER \"$user\" WITH PASSWORD $(quote "$user_pw")"
  as_admin "GRANT ALL ON \"$db\" TO \"$user\""
fi
echo "ci-influxdb-entrypoint: database $db, users $admin (admin) and $user ready"
# A trapped signal ends `wait` early: wait again until influxd itself has exited, then
# take its status (bash keeps it for a child already waited for).
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || true; done
status=0
wait "$pid" || status=$?
exit "$status"
