"""Registry import a clerk can use: encodings, delimiters, one full report, all or nothing.

Runs on real SQLite and PostgreSQL; the line-protocol and database-creation tests on a real
InfluxDB. The report text is the user interface, so the tests assert on it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from semon.cli import app
from semon.store.db import Database
from semon.store.influx import InfluxStore, encode_point, quote_ident
from semon.store.models import Device, Firm
from semon.store.registry_import import RegistryImportError, import_registry
from semon.store.telemetry import Point
from tests.services import Influx, drop_postgres_database, postgres_database

TODAY = date(2026, 6, 1)  # a fixed day: "not in the future" must not depend on the clock
HEADER = (
    "id,equipment_code,kind,district,address,lat,lon,firm_id,firm_name,firm_tech_level,firm_credit_grade,"
    "firm_credit_score,use_unit_id,use_unit_name,use_unit_mgmt_level,install_date,rated_speed,floors,"
    "bottom_floor,design_pressure,set_pressure,design_temperature,medium"
)
EL1 = "EL-1,311012345202000001,elevator,天河区,天河路 1 号,23.13,113.36,F1,广州快捷电梯,4,A,92,U1,天河物业,3,2020-01-01,1.75,20,1,,,,"  # noqa: E501
EL2 = "EL-2,311012345202000002,elevator,越秀区,中山五路,23.12,113.27,F1,广州快捷电梯,4,A,92,U1,天河物业,3,2019-05-01,1.0,8,-1,,,,"  # noqa: E501
PV1 = "PV-1,215012345201800001,vessel,黄埔区,开发大道,23.1,113.45,F2,穗安维保,3,B,80,U2,黄埔化工,2,2018-03-01,,,,1.6,1.5,150,液化石油气"  # noqa: E501
GOOD = [EL1, EL2, PV1]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated registry database on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        d = Database(f"sqlite:///{tmp_path}/semon.db")
        yield d
        d.dispose()
        return
    url, name = postgres_database()
    d = Database(url)
    yield d
    d.dispose()
    drop_postgres_database(name)


def _file(tmp: Path, rows: list[str], *, header: str = HEADER, enc: str = "utf-8", sep: str = ",") -> Path:
    p = tmp / "registry.csv"
    text = "\r\n".join([header.replace(",", sep), *(r.replace(",", sep) for r in rows)]) + "\r\n"
    p.write_bytes(text.encode(enc))
    return p


def _devices(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Device)) or 0


def _report(db: Database, path: Path, **kw: object) -> str:
    n = _devices(db)
    with pytest.raises(RegistryImportError) as e:
        import_registry(db, path, today=TODAY, **kw)  # type: ignore[arg-type]
    assert _devices(db) == n, "a refused file must leave the registry as it was"
    return str(e.value)


def test_gbk_file_from_excel_is_read(db: Database, tmp_path: Path) -> None:
    r = import_registry(db, _file(tmp_path, GOOD, enc="gbk"), today=TODAY)
    assert r.encoding == "gb18030"
    assert (r.devices.created, r.firms.created, r.use_units.created) == (3, 2, 2)
    with db.session() as s:
        assert s.get(Device, "EL-1").district == "天河区"  # type: ignore[union-attr]
        assert s.get(Firm, "F1").name == "广州快捷电梯"  # type: ignore[union-attr]


def test_utf8_bom_semicolons_and_chinese_headers(db: Database, tmp_path: Path) -> None:
    zh = "设备编号,设备代码,类型,区,地址,纬度,经度,维保单位编号,维保单位,技术等级,信用等级,信用分,使用单位编号,使用单位,管理等级,投用日期,额定速度,层站数,最低层,设计压力(MPa),整定压力（MPa）,设计温度,介质"  # noqa: E501
    p = _file(tmp_path, GOOD, header=zh, enc="utf-8-sig", sep=";")
    r = import_registry(db, p, today=TODAY)
    assert (r.encoding, r.delimiter, r.devices.created) == ("utf-8-sig", ";", 3)
    with db.session() as s:
        v = s.get(Device, "PV-1")
        assert v is not None and (v.set_pressure, v.design_pressure, v.medium) == (1.5, 1.6, "液化石油气")
    tab = _file(tmp_path, GOOD, sep="\t")
    assert import_registry(db, tab, today=TODAY, dry_run=True).delimiter == "\t"


def test_dry_run_counts_and_writes_nothing_then_reimport_is_unchanged(db: Database, tmp_path: Path) -> None:
    p = _file(tmp_path, GOOD)
    dry = import_registry(db, p, today=TODAY, dry_run=True)
    assert (dry.devices.created, dry.devices.updated, dry.devices.unchanged) == (3, 0, 0)
    assert _devices(db) == 0
    assert "试运行，未写入 (dry run, nothing written)" in dry.lines()[0]
    import_registry(db, p, today=TODAY)
    moved = _file(tmp_path, [EL1.replace("23.13,113.36", "23.2,113.4"), EL2, PV1])
    again = import_registry(db, moved, today=TODAY, dry_run=True)
    assert (again.devices.created, again.devices.updated, again.devices.unchanged) == (0, 1, 2)
    assert (again.firms.unchanged, again.use_units.unchanged) == (2, 2)
    with db.session() as s:
        assert s.get(Device, "EL-1").lat == 23.13  # type: ignore[union-attr]


def test_empty_file_and_header_only(db: Database, tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"\xef\xbb\xbf\r\n")
    assert _report(db, empty) == f"{empty}: 文件为空，没有表头也没有数据 (the file is empty: no header, no rows)"
    head = _file(tmp_path, [])
    assert "文件: 只有表头，没有数据行 (only a header, no data rows)" in _report(db, head)


def test_wrong_delimiter_is_named_when_columns_are_missing(db: Database, tmp_path: Path) -> None:
    p = _file(tmp_path, GOOD, sep=";")
    text = _report(db, p, delimiter=",")
    assert "第 1 行: 缺少必需列 id, kind（按逗号 comma ','拆分表头，得到 1 列；分隔符不对请用 --delimiter）" in text
    assert "the header was split on 逗号 comma ',' into 1 column(s): pass --delimiter" in text


def test_undecodable_bytes_name_the_offset(db: Database, tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    p.write_bytes(HEADER.encode() + b"\n\xff\xff\xff")
    text = _report(db, p)
    assert f"{p}: 第 {len(HEADER) + 1} 字节处不是有效的 UTF-8 / GB18030 文本" in text
    assert f"(byte offset {len(HEADER) + 1} is not valid UTF-8 / GB18030" in text


def test_duplicates_name_both_rows(db: Database, tmp_path: Path) -> None:
    text = _report(db, _file(tmp_path, [EL1, EL2, EL1.replace("EL-1", "EL-3")]))
    assert '第 4 行 equipment_code: "311012345202000001" 与第 2 行重复 (duplicate: the same code as row 2)' in text
    text = _report(db, _file(tmp_path, [EL1, EL2, EL1]))
    assert '第 4 行 id: "EL-1" 与第 2 行重复 (duplicate: the same id as row 2)' in text


def _row(base: str, **changes: str) -> str:
    cells = base.split(",")
    names = HEADER.split(",")
    for k, v in changes.items():
        cells[names.index(k)] = v
    return ",".join(cells)


OUT_OF_RANGE = [
    ({"lat": "123.1"}, 'lat: "123.1" 纬度超出范围 -90…90 (latitude out of range -90 to 90)'),
    ({"lon": "-181"}, 'lon: "-181" 经度超出范围 -180…180 (longitude out of range -180 to 180)'),
    ({"firm_tech_level": "9"}, 'firm_tech_level: "9" 超出范围 1…5 (out of range 1 to 5)'),
    ({"use_unit_mgmt_level": "0"}, 'use_unit_mgmt_level: "0" 超出范围 1…5 (out of range 1 to 5)'),
    ({"firm_tech_level": "3.5"}, 'firm_tech_level: "3.5" 不是整数 (not a whole number)'),
    (
        {"firm_credit_grade": "Z"},
        'firm_credit_grade: "Z" 不是有效信用等级，应为 A、B、C、D 之一 (not a credit grade: expected one of A, B, C, D)',  # noqa: E501
    ),
    ({"firm_credit_score": "188"}, 'firm_credit_score: "188" 超出范围 0…100 (out of range 0 to 100)'),
    ({"firm_credit_score": "nan"}, 'firm_credit_score: "nan" 不是数字 (not a number)'),
    ({"install_date": "2020-13-01"}, 'install_date: "2020-13-01" 不是有效日期 (not a valid date, expected YYYY-MM-DD)'),
    (
        {"install_date": "2026-06-02"},
        'install_date: "2026-06-02" 晚于今天 2026-06-01 (in the future: today is 2026-06-01)',
    ),
    (
        {"kind": "lift"},
        'kind: "lift" 不是设备类型，应为 elevator（电梯）或 vessel（压力容器） (not an equipment kind: expected elevator or vessel)',  # noqa: E501
    ),
    ({"id": "EL 1"}, 'id: "EL 1" 设备编号须以字母或数字开头'),
    ({"equipment_code": "31101234"}, 'equipment_code: "31101234" 既不是 18 位设备代码'),
    (
        {"equipment_code": "215012345202000009"},
        'equipment_code: "215012345202000009" 品种代码 2150 不是电梯（3xxx） (variety code 2150 is not an elevator code (3xxx))',  # noqa: E501
    ),
    ({"rated_speed": "0"}, 'rated_speed: "0" 超出范围 大于 0…20 (out of range above 0 to 20)'),
    (
        {"district": "天河\n区"},
        'district: "天河\\n区" 含换行、制表符等控制字符 (contains a line break, tab or other control character)',
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), OUT_OF_RANGE, ids=[next(iter(c)) + "=" + next(iter(c.values())) for c, _ in OUT_OF_RANGE]
)
def test_each_out_of_range_value_is_refused(tmp_path: Path, changes: dict[str, str], expected: str) -> None:
    db = Database(f"sqlite:///{tmp_path}/semon.db")
    try:
        row = _row(EL1, **{k: (f'"{v}"' if "\n" in v else v) for k, v in changes.items()})
        text = _report(db, _file(tmp_path, [EL2, row]))
        assert f"第 3 行 {expected}" in text
        assert text.startswith(f"{tmp_path / 'registry.csv'}: 1 处错误，未导入任何数据 (1 error(s), nothing imported):")
    finally:
        db.dispose()


def test_vessel_pressures(db: Database, tmp_path: Path) -> None:
    text = _report(
        db, _file(tmp_path, [_row(PV1, set_pressure="1.7"), _row(PV1, id="PV-2", equipment_code="", set_pressure="")])
    )
    assert '第 2 行 set_pressure: "1.7" 高于设计压力 1.6 MPa (above the design pressure 1.6 MPa' in text
    assert (
        "第 3 行 set_pressure: 压力容器必须填写安全阀整定压力（MPa），超压报警依赖它 (a vessel needs set_pressure"
        in text
    )
    header = HEADER + ",max_working_pressure_mpa"
    text = _report(db, _file(tmp_path, [PV1 + ",1.55"], header=header))
    assert '第 2 行 max_working_pressure: "1.55" 高于整定压力 1.5 MPa (above the set pressure 1.5 MPa)' in text
    import_registry(db, _file(tmp_path, [PV1 + ",1.4"], header=header), today=TODAY)
    with db.session() as s:
        assert s.get(Device, "PV-1").max_working_pressure == 1.4  # type: ignore[union-attr]


def test_conflicting_firm_rows_name_both(db: Database, tmp_path: Path) -> None:
    text = _report(db, _file(tmp_path, [EL1, _row(EL2, firm_credit_grade="B")]))
    assert (
        '第 3 行 firm_credit_grade: "B" 与第 2 行的 "A" 不一致（同一维保单位 F1） (conflicts with row 2 ("A") for the same firm F1)'  # noqa: E501
        in text
    )
    text = _report(db, _file(tmp_path, [EL1, _row(EL2, use_unit_mgmt_level="5")]))
    assert '第 3 行 use_unit_mgmt_level: "5" 与第 2 行的 "3" 不一致（同一使用单位 U1）' in text
    # A blank is "not stated", not a conflict: a clerk may fill the firm's facts on one row only.
    import_registry(db, _file(tmp_path, [EL1, _row(EL2, firm_name="", firm_credit_grade="")]), today=TODAY)


def test_several_errors_in_several_rows_one_report_nothing_half_imported(db: Database, tmp_path: Path) -> None:
    import_registry(db, _file(tmp_path, [EL1]), today=TODAY)
    rows = [
        _row(EL1, lat="123.1", firm_credit_score="188"),
        _row(EL2, install_date="2020-13-01", firm_tech_level="9"),
        PV1,  # a good row: still not imported, the file is refused as a whole
        _row(
            PV1,
            id="PV-2",
            equipment_code="",
            firm_id="F3",
            firm_credit_grade="Z",
            set_pressure="2",
            lat="23.1",
            lon="13.45",
        ),
    ]
    text = _report(db, _file(tmp_path, rows))
    lines = text.splitlines()
    assert lines[0] == f"{tmp_path / 'registry.csv'}: 6 处错误，未导入任何数据 (6 error(s), nothing imported):"
    assert lines[1:7] == [
        '  第 2 行 lat: "123.1" 纬度超出范围 -90…90 (latitude out of range -90 to 90)',
        '  第 2 行 firm_credit_score: "188" 超出范围 0…100 (out of range 0 to 100)',
        '  第 3 行 firm_tech_level: "9" 超出范围 1…5 (out of range 1 to 5)',
        '  第 3 行 install_date: "2020-13-01" 不是有效日期 (not a valid date, expected YYYY-MM-DD)',
        '  第 5 行 firm_credit_grade: "Z" 不是有效信用等级，应为 A、B、C、D 之一 (not a credit grade: expected one of A, B, C, D)',  # noqa: E501
        '  第 5 行 set_pressure: "2" 高于设计压力 1.6 MPa (above the design pressure 1.6 MPa (set pressure must not exceed it))',  # noqa: E501
    ]
    assert (
        lines[7]
        == '  警告 warning: 第 5 行 lat/lon: "23.1, 13.45" 不在中国境内，请核对（是否把经纬度填反了？） (outside China: please check (latitude and longitude swapped?))'  # noqa: E501
    )
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Firm)) == 1


def test_cli_exit_codes_and_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:

    monkeypatch.setenv("SEMON_DB_URL", f"sqlite:///{tmp_path}/semon.db")
    monkeypatch.delenv("SEMON_INFLUX_URL", raising=False)
    bad = _file(tmp_path, [_row(EL1, lat="123.1", firm_credit_grade="Z")], enc="gbk", sep="\t")
    res = CliRunner().invoke(app, ["devices", "import", str(bad)])
    assert res.exit_code == 2, res.output
    assert res.output.splitlines()[1:3] == [  # whole lines, however narrow the terminal
        '  第 2 行 lat: "123.1" 纬度超出范围 -90…90 (latitude out of range -90 to 90)',
        '  第 2 行 firm_credit_grade: "Z" 不是有效信用等级，应为 A、B、C、D 之一 (not a credit grade: expected one of A, B, C, D)',  # noqa: E501
    ]
    assert "Traceback" not in res.output
    good = _file(tmp_path, [EL1], sep="\t")
    res = CliRunner().invoke(app, ["devices", "import", "--dry-run", "--delimiter", "tab", str(good)])
    assert res.exit_code == 0, res.output
    assert "设备 devices: 新增 1，更新 0，不变 0 (created 1, updated 0, unchanged 0)" in res.output
    assert _devices(Database(f"sqlite:///{tmp_path}/semon.db")) == 0


# -- line protocol: no value can break it ------------------------------------------------------
AWKWARD = [
    "a,b", "a b", "a=b", "a\\b", "\\lead", "trail\\", "trail\\\\", "a\\,b", "a\\ b", " ", ",", "=", "\\",
    '"quoted"', "天河区 第1 街", "#hash", "a\nb", "a\r\nb", "tab\there", "nul\x00x", "\x7fdel", "é\u0085nel",
]  # fmt: skip


def _expected(v: str) -> str:
    """What InfluxDB hands back: control characters became spaces, trailing backslashes ＼."""
    out = "".join(" " if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 else c for c in v)
    stripped = out.rstrip("\\")
    return stripped + "\uff3c" * (len(out) - len(stripped))


def _influx_values(store: InfluxStore, tag: str) -> list[tuple[str, int]]:
    rows = store.rows(f"SELECT n, {quote_ident(tag)} FROM {quote_ident('awkward')}")
    return sorted((str(r[tag]), int(r["n"])) for r in rows)  # type: ignore[arg-type]


def test_encode_point_survives_awkward_tags_on_real_influxdb(influx: Influx) -> None:
    """Property-style: fixed awkward strings plus seeded random ones, written in ONE batch and read back."""
    rng = random.Random(15)
    alphabet = ",= \\\"'\n\r\t\x00\x1f\x7f#天区é\u2028"
    values = AWKWARD + ["".join(rng.choice(alphabet + "abc") for _ in range(rng.randint(1, 12))) for _ in range(200)]
    store = InfluxStore(influx.url, "semon")  # a fresh InfluxDB: no database yet
    try:
        points = [
            Point(
                "awkward", {"district": v, "firm": v, "device_id": f"d{i}"}, {"n": i, "s": v}, (i + 1) * 1000, f"d{i}"
            )
            for i, v in enumerate(values)
        ]
        for p in points:  # the tag set never holds a line break (a quoted string field may: 1.x keeps it)
            prefix = encode_point(Point(p.measurement, p.tags, {"n": 0}, 1, ""))
            assert "\n" not in prefix and "\r" not in prefix, prefix
        store.write(points)  # one body: a value that broke a line would break the batch
        got = store.rows(f"SELECT n, s, district, firm FROM {quote_ident('awkward')}")
        assert len(got) == len(values)
        for r in got:
            v = values[int(r["n"])]  # type: ignore[arg-type]
            assert (r["district"], r["firm"], r["s"]) == (_expected(v), _expected(v), v), (v, r)
    finally:
        store.close()


def test_import_creates_the_database_on_a_fresh_influxdb(
    influx: Influx, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEMON_DB_URL", f"sqlite:///{tmp_path}/semon.db")
    monkeypatch.setenv("SEMON_INFLUX_URL", influx.url)
    monkeypatch.setenv("SEMON_INFLUX_DB", "semon")
    res = CliRunner().invoke(app, ["devices", "import", str(_file(tmp_path, GOOD))])
    assert res.exit_code == 0, res.output
    deadline = time.monotonic() + 10
    while True:  # the write is acknowledged; a query may trail it briefly
        q = httpx.get(f"{influx.url}/query", params={"db": "semon", "q": "SELECT count(*) FROM device_info"}).json()
        if q["results"][0].get("series") or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "series" in q["results"][0], q


def test_excel_unicode_text_utf16_tabs(db: Database, tmp_path: Path) -> None:
    r = import_registry(db, _file(tmp_path, GOOD, enc="utf-16", sep="\t"), today=TODAY, dry_run=True)
    assert (r.encoding, r.delimiter, r.devices.created) == ("utf-16", "\t", 3)


def test_unknown_column_is_a_warning_and_facts_need_their_owner(db: Database, tmp_path: Path) -> None:
    r = import_registry(db, _file(tmp_path, [EL1 + ",x"], header=HEADER + ",备注"), today=TODAY, dry_run=True)
    assert [str(w) for w in r.warnings] == [
        '第 1 行: "备注" 未知列，已忽略（见 docs/registry.md 的列名） (unknown column(s), ignored (see the column list in docs/registry.md))'  # noqa: E501
    ]
    assert '  警告 warning: 第 1 行: "备注" 未知列' in "\n".join(r.lines())
    text = _report(db, _file(tmp_path, [_row(EL1, firm_id="")]))
    assert (
        "第 2 行 firm_id: 填写了 firm_name, firm_tech_level, firm_credit_grade, firm_credit_score 却没有 firm_id"
        in text
    )


def test_platform_id_is_reserved_and_the_refusal_writes_nothing(db: Database, tmp_path: Path) -> None:
    with db.session() as s:
        s.add(Device(id="semon-platform", kind="platform", attributes={}))
    text = _report(db, _file(tmp_path, [EL1, _row(EL2, id="semon-platform")]))
    assert '第 3 行 id: "semon-platform" 是 semon 保留的编号 (is an id semon reserves for itself)' in text
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(Firm)) == 0  # the staged firms were rolled back


def test_wrong_encoding_override_is_one_line(db: Database, tmp_path: Path) -> None:
    p = _file(tmp_path, GOOD, enc="gbk")
    assert _report(db, p, encoding="utf-8").startswith(f"{p}: 第 ")
    assert _report(db, p, encoding="klingon") == f"{p}: 未知编码 'klingon' (unknown encoding)"


def test_influxdb_down_after_import_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.services import free_port

    monkeypatch.setenv("SEMON_DB_URL", f"sqlite:///{tmp_path}/semon.db")
    monkeypatch.setenv("SEMON_INFLUX_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    res = CliRunner().invoke(app, ["devices", "import", str(_file(tmp_path, GOOD))])
    assert res.exit_code == 1, res.output
    assert (
        "已导入数据库，但 InfluxDB 的 device_info 未更新 (registry imported, but device_info not written" in res.output
    )
    assert "Traceback" not in res.output
