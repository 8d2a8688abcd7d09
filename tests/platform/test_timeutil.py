"""semon.timeutil's contract: instants are int epoch ms in UTC, datetimes are aware, days are local."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from semon import timeutil as tu

# 2026-11-25 16:00:00 UTC is 2026-11-26 00:00:00 in Asia/Shanghai (UTC+8, no DST).
MIDNIGHT_SH = 1_795_622_400_000


def test_the_fixed_instant_is_shanghai_midnight() -> None:
    assert tu.to_ms(datetime(2026, 11, 25, 16, tzinfo=UTC)) == MIDNIGHT_SH


def test_now_is_int_ms_and_utc_now_is_aware() -> None:
    ms, dt = tu.now_ms(), tu.utc_now()
    assert type(ms) is int
    assert dt.tzinfo is not None and dt.utcoffset() == timedelta(0)
    assert abs(tu.to_ms(dt) - ms) < 60_000  # the same wall clock, both in ms (not s, not µs)


def test_from_ms_and_to_ms_round_trip_exactly() -> None:
    for ms in (0, 1, MIDNIGHT_SH - 1, MIDNIGHT_SH, 1_700_000_000_001, 4_102_444_799_999):
        dt = tu.from_ms(ms)
        assert dt.tzinfo is not None and dt.utcoffset() == timedelta(0)
        assert tu.to_ms(dt) == ms and type(tu.to_ms(dt)) is int


def test_to_ms_takes_naive_as_utc_and_honours_offsets() -> None:
    assert tu.to_ms(datetime(2026, 11, 25, 16)) == MIDNIGHT_SH  # as SQLite hands a stored column back
    assert tu.to_ms(datetime(2026, 11, 26, tzinfo=timezone(timedelta(hours=8)))) == MIDNIGHT_SH
    assert tu.to_ms(datetime(2026, 11, 25, 16, 0, 0, 999, tzinfo=UTC)) == MIDNIGHT_SH  # µs floor to the ms


def test_as_utc_is_aware_utc_for_naive_and_other_zones() -> None:
    assert tu.as_utc(datetime(2026, 11, 25, 16)) == datetime(2026, 11, 25, 16, tzinfo=UTC)
    sh = tu.as_utc(tu.to_local(MIDNIGHT_SH))
    assert sh.utcoffset() == timedelta(0) and sh.hour == 16


def test_the_shanghai_day_begins_at_16_utc() -> None:
    assert tu.local_date(MIDNIGHT_SH) == date(2026, 11, 26)
    assert tu.local_date(MIDNIGHT_SH - 1) == date(2026, 11, 25)
    assert tu.local_date(MIDNIGHT_SH - 1, "UTC") == date(2026, 11, 25)
    assert tu.local_date(MIDNIGHT_SH, "UTC") == date(2026, 11, 25)  # still the 25th in UTC
    assert tu.local_day_start_ms(date(2026, 11, 26)) == MIDNIGHT_SH
    assert tu.local_day_end_ms(date(2026, 11, 25)) == MIDNIGHT_SH - 1
    assert tu.local_day_end_ms(date(2026, 11, 26)) - tu.local_day_start_ms(date(2026, 11, 26)) == tu.DAY_MS - 1
    assert tu.to_local(MIDNIGHT_SH).utcoffset() == timedelta(hours=8)
    assert tu.local_iso(MIDNIGHT_SH) == "2026-11-26T00:00:00+08:00"


def test_parse_time_and_iso() -> None:
    assert tu.parse_time("2026-11-25T16:00:00Z") == MIDNIGHT_SH
    assert tu.parse_time("2026-11-26T00:00:00+08:00") == MIDNIGHT_SH
    assert tu.parse_time("2026-11-26T00:00:00 08:00") == MIDNIGHT_SH  # '+' lost in a query string
    assert tu.parse_time("2026-11-25T16:00:00") == MIDNIGHT_SH  # naive ISO is UTC
    assert tu.parse_time(str(MIDNIGHT_SH)) == MIDNIGHT_SH
    assert tu.ms_to_iso(MIDNIGHT_SH + 7) == "2026-11-25T16:00:00.007Z"
    with pytest.raises(tu.TimeParseError, match="epoch seconds"):
        tu.parse_time("1795622400")
    with pytest.raises(tu.TimeParseError, match="neither"):
        tu.parse_time("yesterday")


def test_unknown_zone_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="not an IANA time zone"):
        tu.local_date(MIDNIGHT_SH, "Mars/Olympus")
