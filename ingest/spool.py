"""Durable, bounded FIFO spool for telemetry batches while InfluxDB is slow or down.

Batches are appended as encoded line protocol to a SQLite file (WAL, synchronous=FULL): once
``append`` returns, the batch survives a crash and the broker may be acknowledged. Batches are
replayed oldest first; while any batch waits, new ones queue behind it so order is kept.

Each batch records its encoding: the collector spools the store-neutral one, so a spool written
while InfluxDB was down replays into whatever store the collector has after a restart. Rows of
a spool from before the column existed have none; :meth:`Spool.peek` tells them by their first
byte (a JSON array, or line protocol).
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from semon.store.influx import INFLUX_LINES
from semon.store.telemetry import POINTS_JSON


class SpoolFull(RuntimeError):
    """The spool reached its byte bound; the caller must stop acknowledging (back-pressure)."""


class Spool:
    """A bounded FIFO of byte blobs on disk."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT, body BLOB NOT NULL)")
        if "encoding" not in {r[1] for r in self._db.execute("PRAGMA table_info(spool)")}:
            self._db.execute("ALTER TABLE spool ADD COLUMN encoding TEXT")
        n, size = self._db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM spool").fetchone()
        self.batches, self.bytes = int(n), int(size)

    def __len__(self) -> int:
        return self.batches

    def append(self, body: bytes, encoding: str) -> None:
        """Store a batch durably with its encoding, or raise :class:`SpoolFull` at the bound."""
        with self._lock:
            if self.bytes + len(body) > self.max_bytes:
                raise SpoolFull(f"spool holds {self.bytes} bytes; limit {self.max_bytes}")
            self._db.execute("INSERT INTO spool (body, encoding) VALUES (?, ?)", (body, encoding))
            self.batches += 1
            self.bytes += len(body)

    def peek(self) -> tuple[int, bytes, str] | None:
        """The oldest batch and its encoding, without removing it."""
        with self._lock:
            row = self._db.execute("SELECT id, body, encoding FROM spool ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        body = bytes(row[1])
        return int(row[0]), body, row[2] or (POINTS_JSON if body[:1] == b"[" else INFLUX_LINES)

    def remove(self, batch_id: int) -> None:
        """Drop a batch once it is safely in the store."""
        with self._lock:
            row = self._db.execute("DELETE FROM spool WHERE id = ? RETURNING length(body)", (batch_id,)).fetchone()
            if row:
                self.batches -= 1
                self.bytes -= int(row[0])

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
