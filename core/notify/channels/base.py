"""What every channel is: settings and credentials models, a default address, one ``send``.

A channel is a kind of outbox target (a ``webhooks`` row with ``kind`` ≠ ``webhook``): the
dispatcher claims its deliveries, retries them with backoff and marks them dead exactly like a
webhook's. ``send`` raises :class:`DeliveryFailed` for anything but an accepted message — an
HTTP error, or a 200 whose JSON says the service refused it (WeCom/DingTalk ``errcode != 0``,
Aliyun ``Code != "OK"``) — so the outbox retries it.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from pydantic import BaseModel

from semon.notify.targets import TargetPolicy


class DeliveryFailed(Exception):
    """The service did not take the message (retried by the outbox)."""

    def __init__(self, error: str, status_code: int | None = None) -> None:
        super().__init__(error)
        self.status_code = status_code


@dataclass(slots=True)
class SendContext:
    """What a channel needs to send: the dispatcher's HTTP client, the target policy, timeouts."""

    http: httpx.Client
    policy: TargetPolicy
    timeout_s: float
    ca_file: str | None = None
    clock: Callable[[], float] = field(default=time.time)

    def tls(self) -> ssl.SSLContext:
        """The TLS context of this context's CA file (:func:`tls_context`)."""
        return tls_context(self.ca_file)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Certificate-checking TLS context: system CAs plus ``SEMON_NOTIFY_CA_FILE``."""
    ctx = ssl.create_default_context()
    if ca_file:
        try:
            ctx.load_verify_locations(ca_file)
        except (OSError, ssl.SSLError) as e:
            raise ValueError(f"SEMON_NOTIFY_CA_FILE: cannot load {ca_file}: {e}") from e
    return ctx


Sender = Callable[[SendContext, str, dict[str, Any], dict[str, Any], dict[str, Any]], int | None]


@dataclass(frozen=True, slots=True)
class Channel:
    """One kind of channel: ``send(ctx, url, credentials, settings, text)`` → status code."""

    kind: str
    title: str
    settings: type[BaseModel]
    credentials: type[BaseModel]
    default_url: str | None
    send: Sender


def json_reply(resp: httpx.Response, ok: Callable[[dict[str, Any]], bool]) -> int:
    """The status code of an accepted reply; :class:`DeliveryFailed` for an HTTP error or a JSON
    body that reports one."""
    if not 200 <= resp.status_code < 300:
        raise DeliveryFailed(f"HTTP {resp.status_code}: {resp.text[:300]}", resp.status_code)
    try:
        body = resp.json()
    except ValueError as e:
        raise DeliveryFailed(f"HTTP {resp.status_code}: not JSON: {resp.text[:200]}", resp.status_code) from e
    if not isinstance(body, dict) or not ok(body):
        raise DeliveryFailed(f"refused: {str(body)[:300]}", resp.status_code)
    return resp.status_code
