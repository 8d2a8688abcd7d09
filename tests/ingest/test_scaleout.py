"""Scale-out on one machine: two collector processes, each owning half of the devices.

With a device-partitioned split (``SEMON_COLLECTOR_PARTITION=I/N``, docs/scaling.md) every
message of a device is processed by one collector, in order, so rule state is right even for
rules that need the whole stream. The streams below are built so that a collector seeing only
part of a device's messages — what Mosquitto's round-robin shared subscription can do — may
get the alarms wrong:

* door cycling: 6 door openings in 60 s → exactly one ``repeated_door_cycling`` (a collector
  seeing half of the openings counts 3 and raises nothing);
* interrupted entrapment: closed in with a passenger 15 s, the door opens for a moment, 15 s
  again → no ``trapped_passenger`` (the rule wants 20 s uninterrupted; missing the one
  interrupting message makes it 31 s and raises a false alarm);
* entrapment of 30 s → exactly one ``trapped_passenger``, raised and cleared.

Checked: every message stored exactly once per device and seq (no loss), alarms exactly as
expected (no duplicates, none missing, none false), and each collector processed only its own
devices while acknowledging the others'.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from semon.ingest.collector import partition_of
from semon.store.models import Alarm
from tests.conftest import Stack
from tests.helpers import elevator_payload, elevator_registry, now_ms, publish_all, wait_until

EL = "semon/v1/elevator/{}/status"
# An odd count: a round-robin split of the interleaved stream then alternates within each device.
DEVICES = [f"S{i:03d}" for i in range(1, 26)]


def _registry(stack: Stack, path: Path) -> None:
    elevator_registry(stack.db, path, DEVICES)


def _door_cycling(dev: str, t0: int) -> list[bytes]:
    """Six open-close cycles 10 s apart, car at rest at a landing: 24 statuses."""
    out = []
    seq = 0
    for k in range(6):
        for dt, door in ((0, "opening"), (2000, "open"), (5000, "closing"), (7000, "closed")):
            seq += 1
            out.append(elevator_payload(t0 + k * 10_000 + dt, seq, door=door, door_zone=True))
    return out


def _trapped(dev: str, t0: int, interrupted: bool) -> list[bytes]:
    """A status a second for 40 s; closed in with a passenger from 2 s to 32 s (door opening at 17 s)."""
    out = []
    for i in range(40):
        occupied = 2 <= i < 32
        door = "opening" if interrupted and i == 17 else "closed"
        out.append(elevator_payload(t0 + i * 1000, i + 1, occupied=occupied, door=door, door_zone=True))
    return out


def _collector(stack: Stack, i: int, n: int, log: Path) -> subprocess.Popen[bytes]:
    s = stack.settings
    env = {
        **os.environ,
        "SEMON_MQTT_URL": s.mqtt_url,
        "SEMON_MQTT_CLIENT_ID": f"semon-part-{i}",  # its own persistent session, not a shared one
        "SEMON_COLLECTOR_PARTITION": f"{i}/{n}",
        "SEMON_INFLUX_URL": s.influx_url or "",
        "SEMON_INFLUX_DB": s.influx_db,
        "SEMON_DB_URL": s.db_url,
        "SEMON_DATA_DIR": str(log.parent / f"part-{i}"),
        "SEMON_HEALTH_PORT": "0",
    }
    env.pop("SEMON_MQTT_SHARE_GROUP", None)
    return subprocess.Popen(
        [sys.executable, "-m", "semon", "collect"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


@pytest.mark.services
@pytest.mark.parametrize("stack", ["services"], indirect=True)
def test_two_partitioned_collectors_keep_per_device_order_and_state(stack: Stack, tmp_path: Path):
    _registry(stack, tmp_path / "reg.csv")
    parts = [[d for d in DEVICES if partition_of(d, 2) == p] for p in range(2)]
    assert all(len(p) >= 6 for p in parts), parts  # both collectors own devices of every kind below
    cycling = parts[0][:2] + parts[1][:2]
    interrupted = parts[0][2:4] + parts[1][2:4]
    trapped = parts[0][4:6] + parts[1][4:6]
    t0 = now_ms() - 300_000
    streams = {d: _door_cycling(d, t0) for d in cycling}
    streams |= {d: _trapped(d, t0, True) for d in interrupted}
    streams |= {d: _trapped(d, t0, False) for d in trapped}
    quiet = [d for d in DEVICES if d not in streams]
    streams |= {d: [elevator_payload(t0 + k * 5000, k + 1) for k in range(8)] for d in quiet}
    # Interleave the devices (each device's own messages stay in order), as a fleet publishes.
    msgs: list[tuple[str, bytes]] = []
    longest = max(map(len, streams.values()))
    for k in range(longest):
        for d, s in streams.items():
            if k < len(s):
                msgs.append((EL.format(d), s[k]))

    logs = [tmp_path / f"c{i}.log" for i in range(2)]
    procs = [_collector(stack, i, 2, logs[i]) for i in range(2)]
    try:
        wait_until(
            lambda: all(lg.exists() and "MQTT subscribed" in lg.read_text() for lg in logs), 60, "both connected"
        )
        publish_all(stack.settings, msgs, client_id="scaleout-pub")
        expected = {d: list(range(1, len(s) + 1)) for d, s in streams.items()}
        wait_until(
            lambda: sum(map(len, stack.seqs("elevator_status").values())) >= len(msgs), 60, "every message stored"
        )

        def got_alarms() -> list[Alarm]:
            with stack.db.session() as s:
                return list(s.scalars(select(Alarm)))

        wait_until(lambda: sum(not a.active for a in got_alarms()) >= len(trapped), 60, "trapped alarms cleared")
    finally:
        for p in procs:
            p.terminate()
            p.wait(60)
    stored = {d: sorted(v) for d, v in stack.seqs("elevator_status").items()}
    assert stored == expected, "per device, every seq stored exactly once"
    got = Counter((a.device_id, a.type) for a in got_alarms())
    want = Counter({(d, "repeated_door_cycling"): 1 for d in cycling}) + Counter(
        {(d, "trapped_passenger"): 1 for d in trapped}
    )
    assert got == want, f"alarms {dict(got)} != {dict(want)}"
    for a in got_alarms():
        if a.type == "trapped_passenger":
            assert a.onset_ts == t0 + 2000 and not a.active and a.end_ts == t0 + 32_000
    texts = [lg.read_text() for lg in logs]
    assert all("Traceback" not in t for t in texts)
    stats = [
        next(orjson.loads(x)["stats"] for x in reversed(t.splitlines()) if '"collector stopped"' in x) for t in texts
    ]
    own = [sum(len(streams[d]) for d in parts[i] if d in streams) for i in range(2)]
    # Each processed exactly its own devices' messages and acknowledged the others' unprocessed.
    assert [st.get("accepted", 0) for st in stats] == own, stats
    assert [st.get("foreign", 0) for st in stats] == [own[1], own[0]], stats
