"""Instants and local days: the one place semon turns a clock into a calendar day.

Instants are UTC epoch milliseconds (int) everywhere; where a database column or a library wants a
``datetime`` it is an aware one in UTC (:func:`utc_now`, :func:`from_ms`, :func:`to_ms`, :func:`as_utc`,
never ``datetime.now()`` / ``utcnow()`` / ``time.time() * 1000``). Calendar days — due dates, "overdue",
"today", per-day rates, KPIs by day — are local days in the configured zone (``SEMON_TIMEZONE``,
default ``Asia/Shanghai``; docs/domain.md §4.6): at 07:00 in Guangzhou it is still yesterday in
UTC, and semon must be on today.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Asia/Shanghai"
DAY_MS = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
# Below 1e11 ms (March 1973) an integer is far more likely epoch *seconds* sent by mistake than
# a real instant of monitoring data; refusing it beats silently querying 1970.
MIN_MS = 100_000_000_000
MAX_MS = 4_102_444_800_000  # 2100-01-01, same ceiling as contract v1 device times
_INT_RE = re.compile(r"^[+-]?\d+$")
_LOST_PLUS_RE = re.compile(r"(?<=\d) (\d{2}(?::?\d{2})?)$")


class TimeParseError(ValueError):
    """The value is neither ISO-8601 nor a plausible epoch-ms integer."""


def now_ms() -> int:
    """Wall clock, UTC epoch milliseconds."""
    return time.time_ns() // 1_000_000


def utc_now() -> datetime:
    """Wall clock as an aware UTC datetime (for DateTime columns and datetime arithmetic)."""
    return datetime.now(UTC)


def as_utc(dt: datetime) -> datetime:
    """``dt`` as an aware UTC datetime; a naive one is taken as UTC.

    SQLite hands timezone-aware columns back naive, and semon writes them in UTC.
    """
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def from_ms(ms: int) -> datetime:
    """An instant (epoch ms) as an aware UTC datetime."""
    return EPOCH + ms * _MS


def to_ms(dt: datetime) -> int:
    """Epoch ms of ``dt`` (naive = UTC), by integer arithmetic: float timestamps lose a millisecond now and then."""
    return (as_utc(dt) - EPOCH) // _MS


def parse_time(value: str) -> int:
    """Epoch ms from ``1700000000000`` or ``2023-11-14T22:13:20Z`` (naive ISO means UTC)."""
    # An unencoded "+02:00" in a query string arrives as " 02:00"; put the sign back.
    v = _LOST_PLUS_RE.sub(r"+\1", value).strip()
    if _INT_RE.match(v):
        ms = int(v)
        if ms < MIN_MS:
            raise TimeParseError(f"{value!r} looks like epoch seconds; send epoch milliseconds")
        if ms >= MAX_MS:
            raise TimeParseError(f"{value!r} is after 2100-01-01")
        return ms
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        raise TimeParseError(
            f"{value!r} is neither ISO-8601 (2024-05-01T08:00:00Z) nor epoch milliseconds"
        ) from None
    return to_ms(dt)


def ms_to_iso(ms: int) -> str:
    """``2024-05-01T08:00:00.000Z`` for epoch ms (UTC, millisecond precision)."""
    return from_ms(ms).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@lru_cache(maxsize=32)
def zone(tz: str) -> ZoneInfo:
    """The IANA zone named ``tz``; ValueError naming it when there is no such zone."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"{tz!r} is not an IANA time zone (e.g. Asia/Shanghai)") from e


def to_local(ms: int, tz: str = DEFAULT_TIMEZONE) -> datetime:
    """An instant (epoch ms) as an aware datetime in ``tz``."""
    return from_ms(ms).astimezone(zone(tz))


def local_date(ms: int, tz: str = DEFAULT_TIMEZONE) -> date:
    """The local calendar day in ``tz`` of an instant (epoch ms)."""
    return to_local(ms, tz).date()


def local_today(tz: str = DEFAULT_TIMEZONE) -> date:
    """Today in ``tz``."""
    return local_date(now_ms(), tz)


def local_day_start_ms(d: date, tz: str = DEFAULT_TIMEZONE) -> int:
    """The instant (epoch ms) local midnight of ``d`` begins in ``tz``."""
    return to_ms(datetime(d.year, d.month, d.day, tzinfo=zone(tz)))


def local_day_end_ms(d: date, tz: str = DEFAULT_TIMEZONE) -> int:
    """The last millisecond of local day ``d`` in ``tz``."""
    return local_day_start_ms(d + timedelta(days=1), tz) - 1


def local_iso(ms: int, tz: str = DEFAULT_TIMEZONE) -> str:
    """An instant as ISO 8601 with the zone's offset (for people reading CLI / API output)."""
    return to_local(ms, tz).isoformat(timespec="seconds")


__all__ = [
    "DAY_MS",
    "DEFAULT_TIMEZONE",
    "EPOCH",
    "MAX_MS",
    "MIN_MS",
    "TimeParseError",
    "as_utc",
    "from_ms",
    "local_date",
    "local_day_end_ms",
    "local_day_start_ms",
    "local_iso",
    "local_today",
    "ms_to_iso",
    "now_ms",
    "parse_time",
    "to_local",
    "to_ms",
    "utc_now",
    "zone",
]
