"""Partition ownership as a lease: one collector consumes a partition, standbys wait to take over.

:class:`PartitionLease` is what the collector needs from the engine that arbitrates ownership;
:class:`PgAdvisoryLease` implements it on PostgreSQL — a *session-level* advisory lock per
partition (``pg_try_advisory_lock``) held on a dedicated connection of the owner — and a
JetStream KV implementation (issue 19) can sit beside it. :class:`LeaseKeeper` is the
collector's loop around a lease (docs/scaling.md, "Failover"):

* **standby**: try to take the lease every :data:`ACQUIRE_EVERY_S`; once it is ours, start
  consuming (the collector connects with the partition's persistent session id, so the broker
  hands over the backlog, and rebuilds its state from the database as on a restart);
* **owner**: prove every :data:`CHECK_EVERY_S` that the lease is still ours; when that fails,
  **fence** — stop consuming and disconnect from the broker at once, then end the process
  (exit 70, the service manager restarts it and it joins as standby): a collector that lost
  its lease must not go on publishing alarms beside the new owner.

Time bounds, PostgreSQL: an owner killed outright (SIGKILL, OOM) frees the lock as soon as
its socket closes — the standby takes over within ``ACQUIRE_EVERY_S`` plus its broker connect.
A half-dead owner host (network gone, no FIN) is detected by the server's TCP keepalives —
idle :data:`SERVER_KEEPALIVE` — at most ~11 s after its last packet, which frees the lock; the
owner itself fences earlier, within ~5 s (its ping's unacknowledged send hits
``tcp_user_timeout``), so the two never consume at once.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable
from typing import Any, Protocol

from semon.ingest.supervision import Supervisor

log = logging.getLogger(__name__)

ACQUIRE_EVERY_S = 1.0
CHECK_EVERY_S = 1.0
# Client side: keepalive probes after 2 s idle, 1 s apart, 2 lost = dead; unacknowledged data
# for 3 s = dead. The owner fences within ~5 s of losing its database.
CLIENT_KEEPALIVE: dict[str, Any] = {
    "keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 2,
    "tcp_user_timeout": 3000, "connect_timeout": 5,
}  # fmt: skip
# Server side (per session GUCs): the backend of a silent owner is dropped — and the lock freed —
# after 5 s idle + 3 probes 2 s apart, or 10 s of unacknowledged data: later than the owner fences.
SERVER_KEEPALIVE = " ".join(
    f"-c {k}={v}"
    for k, v in {"tcp_keepalives_idle": 5, "tcp_keepalives_interval": 2, "tcp_keepalives_count": 3,
                 "tcp_user_timeout": 10000}.items()
)  # fmt: skip
# First key of the two-int advisory lock: 'semo' — keeps semon's locks apart from anyone else's.
LOCK_NAMESPACE = 0x73656D6F


LEASE_UNCONFIRMED = "lease"


class LeaseLost(RuntimeError):
    """The lease is no longer ours: the collector fenced itself and must restart."""


class PartitionLease(Protocol):
    """Exclusive ownership of one partition, arbitrated by an engine semon already runs."""

    name: str  # "I/N", for logs and health

    def try_acquire(self) -> bool | None:
        """Take the lease if nobody holds it: True ours, False another's, None the engine is
        unreachable. Never blocks for long."""
        ...

    def still_held(self) -> bool | None:
        """Prove (a round trip to the engine) that the lease is still ours: True, False (another
        holds it), or None (the engine cannot tell us now)."""
        ...

    def release(self) -> None:
        """Give the lease up (clean shutdown)."""
        ...


def lock_key(partition: tuple[int, int], scope: str = "collector-partition") -> int:
    """The second advisory-lock key of partition ``(I, N)`` in ``scope`` (the Mosquitto path's
    ``collector-partition``, the JetStream path's ``jetstream-partition``): stable across
    processes and hosts."""
    return zlib.crc32(f"{scope}:{partition[0]}/{partition[1]}".encode()) & 0x7FFFFFFF


class PgAdvisoryLease:
    """A session-level advisory lock on a connection of its own (outside the SQLAlchemy pool:
    the lock lives exactly as long as this one connection)."""

    def __init__(self, db_url: str, partition: tuple[int, int], scope: str = "collector-partition") -> None:
        from sqlalchemy.engine import make_url

        self.name = f"{partition[0]}/{partition[1]}"
        self._conninfo = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self._key = lock_key(partition, scope)
        self._conn: Any = None  # psycopg.Connection once connected (psycopg imported lazily)

    def _connect(self) -> Any:  # psycopg is imported lazily: SQLite installs need not have it
        import psycopg

        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(
                self._conninfo, autocommit=True, application_name=f"semon-lease-{self.name}",
                options=SERVER_KEEPALIVE, **CLIENT_KEEPALIVE,
            )  # fmt: skip
        return self._conn

    def try_acquire(self) -> bool | None:
        """``pg_try_advisory_lock``: True ours, False another session's, None the database is
        away (nobody can take it then; retried)."""
        import psycopg

        try:
            row = self._connect().execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_NAMESPACE, self._key)).fetchone()
            return bool(row and row[0])
        except psycopg.Error as e:
            log.debug("lease %s: cannot ask the database: %s", self.name, e)
            self._drop()
            return None

    def still_held(self) -> bool | None:
        """True: granted to this very session; None: the connection that held it is gone, so
        whether another session took it is unknown until the database answers again."""
        import psycopg

        if self._conn is None or self._conn.closed:
            return None
        try:
            row = self._conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                " AND classid = %s AND objid = %s AND granted",
                (LOCK_NAMESPACE, self._key),
            ).fetchone()
            return bool(row and row[0])
        except psycopg.Error as e:
            log.error("lease %s: lost the connection that holds it: %s", self.name, e)
            self._drop()
            return None

    def release(self) -> None:
        """Unlock, then close: closing alone frees the lock too, but only once the server's
        backend has noticed, a moment later — a clean hand-over should not wait for that."""
        import psycopg

        if self._conn is not None and not self._conn.closed:
            try:
                self._conn.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_NAMESPACE, self._key))
            except psycopg.Error:
                pass  # the session is gone: so is the lock
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # a dead connection may fail to close; it is gone either way
                pass
            self._conn = None


class LeaseKeeper:
    """Waits for the lease (standby), then keeps proving it (owner); fences when it is lost."""

    def __init__(
        self, lease: PartitionLease, sup: Supervisor, on_acquired: Callable[[], None], fence: Callable[[str], None],
        *, stage: str = "lease", rejoin: bool = False, first_try_after: float = 0.0,
    ) -> None:
        """``rejoin``: after a loss (fenced), wait as standby again instead of ending the
        process (the JetStream source fences one partition's consumer, not the whole process);
        ``first_try_after``: seconds before the first attempt (a standby lets the preferred
        owner take its partition first)."""
        self.lease = lease
        self.stage = stage
        self.rejoin = rejoin
        self.first_try_after = first_try_after
        self.sup = sup
        self._on_acquired = on_acquired
        self._fence = fence
        self._stop = threading.Event()
        self.owner = threading.Event()
        self.uncertain = threading.Event()  # owner, but the database cannot confirm it now
        self._session_taken: str | None = None

    @property
    def role(self) -> str:
        """Either "owner" or "standby"."""
        return "owner" if self.owner.is_set() else "standby"

    def start(self) -> None:
        """Run the keeper as a supervised stage ("lease")."""
        self.sup.spawn(self.stage, self._run)

    def _run(self) -> None:
        if self._stop.wait(self.first_try_after):
            return
        while not self._stop.is_set():
            try:
                self._run_once()
                return
            except LeaseLost:
                if not self.rejoin:
                    raise
                self.lease.release()  # a fresh session for the next attempt
                self.uncertain.clear()
                self._session_taken = None

    def _run_once(self) -> None:
        announced = False
        while not self._stop.is_set():
            self.sup.beat(self.stage)
            if self.lease.try_acquire() is True:
                break
            if not announced:
                log.warning("partition %s is owned by another collector: waiting as standby", self.lease.name)
                announced = True
            self._stop.wait(ACQUIRE_EVERY_S)
        else:
            return
        if self._stop.is_set():  # stopped while acquiring: a collector shutting down starts nothing
            self.lease.release()
            return
        log.warning("partition %s: lease taken, this collector is its owner now", self.lease.name)
        self.owner.set()
        self._on_acquired()
        while not self._stop.wait(CHECK_EVERY_S):
            self.sup.beat(self.stage)
            held = self.lease.still_held() if not self.uncertain.is_set() else self.lease.try_acquire()
            if held is None:
                # The database is away: nobody can take the lease meanwhile, so consuming on keeps
                # alarms flowing. The broker arbitrates the rest: a new owner would connect with the
                # same session id and knock this one off — and then this one does not come back.
                if not self.uncertain.is_set():
                    log.warning("partition %s: lease unconfirmed (database unreachable); consuming on "
                                "until the database answers or the broker hands the session to another",
                                self.lease.name)  # fmt: skip
                    self.uncertain.set()
                    self.sup.degraded(LEASE_UNCONFIRMED, f"lease on partition {self.lease.name} unconfirmed")
            elif held:
                if self.uncertain.is_set():
                    log.warning("partition %s: lease confirmed again", self.lease.name)
                    self.uncertain.clear()
                    self.sup.recovered(LEASE_UNCONFIRMED)
            else:
                self._lost("another collector holds it")
            if self._session_taken is not None:
                self._lost(self._session_taken)

    def session_lost(self, why: str) -> bool:
        """The broker dropped the session. While the lease is unconfirmed that may be a new owner
        taking it over: True means do not reconnect (the keeper fences at its next check)."""
        if not self.uncertain.is_set():
            return False
        self._session_taken = f"broker dropped the session while the lease was unconfirmed ({why})"
        return True

    def _lost(self, why: str) -> None:
        msg = (
            f"lease on partition {self.lease.name} lost: {why}; stopped consuming (fenced); "
            "restart to rejoin as standby"
        )
        self.owner.clear()
        self._fence(msg)
        raise LeaseLost(msg)

    def stop(self) -> None:
        """Stop the loop (the lease stays held until :meth:`release`)."""
        self._stop.set()

    def release(self) -> None:
        """Give the lease up: only once this collector is off the broker, so that a standby
        never shares the session with it."""
        self._stop.set()
        self.owner.clear()
        self.lease.release()
