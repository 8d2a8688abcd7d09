"""Message texts of the channels (WeCom, DingTalk, e-mail, SMS): Chinese first, English second.

Built once per transition × channel when the outbox row is written (the row's payload), so every
retry sends the same words. Times are China Standard Time clock times (Asia/Shanghai): that is
what a dispatcher reads on the wall.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

CST = ZoneInfo("Asia/Shanghai")

# Chinese names of the alarm types of the rule and code catalogs (rules/data/*.toml) and of the
# platform's own alarms; an unknown type is shown by its id.
ALARM_TYPE_ZH = {
    "trapped_passenger": "困人", "door_open_while_moving": "开门走车", "overspeed": "超速",
    "overshoot_top": "冲顶", "bottom_strike": "蹲底", "stopped_outside_door_zone": "非平层停梯",
    "door_fault": "门故障", "repeated_door_cycling": "反复开关门", "safety_circuit_open": "安全回路断路",
    "power_lost": "停电", "alarm_button": "报警按钮", "run_time_anomaly": "运行时间异常",
    "unintended_car_movement": "轿厢意外移动", "floor_position_lost": "楼层位置丢失", "blocking_fault": "门锁回路故障",
    "overpressure": "超压", "pressure_rise_rate": "压力骤升", "over_temperature": "超温", "gas_leak": "气体泄漏",
    "level_out_of_band": "液位越限", "sensor_out_of_range": "传感器超量程", "sensor_stuck": "传感器卡滞",
    "offline": "终端离线", "monitoring_degraded": "监测链路中断",
}  # fmt: skip
SEVERITY_ZH = {"critical": "紧急", "major": "重要", "minor": "次要", "warning": "提示"}
EVENT_ZH = {
    "raised": "告警", "cleared": "已恢复", "acknowledged": "已确认", "escalated": "已上报监管",
    "severity_changed": "级别变化", "assigned": "已指派", "comment": "新备注", "dispatched": "已派人",
    "arrived": "已到场", "released": "已解救",
}  # fmt: skip


def local_time(ts_ms: int) -> str:
    """``2024-05-01 16:00:00`` in Asia/Shanghai for a UTC instant in milliseconds."""
    return datetime.fromtimestamp(ts_ms / 1000, CST).strftime("%Y-%m-%d %H:%M:%S")


def alert_text(msg: dict[str, Any], address: str | None) -> dict[str, Any]:
    """The words of one transition (an alarm message, schemas/alarm.json) for a channel.

    Returns ``title``, ``text`` (several lines) and ``params`` (short values for an SMS template).
    """
    atype = str(msg.get("type") or "")
    type_zh = ALARM_TYPE_ZH.get(atype, atype)
    sev = str(msg.get("severity") or "")
    event = str(msg.get("event") or "")
    when = local_time(int(msg.get("ts") or msg.get("start_ts") or 0))
    device = str(msg.get("device_id") or "")
    where = address or "—"
    title = f"【{SEVERITY_ZH.get(sev, sev)}】{type_zh}{EVENT_ZH.get(event, event)} {device}"
    lines = [
        f"{title} ({sev} {atype.replace('_', ' ')} {event})",
        f"设备 Device: {device}",
        f"地址 Address: {where}",
        f"时间 Time: {when} 北京时间 (CST)",
        f"级别 Severity: {SEVERITY_ZH.get(sev, sev)} {sev}",
    ]
    if msg.get("message"):
        lines.append(f"详情 Details: {msg['message']}")
    lines.append(f"告警编号 Alarm: {msg.get('alarm_id')} · 事件 Event: {msg.get('event_id')}")
    # SMS template variables are limited in length (Aliyun: 35 characters each, docs/alerts.md).
    params = {
        "type": type_zh[:35], "device": device[:35], "address": where[:35], "time": when,
        "level": SEVERITY_ZH.get(sev, sev), "event": EVENT_ZH.get(event, event),
    }  # fmt: skip
    return {"title": title, "text": "\n".join(lines), "params": params, "event_id": msg.get("event_id"),
            "event": event, "severity": sev}  # fmt: skip
