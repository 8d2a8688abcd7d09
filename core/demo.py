"""``semon demo``: the whole pipeline in one process on the embedded defaults.

Embedded broker (amqtt) → collector → SQLite stores → API on 127.0.0.1:8000, fed by a simulated
fleet in which one passenger gets trapped and one vessel goes over its set pressure early on.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time

import uvicorn
from rich.console import Console

from semon.broker import EmbeddedBroker
from semon.config import Settings
from semon.ingest.collector import Collector
from semon.rules.maintenance.reversion import install_reversion
from semon.store import open_telemetry
from semon.store.db import Database
from semon.store.registry import import_devices_csv

log = logging.getLogger(__name__)

# Early faults so a newcomer sees alarms within the first minute (trapped needs 20 s to count).
DEMO_FAULTS = (
    "trapped:E000003@5s+60s",
    "overpressure:V000002@10s+30s",
    "trapped:E000017@150s+45s",
    "overpressure:V000007@200s+20s",
)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo(settings: Settings, *, elevators: int = 50, vessels: int = 10, rate: float = 30.0, seed: int = 1) -> None:
    """Run until Ctrl-C; everything started here is stopped cleanly on the way out."""
    from semon.api.app import create_app
    from semon.simulators.fleet import build_fleet
    from semon.simulators.run import SimulationConfig, run_simulation

    console = Console(stderr=True)
    if not _port_free(settings.api_port):
        raise SystemExit(f"port {settings.api_port} is taken: set SEMON_API_PORT to a free port")
    mqtt_port = settings.mqtt_embedded_port
    if not _port_free(mqtt_port):
        # Often a system Mosquitto on 1883: the demo must not depend on it, so move aside.
        mqtt_port = _any_free_port()
    broker = EmbeddedBroker(port=mqtt_port)
    broker.start()
    s = settings.model_copy(
        # The demo is a laptop on loopback: no API keys, every caller is an anonymous regulator.
        update={
            "mqtt_url": f"mqtt://127.0.0.1:{mqtt_port}",
            "mqtt_client_id": "semon-demo-collector",
            "api_auth": "open",
        }
    )
    s.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(s.db_url)
    telemetry = open_telemetry(s)
    registry = s.data_dir / "registry.csv"
    build_fleet(elevators, vessels, seed).write_registry_csv(registry)
    counts = import_devices_csv(db, registry)
    collector = Collector(s, db, telemetry)
    install_reversion(collector)
    collector.start()
    collector.connected.wait(10)

    stop = threading.Event()
    sim_cfg = SimulationConfig(
        host="127.0.0.1",
        port=mqtt_port,
        elevators=elevators,
        vessels=vessels,
        rate=rate,
        duration_s=None,
        faults=list(DEMO_FAULTS),
        seed=seed,
        truth_path=s.data_dir / "truth.jsonl",
        client_id="semon-demo-sim",
        stop_event=stop,
    )
    sim = threading.Thread(target=run_simulation, args=(sim_cfg,), name="simulator", daemon=True)
    sim.start()
    base = f"http://{s.api_host}:{s.api_port}"
    console.print(
        f"[bold green]semon demo[/] — {counts['devices']} devices simulated, broker mqtt://127.0.0.1:{mqtt_port}, "
        f"data in {s.data_dir}/\n"
        f"  live board {base}/board\n"
        f"  alarms     {base}/alarms   (trapped passenger on E000003 ≈ 25 s in, overpressure on V000002 ≈ 10 s in)\n"
        f"  telemetry  {base}/devices/E000003/latest   {base}/devices/V000002/telemetry\n"
        f"  API docs   {base}/docs      health {base}/health      metrics {base}/metrics\n"
        "Ctrl-C stops."
    )
    reporter = threading.Thread(target=_report, args=(collector, stop, console), name="demo-report", daemon=True)
    reporter.start()
    app = create_app(s, db=db, telemetry=telemetry)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host=s.api_host, port=s.api_port, log_config=None, access_log=False, server_header=False,
            timeout_graceful_shutdown=2,
        )
    )
    # uvicorn off the main thread installs no signal handlers (it would re-raise the signal at
    # exit and kill the process before the collector acks its last batch); we handle them here.
    api = threading.Thread(target=server.run, name="api", daemon=True)
    api.start()
    signalled = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: signalled.set())
    while not signalled.wait(0.5) and api.is_alive():
        pass
    console.print("stopping…")
    server.should_exit = True
    api.join(10)
    stop.set()
    sim.join(30)
    collector.stop()
    broker.stop()
    telemetry.close()
    db.dispose()
    console.print("stopped cleanly")


def _report(collector: Collector, stop: threading.Event, console: Console) -> None:
    """A progress line every 10 s: what came in, what was stored, which alarms fired."""
    while not stop.wait(10):
        st = collector.stats
        console.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/] received {st['received']:,}  stored points {st['points_written']:,}  "
            f"dead letters {st['dead_letters']}  alarms raised {st['alarm_raised']} / cleared {st['alarm_cleared']}"
        )
