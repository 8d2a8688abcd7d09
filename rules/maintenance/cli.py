"""``semon maintenance …``: plan (table / CSV / Excel), import facts, record visits, firm rates, policy."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from semon.rules.maintenance.calendar import ITEM_CLASSES
from semon.timeutil import from_ms, utc_now

maintenance_app = typer.Typer(help='"3+2" on-demand elevator maintenance (docs/maintenance.md).', no_args_is_help=True)
console = Console(stderr=True)


class Format(StrEnum):
    """Output formats of ``semon maintenance plan``."""

    table = "table"
    csv = "csv"
    xlsx = "xlsx"


PolicyOpt = Annotated[
    Path | None, typer.Option(help="policy TOML (default: SEMON_MAINTENANCE_POLICY, else the packaged default)")
]
AtOpt = Annotated[str | None, typer.Option(help="as of this instant (ISO 8601 or epoch ms; default: now)")]
AsOfOpt = Annotated[
    str | None,
    typer.Option("--as-of", help="as of this local day (YYYY-MM-DD, SEMON_TIMEZONE): its first instant"),
]


def _at_ms(at: str | None) -> int | None:
    from semon.timeutil import TimeParseError, parse_time

    try:
        return parse_time(at) if at else None
    except TimeParseError as e:
        raise typer.BadParameter(str(e), param_hint="--at") from e


def _as_of_ms(at: str | None, as_of: str | None, tz: str) -> int | None:
    """The instant of ``--at`` or of ``--as-of`` (local midnight of that day in ``tz``); not both."""
    from datetime import date

    from semon.timeutil import local_day_start_ms

    if as_of is None:
        return _at_ms(at)
    if at is not None:
        raise typer.BadParameter("give --at or --as-of, not both", param_hint="--as-of")
    try:
        day = date.fromisoformat(as_of.strip())
    except ValueError:
        raise typer.BadParameter(f"{as_of!r} is not a date (YYYY-MM-DD)", param_hint="--as-of") from None
    return local_day_start_ms(day, tz)


def _policy(path: Path | None) -> Any:
    from semon.rules.maintenance.policy import PolicyError, load_policy

    try:
        return load_policy(path)
    except PolicyError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(2) from e


def plan_table(run: Any) -> pd.DataFrame:
    """The flat, exportable view of a planning run: one row per elevator."""
    p = run.plan
    out = pd.DataFrame(index=p.index)
    out["firm_id"] = p["firm_id"]
    out["district"] = p["district"]
    out["mode"] = p["mode"]
    out["interval_days"] = p["interval_days"]
    out["score"] = p["score"]
    out["eligible"] = p["eligible"]
    for c in ("pts_age", "pts_firm_tech_level", "pts_use_unit_mgmt_level", "pts_firm_credit", "pts_health"):
        out[c] = p[c]
    out["health_index"] = p["health_index"]
    out["online_ratio"] = p["online_ratio"].round(4)
    out["entrapments"] = p["entrapments"]
    out["major_faults"] = p["major_faults"]
    out["failed_gates"] = p["failed_gates"].map(";".join)
    out["fired_triggers"] = p["fired_triggers"].map(";".join)
    for c in ITEM_CLASSES:
        out[f"{c}_due"] = p[f"{c}_due"].dt.date
    out["overdue"] = _overdue(p)
    out["inspection_due"] = p["inspection_due"].dt.date
    out["reasons"] = p["reasons"].map(" | ".join)
    out.index.name = "device_id"
    return out.reset_index()


def _overdue(p: pd.DataFrame) -> list[str]:
    flags = [p[f"overdue_{c}"].to_numpy() for c in ITEM_CLASSES]
    return [";".join(c for c, f in zip(ITEM_CLASSES, row, strict=True) if f) for row in zip(*flags, strict=True)]


def _mqtt_notifier(settings: Any) -> tuple[Any, Any]:
    """A notifier publishing on the configured broker, and its closer."""
    import paho.mqtt.client as mqtt

    from semon.mqtt_connect import make_client

    target = settings.mqtt_target()
    c = make_client(target, f"semon-maintenance-{utc_now():%H%M%S%f}")
    c.connect(target.host, target.port)
    c.loop_start()
    infos: list[Any] = []

    def notify(topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        info = c.publish(topic, payload, qos=1)
        infos.append(info)
        return info  # marked published once the broker acknowledged it

    def close() -> None:
        for i in infos:
            i.wait_for_publish(10)
        c.disconnect()
        c.loop_stop()

    return notify, close


@maintenance_app.command("plan")
def plan_cmd(
    fmt: Annotated[Format, typer.Option("--format", help="table, csv or xlsx")] = Format.table,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="file to write (csv: default stdout)")] = None,
    policy: PolicyOpt = None,
    device: Annotated[list[str] | None, typer.Option(help="plan only these elevators (repeatable)")] = None,
    firm: Annotated[str | None, typer.Option(help="show only this firm's elevators")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="decide and show; write nothing, raise no alarm")] = False,
    publish: Annotated[bool, typer.Option(help="publish alarm transitions on SEMON_MQTT_URL")] = False,
    limit: Annotated[int, typer.Option(min=1, help="rows shown by --format table")] = 50,
    at: AtOpt = None,
    as_of: AsOfOpt = None,
) -> None:
    """Plan every elevator: gates, score, mode (15 / 30 / 90 days) and due dates; store the decisions."""
    from semon.config import get_settings
    from semon.rules.maintenance.service import run_planning, summarise_modes
    from semon.store import open_telemetry
    from semon.store.db import Database

    if fmt is Format.xlsx and output is None:
        raise typer.BadParameter("--format xlsx needs --output FILE.xlsx")
    s = get_settings()
    at_ms = _as_of_ms(at, as_of, s.timezone)
    pol = _policy(policy)
    db = Database(s.db_url)
    telemetry = open_telemetry(s)
    notify, close = (None, None)
    if publish and not dry_run:
        if s.mqtt_url == "embedded":
            console.print("[red]--publish needs SEMON_MQTT_URL (mqtt://host:port)[/]")
            raise typer.Exit(2)
        notify, close = _mqtt_notifier(s)
    try:
        run = run_planning(db, telemetry, pol, device_ids=device or None, store=not dry_run, alarms=not dry_run,
                           board=not dry_run, notify=notify, at_ms=at_ms, tz=s.timezone)  # fmt: skip
    finally:
        if close:
            close()
        telemetry.close()
        db.dispose()
    table = plan_table(run)
    if firm:
        table = table[table["firm_id"] == firm]
    summary = summarise_modes(run)
    if fmt is Format.csv:
        if output is None:
            table.to_csv(sys.stdout, index=False)
        else:
            table.to_csv(output, index=False)
    elif fmt is Format.xlsx:
        with pd.ExcelWriter(output, engine="openpyxl") as xl:
            table.to_excel(xl, sheet_name="plan", index=False)
            summary.to_excel(xl, sheet_name="summary")
            pd.DataFrame({"policy_version": [pol.version], "policy_sha256": [pol.sha256], "as_of": [run.as_of],
                          "source": [pol.source]}).to_excel(xl, sheet_name="policy", index=False)  # fmt: skip
    else:
        t = Table(title=f"maintenance plan {run.as_of} — policy {pol.version}")
        for col in ("device_id", "firm_id", "mode", "score", "half_month_due", "quarterly_due", "overdue", "reasons"):
            t.add_column(col, overflow="fold")
        for r in table.head(limit).itertuples(index=False):
            t.add_row(r.device_id, str(r.firm_id or ""), r.mode, f"{r.score:.2f}", str(r.half_month_due),
                      str(r.quarterly_due), r.overdue, r.reasons)  # fmt: skip
        Console().print(t)
        if len(table) > limit:
            console.print(f"… {len(table) - limit} more rows (use --format csv or xlsx for all)")
    console.print(summary.to_string())
    verb = "decided (dry run)" if dry_run else f"planned, {run.decisions_written} new decision(s)"
    console.print(f"{len(run.plan)} elevators {verb}; {len(run.alarm_messages)} alarm transition(s)"
                  + (f"; written to {output}" if output else ""))  # fmt: skip


@maintenance_app.command("import")
def import_cmd(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV or Excel (.xlsx) facts file")],
) -> None:
    """Import registry facts (commission date, inspection, insurance, firm and use-unit levels)."""
    from semon.config import get_settings
    from semon.rules.maintenance.facts import FactsError, import_facts
    from semon.store.db import Database

    db = Database(get_settings().db_url)
    try:
        n = import_facts(db, file)
    except FactsError as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e
    finally:
        db.dispose()
    console.print(f"updated facts of {n['devices']} devices, {n['firms']} firms, {n['use_units']} use units")


@maintenance_app.command("record")
def record_cmd(
    device_id: Annotated[str, typer.Argument(help="elevator id")],
    classes: Annotated[str, typer.Option(help="item classes done, comma-separated: " + ", ".join(ITEM_CLASSES))],
    technician: Annotated[str, typer.Option(help="who did it")],
    at: Annotated[str | None, typer.Option(help="when (ISO 8601, default now)")] = None,
    paperless: Annotated[bool, typer.Option(help="recorded paperless (electronic record on site)")] = True,
    policy: PolicyOpt = None,
) -> None:
    """Record a maintenance visit; due dates recompute and overdue alarms clear."""
    from semon.config import get_settings
    from semon.rules.maintenance.records import RecordError, record_visit
    from semon.store.db import Database

    pol = _policy(policy)
    at_ms = _at_ms(at)  # aware: naive ISO is UTC, as everywhere else
    when = utc_now() if at_ms is None else from_ms(at_ms)
    s = get_settings()
    db = Database(s.db_url)
    try:
        rec, _ = record_visit(db, pol, device_id=device_id, item_classes=[c.strip() for c in classes.split(",")],
                              performed_at=when, technician=technician, paperless=paperless,
                              tz=s.timezone)  # fmt: skip
    except (RecordError, LookupError) as e:
        console.print(f"[red]{e}[/]")
        raise typer.Exit(1) from e
    finally:
        db.dispose()
    from semon.timeutil import zone

    local = rec.performed_at.astimezone(zone(s.timezone))
    console.print(f"record {rec.id}: {device_id} {rec.item_class} on {local:%Y-%m-%d}, "
                  f"{'on time' if rec.on_time else 'late'}")  # fmt: skip


RATE_COLUMNS = ("firm_id", "name", "elevators", "records", "on_time_rate", "paperless_rate", "meets_on_time",
                "meets_paperless", "meets_size")  # fmt: skip


def rates_table(df: pd.DataFrame, as_of: Any) -> Table:
    """Per-firm rates as a table like the other commands print (rates in %, pilot flags yes / no)."""
    t = Table(title=f"firm maintenance rates, year to {as_of} (Guangzhou pilot: ≥ 95 %, ≥ 400 elevators)")
    for col in RATE_COLUMNS:
        t.add_column(col, overflow="fold", justify="right" if col in ("elevators", "records") else "left")

    def pct(v: Any) -> str:
        return "—" if pd.isna(v) else f"{v * 100:.1f} %"

    flags = ("meets_on_time", "meets_paperless", "meets_size")
    for fid, r in df.iterrows():
        t.add_row(str(fid), str(r["name"] or ""), str(int(r["elevators"])), str(int(r["records"])),
                  pct(r["on_time_rate"]), pct(r["paperless_rate"]),
                  *("yes" if bool(r[c]) else "no" for c in flags))  # fmt: skip
    return t


@maintenance_app.command("rates")
def rates_cmd(at: AtOpt = None, as_of: AsOfOpt = None) -> None:
    """Per-firm on-time and paperless rates over the last year (Guangzhou pilot: both ≥ 95 %)."""
    from semon.config import get_settings
    from semon.rules.maintenance.service import firm_rates
    from semon.store.db import Database
    from semon.timeutil import local_date, now_ms

    s = get_settings()
    at_ms = _as_of_ms(at, as_of, s.timezone)
    day = local_date(now_ms() if at_ms is None else at_ms, s.timezone)
    db = Database(s.db_url)
    try:
        df = firm_rates(db, day, tz=s.timezone)
    finally:
        db.dispose()
    Console().print(rates_table(df, day))
    if df.empty:
        console.print("no firm on record")


@maintenance_app.command("policy")
def policy_cmd(
    check: Annotated[
        Path | None, typer.Option(help="validate this policy file instead of showing the one in force")
    ] = None,
) -> None:
    """Show the policy in force (version, hash, source), or validate a policy file."""
    pol = _policy(check)
    console.print(f"policy {pol.version} ({pol.source}), sha256 {pol.sha256}: valid")
    if check is None:
        Console().print(Path(pol.source).read_text(encoding="utf-8"))
