"""CPU per received message: stock paho-mqtt against the collector's FastClient.

    .venv/bin/python bench/mqtt_read.py --messages 200000

Starts its own Mosquitto (the repo's test template, as bench/run.py does), queues ``--messages``
QoS 1 status-sized messages for a persistent session, then drains them with each client in
turn — manual acknowledgement of every message, as the collector does, but no other work —
and prints wall rate and process CPU µs per message for each. Both drains run in this one
process, one after the other, against the same queued stream, so their ratio is the figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleetbench.services import Mosquitto

from semon.ingest.mqtt_client import FastClient
from semon.simulators.rawpub import RawPublisher

PAYLOAD = (
    b'{"ts":1790000000000,"seq":1,"mode":"normal","running":false,"dir":"stop","floor":3,"door_zone":true,'
    b'"door":"closed","occupied":false,"speed":0.0,"load":0.0,"run_count":1200,"run_hours":800.5}'
)


def _client(cls: type[mqtt.Client], client_id: str) -> mqtt.Client:
    c = cls(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False, protocol=mqtt.MQTTv311)
    c.manual_ack_set(True)
    return c


def drain(cls: type[mqtt.Client], port: int, n: int) -> dict[str, float]:
    """Subscribe a persistent session, queue ``n`` messages for it, then time receiving them."""
    cid = f"read-{cls.__name__}"
    c = _client(cls, cid)
    subscribed = threading.Event()
    c.on_connect = lambda cl, *_: cl.subscribe("semon/v1/elevator/+/status", 1)
    c.on_subscribe = lambda *_: subscribed.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    subscribed.wait(10)
    c.disconnect()
    c.loop_stop()
    pub = RawPublisher("127.0.0.1", port, f"pub-{cid}", window=5000)
    pub.connect()
    chunk = [(f"semon/v1/elevator/E{i % 1000:06d}/status", PAYLOAD) for i in range(1000)]
    for _ in range(n // 1000):
        pub.publish_many(chunk)
    pub.flush()
    pub.close()
    c = _client(cls, cid)
    got = 0
    done = threading.Event()

    def on_message(cl: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal got
        got += 1
        cl.ack(msg.mid, msg.qos)
        if got >= n:
            done.set()

    c.on_message = on_message
    t0, c0 = time.perf_counter(), time.process_time()
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(300)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    c.disconnect()
    c.loop_stop()
    return {"received": got, "msg_per_s": round(got / wall), "cpu_us_per_msg": round(cpu / max(got, 1) * 1e6, 1)}


def main() -> None:
    """Run both drains and print one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        mq = Mosquitto(Path(tmp))
        mq.start()
        try:
            stock = drain(mqtt.Client, mq.port, a.messages)
            fast = drain(FastClient, mq.port, a.messages)
        finally:
            mq.stop()
    ratio = stock["cpu_us_per_msg"] / fast["cpu_us_per_msg"]
    print(json.dumps({"paho": stock, "FastClient": fast, "cpu_ratio": round(ratio, 2)}))


if __name__ == "__main__":
    main()
