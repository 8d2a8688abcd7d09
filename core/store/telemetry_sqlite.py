"""Embedded telemetry store on SQLite, used when no InfluxDB is configured (demo, laptop)."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import orjson

from semon.store.telemetry import POINTS_JSON, FieldValue, Point, TelemetryUnavailable, encode_points

_SCHEMA = """
CREATE TABLE IF NOT EXISTS telemetry (
    measurement TEXT NOT NULL,
    device_id   TEXT NOT NULL,
    time_ns     INTEGER NOT NULL,
    tags        BLOB NOT NULL,
    fields      BLOB NOT NULL,
    PRIMARY KEY (measurement, device_id, time_ns)
) WITHOUT ROWID;
"""


class SqliteTelemetryStore:
    """Points keyed like InfluxDB's (measurement, device, time): a rewrite overwrites."""

    concurrent_writes = False  # one SQLite connection: the collector writes from one thread
    encoding = POINTS_JSON

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(_SCHEMA)

    def write(self, points: Sequence[Point]) -> None:
        """Upsert ``points`` in one transaction."""
        self.write_encoded(self.encode(points))

    def encode(self, points: Sequence[Point]) -> bytes:
        """A batch in the store-neutral JSON encoding."""
        return encode_points(points)

    def write_encoded(self, body: bytes) -> list[tuple[bytes, str]]:
        """Upsert an encoded batch; SQLite refuses no row of ours."""
        rows = [(m, d, t, orjson.dumps(tags), orjson.dumps(f)) for m, d, t, tags, f in orjson.loads(body)]
        try:
            with self._lock:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO telemetry VALUES (?,?,?,?,?)", rows)
                self._db.execute("COMMIT")
            return []
        except sqlite3.Error as e:
            with self._lock:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
            raise TelemetryUnavailable(f"SQLite telemetry write failed: {e}") from e

    @staticmethod
    def _row(time_ns: int, tags: bytes, fields: bytes) -> dict[str, FieldValue]:
        row: dict[str, FieldValue] = {"time": time_ns // 1_000_000}
        row.update(orjson.loads(tags))
        row.update(orjson.loads(fields))
        return row

    def latest(self, measurement: str, device_id: str) -> dict[str, FieldValue] | None:
        """Newest row of a device."""
        with self._lock:
            r = self._db.execute(
                "SELECT time_ns, tags, fields FROM telemetry WHERE measurement=? AND device_id=? "
                "ORDER BY time_ns DESC LIMIT 1",
                (measurement, device_id),
            ).fetchone()
        return self._row(*r) if r else None

    def query(
        self, measurement: str, device_id: str, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[dict[str, FieldValue]]:
        """Rows of a device in a time range, oldest first."""
        with self._lock:
            rs = self._db.execute(
                "SELECT time_ns, tags, fields FROM telemetry WHERE measurement=? AND device_id=? "
                "AND time_ns >= ? AND time_ns < ? ORDER BY time_ns LIMIT ?",
                (measurement, device_id, start_ms * 1_000_000, end_ms * 1_000_000, limit),
            ).fetchall()
        return [self._row(*r) for r in rs]

    def count_by_device(self, measurement: str) -> dict[str, int]:
        """Rows per device (used by checks and tests)."""
        with self._lock:
            rs = self._db.execute(
                "SELECT device_id, count(*) FROM telemetry WHERE measurement=? GROUP BY device_id", (measurement,)
            ).fetchall()
        return dict(rs)

    def ping(self) -> bool:
        """Always reachable: it is a local file."""
        return True

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
