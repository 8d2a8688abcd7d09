"""Time parameters of the API: ISO-8601 or epoch milliseconds in, epoch ms + ISO string out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from semon.timeutil import now_ms  # noqa: F401  (re-exported: one clock for every module)

# Below 1e11 ms (March 1973) an integer is far more likely epoch *seconds* sent by mistake than
# a real instant of monitoring data; refusing it beats silently querying 1970.
MIN_MS = 100_000_000_000
MAX_MS = 4_102_444_800_000  # 2100-01-01, same ceiling as contract v1 device times
_INT_RE = re.compile(r"^[+-]?\d+$")
_LOST_PLUS_RE = re.compile(r"(?<=\d) (\d{2}(?::?\d{2})?)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


class TimeParseError(ValueError):
    """The value is neither ISO-8601 nor a plausible epoch-ms integer."""


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
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    # Integer arithmetic: float timestamps lose the last millisecond now and then.
    return (dt - _EPOCH) // _MS


def ms_to_iso(ms: int) -> str:
    """``2024-05-01T08:00:00.000Z`` for epoch ms (UTC, millisecond precision)."""
    dt = _EPOCH + ms * _MS
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")
