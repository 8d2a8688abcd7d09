"""Message texts of the channels (WeCom, DingTalk, e-mail, SMS): Chinese first, English second.

Built once per transition × channel when the outbox row is written (the row's payload), so every
retry sends the same words. Times are China Standard Time clock times (Asia/Shanghai): that is
what a dispatcher reads on the wall.
"""

from __future__ import annotations

from typing import Any

from semon.i18n import messages
from semon.timeutil import DEFAULT_TIMEZONE, to_local


def _zh(key: str, fallback: str) -> str:
    """The Chinese text of ``key`` from the one catalog of names people read (semon.i18n)."""
    return messages("zh-CN").get(key, fallback)


def local_time(ts_ms: int, tz: str = DEFAULT_TIMEZONE) -> str:
    """``2024-05-01 16:00:00`` in ``tz`` (default Asia/Shanghai) for a UTC instant in milliseconds."""
    return to_local(ts_ms, tz).strftime("%Y-%m-%d %H:%M:%S")


def alert_text(msg: dict[str, Any], address: str | None) -> dict[str, Any]:
    """The words of one transition (an alarm message, schemas/alarm.json) for a channel.

    Returns ``title``, ``text`` (several lines) and ``params`` (short values for an SMS template).
    """
    atype = str(msg.get("type") or "")
    type_zh = _zh(f"alarm_type.{atype}", atype)
    sev = str(msg.get("severity") or "")
    event = str(msg.get("event") or "")
    sev_zh, event_zh = _zh(f"severity.{sev}", sev), _zh(f"event.{event}", event)
    when = local_time(int(msg.get("ts") or msg.get("start_ts") or 0))
    device = str(msg.get("device_id") or "")
    where = address or "—"
    title = f"【{sev_zh}】{type_zh}{event_zh} {device}"
    lines = [
        f"{title} ({sev} {atype.replace('_', ' ')} {event})",
        f"设备 Device: {device}",
        f"地址 Address: {where}",
        f"时间 Time: {when} 北京时间 (CST)",
        f"级别 Severity: {sev_zh} {sev}",
    ]
    if msg.get("message"):
        lines.append(f"详情 Details: {msg['message']}")
    lines.append(f"告警编号 Alarm: {msg.get('alarm_id')} · 事件 Event: {msg.get('event_id')}")
    # SMS template variables are limited in length (Aliyun: 35 characters each, docs/alerts.md).
    params = {
        "type": type_zh[:35], "device": device[:35], "address": where[:35], "time": when,
        "level": sev_zh, "event": event_zh,
    }  # fmt: skip
    return {"title": title, "text": "\n".join(lines), "params": params, "event_id": msg.get("event_id"),
            "event": event, "severity": sev}  # fmt: skip
