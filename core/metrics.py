"""Prometheus metrics of the pipeline, and a small health/metrics HTTP endpoint for services."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

log = logging.getLogger(__name__)

MESSAGES_RECEIVED = Counter("semon_messages_received_total", "MQTT messages received", ["channel"])
MESSAGES_ACCEPTED = Counter("semon_messages_accepted_total", "Messages accepted", ["kind", "channel"])
DEAD_LETTERS = Counter("semon_dead_letters_total", "Messages rejected to dead letters", ["reason"])
POINTS_WRITTEN = Counter("semon_points_written_total", "Telemetry points durably written", ["store"])
BATCHES_SPOOLED = Counter("semon_batches_spooled_total", "Batches written to the local spool")
SPOOL_BATCHES = Gauge("semon_spool_batches", "Batches waiting in the spool")
SPOOL_BYTES = Gauge("semon_spool_bytes", "Bytes waiting in the spool")
TELEMETRY_LAG = Gauge(
    "semon_telemetry_lag_seconds", "Age of the oldest batch journaled but not yet in the telemetry store (0: none)"
)
QUEUE_DEPTH = Gauge("semon_ingest_queue_depth", "Messages received but not yet evaluated")
UNACKED = Gauge("semon_unacked_messages", "Messages evaluated but not yet acknowledged to the broker")
ALARM_JOURNAL = Gauge("semon_alarm_journal_records", "Alarm records kept in the local journal (database away)")
STAGE_UP = Gauge("semon_stage_up", "1 while a collector stage runs and beats, else 0", ["stage"])
HEALTH_OK = Gauge("semon_health_ok", "1 while alarms are evaluated and delivered (/health 200), else 0")
LAST_MESSAGE_AGE = Gauge("semon_last_message_age_seconds", "Seconds since the pipeline last processed a message")
DEGRADED = Gauge("semon_degraded", "1 while a degraded condition is in force", ["condition"])
OUT_OF_ORDER = Counter(
    "semon_messages_out_of_order_total",
    "Messages behind their device's newest seq: late (edge/window rules only), stale (stored only), duplicate",
    ["order"],
)
CLOCK_JUMPS = Counter("semon_clock_jumps_total", "Messages whose ts jumped ahead of their device's clock estimate")
SEQ_RESETS = Counter("semon_seq_resets_total", "Device counter resets (reboots) seen")
SEQ_GAPS = Counter(
    "semon_seq_gaps_total", "Device seqs skipped by a newer one (missing); of those, arrived late (filled)", ["outcome"]
)
ALARM_TRANSITIONS = Counter("semon_alarm_transitions_total", "Alarm transitions", ["type", "event"])
WRITE_SECONDS = Histogram(
    "semon_telemetry_write_seconds",
    "Time to write one batch",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


def serve_health(host: str, port: int, health: Callable[[], dict[str, Any]]) -> ThreadingHTTPServer:
    """Serve ``/health`` (JSON; 200 while ``status`` is "ok", "degraded" or "standby", else 503) and
    ``/metrics`` in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                health()  # refreshes the health gauges (stage up, degraded conditions) before the scrape
                body, ctype, code = generate_latest(), CONTENT_TYPE_LATEST, 200
            elif self.path == "/health":
                h = health()
                body, ctype = json.dumps(h).encode(), "application/json"
                code = 200 if h.get("status") in ("ok", "degraded", "standby") else 503
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: scrapes are not news
            pass

    srv = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=srv.serve_forever, name="health-http", daemon=True).start()
    log.info("health and metrics on http://%s:%d/health /metrics", host, srv.server_address[1])
    return srv
