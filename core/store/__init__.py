"""Stores: relational (registry, alarms, dead letters) and telemetry (InfluxDB or SQLite)."""

from __future__ import annotations

from semon.config import Settings
from semon.store.telemetry import TelemetryStore


def open_telemetry(settings: Settings) -> TelemetryStore:
    """InfluxDB when ``SEMON_INFLUX_URL`` is set, else the embedded SQLite store."""
    if settings.influx_url:
        from semon.store.influx import InfluxStore

        return InfluxStore(settings.influx_url, settings.influx_db, settings.influx_token, settings.influx_timeout_s)
    from semon.store.telemetry_sqlite import SqliteTelemetryStore

    return SqliteTelemetryStore(settings.telemetry_sqlite_path)
