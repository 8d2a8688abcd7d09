"""The ``semon`` command line (Typer)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from semon.config import Settings, get_settings
from semon.logs import setup_logging

app = typer.Typer(help="semon — monitoring for elevators and pressure vessels.", no_args_is_help=True)
devices_app = typer.Typer(help="Equipment registry.", no_args_is_help=True)
db_app = typer.Typer(help="Relational database schema.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
app.add_typer(db_app, name="db")
console = Console(stderr=True)


def _wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()


@app.command()
def collect(
    health_port: Annotated[int | None, typer.Option(help="Port of /health and /metrics (0 = any)")] = None,
) -> None:
    """Run a collector: MQTT → validation → rules → InfluxDB/SQLite and the alarm store."""
    from semon.ingest.collector import Collector
    from semon.metrics import serve_health
    from semon.store import open_telemetry
    from semon.store.db import Database

    s = get_settings()
    setup_logging(s.log_level)
    if s.mqtt_url == "embedded":
        console.print(
            "[red]semon collect needs SEMON_MQTT_URL (mqtt://host:port); `semon demo` runs an embedded broker[/]"
        )
        raise typer.Exit(2)
    db = Database(s.db_url)
    col = Collector(s, db, open_telemetry(s))
    srv = serve_health("0.0.0.0", s.health_port if health_port is None else health_port, col.health)
    col.start()
    _wait_for_signal()
    col.stop()
    srv.shutdown()
    db.dispose()


@app.command()
def api() -> None:
    """Serve the HTTP API (FastAPI) on SEMON_API_HOST:SEMON_API_PORT."""
    from semon.api.app import serve

    s = get_settings()
    setup_logging(s.log_level)
    serve(s)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations to SEMON_DB_URL."""
    from semon.store.db import Database

    s = get_settings()
    Database(s.db_url).dispose()
    console.print(f"schema up to date on {s.db_url.split('@')[-1]}")


@devices_app.command("import")
def devices_import(csv: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="registry CSV")]) -> None:
    """Import (upsert) firms, use units and devices from a registry CSV."""
    from semon.store.db import Database
    from semon.store.registry import RegistryImportError, import_devices_csv

    s = get_settings()
    db = Database(s.db_url)
    try:
        n = import_devices_csv(db, csv)
    except RegistryImportError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e
    finally:
        db.dispose()
    console.print(f"imported {n['devices']} devices, {n['firms']} firms, {n['use_units']} use units")


def _settings_for(mqtt_url: str | None) -> Settings:
    return get_settings(**({"mqtt_url": mqtt_url} if mqtt_url else {}))
