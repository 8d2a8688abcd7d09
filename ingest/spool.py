"""Durable, bounded FIFO spool for telemetry batches while InfluxDB is slow or down.

Batches are appended as encoded line protocol to a SQLite file (WAL, synchronous=FULL): once
``append`` returns, the batch survives a crash and the broker may be acknowledged. Batches are
replayed oldest first; while any batch waits, new ones queue behind it so order is kept.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path


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
        n, size = self._db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM spool").fetchone()
        self.batches, self.bytes = int(n), int(size)

    def __len__(self) -> int:
        return self.batches

    def append(self, body: bytes) -> None:
        """Store a batch durably, or raise :class:`SpoolFull` at the bound."""
        with self._lock:
            if self.bytes + len(body) > self.max_bytes:
                raise SpoolFull(f"spool holds {self.bytes} bytes; limit {self.max_bytes}")
            self._db.execute("INSERT INTO spool (body) VALUES (?)", (body,))
            self.batches += 1
            self.bytes += len(body)

    def peek(self) -> tuple[int, bytes] | None:
        """The oldest batch, without removing it."""
        with self._lock:
            row = self._db.execute("SELECT id, body FROM spool ORDER BY id LIMIT 1").fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

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
