"""Durable, bounded FIFO spool (the telemetry journal): batches on their way to the store.

Batches are appended to a SQLite file (WAL, synchronous=FULL): once ``append_many`` returns,
the batches survive a crash and the broker may be acknowledged. Several batches go in one
transaction — one fsync for all of them — which is what lets the collector journal at the rate
messages arrive while the store is slower (docs/benchmarks.md, "Alarms first"). Writers *claim*
the oldest unclaimed batches, write them and remove them; a failed write releases its claim, so
two writers can replay at once without taking the same batch twice.

Each batch records its encoding — the store's own (line protocol for InfluxDB), so replaying
sends bytes and costs no re-encoding — and the collector can read every encoding it writes back
into points (``telemetry_sink.DECODERS``), so a spool written for InfluxDB replays into whatever
store the collector has after a restart. Rows of a spool from before the column existed have
none; :meth:`Spool.claim` tells them by their first byte (a JSON array, or line protocol).

``at`` is the wall time a batch was journaled: the age of the oldest one is how far the store
is behind intake (``/health``, ``semon_telemetry_lag_seconds``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
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
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(spool)")}
        if "encoding" not in columns:
            self._db.execute("ALTER TABLE spool ADD COLUMN encoding TEXT")
        if "at" not in columns:
            self._db.execute("ALTER TABLE spool ADD COLUMN at REAL")
        n, size = self._db.execute("SELECT count(*), coalesce(sum(length(body)), 0) FROM spool").fetchone()
        self.batches, self.bytes = int(n), int(size)
        self._claimed: set[int] = set()

    def __len__(self) -> int:
        return self.batches

    def append(self, body: bytes, encoding: str) -> None:
        """Store one batch durably with its encoding, or raise :class:`SpoolFull` at the bound."""
        self.append_many([body], encoding)

    def append_many(self, bodies: Sequence[bytes], encoding: str) -> None:
        """Store batches durably in one transaction (one fsync), or none of them and raise
        :class:`SpoolFull` when they would pass the bound."""
        size = sum(len(b) for b in bodies)
        with self._lock:
            if self.bytes + size > self.max_bytes:
                raise SpoolFull(f"spool holds {self.bytes} bytes; limit {self.max_bytes}")
            at = time.time()
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT INTO spool (body, encoding, at) VALUES (?, ?, ?)", [(b, encoding, at) for b in bodies]
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.batches += len(bodies)
            self.bytes += size

    def claim(self, max_batches: int = 1) -> list[tuple[int, bytes, str]]:
        """The oldest batches nobody has claimed, with their encodings; they stay on disk until
        :meth:`remove` (written) or go back to the others with :meth:`release` (not written)."""
        with self._lock:
            claimed = sorted(self._claimed)
            rows = self._db.execute(
                f"SELECT id, body, encoding FROM spool WHERE id NOT IN ({','.join('?' * len(claimed))})"
                " ORDER BY id LIMIT ?",
                (*claimed, max_batches),
            ).fetchall()
            out = []
            for batch_id, raw, encoding in rows:
                body = bytes(raw)
                out.append((int(batch_id), body, encoding or (POINTS_JSON if body[:1] == b"[" else INFLUX_LINES)))
                self._claimed.add(int(batch_id))
            return out

    def peek(self) -> tuple[int, bytes, str] | None:
        """The oldest batch and its encoding, without removing or claiming it."""
        with self._lock:
            row = self._db.execute("SELECT id, body, encoding FROM spool ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        body = bytes(row[1])
        return int(row[0]), body, row[2] or (POINTS_JSON if body[:1] == b"[" else INFLUX_LINES)

    def release(self, batch_ids: Sequence[int]) -> None:
        """Give claimed batches back (their write failed): the next claim takes them again."""
        with self._lock:
            self._claimed.difference_update(batch_ids)

    def remove(self, batch_id: int | Sequence[int]) -> None:
        """Drop batches once they are safely in the store."""
        ids = [batch_id] if isinstance(batch_id, int) else list(batch_id)
        with self._lock:
            self._db.execute("BEGIN")  # one commit for all: a commit is an fsync
            try:
                sizes = [self._db.execute("DELETE FROM spool WHERE id = ? RETURNING length(body)", (i,)).fetchone()
                         for i in ids]  # fmt: skip
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            for row in sizes:
                if row:
                    self.batches -= 1
                    self.bytes -= int(row[0])
            self._claimed.difference_update(ids)

    def lag_s(self, now: float | None = None) -> float:
        """Seconds since the oldest waiting batch was journaled (0 when empty): how far the store
        is behind intake. Rows from before the ``at`` column count as journaled now."""
        with self._lock:
            row = self._db.execute("SELECT at FROM spool ORDER BY id LIMIT 1").fetchone()
        if row is None or row[0] is None:
            return 0.0
        return max(0.0, (time.time() if now is None else now) - float(row[0]))

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
