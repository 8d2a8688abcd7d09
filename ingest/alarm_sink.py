"""Alarm sink: alarm transitions and dead letters → the database, the broker, the hooks.

One thread owns everything the collector does with the relational database and the alarm
topics, so the pipeline never waits on either:

* **Records.** The pipeline hands over alarm transitions and dead letters, each with a sequence
  number. A record is *durable* once it is in the database — or, while the database is away or
  refusing writes, in the local journal (``alarm-journal.db`` in ``SEMON_DATA_DIR``, SQLite,
  synchronous). The durable watermark gates the PUBACKs of the messages that produced it
  (:class:`semon.ingest.source.AckGate`). Journaled records go to the database in order, with
  backoff, as soon as it takes writes again; new records queue behind them.
* **Publishing.** A stored transition is published on ``semon/v1/alarms/{firm}/{device}`` at
  QoS 1 and marked published once the broker's PUBACK came back — checked on every loop, never
  waited for. One unacknowledged after ``alarm_puback_timeout_s`` is left to the relay.
* **Relay.** Operator actions made through the API, and transitions a crash or an outage left
  unmarked, are published and marked (:meth:`semon.rules.alarms.AlarmStore.relay`).
* **Registry.** The periodic registry reload runs here (:class:`RegistryWatch`).

**Database away.** Rules go on and transitions are still published. On PostgreSQL the sink
keeps a reserve of alarm and event ids drawn from the database's sequences while it is up, and
a cache of the active alarms; during an outage a transition is built from the cache under
reserved ids, journaled, and published at once — with the very ids it will have in the
database, so consumers' dedupe by ``event_id`` holds across the outage. When the database is
back the journal is written in order under those ids (and queued in ``notify_late`` for the
webhook dispatcher). Without a reserve (SQLite, or the reserve used up) a transition waits in the
journal and is published once stored. An outage is one WARNING on entering and one on leaving;
``/health`` is 503 while it lasts (the API, webhooks and escalations need the database too).
"""

from __future__ import annotations

import logging
import pickle
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from sqlalchemy.exc import SQLAlchemyError

from semon import metrics as m
from semon.config import Settings
from semon.contract.topics import alarm_topic, canary_echo_topic
from semon.ingest.dead_letters import DeadLetters
from semon.ingest.decode import Rejected
from semon.ingest.handover import Batch
from semon.ingest.registry_watch import RegistryWatch
from semon.ingest.source import MqttSource
from semon.ingest.spool import Spool, SpoolFull
from semon.ingest.supervision import Backoff, Supervisor
from semon.notify.canary import PLATFORM_DEVICE, ensure_platform_device
from semon.rules.alarms import (
    AlarmStore,
    Stored,
    alarm_message,
    change_alarm,
    event_message,
    new_alarm,
    snapshot_columns,
)
from semon.rules.base import AlarmTransition
from semon.store import seq_state
from semon.store.db import Database
from semon.store.models import Alarm, DeadLetter
from semon.store.telemetry import ALARM_MEASUREMENT, Point, point_time_ns
from semon.timeutil import now_ms, utc_now

log = logging.getLogger(__name__)

ALARM_STORE_DOWN = "alarm_store"
# Ids reserved for publishing during a database outage (refilled below half while it is up).
RESERVE_ALARMS = 64
RESERVE_EVENTS = 256
JOURNAL_FULL = "alarm_journal_full"
JOURNAL_ENCODING = "pickle-v1"
# Event ids already announced (their board point written, hooks run): a re-publish after a lost
# PUBACK must not repeat those side effects. Bounded: only recent ones can be re-published.
ANNOUNCED_KEEP = 100_000
RELAY_EVERY_S = 1.0
# A publish still unacknowledged this long after its PUBACK was due is left to the relay (paho
# may have lost it with a connection it could not resume).
GIVE_UP_AFTER_S = 600.0

# A record: ("transition", AlarmTransition), ("dead_letters", [DeadLetter columns]) or
# ("provisional", (message, event details, at)) — a transition published during an outage — or
# ("canary", (checker, ping payload, arrival ms)), answered, never stored — or
# ("seq_state", [DeviceSeq columns]): devices' counters and gaps, saved before their PUBACKs.
Record = tuple[str, Any]
_STOP = object()
_SKIP = ("skip", None)  # a transition that changes nothing (as the database would have decided)


class AlarmSink:
    """The alarm/database stage; ``put_*`` from the pipeline, ``durable`` for the ack gate."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        source: MqttSource,
        registry: RegistryWatch,
        sup: Supervisor,
        count: Callable[[str, int], None],
        dead: DeadLetters,
        annotate: Callable[[Batch], None],
        manual_clear: Callable[[str, str], None],
    ) -> None:
        self.settings = settings
        self.db = db
        self.alarms = AlarmStore(db)
        self.source = source
        self.registry = registry
        self.sup = sup
        self._count = count
        self.dead = dead
        self._annotate = annotate
        self._manual_clear = manual_clear
        self.journal = Spool(settings.data_dir / "alarm-journal.db", settings.spool_max_bytes)
        self.queue: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()
        self.assigned = 0  # sequence number of the last record handed over
        self.durable = 0  # every record up to this one is in the database or the journal
        self.on_durable: Callable[[], None] = lambda: None
        self.hooks: list[Callable[[dict[str, Any]], None]] = []
        self._announced: OrderedDict[int, None] = OrderedDict()
        self._pending: list[tuple[int, mqtt.MQTTMessageInfo, float]] = []  # awaiting the PUBACK
        self._db_retry = Backoff(0.5, 10.0)
        self.last_store_ok: float | None = time.monotonic()
        # For publishing during a database outage: active alarms as last announced, reserved ids,
        # and the event ids published provisionally (not yet stored) / whose PUBACK came back.
        self._active: dict[tuple[str, str], dict[str, Any]] = {}
        self._alarm_ids: list[int] = []
        self._event_ids: list[int] = []
        self._provisional: set[int] = set()
        self._confirmed: set[int] = set()

    # -- hand-over (pipeline thread) ---------------------------------------------------------
    def put_transitions(self, transitions: list[AlarmTransition]) -> None:
        """Hand over engine transitions, in order."""
        for t in transitions:
            self._put(("transition", t))

    def put_canary(self, checker: str, payload: bytes, arrived_ms: int) -> None:
        """Hand over a canary ping: answered in order with the records, so an echo proves that
        everything handed over before it was taken care of."""
        self._put(("canary", (checker, payload, arrived_ms)))

    def put_seq_state(self, rows: list[dict[str, Any]]) -> None:
        """Hand over devices' counter rows (one record), ahead of the batch that moved them."""
        if rows:
            self._put(("seq_state", rows))

    def put_dead_letters(self, letters: list[dict[str, Any]]) -> None:
        """Hand over dead-letter rows (one record)."""
        if letters:
            self._put(("dead_letters", letters))

    def _put(self, rec: Record) -> None:
        with self._lock:
            self.assigned += 1
            self.queue.put((self.assigned, rec))

    def start(self) -> None:
        """Load the active alarms and an id reserve, then start the stage's thread."""
        for a in self.alarms.active():
            self._active[(a.device_id, a.type)] = alarm_message(a, "raised", a.start_ts, event_id=0)
        self._refill_reserve()
        self.sup.spawn("alarms", self._loop)

    def close(self) -> None:
        """Finish once every record handed over so far is durable and announced."""
        self.queue.put(_STOP)

    # -- the stage's thread ------------------------------------------------------------------
    def _loop(self) -> None:
        last_relay = 0.0
        stopping = False
        while True:
            self.sup.beat("alarms")
            try:
                item = self.queue.get(timeout=0.1)
            except queue.Empty:
                item = None
            if item is _STOP:
                stopping = True
            elif item is not None:
                self._take(*item)
            now = time.monotonic()
            self._replay(now)
            self._check_pubacks(now, final=False)
            if now - last_relay >= RELAY_EVERY_S:
                last_relay = now
                self._relay()
                self._refill_reserve()
                self.registry.refresh(now)
            if stopping and self.queue.empty():
                self._check_pubacks(time.monotonic(), final=True)
                return

    def _take(self, seq: int, rec: Record) -> None:
        """Make one record durable: into the database, else into the journal (published at once
        when it is a transition the reserve covers)."""
        if rec[0] == "canary":
            self._echo(*rec[1])
            self._advance(seq)
            return
        if not self._database_away():
            try:
                self._apply(rec)
                self._store_ok()
                self._advance(seq)
                return
            except SQLAlchemyError as e:
                self._store_failed(e)
        if rec[0] == "transition":
            provisional = self._provisional_record(rec[1])
            if provisional is _SKIP:
                self._advance(seq)
                return
            if provisional is not None:
                self._journal(provisional)
                self._advance(seq)
                msg = provisional[1][0]
                self._provisional.add(msg["event_id"])
                self._count_transition(rec[1], msg)
                self._send(Stored(msg["event_id"], msg))
                return
        self._journal(rec)
        self._advance(seq)

    def _provisional_record(self, t: AlarmTransition) -> Record | None:
        """The transition as the database would store it, under reserved ids, built from the
        cache of active alarms; ``_SKIP`` when it changes nothing; None when that cannot be
        known here (no reserve, or an alarm the cache does not hold) — the journal then keeps
        the plain transition for the database to decide."""
        key = (t.device.id, t.rule.alarm_type)
        cur = self._active.get(key)
        now = utc_now()
        if t.event == "raised":
            if cur is not None:
                return _SKIP  # already active (the database's one-active-alarm rule)
            if not self._alarm_ids or not self._event_ids:
                return None
            a = new_alarm(t, now, self._alarm_ids.pop(0))
            msg = alarm_message(a, "raised", t.ts, event_id=self._event_ids.pop(0))
            return "provisional", (msg, t.details, now)
        if cur is None or not self._event_ids:
            return None
        if t.ts < cur["onset_ts"]:
            return _SKIP  # older than the alarm: a stale view
        a = Alarm(**snapshot_columns(cur))
        changed = change_alarm(a, t, now)
        if changed is None:
            return _SKIP
        details, extra = changed
        msg = alarm_message(a, t.event, t.ts, extra=extra, event_id=self._event_ids.pop(0))
        return "provisional", (msg, details, now)

    def _refill_reserve(self) -> None:
        """Top up the ids reserved for an outage while the database is up (PostgreSQL only)."""
        if self._database_away():
            return
        want_a = RESERVE_ALARMS - len(self._alarm_ids) if len(self._alarm_ids) < RESERVE_ALARMS // 2 else 0
        want_e = RESERVE_EVENTS - len(self._event_ids) if len(self._event_ids) < RESERVE_EVENTS // 2 else 0
        if want_a or want_e:
            try:
                alarm_ids, event_ids = self.alarms.reserve_ids(want_a, want_e)
            except SQLAlchemyError as e:
                self._store_failed(e)
                return
            self._alarm_ids += alarm_ids
            self._event_ids += event_ids

    def _advance(self, seq: int) -> None:
        self.durable = seq
        self.on_durable()

    def _journal(self, rec: Record) -> None:
        body = pickle.dumps(rec, protocol=pickle.HIGHEST_PROTOCOL)
        while True:
            try:
                self.journal.append(body, JOURNAL_ENCODING)
                m.ALARM_JOURNAL.set(len(self.journal))
                self._count("journaled_records", 1)
                return
            except SpoolFull as e:
                # Nothing more can be made durable: acknowledgements wait, the broker keeps the rest.
                self.sup.degraded(JOURNAL_FULL, f"alarm journal full ({e}); acknowledgements wait")
                self.sup.beat("alarms")
                time.sleep(0.5)
                self._replay(time.monotonic())

    def _replay(self, now: float) -> None:
        """Journaled records → the database, oldest first, while it takes them."""
        while len(self.journal) and self._db_retry.ready(now):
            item = self.journal.peek()
            if item is None:
                return
            rid, body, _enc = item
            try:
                rec = pickle.loads(body)
            except Exception as e:  # written by another version: kept as a dead letter, not lost
                letter = self.dead.letter("(alarm journal)", body, Rejected("journal_unreadable", repr(e)))
                rec = ("dead_letters", [letter])
            try:
                self._apply(rec)
            except SQLAlchemyError as e:
                self._store_failed(e)
                return
            self.journal.remove(rid)
            self._count("journal_replayed", 1)
            m.ALARM_JOURNAL.set(len(self.journal))
            self._store_ok()
            now = time.monotonic()
        if not len(self.journal):
            self.sup.recovered(JOURNAL_FULL)

    def _database_away(self) -> bool:
        """Records go to the journal: some already wait there (order), or the database failed
        and its retry is not due yet."""
        return bool(len(self.journal)) or not self._db_retry.ready(time.monotonic())

    def _store_ok(self) -> None:
        self.last_store_ok = time.monotonic()
        self._db_retry.reset()
        if not len(self.journal):
            self.sup.recovered(ALARM_STORE_DOWN)

    def _store_failed(self, e: Exception) -> None:
        self._db_retry.failed(time.monotonic())
        self.sup.degraded(
            ALARM_STORE_DOWN,
            f"database unavailable, alarm records kept in the local journal: {type(e).__name__}: {e}"[:400],
        )

    def _apply(self, rec: Record) -> None:
        kind, payload = rec
        if kind == "dead_letters":
            with self.db.session() as s:
                s.add_all([DeadLetter(**d) for d in payload])
            return
        if kind == "seq_state":
            seq_state.save(self.db, payload)
            return
        if kind == "provisional":
            msg, details, at = payload
            event_id = msg["event_id"]
            if not self.alarms.store_provisional(msg, details, at, published=event_id in self._confirmed):
                self._count("provisional_conflicts", 1)
            self._provisional.discard(event_id)
            self._confirmed.discard(event_id)
            return
        t: AlarmTransition = payload
        if t.device.id == PLATFORM_DEVICE.id:
            ensure_platform_device(self.db)
        stored = self.alarms.apply(t)
        if stored is None:
            return
        self._count_transition(t, stored.message)
        self._send(stored)

    def _count_transition(self, t: AlarmTransition, msg: dict[str, Any]) -> None:
        self._count(f"alarm_{t.event}", 1)
        m.ALARM_TRANSITIONS.labels(t.rule.alarm_type, t.event).inc()
        log.info(
            "alarm %s",
            t.event,
            extra={
                "alarm_id": msg["alarm_id"], "device_id": t.device.id, "alarm_type": t.rule.alarm_type,
                "severity": t.severity.value, "device_ts": t.ts, "stored": msg["event_id"] not in self._provisional,
            },
        )  # fmt: skip

    # -- publishing --------------------------------------------------------------------------
    def _send(self, stored: Stored) -> None:
        info = self._announce(stored.event_id, stored.message)
        self._pending.append((stored.event_id, info, time.monotonic() + self.settings.alarm_puback_timeout_s))

    def _check_pubacks(self, now: float, *, final: bool) -> None:
        """Mark what the broker acknowledged. A PUBACK slower than ``alarm_puback_timeout_s`` is
        counted, not given up on: paho still holds the message and resends it after a reconnect,
        and a relay of it meanwhile would only deliver it twice (the bench's "duplicate" under
        CPU contention). What is still unacknowledged at stop is left to the relay."""
        if not self._pending:
            return
        if final:  # stopping: give the last ones their time
            deadline = now + (self.settings.alarm_puback_timeout_s if self.source.connected.is_set() else 0.0)
            for _, info, _ in self._pending:
                left = deadline - time.monotonic()
                if left > 0 and info.rc == mqtt.MQTT_ERR_SUCCESS and not info.is_published():
                    try:
                        info.wait_for_publish(left)
                    except (RuntimeError, ValueError):
                        pass
        done: list[int] = []
        keep: list[tuple[int, mqtt.MQTTMessageInfo, float]] = []
        for event_id, info, due in self._pending:
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # Refused by the client (the connection dropped between our check and the
                # publish): it will never be acknowledged; unmarked, the relay sends it again.
                self._count("alarm_publish_failed", 1)
            elif info.is_published():
                done.append(event_id)
                if now > due:
                    self._count("alarm_puback_slow", 1)
            elif final or now - due > GIVE_UP_AFTER_S:
                self._count("alarm_puback_missing", 1)  # unmarked: the relay sends it again
            else:
                keep.append((event_id, info, due))
        self._pending = keep
        self._confirmed.update(i for i in done if i in self._provisional)  # marked when stored
        done = [i for i in done if i not in self._provisional]
        if done:
            try:
                self.alarms.mark_published(done)
            except SQLAlchemyError as e:  # unmarked ones are relayed again; consumers dedupe
                self._store_failed(e)

    def _echo(self, checker: str, payload: bytes, arrived_ms: int) -> None:
        """Answer a canary ping (QoS 0: the checker judges by what arrives, not by retries)."""
        try:
            ping = orjson.loads(payload)
            nonce = ping.get("nonce") if isinstance(ping, dict) else None
        except orjson.JSONDecodeError:
            nonce = None
        echo = {
            "nonce": nonce, "collector": self.source.client_id, "arrived_ms": arrived_ms,
            "echoed_ms": now_ms(),
            "alarm_store": "journal" if self._database_away() else "ok",
        }  # fmt: skip
        self.source.client.publish(canary_echo_topic(checker, self.source.client_id), orjson.dumps(echo), qos=0)
        self._count("canary_echoes", 1)

    def _announce(self, event_id: int, msg: dict[str, Any]) -> mqtt.MQTTMessageInfo:
        """Publish on the alarm topic (QoS 1); the first time, also write the board annotation
        point and run the hooks. Returns the publish handle to wait for the PUBACK on."""
        info = self.source.publish(alarm_topic(msg["firm_id"], msg["device_id"]), orjson.dumps(msg))
        key = (msg["device_id"], msg["type"])
        if msg["active"]:
            self._active[key] = msg
        else:
            self._active.pop(key, None)
        if event_id in self._announced:
            return info  # a re-publish after a lost PUBACK: the side effects already happened
        self._announced[event_id] = None
        if len(self._announced) > ANNOUNCED_KEEP:
            self._announced.popitem(last=False)
        dev = self.registry.registry.get(msg["device_id"])
        tags = {
            "kind": msg["kind"], "device_id": msg["device_id"], "district": dev.district if dev else "",
            "firm": msg["firm_id"] or "", "type": msg["type"], "severity": msg["severity"],
        }  # fmt: skip
        fields = {
            "event": msg["event"], "alarm_id": int(msg["alarm_id"]), "message": msg["message"] or "",
            "actor": msg["actor"],
        }  # fmt: skip
        point = Point(ALARM_MEASUREMENT, tags, fields, point_time_ns(msg["ts"], event_id), msg["device_id"])
        self._annotate(Batch(points=[point], seq=None))
        for hook in self.hooks:
            try:
                hook(msg)
            except Exception:  # a broken hook must not stop alarms; it is logged loudly
                log.exception("alarm transition hook %r failed", hook)
        if msg["event"] == "cleared" and msg["actor"] != "rules":
            # A manual clear: if the condition still holds, the engine raises a new alarm.
            self._manual_clear(msg["device_id"], msg["type"])
        return info

    def _relay(self) -> None:
        """Announce operator actions made through the API and transitions a crash or an outage
        left unacknowledged. Like fresh transitions they are marked once their PUBACK is seen
        (never waited for here: the stage must keep storing new transitions meanwhile)."""
        if not self.source.connected.is_set() or self._database_away():
            return  # nothing could be acknowledged / the database is away: the rows wait

        def send(rows: list[tuple[Any, Any]]) -> list[int]:
            unconfirmed = {event_id for event_id, _, _ in self._pending}
            for ev, a in rows:
                if ev.id not in unconfirmed:
                    self._send(Stored(ev.id, event_message(ev, a)))
                    self._count(f"relayed_{ev.event}", 1)
            return []  # marked by _check_pubacks once the broker has them

        try:
            self.alarms.relay(send)
        except SQLAlchemyError as e:  # the database may be briefly away; the next round retries
            self._store_failed(e)

    # -- health ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """This stage's part of ``/health``."""
        now = time.monotonic()
        return {
            "queued": self.queue.qsize(),
            "journal_records": len(self.journal),
            "unconfirmed_publishes": len(self._pending),
            "published_not_stored": len(self._provisional),
            "reserved_ids": {"alarms": len(self._alarm_ids), "events": len(self._event_ids)},
            "last_store_ok_age_s": None if self.last_store_ok is None else round(now - self.last_store_ok, 1),
            "heartbeat_age_s": round(self.sup.beat_age("alarms"), 1),
        }
