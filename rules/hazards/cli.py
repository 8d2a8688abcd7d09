"""``semon hazards …`` and ``semon inspections draw``: hazards, risk grades, indicators (table
or Excel), the proposal/escalation scan, and the regulator's risk-weighted draw."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from semon.timeutil import from_ms, utc_now

hazards_app = typer.Typer(
    help="Hidden hazards (隐患), risk grades and indicators (docs/hazards.md).", no_args_is_help=True
)
inspections_app = typer.Typer(help="Risk-weighted random inspections (docs/hazards.md).", no_args_is_help=True)
err = Console(stderr=True)
AtOpt = Annotated[str | None, typer.Option(help="as of this instant (ISO 8601 or epoch ms; default: now)")]
FirmOpt = Annotated[str | None, typer.Option(help="only this firm's equipment (as the firm sees it)")]


def _at(at: str | None) -> datetime:
    from semon.timeutil import TimeParseError, parse_time

    if not at:
        return utc_now()
    try:
        return from_ms(parse_time(at))
    except TimeParseError as e:
        raise typer.BadParameter(str(e), param_hint="--at") from e


@contextmanager
def _access(firm: str | None = None) -> Iterator[tuple[Any, Any, str]]:
    """(Access, Database, time zone) for the CLI: the regulator's view, or one firm's."""
    from semon.config import Settings
    from semon.store.access import SYSTEM, Access, Principal
    from semon.store.db import Database

    s = Settings()
    db = Database(s.db_url)
    try:
        with db.session() as sess:
            yield Access(sess, Principal("firm", firm, name="cli") if firm else SYSTEM), db, s.timezone
            sess.commit()
    finally:
        db.dispose()


def _table(headers: list[tuple[str, str]], rows: list[list[Any]]) -> None:
    t = Table(*[f"{zh}\n{en}" for zh, en in headers])
    for r in rows:
        t.add_row(*["—" if v is None else str(v) for v in r])
    Console().print(t)


@hazards_app.command("types")
def types() -> None:
    """The hazard catalog: codes, class, names, proposing alarm types."""
    from semon.rules.hazards.catalog import CLASS_NAMES, default_catalog

    cat = default_catalog()
    _table(
        [("代码", "code"), ("类别", "class"), ("名称", "name"), ("时限(天)", "days"), ("告警来源", "proposed by")],
        [
            [
                h.code,
                CLASS_NAMES[h.class_][0],
                f"{h.name_zh}\n{h.name_en}",
                cat.deadline_days[h.class_],
                ", ".join(h.proposed_by),
            ]
            for h in cat.types.values()
        ],
    )


@hazards_app.command("list")
def list_(
    status: Annotated[str | None, typer.Option(help="candidate | open | rectified | closed | rejected")] = None,
    overdue: Annotated[bool, typer.Option(help="only open hazards past their deadline")] = False,
    firm: FirmOpt = None,
    at: AtOpt = None,
) -> None:
    """Hazards, newest first."""
    from semon.rules.hazards import service as hs
    from semon.store.hazards import Hazard

    with _access(firm) as (access, _, tz):
        today = hs.local_day(_at(at), tz)
        stmt = hs.hazards(access).order_by(Hazard.found_at.desc())
        if status:
            stmt = stmt.where(Hazard.status == status)
        rows = list(access.s.scalars(stmt))
        if overdue:
            rows = [h for h in rows if h.status == "open" and h.deadline is not None and h.deadline < today]
        _table(
            [
                ("编号", "id"),
                ("设备", "device"),
                ("隐患", "code"),
                ("类别", "class"),
                ("状态", "status"),
                ("发现", "found"),
                ("期限", "deadline"),
                ("责任人", "assignee"),
                ("逾期", "overdue"),
            ],
            [
                [
                    h.id,
                    h.device_id,
                    h.code,
                    h.hazard_class,
                    h.status,
                    hs.local_day(h.found_at, tz),
                    h.deadline,
                    h.assignee,
                    "是 yes" if h.status == "open" and h.deadline and h.deadline < today else "",
                ]
                for h in rows
            ],
        )


@hazards_app.command("record")
def record(
    device: Annotated[str, typer.Argument(help="device id")],
    code: Annotated[str, typer.Argument(help="hazard code (semon hazards types)")],
    note: Annotated[str, typer.Option(help="what was found")] = "",
    actor: Annotated[str, typer.Option(help="who found it")] = "cli",
    at: Annotated[str | None, typer.Option(help="when it was found (default: now)")] = None,
) -> None:
    """Record a hazard found on site (open, with the deadline of its class)."""
    from semon.rules.hazards import service as hs
    from semon.store.access import NotVisible

    with _access() as (access, _, tz):
        try:
            found = _at(at)
            h = hs.record(access, hs.Finding(device, code, note, at=found), actor, tz, max(found, utc_now()))
        except (hs.HazardInvalid, NotVisible) as e:
            err.print(f"[red]{e}[/]")
            raise typer.Exit(2) from e
        print(f"hazard {h.id}: {h.code} ({h.hazard_class}) on {h.device_id}, deadline {h.deadline}")


@hazards_app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV: device_id,code,description,found_at")],
    actor: Annotated[str, typer.Option(help="who reports them (e.g. the inspection body)")] = "import",
) -> None:
    """Import hazards found elsewhere (an inspection body's list): all rows or none; every bad
    row is reported with its row number."""
    import csv

    from semon.rules.hazards import service as hs
    from semon.store.access import NotVisible

    text = file.read_bytes()
    try:
        body = text.decode("utf-8-sig")
    except UnicodeDecodeError:
        body = text.decode("gb18030", errors="strict")  # what Excel on Chinese Windows saves
    rows = list(csv.DictReader(body.splitlines()))
    missing = {"device_id", "code"} - set(rows[0] if rows else {})
    if not rows or missing:
        err.print(f"[red]{file}: no rows, or missing column(s) {', '.join(sorted(missing))}[/]")
        raise typer.Exit(2)
    problems: list[str] = []
    now = utc_now()
    with _access() as (access, _, tz):
        for n, row in enumerate(rows, start=2):  # row 1 is the header, as a spreadsheet counts
            try:
                found = _at(row.get("found_at") or None)
                f = hs.Finding(
                    row["device_id"].strip(),
                    row["code"].strip(),
                    (row.get("description") or "").strip(),
                    source="import",
                    at=found,
                )
                hs.record(access, f, actor, tz, now)
            except (hs.HazardInvalid, NotVisible, typer.BadParameter) as e:
                problems.append(f"第 {n} 行 row {n}: {e}")
        if problems:
            access.s.rollback()
            for p in problems:
                err.print(p)
            err.print(f"[red]nothing imported: {len(problems)} row(s) with errors[/]")
            raise typer.Exit(2)
    print(f"imported {len(rows)} hazards")


@hazards_app.command("scan")
def scan(at: AtOpt = None) -> None:
    """Propose hazards from recent alarms and escalate overdue ones, once — what ``semon api``
    and ``semon deliver`` do every SEMON_HAZARD_SCAN_S (for a scheduler when neither runs)."""
    from semon.config import Settings
    from semon.rules.hazards import service as hs
    from semon.store.db import Database

    s = Settings()
    db = Database(s.db_url)
    try:
        now = _at(at)
        touched = hs.propose_from_alarms(db, now)
        out = hs.escalate_overdue(db, now, s.timezone)
    finally:
        db.dispose()
    print(f"proposed or linked: {len(touched)} · compliance alarm transitions: {len(out)}")


def _grades(access: Any, tz: str, now: datetime) -> list[Any]:
    from semon.rules.hazards import service as hs

    return hs.risk_grades(access, now, tz)


@hazards_app.command("risk")
def risk(
    grade_: Annotated[str | None, typer.Option("--grade", help="only this grade (A–D)")] = None,
    why: Annotated[bool, typer.Option(help="print each device's breakdown")] = False,
    firm: FirmOpt = None,
    at: AtOpt = None,
) -> None:
    """Risk grade of every device, highest risk first."""
    from semon.rules.hazards.risk import default_risk_policy

    names = default_risk_policy().grades.names
    with _access(firm) as (access, _, tz):
        rows = sorted(_grades(access, tz, _at(at)), key=lambda g: (-g.score, g.device_id))
    rows = [g for g in rows if grade_ is None or g.grade == grade_]
    _table(
        [("设备", "device"), ("等级", "grade"), ("分数", "score"), ("说明", "why")],
        [
            [
                g.device_id,
                f"{g.grade} {names[g.grade][0]}",
                g.score,
                "; ".join(f"{f.reason_zh} +{f.points:g}" for f in g.breakdown if f.points) if why else "",
            ]
            for g in rows
        ],
    )


@hazards_app.command("indicators")
def indicators_(
    by: Annotated[str, typer.Option(help="district | firm | city")] = "district",
    start: Annotated[str | None, typer.Option(help="first local day, YYYY-MM-DD (default: a year before end)")] = None,
    end: Annotated[str | None, typer.Option(help="day after the last (default: tomorrow)")] = None,
    xlsx: Annotated[Path | None, typer.Option(help="also write an Excel workbook")] = None,
    at: AtOpt = None,
) -> None:
    """The plan's indicators: serious-hazard remediation, hazards / accidents / deaths per 10,000
    units, risk-grade distribution."""
    from semon.rules.hazards import service as hs
    from semon.rules.hazards.indicators import indicators

    if by not in ("district", "firm", "city"):
        raise typer.BadParameter("district, firm or city", param_hint="--by")
    now = _at(at)
    with _access() as (access, _, tz):
        today = hs.local_day(now, tz)
        try:
            e = date.fromisoformat(end) if end else today + timedelta(days=1)
            s = date.fromisoformat(start) if start else e - timedelta(days=365)
        except ValueError as ex:
            raise typer.BadParameter(f"not a date: {ex}", param_hint="--start/--end") from ex
        units, hz, acc = hs.indicator_rows(access, tz)
        grades = {g.device_id: g.grade for g in _grades(access, tz, now)}
        rows = indicators(units, hz, acc, grades, s, e, min(today, e), by)  # type: ignore[arg-type]
    pct: Callable[[float | None], str] = lambda x: "—" if x is None else f"{x:.1%}"  # noqa: E731
    headers = [
        ("分组", by),
        ("设备数", "units"),
        ("隐患", "hazards"),
        ("每万台", "per 10k"),
        ("重大隐患", "major"),
        ("按期整改", "on time"),
        ("逾期整改", "late"),
        ("逾期未改", "overdue"),
        ("整改率", "remediation"),
        ("事故", "accidents"),
        ("死亡", "deaths"),
        ("死亡/万台", "deaths/10k"),
        ("A/B/C/D", "grades"),
    ]
    table = [
        [
            r["group"],
            r["units"],
            r["hazards_found"],
            r["hazards_per_10k"],
            r["major_found"],
            r["major_closed_on_time"],
            r["major_closed_late"],
            r["major_open_overdue"],
            pct(r["major_remediation_rate"]),
            r["accidents"],
            r["deaths"],
            r["deaths_per_10k"],
            "/".join(str(r["grades"][k]) for k in "ABCD"),
        ]
        for r in rows
    ]
    _table(headers, table)
    if xlsx is not None:
        from openpyxl import Workbook

        wb = Workbook()
        ws = wb.worksheets[0]  # a new workbook has one sheet
        ws.title = "指标 indicators"
        ws.append([f"{zh} {en}" for zh, en in headers])
        for r in table:
            ws.append([("" if v is None else v) for v in r])
        ws.append([])
        ws.append([f"期间 period: {s} – {e} (不含 exclusive); 截至 as of {min(today, e)}; 时区 {tz}"])
        wb.save(xlsx)
        err.print(f"wrote {xlsx}")


@inspections_app.command("draw")
def draw_(
    n: Annotated[int, typer.Option(min=1, help="how many devices to inspect")],
    seed: Annotated[str, typer.Option(help="record it: the same seed, fleet and grades redraw the same devices")],
    at: AtOpt = None,
    csv: Annotated[Path | None, typer.Option(help="also write the drawn devices as CSV")] = None,
) -> None:
    """Draw devices for inspection, higher risk grades more often (rates ∝ the policy's weights)."""
    from semon.rules.hazards.draw import draw
    from semon.rules.hazards.risk import default_risk_policy

    with _access() as (access, _, tz):
        graded = {g.device_id: g for g in _grades(access, tz, _at(at))}
    d = draw(((k, g.grade) for k, g in graded.items()), n, seed, default_risk_policy().grades.weights())
    for line in d.explain():
        err.print(line)
    _table(
        [("序号", "#"), ("设备", "device"), ("等级", "grade"), ("分数", "score")],
        [[i + 1, dev, graded[dev].grade, graded[dev].score] for i, dev in enumerate(d.devices)],
    )
    if csv is not None:
        csv.write_text(
            "device_id,grade,score\n"
            + "".join(f"{dev},{graded[dev].grade},{graded[dev].score}\n" for dev in d.devices),
            encoding="utf-8",
        )
