"""Refuse text no store can keep: NUL and other C0 control characters, and lone surrogates, in
the path, the query or any string of a JSON body → 422 problem details.

PostgreSQL cannot store U+0000 in ``text`` nor encode a lone surrogate, so such a value used to
reach the driver and come back as a 500; one check here, before routing, covers every route.
Tab, line feed and carriage return are allowed in JSON bodies (notes, comments may have lines)
but not in the path or the query, where no identifier or filter can mean them.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semon.api.problems import send_problem

_C0 = "\x00-\x08\x0b\x0c\x0e-\x1f"
_BAD_IN_BODY = re.compile(f"[{_C0}\ud800-\udfff]")
_BAD_IN_URL = re.compile(f"[{_C0}\t\n\r\ud800-\udfff]")


def _why(ch: str) -> str:
    kind = "a lone surrogate" if "\ud800" <= ch <= "\udfff" else "a control character"
    return f"contains {kind} (U+{ord(ch):04X}), which is not allowed in text"


def _first_bad_string(value: Any, loc: list[str | int]) -> tuple[list[str | int], str] | None:
    """Location and reason of the first string (key or value) with a forbidden character."""
    if isinstance(value, str):
        m = _BAD_IN_BODY.search(value)
        return (loc, _why(m.group())) if m else None
    if isinstance(value, dict):
        for k, v in value.items():
            m = _BAD_IN_BODY.search(k)
            if m:
                return [*loc, k], _why(m.group())
            found = _first_bad_string(v, [*loc, k])
            if found:
                return found
    if isinstance(value, list):
        for i, v in enumerate(value):
            found = _first_bad_string(v, [*loc, i])
            if found:
                return found
    return None


def _is_json(scope: Scope) -> bool:
    ctype = dict(scope.get("headers", [])).get(b"content-type", b"").split(b";")[0].strip().lower()
    return ctype == b"application/json" or ctype.endswith(b"+json")


class TextGuardMiddleware:
    """The check, as ASGI middleware; JSON bodies are read whole (inside the body-size limit)
    and replayed to the route unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bad = self._url_problem(scope)
        if bad is None and _is_json(scope):
            body, more = b"", True
            messages: list[Message] = []
            while more:
                msg = await receive()
                messages.append(msg)
                if msg["type"] != "http.request":
                    break
                body += msg.get("body", b"")
                more = msg.get("more_body", False)
            bad = self._body_problem(body)
            replay = iter(messages)

            async def replayed() -> Message:
                return next(replay, None) or await receive()

            receive = replayed
        if bad is not None:
            loc, why = bad
            where = ".".join(map(str, loc))
            await send_problem(
                scope, send, 422, f"{where}: {why}", slug="validation-error", title="Request validation failed",
                extra={"errors": [{"loc": loc, "msg": why, "type": "invalid_character"}]},
            )  # fmt: skip
            return
        await self.app(scope, receive, send)

    @staticmethod
    def _url_problem(scope: Scope) -> tuple[list[str | int], str] | None:
        m = _BAD_IN_URL.search(scope.get("path", ""))
        if m:
            return ["path"], _why(m.group())
        query = scope.get("query_string", b"").decode("latin-1")
        for name, value in parse_qsl(query, keep_blank_values=True, errors="surrogateescape"):
            for text in (name, value):
                m = _BAD_IN_URL.search(text)
                if m:
                    return ["query", name], _why(m.group())
        return None

    @staticmethod
    def _body_problem(body: bytes) -> tuple[list[str | int], str] | None:
        try:
            doc = json.loads(body)
        except ValueError:
            return None  # not JSON: the route's own parsing answers (400 / 422)
        return _first_bad_string(doc, ["body"])
