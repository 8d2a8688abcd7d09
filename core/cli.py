"""The ``semon`` command line (Typer)."""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console

from semon.config import get_settings
from semon.errors import ConfigError, ServiceUnavailable
from semon.logs import setup_logging
from semon.rules.hazards.cli import hazards_app, inspections_app
from semon.rules.maintenance.cli import maintenance_app

_T = TypeVar("_T")

if TYPE_CHECKING:
    from semon.config import Settings
    from semon.store.db import Database

EXIT_CONFIG = 2


def startup_error_line(e: BaseException) -> str | None:
    """The one line an operator reads for a configuration error or a service that is not
    there at start; None for anything else (a bug: its traceback is wanted)."""
    if isinstance(e, ConfigError | ServiceUnavailable):
        return f"semon: {e}"
    from sqlalchemy.exc import InterfaceError, OperationalError

    if isinstance(e, OperationalError | InterfaceError):
        # psycopg's message is several lines (every address tried); the first says why.
        why = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        return (f"semon: database unreachable (SEMON_DB_URL): {why} — check that the database server runs "
                "and the URL's host, port, user and password")  # fmt: skip
    return None


class SemonTyper(typer.Typer):
    """The ``semon`` app: start-up errors end as one line on stderr and exit code 2 (the
    traceback too at SEMON_LOG_LEVEL=DEBUG), not as a page of traceback."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the command line."""
        try:
            return super().__call__(*args, **kwargs)
        except Exception as e:  # classified below; anything else is re-raised
            line = startup_error_line(e)
            if line is None:
                raise
            if os.environ.get("SEMON_LOG_LEVEL", "").upper() == "DEBUG":
                traceback.print_exc()
            sys.stderr.write(" ".join(line.split()) + "\n")  # one line, whatever the message held
            sys.exit(EXIT_CONFIG)


app = SemonTyper(help="semon — monitoring for elevators and pressure vessels.", no_args_is_help=True)
devices_app = typer.Typer(help="Equipment registry.", no_args_is_help=True)
db_app = typer.Typer(help="Relational database schema.", no_args_is_help=True)
app.add_typer(devices_app, name="devices")
app.add_typer(db_app, name="db")
keys_app = typer.Typer(help="API keys (roles: regulator, firm, owner).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
users_app = typer.Typer(help="Console users 控制台用户 (roles: regulator, firm, owner).", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(maintenance_app, name="maintenance")
app.add_typer(hazards_app, name="hazards")
app.add_typer(inspections_app, name="inspections")
console = Console(stderr=True, soft_wrap=True)  # a message stays one line, however narrow


def _wait_for_signal(failed: threading.Event | None = None) -> bool:
    """Block until SIGINT or SIGTERM — or until ``failed`` is set; returns whether it was."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        if failed is not None and failed.is_set():
            return True
    return False


@app.command()
def collect(
    health_port: Annotated[int | None, typer.Option(help="Port of /health and /metrics (0 = any)")] = None,
) -> None:
    """Run a collector: MQTT → validation → rules → InfluxDB/SQLite and the alarm store."""
    from semon.ingest.collector import Collector, tune_runtime
    from semon.ingest.supervision import EXIT_STAGE_FAILED
    from semon.metrics import serve_health
    from semon.mqtt_connect import probe_tls
    from semon.rules.maintenance.reversion import install_reversion
    from semon.store import open_telemetry
    from semon.store.db import Database

    s = get_settings()
    setup_logging(s.log_level)
    if s.mqtt_url == "embedded":
        raise ConfigError("SEMON_MQTT_URL", "semon collect needs a broker (mqtt://host:1883 or mqtts://host:8883); "
                          "`semon demo` runs an embedded one")  # fmt: skip
    probe_tls(s.mqtt_target())  # a CA that does not fit is a configuration error, not a reconnect loop
    tune_runtime()  # GIL switch interval and GC thresholds: only this dedicated process
    db = Database(s.db_url)
    try:
        col = Collector(s, db, open_telemetry(s))
    except ValueError as e:  # a setting that cannot work here (e.g. a standby on SQLite)
        console.print(f"[red]semon collect: {e}[/]")
        raise typer.Exit(2) from None
    install_reversion(col)
    srv = serve_health(s.health_host, s.health_port if health_port is None else health_port, col.health)
    col.start()
    failed = _wait_for_signal(col.fatal)  # a failed stage ends the process: the service manager restarts it
    col.stop()
    srv.shutdown()
    db.dispose()
    if failed:
        console.print("[red]semon collect: a collector stage failed (see the CRITICAL log line); exiting[/]")
        raise typer.Exit(EXIT_STAGE_FAILED)


@app.command()
def api() -> None:
    """Serve the HTTP API (FastAPI) on SEMON_API_HOST:SEMON_API_PORT."""
    from semon.api.app import serve

    s = get_settings()
    setup_logging(s.log_level)
    serve(s)


@app.command()
def score(
    truth: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="ground truth JSONL from semon simulate")],
    start_ms: Annotated[int | None, typer.Option(help="only alarms raised at or after (device ms)")] = None,
    end_ms: Annotated[int | None, typer.Option(help="only alarms raised before (device ms)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the figures as JSON")] = None,
) -> None:
    """Score raised alarms against injected faults: recall, precision, latency per type."""
    import json

    from rich.table import Table

    from semon.rules.catalog import Catalog
    from semon.rules.scoring import load_truth, totals
    from semon.rules.scoring import score as run_score
    from semon.store.db import Database

    s = get_settings()
    db = Database(s.db_url)
    try:
        scores = run_score(db, load_truth(truth), start_ms=start_ms, end_ms=end_ms, catalog=Catalog(s.rules_file))
    finally:
        db.dispose()
    table = Table(title=f"detection vs {truth.name}")
    for col in ("type", "faults", "detected", "recall", "alarms", "false +", "precision", "late", "p50 ms", "max ms"):
        table.add_column(col, justify="left" if col == "type" else "right")

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{x:.1%}"

    for sc in scores.values():
        d = sc.summary()
        table.add_row(
            sc.alarm_type, str(sc.faults), str(sc.detected), pct(sc.recall), str(sc.alarms), str(sc.false_positives),
            pct(sc.precision), str(sc.late), str(d["latency_p50_ms"] or "—"), str(d["latency_max_ms"] or "—"),
        )  # fmt: skip
    tot = totals(scores)
    table.add_row(
        "all", str(tot["faults"]), str(tot["detected"]), pct(tot["recall"]), str(tot["alarms"]),
        str(tot["false_positives"]), pct(tot["precision"]), str(tot["late"]), "", "", style="bold",
    )  # fmt: skip
    Console().print(table)
    if json_out:
        json_out.write_text(json.dumps({"types": {k: v.summary() for k, v in scores.items()}, "total": tot}, indent=2))


@app.command("mqtt-auth")
def mqtt_auth(
    out_dir: Annotated[Path, typer.Option(help="where the generated files go")] = Path("mqtt-auth"),
    rotate: Annotated[bool, typer.Option(help="new passwords for everyone")] = False,
    collector_user: Annotated[
        list[str] | None, typer.Option(help="a collector session's MQTT user = its client id (repeat per partition)")
    ] = None,
    service: Annotated[list[str] | None, typer.Option(help="a service's MQTT user (semon api / deliver)")] = None,
    gateway: Annotated[list[str] | None, typer.Option(help="a user publishing for every device (simulator)")] = None,
) -> None:
    """Generate Mosquitto accounts and ACL from the registry (devices, firms, collectors): a password
    file and ACL, and the dynamic-security plugin's file, which also binds client ids."""
    from sqlalchemy import select

    from semon.mqtt_auth import write_auth
    from semon.store.db import Database
    from semon.store.models import Device, Firm

    s = get_settings()
    db = Database(s.db_url)
    try:
        with db.session() as sess:
            devices = [(d, k) for d, k in sess.execute(select(Device.id, Device.kind))]
            firms = list(sess.scalars(select(Firm.id)))
    finally:
        db.dispose()
    collectors = collector_user or ["semon-collector"]
    try:
        n = write_auth(out_dir, devices, firms, rotate=rotate, collector_user=collectors, services=service or [],
                       gateways=gateway or [])  # fmt: skip
    except ValueError as e:
        console.print(f"[red]semon mqtt-auth: {e}[/]")
        raise typer.Exit(2) from None
    console.print(
        f"{n['accounts']} accounts ({n['devices']} devices, {n['firms']} firms, {len(collectors)} collectors) → "
        f"{out_dir}/passwd, "
        f"{out_dir}/acl, {out_dir}/dynamic-security.json; passwords in {out_dir}/credentials.csv (mode 0600). "
        "Mosquitto: plugin_opt_config_file of the dynamic-security plugin (client ids bound; compose), or "
        "password_file and acl_file."
    )


def _on_database(call: Callable[[Database], _T]) -> _T:
    """``call`` on the database of SEMON_DB_URL, disposed of afterwards (one-shot commands)."""
    from semon.store.db import Database

    db = Database(get_settings().db_url)
    try:
        return call(db)
    finally:
        db.dispose()


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="who the key is for")],
    role: Annotated[str, typer.Option(help="regulator | firm | owner")] = "firm",
    firm: Annotated[str | None, typer.Option(help="firm id (role firm)")] = None,
    use_unit: Annotated[str | None, typer.Option(help="use unit id (role owner)")] = None,
) -> None:
    """Create an API key; the token is printed once and never stored."""
    from semon.store.keys import KeyError_, create_key

    try:
        k, token = _on_database(lambda db: create_key(db, name, role, firm_id=firm, use_unit_id=use_unit))
    except KeyError_ as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from e
    console.print(f"key {k.id} ({k.role}{' ' + (k.firm_id or k.use_unit_id or '') if k.role != 'regulator' else ''})")
    print(token)


@keys_app.command("list")
def keys_list(include_revoked: Annotated[bool, typer.Option(help="show revoked keys too")] = False) -> None:
    """List API keys (never their secrets)."""
    from rich.table import Table

    from semon.store.keys import list_keys

    keys = _on_database(lambda db: list_keys(db, include_revoked=include_revoked))
    t = Table("编号 id", "前缀 prefix", "名称 name", "角色 role", "范围 scope", "创建 created", "吊销 revoked")
    for k in keys:
        revoked = f"{k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else ""
        scope = k.firm_id or k.use_unit_id or "all"
        t.add_row(str(k.id), k.prefix, k.name, k.role, scope, f"{k.created_at:%Y-%m-%d %H:%M}", revoked)
    Console().print(t)


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[int, typer.Argument(help="key id (semon keys list)")]) -> None:
    """Revoke an API key at once."""
    from semon.store.keys import revoke_key

    k = _on_database(lambda db: revoke_key(db, key_id))
    if k is None:
        console.print(f"[red]no key {key_id}[/]")
        raise typer.Exit(1)
    console.print(f"key {key_id} revoked")


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="sign-in name")],
    role: Annotated[str, typer.Option(help="regulator | firm | owner")] = "firm",
    firm: Annotated[str | None, typer.Option(help="firm id (role firm)")] = None,
    use_unit: Annotated[str | None, typer.Option(help="use unit id (role owner)")] = None,
    display_name: Annotated[str | None, typer.Option(help="the person's name as shown")] = None,
    password_stdin: Annotated[bool, typer.Option(help="read the password from stdin (scripts)")] = False,
) -> None:
    """Create a console user; the password is asked for (or read from stdin) and stored as an argon2 hash."""
    from semon.store.users import UserError, create_user

    password = sys.stdin.readline().rstrip("\n") if password_stdin else typer.prompt(
        "password 密码", hide_input=True, confirmation_prompt=True)  # fmt: skip
    try:
        u = _on_database(lambda db: create_user(db, username, password, role, firm_id=firm, use_unit_id=use_unit,
                                                display_name=display_name))  # fmt: skip
    except UserError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from e
    console.print(f"user {u.username} ({u.role} {u.firm_id or u.use_unit_id or 'all'})")


@users_app.command("list")
def users_list(include_disabled: Annotated[bool, typer.Option(help="show disabled users too")] = False) -> None:
    """List console users (never their password hashes)."""
    from rich.table import Table

    from semon.store.users import list_users

    users = _on_database(lambda db: list_users(db, include_disabled=include_disabled))
    t = Table("用户名 user", "姓名 name", "角色 role", "范围 scope", "创建 created", "停用 disabled")
    for u in users:
        disabled = f"{u.disabled_at:%Y-%m-%d %H:%M}" if u.disabled_at else ""
        t.add_row(u.username, u.display_name or "", u.role, u.firm_id or u.use_unit_id or "all",
                  f"{u.created_at:%Y-%m-%d %H:%M}", disabled)  # fmt: skip
    Console().print(t)


@users_app.command("disable")
def users_disable(username: Annotated[str, typer.Argument(help="sign-in name (semon users list)")]) -> None:
    """Disable a user; every open session of theirs ends at once."""
    from semon.store.users import disable_user

    u = _on_database(lambda db: disable_user(db, username))
    if u is None:
        console.print(f"[red]no user {username!r}[/]")
        raise typer.Exit(1)
    console.print(f"user {username} disabled, sessions ended")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations to SEMON_DB_URL."""
    from semon.store.db import Database

    s = get_settings()
    Database(s.db_url).dispose()
    console.print(f"schema up to date on {s.db_url.split('@')[-1]}")


@devices_app.command("import")
def devices_import(
    csv: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="registry CSV (docs/registry.md)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check and count, write nothing")] = False,
    encoding: Annotated[str | None, typer.Option(help="override detection (utf-8, utf-8-sig, gb18030)")] = None,
    delimiter: Annotated[str | None, typer.Option(help="override sniffing: ',', ';' or 'tab'")] = None,
) -> None:
    """Import (upsert) firms, use units and devices from a registry CSV: all rows or none.

    Exit code 2 when the file has any error (every one is listed); nothing is written then.
    """
    from semon.rules.maintenance.policy import PolicyError, load_policy
    from semon.store.db import Database
    from semon.store.registry_columns import Limits
    from semon.store.registry_import import RegistryImportError, import_registry

    s = get_settings()
    try:
        p = load_policy()
    except PolicyError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from e
    # Grades and level ranges are the maintenance policy's: the import accepts what it scores.
    limits = Limits(
        credit_grades=tuple(p.gates.credit_grades),
        tech_levels=(p.score.firm_tech_level.min_level, p.score.firm_tech_level.max_level),
        mgmt_levels=(p.score.use_unit_mgmt_level.min_level, p.score.use_unit_mgmt_level.max_level),
    )
    delim = {"tab": "\t", "\\t": "\t"}.get(delimiter, delimiter) if delimiter is not None else None
    db = Database(s.db_url)
    try:
        result = import_registry(db, csv, dry_run=dry_run, encoding=encoding, delimiter=delim, limits=limits)
        for line in result.lines():
            console.print(line, markup=False, highlight=False, soft_wrap=True)
        if s.influx_url and not dry_run:
            _sync_device_info(db, s)
    except RegistryImportError as e:
        console.print(str(e), style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from e
    finally:
        db.dispose()


def _sync_device_info(db: Database, s: Settings) -> None:
    """The boards draw vessel limit lines from the registry ratings kept in InfluxDB."""
    from semon.dashboards.push import sync_device_info
    from semon.store import open_telemetry
    from semon.store.telemetry import TelemetryUnavailable

    store = open_telemetry(s)
    try:
        sync_device_info(db, store)
    except TelemetryUnavailable as e:
        console.print(
            f"已导入数据库，但 InfluxDB 的 device_info 未更新 (registry imported, but device_info not written to "
            f"InfluxDB: {e}); InfluxDB 恢复后运行 semon dashboards push (run it when InfluxDB is back)",
            style="red", markup=False, highlight=False, soft_wrap=True,
        )  # fmt: skip
        raise typer.Exit(1) from e
    finally:
        store.close()


@app.command()
def demo(
    elevators: Annotated[int, typer.Option(min=1)] = 50,
    vessels: Annotated[int, typer.Option(min=1)] = 10,
    rate: Annotated[float, typer.Option(min=0.1, help="periodic status reports per second, whole fleet")] = 30.0,
) -> None:
    """Everything in one process: embedded broker, collector, simulator, SQLite stores, API."""
    from semon.demo import run_demo

    s = get_settings()
    setup_logging(s.log_level)
    run_demo(s, elevators=elevators, vessels=vessels, rate=rate)


@app.command()
def simulate(
    elevators: Annotated[int, typer.Option(min=0, help="number of elevators (E000001…)")] = 50,
    vessels: Annotated[int, typer.Option(min=0, help="number of pressure vessels (V000001…)")] = 10,
    rate: Annotated[
        float,
        typer.Option(
            min=0,
            help="periodic status reports per wall second, whole fleet, on top of the keep-alive (0: keep-alive only)",
        ),
    ] = 50.0,
    keepalive: Annotated[
        float, typer.Option(min=0.1, help="each device reports at least every KEEPALIVE device seconds")
    ] = 60.0,
    duration: Annotated[float | None, typer.Option(help="wall seconds to run (default: until Ctrl-C)")] = None,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            help="inject TYPE:DEVICE@ONSET[+DURATION][,KEY=VALUE], e.g. trapped:E000003@30s+60s,where=between"
        ),
    ] = None,
    scenario: Annotated[
        str | None, typer.Option(help="mixed: every fault type --per-type times, spread over duration × speed")
    ] = None,
    per_type: Annotated[int, typer.Option(min=1, help="faults of each type in the scenario")] = 3,
    scenario_types: Annotated[
        str | None, typer.Option(help="comma-separated fault types for the scenario (default: all)")
    ] = None,
    seed: Annotated[int, typer.Option(help="fleet and behaviour seed (reproducible runs)")] = 1,
    speed: Annotated[float, typer.Option(min=0.01, help="device-time acceleration (60 = a minute a second)")] = 1.0,
    truth: Annotated[Path | None, typer.Option(help="write the ground truth of injected faults (JSONL)")] = None,
    registry: Annotated[Path | None, typer.Option(help="write the fleet's registry CSV")] = None,
    registry_only: Annotated[bool, typer.Option(help="write --registry and exit")] = False,
    mqtt_url: Annotated[str | None, typer.Option(help="broker (default SEMON_MQTT_URL); mqtts:// for TLS")] = None,
    mqtt_ca_file: Annotated[Path | None, typer.Option(help="CA of the broker (default SEMON_MQTT_CA_FILE)")] = None,
    mqtt_cert_file: Annotated[Path | None, typer.Option(help="client cert (default SEMON_MQTT_CERT_FILE)")] = None,
    mqtt_key_file: Annotated[Path | None, typer.Option(help="client key (default SEMON_MQTT_KEY_FILE)")] = None,
    device_time: Annotated[
        bool, typer.Option(help="end when device time covers duration × speed, however long the wall takes")
    ] = False,
) -> None:
    """Simulate a fleet of elevators and vessels publishing over MQTT, with injected faults.

    Devices report on change and at least every --keepalive device seconds; --rate adds periodic reports.

    A simulated day: --elevators 1000 --vessels 200 --speed 60 --duration 1440 --rate 0 --scenario mixed
    """
    from semon.mqtt_connect import probe_tls
    from semon.simulators.fleet import build_fleet
    from semon.simulators.run import SimulationConfig, run_simulation

    given = {"mqtt_url": mqtt_url, "mqtt_ca_file": mqtt_ca_file, "mqtt_cert_file": mqtt_cert_file,
             "mqtt_key_file": mqtt_key_file}  # fmt: skip
    s = get_settings(**{k: v for k, v in given.items() if v is not None})
    setup_logging(s.log_level)
    if registry_only:
        if registry is None:
            raise typer.BadParameter("--registry-only needs --registry PATH")
        build_fleet(elevators, vessels, seed).write_registry_csv(registry)
        console.print(f"registry of {elevators + vessels} devices written to {registry}")
        return
    if s.mqtt_url == "embedded":
        raise ConfigError("SEMON_MQTT_URL", "semon simulate needs a broker: --mqtt-url mqtt://host:1883 (or mqtts://)")
    target = s.mqtt_target()
    probe_tls(target)  # a CA that does not fit: say so, rather than "unreachable"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    cfg = SimulationConfig(
        host=target.host, port=target.port, tls=target.tls, elevators=elevators, vessels=vessels, rate=rate,
        duration_s=duration,
        faults=list(fault or []), seed=seed, speed=speed, truth_path=truth, registry_path=registry,
        progress=True, stop_event=stop, username=target.username, password=target.password,
        keepalive_s=keepalive, scenario=scenario, per_type=per_type, device_time_bound=device_time,
        scenario_types=[t.strip() for t in scenario_types.split(",") if t.strip()] if scenario_types else None,
    )  # fmt: skip
    try:
        res = run_simulation(cfg)
    except ConnectionError as e:  # refused, unreachable, or a certificate the CA does not accept
        raise ServiceUnavailable("MQTT broker", "SEMON_MQTT_URL / --mqtt-url", str(e)) from e
    except ConfigError:
        raise
    except ValueError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from e
    console.print(
        f"published {res.total_messages:,} status and {res.total_events:,} event messages from {len(res.per_device)} "
        f"devices in {res.elapsed_s:.1f} s ({res.achieved_rate:,.0f} msg/s), {len(res.faults)} faults injected; "
        f"all acknowledged: {res.all_acked}"
    )


dashboards_app = typer.Typer(help="Grafana boards (dashboards/, docs/boards.md).", no_args_is_help=True)
app.add_typer(dashboards_app, name="dashboards")


@dashboards_app.command("push")
def dashboards_push(
    url: Annotated[str, typer.Option(envvar="GRAFANA_URL", help="Grafana URL; may carry user:password@")] = (
        "http://localhost:3000"
    ),
    token: Annotated[str | None, typer.Option(envvar="GRAFANA_TOKEN", help="service-account token")] = None,
    influx_url: Annotated[
        str | None, typer.Option(help="InfluxDB URL as Grafana reaches it (default SEMON_INFLUX_URL)")
    ] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help="boards to push (default: installed)")] = None,
    device_info: Annotated[bool, typer.Option(help="write registry limits to InfluxDB (device_info)")] = True,
) -> None:
    """Create or update the semon folder, InfluxDB datasource and boards in an existing Grafana."""
    from semon.dashboards.push import PushError, run_push

    try:
        for line in run_push(get_settings(), url, token, influx_url, directory, device_info):
            console.print(line)
    except PushError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e


@app.command()
def deliver() -> None:
    """Run the alert dispatcher alone: webhook outbox, escalations, rescue records (docs/alerts.md).

    Any number may run beside the API's own dispatcher (SEMON_DISPATCHER_ENABLED); they never
    send one delivery twice at the same time.
    """
    from semon.notify.canary import Canary
    from semon.notify.dispatcher import Dispatcher
    from semon.rules.hazards.watch import HazardWatch
    from semon.store import open_telemetry
    from semon.store.db import Database

    s = get_settings()
    setup_logging(s.log_level)
    db = Database(s.db_url)
    d = Dispatcher(s, db, name="semon-deliver")
    d.start()
    telemetry = open_telemetry(s)
    hazard_watch = HazardWatch(db, s.hazard_scan_s, s.timezone, telemetry, s.hazard_board_s)
    hazard_watch.start()
    canary = Canary(s, db, name="deliver") if s.canary_enabled else None
    if canary is not None:
        canary.start()
    _wait_for_signal()
    if canary is not None:
        canary.stop()
    hazard_watch.stop()
    d.stop()
    telemetry.close()
    db.dispose()


rescues_app = typer.Typer(help="Trapped-passenger rescues (docs/alerts.md).", no_args_is_help=True)
app.add_typer(rescues_app, name="rescues")


@rescues_app.command("kpis")
def rescues_kpis(
    by: Annotated[str, typer.Option(help="comma-separated: firm, district, period (empty = one row)")] = "",
    period: Annotated[str, typer.Option(help="day | week | month (with --by period)")] = "day",
    since: Annotated[str | None, typer.Option(help="alarms at or after (default 30 days ago)")] = None,
    until: Annotated[str | None, typer.Option(help="alarms before (default now)")] = None,
    firm: Annotated[str | None, typer.Option(help="only this firm's equipment (as the firm sees it)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="also write the rows as JSON")] = None,
) -> None:
    """Rescue KPIs: mean / p90 times, 3-min response and 30-min arrival rates, entrapments per
    10,000 elevators per day, causes — by firm, district and period."""
    import json
    from datetime import UTC, datetime, timedelta

    from rich.table import Table

    from semon.rules.rescue.kpis import KpiQuery, rescue_kpis
    from semon.store.access import SYSTEM, Access, Principal
    from semon.store.db import Database
    from semon.timeutil import TimeParseError, parse_time

    s = get_settings()
    try:
        until_dt = datetime.fromtimestamp(parse_time(until) / 1000, UTC) if until else datetime.now(UTC)
        since_dt = datetime.fromtimestamp(parse_time(since) / 1000, UTC) if since else until_dt - timedelta(days=30)
        q = KpiQuery(
            since=since_dt, until=until_dt, group_by=[g.strip() for g in by.split(",") if g.strip()], period=period,
            timezone=s.timezone, response_limit_s=s.rescue_response_limit_s,
            arrival_limit_s=s.rescue_arrival_limit_s,
        )  # fmt: skip
    except (TimeParseError, ValueError) as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from e
    principal = Principal("firm", firm, name="cli") if firm else SYSTEM
    db = Database(s.db_url)
    try:
        with db.session() as sess:
            rows = rescue_kpis(Access(sess, principal), q)
    finally:
        db.dispose()

    def num(x: float | None, fmt: str = "{:.1f}") -> str:
        return "—" if x is None else fmt.format(x)

    keys = [k for k in ("firm_id", "district", "period") if rows and k in rows[0]]
    # Headers a person reads: Chinese first, English beside it.
    group = {"firm_id": "维保单位 firm", "district": "区 district", "period": "周期 period"}
    t = Table(*[group[k] for k in keys], "困人 entrapments", "电梯 elevators", "每万台日 per 10k/day",
              "到场 均值/p90 分钟 arrival mean/p90 min", "解救 均值/p90 分钟 release mean/p90 min",
              "3 分钟响应 3-min response", "30 分钟到场 30-min arrival", "原因 causes")  # fmt: skip
    for r in rows:
        t.add_row(
            *[str(r[k] or "—") for k in keys], str(r["entrapments"]), str(r["elevators"]),
            num(r["entrapments_per_10k_elevators_per_day"], "{:.2f}"),
            f"{num(r['arrival_min_mean'])} / {num(r['arrival_min_p90'])}",
            f"{num(r['release_min_mean'])} / {num(r['release_min_p90'])}",
            num(r["response_rate"], "{:.0%}"), num(r["arrival_rate"], "{:.0%}"),
            ", ".join(f"{k} {v}" for k, v in r["causes"].items()),
        )  # fmt: skip
    Console().print(t)
    if json_out:
        json_out.write_text(json.dumps({"since": since_dt.isoformat(), "until": until_dt.isoformat(), "rows": rows},
                                       indent=2))  # fmt: skip
