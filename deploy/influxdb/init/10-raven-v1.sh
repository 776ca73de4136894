#!/bin/bash
# InfluxDB 2.x first-start script (docker-compose.yml mounts this directory at
# /docker-entrypoint-initdb.d). The influxdb image runs it once, right after its own
# setup from DOCKER_INFLUXDB_INIT_* (owner, org, bucket, operator token) and only while
# the influxdb_data volume is empty; the influx CLI is then already configured with the
# operator token, and DOCKER_INFLUXDB_INIT_BUCKET_ID names the new bucket.
#
# It makes InfluxDB 2.x answer Raven's and Grafana's v1 requests unchanged:
#   - a DBRP mapping: v1 database $INFLUXDB_DATABASE, retention policy autogen (default)
#     -> the bucket, for /write (Raven) and /query with InfluxQL (Grafana, raven history);
#   - a v1 authorization $INFLUXDB_USERNAME / $INFLUXDB_PASSWORD (basic auth) allowed to
#     read and write that bucket only: Raven's INFLUXDB_USERNAME / INFLUXDB_PASSWORD.
set -euo pipefail

db="${INFLUXDB_DATABASE:-market_data}"
user="${INFLUXDB_USERNAME:?INFLUXDB_USERNAME is not set}"
password="${INFLUXDB_PASSWORD:?INFLUXDB_PASSWORD is not set}"
org="${DOCKER_INFLUXDB_INIT_ORG:?DOCKER_INFLUXDB_INIT_ORG is not set}"
bucket_id="${DOCKER_INFLUXDB_INIT_BUCKET_ID:?DOCKER_INFLUXDB_INIT_BUCKET_ID is not set}"

if [ "${#password}" -lt 8 ]; then
  echo "10-raven-v1.sh: INFLUXDB_PASSWORD must have 8 characters at least" >&2
  exit 1
fi

influx v1 dbrp create \
  --org "$org" \
  --bucket-id "$bucket_id" \
  --db "$db" \
  --rp autogen \
  --default

influx v1 auth create \
  --org "$org" \
  --username "$user" \
  --password "$password" \
  --read-bucket "$bucket_id" \
  --write-bucket "$bucket_id" \
  --description "Raven and Grafana: v1 API (InfluxQL) on ${db}"

echo "10-raven-v1.sh: v1 database ${db} -> bucket ${bucket_id}, v1 user ${user}"
