"""Alert channels firms use beside webhooks: WeCom and DingTalk group robots, e-mail, SMS.

Each is a kind of outbox target (docs/alerts.md, "Channels"): same claim, retry, backoff,
dedupe and dead state as a webhook; only the request differs (one module per service).
"""

from __future__ import annotations

from semon.notify.channels import dingtalk, email, sms, wecom
from semon.notify.channels.base import Channel, DeliveryFailed, SendContext

CHANNELS: dict[str, Channel] = {c.kind: c for c in (wecom.CHANNEL, dingtalk.CHANNEL, email.CHANNEL, sms.CHANNEL)}

__all__ = ["CHANNELS", "Channel", "DeliveryFailed", "SendContext"]
