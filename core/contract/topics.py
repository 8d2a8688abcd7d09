"""MQTT topic layout of contract v1.

``semon/v1/{kind}/{device_id}/{status|event|online}`` from devices and
``semon/v1/alarms/{firm_id}/{device_id}`` for alarm transitions going out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "semon/v1"
KINDS = ("elevator", "vessel")
CHANNELS = ("status", "event", "online")
# Device ids end up in topics, InfluxDB tags and URLs: keep them to a safe alphabet.
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")

# The pipeline canary (docs/alerts.md): a checker publishes pings, every collector answers each
# one it took through its pipeline with an echo (a level deeper, so collectors never read echoes).
CANARY_PINGS = f"{PREFIX}/canary/+/ping"

SUBSCRIPTIONS = (*(f"{PREFIX}/{k}/+/{c}" for k in KINDS for c in CHANNELS), CANARY_PINGS)


class TopicError(ValueError):
    """The topic is not part of contract v1."""


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What a device topic says: equipment kind, device id and channel."""

    kind: str
    device_id: str
    channel: str


def parse_topic(topic: str) -> TopicInfo:
    """Split a device topic, or raise :class:`TopicError` with the reason."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "semon" or parts[1] != "v1":
        raise TopicError(f"topic {topic!r} is not semon/v1/{{kind}}/{{device_id}}/{{channel}}")
    _, _, kind, device_id, channel = parts
    if kind not in KINDS:
        raise TopicError(f"unknown equipment kind {kind!r} (expected one of {', '.join(KINDS)})")
    if channel not in CHANNELS:
        raise TopicError(f"unknown channel {channel!r} (expected one of {', '.join(CHANNELS)})")
    if not DEVICE_ID_RE.fullmatch(device_id):
        raise TopicError(f"device id {device_id!r} has characters outside [A-Za-z0-9_.-] or is too long")
    return TopicInfo(kind, device_id, channel)


def device_topic(kind: str, device_id: str, channel: str) -> str:
    """Topic a device publishes on."""
    return f"{PREFIX}/{kind}/{device_id}/{channel}"


def alarm_topic(firm_id: str | None, device_id: str) -> str:
    """Topic an alarm transition is published on (``_`` when the device has no firm)."""
    return f"{PREFIX}/alarms/{firm_id or '_'}/{device_id}"


def canary_ping_topic(checker: str) -> str:
    """Topic a canary checker publishes its pings on."""
    return f"{PREFIX}/canary/{checker}/ping"


def canary_echo_topic(checker: str, collector: str) -> str:
    """Topic a collector answers a checker's ping on."""
    return f"{PREFIX}/canary/{checker}/echo/{collector}"


def canary_checker(topic: str) -> str | None:
    """The checker a canary ping topic belongs to; None for any other topic."""
    parts = topic.split("/")
    if len(parts) == 5 and parts[2] == "canary" and parts[4] == "ping" and f"{parts[0]}/{parts[1]}" == PREFIX:
        return parts[3]
    return None
