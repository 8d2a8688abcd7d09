#!/bin/bash
# InfluxDB 2.x first-start hook (mounted into /docker-entrypoint-initdb.d of influxdb:2.7).
#
# The official image runs *.sh files here once, right after DOCKER_INFLUXDB_INIT_MODE=setup
# has created the org, the bucket and the admin token, with the influx CLI already logged in
# and DOCKER_INFLUXDB_INIT_BUCKET_ID exported. It must be executable (git keeps the mode).
#
# semon speaks only the v1-compatible API (/write with line protocol, /query with InfluxQL),
# which addresses "database/retention policy". This maps database `semon` (SEMON_INFLUX_DB),
# retention policy `autogen`, to the bucket, so those calls reach it. Without the mapping,
# /write and /query answer 404 "database not found" (docs/storage.md).
set -euo pipefail

db="${SEMON_INFLUX_DB:-semon}"

influx v1 dbrp create \
  --org "${DOCKER_INFLUXDB_INIT_ORG}" \
  --bucket-id "${DOCKER_INFLUXDB_INIT_BUCKET_ID}" \
  --db "${db}" \
  --rp autogen \
  --default

influx v1 dbrp list --org "${DOCKER_INFLUXDB_INIT_ORG}" --db "${db}"
