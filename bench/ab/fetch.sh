#!/usr/bin/env bash
# fetch.sh REV DIR — the collector's modules as they were at git revision REV, for A/B runs
# (see sitecustomize.py). Modules that did not exist at REV are left out.
set -euo pipefail
rev=$1 dir=$2
mkdir -p "$dir"
cd "$(dirname "$0")/../.."
# core/cli.py too: `semon collect` drives the collector, and its interface changed with the stages.
# The list matches sitecustomize.py's.
for f in core/store/influx.py ingest/handover.py ingest/supervision.py ingest/spool.py ingest/telemetry_sink.py \
    ingest/decode.py ingest/mqtt_client.py ingest/source.py ingest/alarm_sink.py ingest/pipeline.py \
    ingest/collector.py core/cli.py; do
  git show "$rev:$f" > "$dir/$(basename "$f")" 2>/dev/null || rm -f "$dir/$(basename "$f")"
done
ls "$dir"
