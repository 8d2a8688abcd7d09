"""InfluxDB through its v1-compatible HTTP API: line protocol on ``/write``, InfluxQL on ``/query``.

That dialect is accepted by InfluxDB 1.x, 2.x (virtual DBRP) and 3.x alike; no Flux anywhere.
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import orjson

from semon.store.telemetry import FieldValue, Point, TelemetryUnavailable

log = logging.getLogger(__name__)

# Line protocol has no escape for a line break, so a control character (C0, DEL, C1) in a tag
# or a measurement would end the line and corrupt the batch: each becomes an (escaped) space. A
# lone surrogate cannot be encoded as UTF-8 at all: it becomes U+FFFD. The registry import
# refuses such values; this is the guard for every other way a value can reach a tag.
_UNSAFE = {c: r"\ " for c in (*range(0x20), *range(0x7F, 0xA0))} | {c: "\ufffd" for c in range(0xD800, 0xE000)}
_TAG_ESCAPE = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\=", **_UNSAFE})
_MEAS_ESCAPE = str.maketrans({",": r"\,", " ": r"\ ", **_UNSAFE})
# InfluxDB reads a backslash at the end of a tag key or value as escaping the delimiter after it
# (1.x answers "invalid tag format" whatever the number of backslashes), so a trailing run of
# backslashes cannot be written as such: each becomes a FULLWIDTH REVERSE SOLIDUS (＼).
_TRAILING_BACKSLASHES = re.compile(r"\\+$")


# Most values need nothing: one regex scan decides, as translate() with the large table above is
# several times slower than the scan.
_NEEDS_ESCAPE = re.compile(r"[,= \\\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def escape_tag(v: str) -> str:
    """A tag key or value escaped for line protocol; no value can end the line or the tag set."""
    if _NEEDS_ESCAPE.search(v) is None:
        return v
    if v.endswith("\\"):
        v = _TRAILING_BACKSLASHES.sub(lambda m: "\uff3c" * len(m.group()), v)
    return v.translate(_TAG_ESCAPE)


def _field(v: FieldValue) -> str:
    # bool before int: bool is an int subclass in Python.
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v)
    return '"' + _esc_str(str(v)) + '"'


def _esc_str(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"') if ("\\" in v or '"' in v) else v


# The encoder runs for every point (tens of thousands a second at fleet scale), so what repeats
# is computed once: escaped field keys, each series' "measurement,tags" prefix, and a formatter
# per field set. The prefix is cached per (measurement, device) and valid while the point carries
# the *same* tags dict the entry was built from (the decoder reuses one dict per device and never
# changes it; the cache holds a reference, so the identity cannot be recycled). Anything else is
# encoded from scratch, as before.
_KEYS: dict[str, str] = {}
_PREFIXES: dict[tuple[str, str], tuple[dict[str, str], str]] = {}
PREFIX_CACHE_MAX = 2_000_000


def _prefix(p: Point) -> str:
    key = (p.measurement, p.device_id)
    c = _PREFIXES.get(key)
    if c is not None and c[0] is p.tags:
        return c[1]
    tags = "".join(f",{escape_tag(k)}={escape_tag(v)}" for k, v in sorted(p.tags.items()) if v != "")
    prefix = p.measurement.translate(_MEAS_ESCAPE) + tags
    if p.device_id:
        if len(_PREFIXES) >= PREFIX_CACHE_MAX:
            _PREFIXES.clear()
        _PREFIXES[key] = (p.tags, prefix)
    return prefix


def _key(k: str) -> str:
    ek = _KEYS.get(k)
    if ek is None:
        ek = escape_tag(k)
        if len(_KEYS) < 10_000:  # field names come from the contract: a handful
            _KEYS[k] = ek
    return ek


def _fields_generic(fields: dict[str, FieldValue]) -> str:
    return ",".join([f"{_key(k)}={_field(v)}" for k, v in fields.items()])


_TF = ("false", "true")
# Per value type: (literal before, f-string expression, literal after) of ``key=value``.
_FMT: dict[type, tuple[str, str, str]] = {
    float: ("", "{%s!r}", ""),
    int: ("", "{%s}", "i"),
    bool: ("", "{_TF[%s]}", ""),
    str: ('"', "{_esc(%s)}", '"'),
}
# Points of one kind share their field names and types (a status model): for each field-name
# tuple a formatter is generated once — one f-string for the whole field set — and used while
# the values have the types it was made for; any other point goes through the generic loop.
# None: no formatter for that field set (the generic loop serves it).
_SHAPED: dict[tuple[str, ...], Callable[[dict[str, FieldValue]], str | None] | None] = {}
SHAPES_MAX = 1000


def _literal(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _compile(keys: tuple[str, ...], types: tuple[type, ...]) -> Callable[[dict[str, FieldValue]], str | None] | None:
    if not keys or len(keys) > 64 or any(t not in _FMT for t in types):
        return None
    names = [f"v{i}" for i in range(len(keys))]
    parts = []
    for i, (k, t, n) in enumerate(zip(keys, types, names, strict=True)):
        before, expr, after = _FMT[t]
        key = ("," if i else "") + _key(k) + "="
        parts.append(_literal(key + before) + expr % n + _literal(after))
    checks = " and ".join(f"type({n}) is {t.__name__}" for n, t in zip(names, types, strict=True))
    body = "".join(parts)
    src = f"def enc(f):\n    {', '.join(names)}, = f.values()\n    if {checks}:\n        return f{body!r}\n"
    src += "    return None\n"
    ns: dict[str, object] = {"_TF": _TF, "_esc": _esc_str}
    exec(src, ns)  # source made of escaped field names and the fixed pieces above
    return ns["enc"]  # type: ignore[return-value]


def _fields(fields: dict[str, FieldValue]) -> str:
    keys = tuple(fields)
    try:
        fn = _SHAPED[keys]
    except KeyError:
        if len(_SHAPED) >= SHAPES_MAX:
            return _fields_generic(fields)
        fn = _SHAPED[keys] = _compile(keys, tuple(type(v) for v in fields.values()))
    out = fn(fields) if fn is not None else None
    return out if out is not None else _fields_generic(fields)


def encode_point(p: Point) -> str:
    """One line of line protocol (tags sorted, as InfluxDB recommends)."""
    return f"{_prefix(p)} {_fields(p.fields)} {p.time_ns}"


def encode_lines(points: Sequence[Point]) -> bytes:
    """A write body for ``points``."""
    return "\n".join([encode_point(p) for p in points]).encode()


def quote_ident(name: str) -> str:
    """InfluxQL identifier quoting."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    """InfluxQL string literal quoting."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# What :meth:`InfluxStore.encode` produces: line protocol, one point a line.
INFLUX_LINES = "influx-lines"


def _split(text: str, sep: str, limit: int = -1) -> list[str]:
    """``text`` split at each ``sep`` no backslash escapes (escapes kept)."""
    out, start, i, n = [], 0, 0, len(text)
    while i < n and limit != 0:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == sep:
            out.append(text[start:i])
            start = i + 1
            limit -= 1
        i += 1
    out.append(text[start:])
    return out


def _unescape(text: str) -> str:
    # Only ``,``, `` `` and ``=`` are escaped in names and tags; any other backslash is itself.
    return text.replace("\\,", ",").replace("\\ ", " ").replace("\\=", "=") if "\\" in text else text


def _value(raw: str) -> FieldValue:
    if raw.startswith('"'):
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if raw in ("true", "false"):
        return raw == "true"
    if raw.endswith("i"):
        return int(raw[:-1])
    return float(raw)


def decode_lines(body: bytes) -> list[Point]:
    """The points of a body :func:`encode_lines` wrote (the inverse, for a spool written for
    InfluxDB that is replayed into another store). Raises ValueError on anything else."""
    points = []
    for line in body.decode().split("\n"):
        if not line:
            continue
        series, i = _series_end(line)
        fields_part, _, ts = line[i + 1 :].rpartition(" ")
        name, *tag_parts = _split(series, ",")
        tags = {_unescape(k): _unescape(v) for k, v in (_split(t, "=", 1) for t in tag_parts)}
        fields: dict[str, FieldValue] = {}
        for pair in _field_pairs(fields_part):
            k, v = _split(pair, "=", 1)
            fields[_unescape(k)] = _value(v)
        points.append(Point(_unescape(name), tags, fields, int(ts), tags.get("device_id", "")))
    return points


def _series_end(line: str) -> tuple[str, int]:
    """The measurement-and-tags part of a line, and the index of the space after it."""
    i = 0
    while i < len(line):
        if line[i] == "\\":
            i += 2
            continue
        if line[i] == " ":
            return line[:i], i
        i += 1
    raise ValueError(f"not a line-protocol line: {line[:80]!r}")


def _field_pairs(text: str) -> list[str]:
    """``k=v,k="a,b"`` → its pairs: commas inside a quoted string value do not split."""
    out, start, i, quoted = [], 0, 0, False
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            out.append(text[start:i])
            start = i + 1
        i += 1
    out.append(text[start:])
    return out


class InfluxError(RuntimeError):
    """InfluxDB answered a query with an error."""


class InfluxStore:
    """Telemetry store on InfluxDB's v1 HTTP API."""

    #: httpx.Client is thread-safe: the collector may write from several threads at once.
    concurrent_writes = True
    encoding = INFLUX_LINES

    def __init__(self, url: str, db: str, token: str | None = None, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.db = db
        headers = {"Authorization": f"Token {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout_s)

    # -- writing -------------------------------------------------------------------------
    def write(self, points: Sequence[Point]) -> None:
        """Encode and write ``points``."""
        if points:
            self.write_encoded(encode_lines(points))

    def encode(self, points: Sequence[Point]) -> bytes:
        """Line protocol for ``points``."""
        return encode_lines(points)

    def write_encoded(self, body: bytes) -> list[tuple[bytes, str]]:
        """Write a line-protocol body; lines InfluxDB refuses (HTTP 400) are returned, not retried.

        A refused line (a field type conflict, say) would block the stream forever if retried,
        so the batch is bisected to find exactly the refused lines; the caller dead-letters them.
        """
        try:
            self.write_lines(body)
            return []
        except InfluxBadRequest as e:
            lines = body.split(b"\n")
            if len(lines) == 1:
                return [(body, str(e))]
            mid = len(lines) // 2
            return self.write_encoded(b"\n".join(lines[:mid])) + self.write_encoded(b"\n".join(lines[mid:]))

    def write_lines(self, body: bytes) -> None:
        """POST a line-protocol body (gzip); 2xx means InfluxDB has it durably in its WAL.

        A fresh InfluxDB 1.x has no database: the first write that meets 404 "database not
        found" creates it (:meth:`ensure_database`) and is sent once more, so whichever writes
        first (collector, registry import, board sync) needs no setup step of its own.
        """
        gz = gzip.compress(body, 1)
        r = self._post_write(gz)
        if r.status_code == 404 and "database not found" in r.text:
            self.ensure_database()
            r = self._post_write(gz)
        if r.status_code == 204 or r.status_code == 200:
            return
        if r.status_code == 400:
            # A point InfluxDB refuses (field type conflict…) would block the stream forever if
            # retried; the collector turns it into dead letters instead.
            raise InfluxBadRequest(r.text[:500])
        raise TelemetryUnavailable(f"InfluxDB write answered {r.status_code}: {r.text[:300]}")

    def _post_write(self, gz: bytes) -> httpx.Response:
        try:
            return self._http.post(
                "/write",
                params={"db": self.db, "precision": "ns"},
                content=gz,
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
            )
        except httpx.HTTPError as e:
            raise TelemetryUnavailable(f"InfluxDB write failed: {e.__class__.__name__}: {e}") from e

    # -- querying ------------------------------------------------------------------------
    def influxql(self, q: str, *, method: str = "GET") -> list[dict[str, Any]]:
        """Run InfluxQL; return the ``series`` of the first statement (epoch ms times)."""
        params = {"db": self.db, "q": q, "epoch": "ms"}
        try:
            r = self._http.request(method, "/query", params=params)
        except httpx.HTTPError as e:
            raise TelemetryUnavailable(f"InfluxDB query failed: {e}") from e
        if r.status_code >= 500:
            raise TelemetryUnavailable(f"InfluxDB query answered {r.status_code}: {r.text[:300]}")
        data = orjson.loads(r.content)
        if "error" in data:
            raise InfluxError(data["error"])
        results = data.get("results") or [{}]
        if "error" in results[0]:
            raise InfluxError(results[0]["error"])
        return results[0].get("series", [])

    def rows(self, q: str) -> list[dict[str, FieldValue]]:
        """InfluxQL result flattened to dicts (tags merged in)."""
        out: list[dict[str, FieldValue]] = []
        for s in self.influxql(q):
            cols = s["columns"]
            tags = s.get("tags", {})
            for v in s["values"]:
                row = dict(zip(cols, v, strict=True))
                row.update(tags)
                out.append(row)
        return out

    def ensure_database(self) -> None:
        """``CREATE DATABASE`` on 1.x (idempotent); on 2.x/3.x the bucket/DBRP is provisioned outside.

        The one place the database is created: the collector calls it at start, and
        :meth:`write_lines` calls it when a write meets a missing database.
        """
        try:
            self.influxql(f"CREATE DATABASE {quote_ident(self.db)}", method="POST")
        except (InfluxError, TelemetryUnavailable, orjson.JSONDecodeError) as e:
            log.info("CREATE DATABASE not applied (%s); assuming the bucket exists", e)

    def latest(self, measurement: str, device_id: str) -> dict[str, FieldValue] | None:
        """Newest row of a device."""
        rows = self.rows(
            f"SELECT * FROM {quote_ident(measurement)} WHERE device_id = {quote_str(device_id)} "
            "ORDER BY time DESC LIMIT 1"
        )
        return rows[0] if rows else None

    def query(
        self, measurement: str, device_id: str, start_ms: int, end_ms: int, limit: int = 10_000
    ) -> list[dict[str, FieldValue]]:
        """Rows of a device in a time range."""
        return self.rows(
            f"SELECT * FROM {quote_ident(measurement)} WHERE device_id = {quote_str(device_id)} "
            f"AND time >= {int(start_ms)}ms AND time < {int(end_ms)}ms ORDER BY time ASC LIMIT {int(limit)}"
        )

    def ping(self) -> bool:
        """``/ping`` answers 204 on every InfluxDB version."""
        try:
            return self._http.get("/ping").status_code in (200, 204)
        except httpx.HTTPError:
            return False

    def close(self) -> None:
        """Close the HTTP client."""
        self._http.close()


class InfluxBadRequest(ValueError):
    """InfluxDB rejected the body as invalid (HTTP 400): retrying would not help."""
