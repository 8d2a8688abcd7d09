"""The collector: MQTT (QoS 1, persistent session, manual acks) → rules → durable stores.

Four stages, one job each, every thread under supervision (ingest/README.md):

* **source** (:mod:`semon.ingest.source`) — paho's network thread runs the session and hands
  bursts to a bounded inbox; :class:`AckGate` sends PUBACKs in arrival order once durable;
* **pipeline** (:mod:`semon.ingest.pipeline`) — decode, validate, evaluate rules, cut batches;
  it never waits on a store or the broker;
* **alarm sink** (:mod:`semon.ingest.alarm_sink`) — alarm transitions and dead letters into the
  database (or a local journal while it is away), confirmed publishing, the relay, registry
  reloads;
* **telemetry sink** (:mod:`semon.ingest.telemetry_sink`) — batches into InfluxDB/SQLite or
  the durable spool.

Several collectors can split one stream by device: with ``SEMON_COLLECTOR_PARTITION=I/N``
this one owns the devices whose CRC-32 of the id is I modulo N. Each keeps its own non-shared
session, acknowledges other devices' messages unprocessed, and so a device's messages are
ordered and evaluated by exactly one collector (docs/scaling.md). On PostgreSQL a partition is
a lease (:mod:`semon.ingest.lease`): a second collector of the same partition waits as standby
and takes over, with the same session id, when the owner dies; an owner that loses its lease
stops consuming.
"""

from __future__ import annotations

import functools
import gc
import logging
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from semon import metrics as m
from semon.config import Settings
from semon.ingest.alarm_sink import ALARM_STORE_DOWN, JOURNAL_FULL, AlarmSink
from semon.ingest.dead_letters import DeadLetters
from semon.ingest.handover import Batch, Inbound
from semon.ingest.lease import LeaseKeeper, PgAdvisoryLease
from semon.ingest.pipeline import Pipeline, parse_partition, partition_of
from semon.ingest.registry_watch import REGISTRY_DOWN, RegistryWatch
from semon.ingest.seq_gaps import MESSAGE_LOSS
from semon.ingest.source import BROKER_DOWN, JETSTREAM_DOWN, AckGate, MqttSource
from semon.ingest.spool import Spool
from semon.ingest.supervision import Supervisor
from semon.ingest.telemetry_sink import SPOOL_FULL, TELEMETRY_DOWN, TelemetrySink
from semon.notify.canary import PLATFORM_DEVICE
from semon.rules.catalog import Catalog
from semon.rules.engine import RuleEngine
from semon.store import seq_state
from semon.store.db import Database
from semon.store.telemetry import TelemetryStore

__all__ = ["Batch", "Collector", "Inbound", "parse_partition", "partition_of", "tune_runtime"]

log = logging.getLogger(__name__)

# GIL switch interval for a process that runs a collector. The pipeline thread is CPU-bound and
# paho's network thread mostly waits in select(): with Python's default 5 ms they trade the GIL
# so often that the process stalls in hand-offs (at 26 k msg/s: 24 k accepted at 0.5 ms, 26.5 k
# at 20 ms, same run conditions; docs/benchmarks.md). The cost is at most 20 ms more alarm latency.
SWITCH_INTERVAL_S = 0.02
# Garbage-collection thresholds for a process that runs a collector. Each message allocates a
# few dozen short-lived containers that reference counting frees at once; with CPython's
# default (a young-generation pass every 700 net allocations) the cyclic collector ran every few
# messages and took 40 % of the pipeline's CPU (bench/collector_cost.py: 27 → 23 µs a message).
GC_THRESHOLDS = (50_000, 10, 10)

# A stage that has not looped for this long is hung (every loop wakes at least every 0.5 s; a
# telemetry write may take influx_timeout_s, a database call its connect timeout).
HUNG_AFTER_S = 30.0
# The pipeline has messages waiting but processed none for this long: alarms are not evaluated.
STALLED_AFTER_S = 10.0
# Broker unreachable this long: alarms cannot be delivered (a reconnect usually takes < 1 s).
BROKER_GRACE_S = 5.0
# Outages under which transitions are not delivered (they wait in the journal) or messages are
# no longer taken in (nothing more can be made durable): health is 503 while one lasts.
ALARMS_AT_RISK = (ALARM_STORE_DOWN, JOURNAL_FULL, SPOOL_FULL)


def tune_runtime() -> None:
    """Process-wide interpreter settings for a process dedicated to a collector (see above)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    gc.set_threshold(*GC_THRESHOLDS)


def make_source(settings: Settings, client_id: str, sup: Supervisor) -> MqttSource:
    """The source stage ``SEMON_SOURCE`` names: the MQTT session, or JetStream partitions."""
    if settings.source == "jetstream":
        from semon.ingest.jetstream_source import JetStreamSource  # nats-py only where it is used

        return JetStreamSource(settings, client_id, sup)
    return MqttSource(settings, client_id, sup)


class Collector:
    """One collector process's worth of ingest; ``start()`` then ``stop()``."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        telemetry: TelemetryStore,
        *,
        engine: RuleEngine | None = None,
        client_id: str | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.telemetry = telemetry
        self.sup = Supervisor()
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self.engine = engine or RuleEngine(Catalog(settings.rules_file))
        partition = parse_partition(settings.collector_partition)
        if client_id is None:
            client_id = settings.mqtt_client_id
            if partition:
                client_id += f"-p{partition[0]}of{partition[1]}"
        self.lease = self._lease_keeper(settings, db, partition)
        self.source = make_source(settings, client_id, self.sup)
        if self.lease is not None:
            keeper = self.lease
            self.source.may_reconnect = lambda why: not keeper.session_lost(why)
        self.partition_keepers = self._jetstream_keepers(settings, db)
        self.client = self.source.client
        self.connected = self.source.connected
        self.registry = RegistryWatch(db, self.sup, settings.registry_refresh_s)
        self.dead = DeadLetters(self._count)
        self.dead_by_reason = self.dead.by_reason
        self.spool = Spool(settings.spool_path, settings.spool_max_bytes)
        self.telemetry_sink = TelemetrySink(
            settings, telemetry, self.spool, self.sup, self._count, self._acknowledge, self._refused_by_store
        )
        self.alarm_sink = AlarmSink(
            settings, db, self.source, self.registry, self.sup, self._count, self.dead, self.telemetry_sink.put,
            lambda device_id, alarm_type: self.pipeline.manual_clears.put((device_id, alarm_type)),
        )  # fmt: skip
        self.alarms = self.alarm_sink.alarms
        self.gate = AckGate(self.source, lambda: self.alarm_sink.durable, self._count)
        self.alarm_sink.on_durable = self.gate.records_advanced
        self.pipeline = Pipeline(
            settings, self.engine, self.source, self.registry, self.alarm_sink, self.telemetry_sink, self.dead,
            self.sup, self._count,
        )  # fmt: skip
        self.decoder = self.pipeline.decoder
        # Called with each stored alarm transition message (e.g. maintenance reversion), on the
        # alarm sink's thread: they must be quick.
        self.transition_hooks: list[Callable[[dict[str, Any]], None]] = self.alarm_sink.hooks
        self._threads: list[threading.Thread] = []

    def _lease_keeper(self, settings: Settings, db: Database, partition: tuple[int, int] | None) -> LeaseKeeper | None:
        """A lease for a partition (or, for a standby, the whole stream) when the database can
        arbitrate one; a standby on SQLite is refused (no advisory locks, so no failover)."""
        if partition is None and not settings.collector_standby:
            return None
        if db.engine.dialect.name != "postgresql":
            if settings.collector_standby:
                raise ValueError(
                    "SEMON_COLLECTOR_STANDBY needs PostgreSQL (SEMON_DB_URL): failover is a lease on a PostgreSQL "
                    "advisory lock, SQLite has none — run one collector per partition under a service manager"
                )
            return None
        lease = PgAdvisoryLease(db.url, partition or (0, 1))
        return LeaseKeeper(lease, self.sup, self._start_owned, self._fence)

    def _jetstream_keepers(self, settings: Settings, db: Database) -> list[LeaseKeeper]:
        """JetStream on PostgreSQL: one lease per partition (owned ones at once, standby ones
        after the standby delay), each starting and fencing that partition's consumer."""
        if settings.source != "jetstream":
            return []
        from semon.ingest.jetstream_source import owned_partitions, standby_partitions

        standby = standby_partitions(settings)
        if db.engine.dialect.name != "postgresql":
            if standby:
                raise ValueError("SEMON_JETSTREAM_STANDBY needs PostgreSQL (SEMON_DB_URL): failover is a lease "
                                 "on a PostgreSQL advisory lock, SQLite has none")  # fmt: skip
            return []
        n = settings.jetstream_partitions
        self.source.leased = True  # type: ignore[attr-defined]
        keepers = []
        delay = settings.jetstream_standby_delay_s
        for k in owned_partitions(settings) + standby:
            lease = PgAdvisoryLease(db.url, (k, n), scope="jetstream-partition")
            keepers.append(LeaseKeeper(
                lease, self.sup, functools.partial(self._take_partition, k),
                functools.partial(self._fence_partition, k),
                stage=f"lease-p{k}", rejoin=True, first_try_after=delay if k in standby else 0,
            ))  # fmt: skip
        return keepers

    def _take_partition(self, k: int) -> None:
        """Lease ``k`` is ours: rebuild its devices' state from the database, then consume it."""
        from semon.ingest.jetstream_source import nats_partition

        n = self.settings.jetstream_partitions
        self.registry.refresh(time.monotonic(), min_age=0)
        self.restore_alarms(lambda device_id: nats_partition(device_id, n) == k)
        self.source.consume(k)  # type: ignore[attr-defined]

    def _fence_partition(self, k: int, why: str) -> None:
        log.critical("%s", why)
        self.source.stop_consuming(k)  # type: ignore[attr-defined]

    # -- wiring --------------------------------------------------------------------------------
    def _count(self, key: str, n: int) -> None:
        if n:
            with self._stats_lock:
                self.stats[key] += n

    def _acknowledge(self, batch: Batch) -> None:
        """A batch is durable: its PUBACKs leave once every earlier batch's have (in order)."""
        self.gate.written(batch)

    def _refused_by_store(self, rows: list[tuple[bytes, str]]) -> int:
        """Lines the telemetry store refused become dead letters; returns their record number."""
        self.alarm_sink.put_dead_letters(self.dead.refused_by_store(rows))
        return self.alarm_sink.assigned

    def restore_alarms(self, only: Callable[[str], bool] | None = None) -> None:
        """Let the engine know which alarms are active, so it can clear them; resume the
        devices' message counters where the acknowledged stream ended. ``only``: just the
        devices it accepts (a JetStream partition taken over)."""
        self.pipeline.gaps.restore([r for r in seq_state.load(self.db) if only is None or only(r.device_id)])
        for a in self.alarms.active():
            if only is not None and not only(a.device_id):
                continue
            if a.device_id == PLATFORM_DEVICE.id and a.type == MESSAGE_LOSS.alarm_type:
                self.pipeline.gaps.active, self.pipeline.gaps.onset = True, a.onset_ts
            dev = self.registry.registry.get(a.device_id)
            if dev is not None:
                self.engine.restore_active(dev, a.rule_id, a.onset_ts, a.start_ts, a.severity)

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Restore alarm state, start the stages, connect to the broker — at once, or, with a
        lease, once it is ours (until then this collector is a standby)."""
        if self.lease is not None:
            self.lease.start()
        else:
            self._start_owned()
        for keeper in self.partition_keepers:
            keeper.start()

    def _start_owned(self) -> None:
        if self.lease is not None:
            # A standby may have waited for days: state comes from the database as it is now.
            self.registry.refresh(time.monotonic(), min_age=0)
        if hasattr(self.telemetry, "ensure_database"):
            self.telemetry.ensure_database()
        self.restore_alarms()
        self.telemetry_sink.start()
        self.alarm_sink.start()
        self._threads = [self.sup.spawn("pipeline", self.pipeline.run)]
        self.source.start()

    @property
    def fatal(self) -> threading.Event:
        """Set when a stage failed beyond recovery: the process must restart."""
        return self.sup.fatal

    def _fence(self, why: str) -> None:
        """The lease is lost: off the broker now (what is unacknowledged goes to the new owner)."""
        log.critical("%s", why)
        self.source.fence()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking messages, make durable and acknowledge what was taken, disconnect."""
        if self.lease is not None:
            self.lease.stop()
            if not self._threads:  # a standby that never owned: nothing to drain
                for t in self.sup.threads:
                    t.join(timeout)
                self.lease.release()
                self.spool.close()
                self.alarm_sink.journal.close()
                return
        for keeper in self.partition_keepers:
            keeper.stop()
        self.source.close_intake()
        for t in self._threads:
            t.join(timeout)
        self.alarm_sink.close()
        self.telemetry_sink.close()
        for t in self.sup.threads:
            t.join(timeout)
        self.source.stop()
        if self.lease is not None:
            self.lease.release()
        for keeper in self.partition_keepers:
            keeper.release()
        self.spool.close()
        self.alarm_sink.journal.close()
        log.info("collector stopped", extra={"stats": self._stats_copy()})

    def _stats_copy(self) -> dict[str, int]:
        with self._stats_lock:
            return dict(self.stats)

    # -- health --------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``/health``: per stage, and ``status`` — "failing" (503) whenever alarms are not being
        evaluated or not delivered, "degraded" (200) when only telemetry is impaired."""
        now = time.monotonic()
        failures, outages = self.sup.snapshot()
        lease = self.lease
        if lease is not None and not lease.owner.is_set() and not failures:
            m.HEALTH_OK.set(1)
            return {
                "status": "standby", "role": "standby", "partition": lease.lease.name, "mqtt_connected": False,
                "reasons": [f"standby for partition {lease.lease.name}: another collector holds its lease"],
            }  # fmt: skip
        failing: list[str] = [f"stage {s} failed: {why}" for s, why in failures.items()]
        for stage in ("pipeline", "alarms", "journal", *(f"writer{i}" for i in range(self.telemetry_sink.writers))):
            age = self.sup.beat_age(stage)
            if stage not in failures and self.sup.threads and age > HUNG_AFTER_S:
                failing.append(f"stage {stage} hung ({age:.0f} s without a loop)")
            m.STAGE_UP.labels(stage).set(0 if stage in failures or age > HUNG_AFTER_S else 1)
        p = self.pipeline
        waiting = self.source.inbox.qsize()
        idle_for = now - (p.last_processed or now)
        if waiting and idle_for > STALLED_AFTER_S:
            failing.append(f"pipeline stalled: {waiting} bursts waiting, none processed for {idle_for:.0f} s")
        broker = outages.get(BROKER_DOWN)
        if broker is not None and now - broker.since > BROKER_GRACE_S:
            failing.append(f"broker unreachable for {now - broker.since:.0f} s: alarms cannot be delivered")
        stream = outages.get(JETSTREAM_DOWN)
        if stream is not None and now - stream.since > BROKER_GRACE_S:
            failing.append(f"JetStream unavailable for {now - stream.since:.0f} s: {stream.reason}")
        for key in ALARMS_AT_RISK:
            if key in outages:
                failing.append(outages[key].reason)
        degraded = [o.reason for k, o in outages.items() if k not in (BROKER_DOWN, JETSTREAM_DOWN, *ALARMS_AT_RISK)]
        lag = self.telemetry_sink.lag_s()
        m.TELEMETRY_LAG.set(lag)
        if lag > self.settings.telemetry_lag_degraded_s and TELEMETRY_DOWN not in outages:
            # Slower, not down: alarms are unaffected (they never wait for telemetry), queries are late.
            degraded.append(f"telemetry store {lag:.0f} s behind intake: {len(self.spool)} batches journaled")
        status = "failing" if failing else "degraded" if degraded else "ok"
        m.HEALTH_OK.set(0 if failing else 1)
        for key in outages:
            m.DEGRADED.labels(key).set(1)
        for key in (BROKER_DOWN, JETSTREAM_DOWN, *ALARMS_AT_RISK, TELEMETRY_DOWN, REGISTRY_DOWN):
            if key not in outages:
                m.DEGRADED.labels(key).set(0)
        last_msg = None if p.last_processed is None else round(now - p.last_processed, 1)
        if last_msg is not None:
            m.LAST_MESSAGE_AGE.set(last_msg)
        ts = self.telemetry_sink
        return {
            "status": status,
            "reasons": failing + degraded,
            **({} if lease is None else {"role": lease.role, "partition": lease.lease.name}),
            "mqtt_connected": self.connected.is_set(),
            "stages": {
                "source": {"connected": self.connected.is_set(), "inbox": waiting},
                "pipeline": {
                    "last_message_age_s": last_msg,
                    "heartbeat_age_s": round(self.sup.beat_age("pipeline"), 1),
                },
                "alarms": self.alarm_sink.health(),
                "telemetry": {
                    "queued_batches": ts.queue.qsize(),
                    "held_for_order": self.gate.waiting(),
                    "spool_batches": len(self.spool),
                    "spool_bytes": self.spool.bytes,
                    "lag_s": round(lag, 1),
                    "last_write_ok_age_s": None if ts.last_write_ok is None else round(now - ts.last_write_ok, 1),
                },
            },
            "spool_batches": len(self.spool),
            "spool_bytes": self.spool.bytes,
            "inbox": waiting,
            **self._stats_copy(),
        }
