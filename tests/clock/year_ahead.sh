#!/usr/bin/env bash
# Run the test suite with the machine's wall clock a year ahead (issue 11: no test may depend on
# today's date). Usage: tests/clock/year_ahead.sh [pytest args…]   (default: the whole suite)
#
# libfaketime (Debian: apt-get install faketime) shifts CLOCK_REALTIME for this process and every
# child that loads it: pytest, the `semon …` subprocesses the tests start, Mosquitto, SQLite's
# CURRENT_TIMESTAMP. Not shifted: influxd (Go reads the clock without libc) and a PostgreSQL
# server started outside — the clock skew between hosts that a real deployment would not have.
# The monotonic clock stays real: libfaketime 0.9.10 does not wrap sem_clockwait, so a faked
# monotonic clock makes Python 3.11's lock and Event timeouts wait a year; monotonic_sleep.c
# fixes the one call it then gets wrong (time.sleep's absolute CLOCK_MONOTONIC clock_nanosleep).
# FAKETIME_FORCE_MONOTONIC_FIX=0: with it, Chromium (the board test) runs ~20x slower.
set -euo pipefail
cd "$(dirname "$0")/../.."
lib=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
[ -e "$lib" ] || { echo "libfaketime missing: apt-get install faketime" >&2; exit 2; }
shim="${TMPDIR:-/tmp}/semon-monotonic-sleep.so"
cc -O2 -shared -fPIC -o "$shim" tests/clock/monotonic_sleep.c -ldl
export FAKETIME="${FAKETIME:-+365d}" FAKETIME_DONT_FAKE_MONOTONIC=1 FAKETIME_FORCE_MONOTONIC_FIX=0 \
  LD_PRELOAD="$shim:$lib"
.venv/bin/python -c 'import datetime, time; time.sleep(0.01); print("clock now", datetime.datetime.now(datetime.UTC))'
exec .venv/bin/python -m pytest "$@"
