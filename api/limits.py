"""Request size limit: bodies over ``SEMON_API_MAX_BODY_BYTES`` are refused with 413."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semon.api.problems import send_problem


class BodyLimitMiddleware:
    """Refuses by ``Content-Length`` up front, and stops chunked bodies once they pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, send: Send) -> None:
        await send_problem(
            scope, send, 413, f"request bodies are limited to {self.max_bytes} bytes", slug="payload-too-large",
            title="Payload too large",
        )  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(scope, send)
            return
        seen = 0
        too_big = False

        async def counted() -> Message:
            nonlocal seen, too_big
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    too_big = True
                    return {"type": "http.disconnect"}
            return msg

        started = False

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if too_big and not started:
                return  # the app saw a disconnect; our 413 goes out below
            started = started or msg["type"] == "http.response.start"
            await send(msg)

        await self.app(scope, counted, guarded_send)
        if too_big and not started:
            await self._refuse(scope, send)
