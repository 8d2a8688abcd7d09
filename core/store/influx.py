"""InfluxDB through its v1-compatible HTTP API: line protocol on ``/write``, InfluxQL on ``/query``.

That dialect is accepted by InfluxDB 1.x, 2.x (virtual DBRP) and 3.x alike; no Flux anywhere.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Sequence
from typing import Any

import httpx
import orjson

from semon.store.telemetry import FieldValue, Point, TelemetryUnavailable

log = logging.getLogger(__name__)

_TAG_ESCAPE = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
_MEAS_ESCAPE = str.maketrans({",": r"\,", " ": r"\ "})


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
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def encode_point(p: Point) -> str:
    """One line of line protocol (tags sorted, as InfluxDB recommends)."""
    tags = "".join(
        f",{k.translate(_TAG_ESCAPE)}={v.translate(_TAG_ESCAPE)}" for k, v in sorted(p.tags.items()) if v != ""
    )
    fields = ",".join(f"{k.translate(_TAG_ESCAPE)}={_field(v)}" for k, v in p.fields.items())
    return f"{p.measurement.translate(_MEAS_ESCAPE)}{tags} {fields} {p.time_ns}"


def encode_lines(points: Sequence[Point]) -> bytes:
    """A write body for ``points``."""
    return "\n".join(encode_point(p) for p in points).encode()


def quote_ident(name: str) -> str:
    """InfluxQL identifier quoting."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    """InfluxQL string literal quoting."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxError(RuntimeError):
    """InfluxDB answered a query with an error."""


class InfluxStore:
    """Telemetry store on InfluxDB's v1 HTTP API."""

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
        """POST a line-protocol body (gzip); 2xx means InfluxDB has it durably in its WAL."""
        try:
            r = self._http.post(
                "/write",
                params={"db": self.db, "precision": "ns"},
                content=gzip.compress(body, 1),
                headers={"Content-Encoding": "gzip", "Content-Type": "text/plain; charset=utf-8"},
            )
        except httpx.HTTPError as e:
            raise TelemetryUnavailable(f"InfluxDB write failed: {e.__class__.__name__}: {e}") from e
        if r.status_code == 204 or r.status_code == 200:
            return
        if r.status_code == 400:
            # A point InfluxDB refuses (field type conflict…) would block the stream forever if
            # retried; the collector turns it into dead letters instead.
            raise InfluxBadRequest(r.text[:500])
        raise TelemetryUnavailable(f"InfluxDB write answered {r.status_code}: {r.text[:300]}")

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
        """``CREATE DATABASE`` on 1.x; on 2.x/3.x the bucket/DBRP is provisioned outside."""
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
