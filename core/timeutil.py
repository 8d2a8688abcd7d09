"""Instants and local days: the one place semon turns a clock into a calendar day.

Instants are UTC epoch milliseconds (int) everywhere; calendar days — due dates, "overdue",
"today", per-day rates, KPIs by day — are local days in the configured zone (``SEMON_TIMEZONE``,
default ``Asia/Shanghai``; docs/domain.md §4.6): at 07:00 in Guangzhou it is still yesterday in
UTC, and semon must be on today.
"""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DEFAULT_TIMEZONE = "Asia/Shanghai"
DAY_MS = 86_400_000


def now_ms() -> int:
    """Wall clock, UTC epoch milliseconds."""
    return time.time_ns() // 1_000_000


@lru_cache(maxsize=32)
def zone(tz: str) -> ZoneInfo:
    """The IANA zone named ``tz``; ValueError naming it when there is no such zone."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise ValueError(f"{tz!r} is not an IANA time zone (e.g. Asia/Shanghai)") from e


def to_local(ms: int, tz: str = DEFAULT_TIMEZONE) -> datetime:
    """An instant (epoch ms) as an aware datetime in ``tz``."""
    return datetime.fromtimestamp(ms / 1000, zone(tz))


def local_date(ms: int, tz: str = DEFAULT_TIMEZONE) -> date:
    """The local calendar day in ``tz`` of an instant (epoch ms)."""
    return to_local(ms, tz).date()


def local_today(tz: str = DEFAULT_TIMEZONE) -> date:
    """Today in ``tz``."""
    return local_date(now_ms(), tz)


def local_day_start_ms(d: date, tz: str = DEFAULT_TIMEZONE) -> int:
    """The instant (epoch ms) local midnight of ``d`` begins in ``tz``."""
    return int(datetime(d.year, d.month, d.day, tzinfo=zone(tz)).timestamp() * 1000)


def local_day_end_ms(d: date, tz: str = DEFAULT_TIMEZONE) -> int:
    """The last millisecond of local day ``d`` in ``tz``."""
    return local_day_start_ms(d + timedelta(days=1), tz) - 1


def local_iso(ms: int, tz: str = DEFAULT_TIMEZONE) -> str:
    """An instant as ISO 8601 with the zone's offset (for people reading CLI / API output)."""
    return to_local(ms, tz).isoformat(timespec="seconds")


__all__ = [
    "DAY_MS",
    "DEFAULT_TIMEZONE",
    "local_date",
    "local_day_end_ms",
    "local_day_start_ms",
    "local_iso",
    "local_today",
    "now_ms",
    "to_local",
    "zone",
]
