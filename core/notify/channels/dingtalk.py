"""DingTalk (钉钉) custom robot: ``POST …/robot/send?access_token=…`` with a JSON message, in
its signed mode when the robot has a 加签 secret.

Per DingTalk's open-platform docs, 自定义机器人安全设置 / 自定义机器人发送群消息
(https://open.dingtalk.com/document/robots/customize-robot-security-settings): ``timestamp``
is the current time in milliseconds and ``sign`` = URL-encoded base64 of HMAC-SHA256 with the
secret as key over ``f"{timestamp}\\n{secret}"``; DingTalk refuses a timestamp more than an hour
off. Body ``{"msgtype": "text", "text": {"content": …}, "at": {"atMobiles": […], "isAtAll":
false}}``; the reply is ``{"errcode": 0, "errmsg": "ok"}`` (e.g. 310000 = bad signature).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from semon.notify.channels.base import Channel, SendContext, json_reply
from semon.notify.targets import post_pinned, resolve

URL = "https://oapi.dingtalk.com/robot/send"


class DingTalkSettings(BaseModel):
    """Who is @-mentioned in the group."""

    model_config = ConfigDict(extra="forbid")
    at_mobiles: list[str] = Field(default_factory=list, max_length=50, description="@ these phone numbers")


class DingTalkCredentials(BaseModel):
    """The robot's ``access_token`` and, for the signed mode, its ``SEC…`` secret."""

    model_config = ConfigDict(extra="forbid")
    access_token: str = Field(min_length=8, max_length=200)
    secret: str | None = Field(None, min_length=8, max_length=200, description="加签 secret (SEC…)")


def sign(secret: str, timestamp_ms: int) -> str:
    """base64 of HMAC-SHA256(secret, ``"{timestamp}\\n{secret}"``) — URL-encoded by the query."""
    mac = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode()


def send(ctx: SendContext, url: str, creds: dict[str, Any], settings: dict[str, Any], text: dict[str, Any]) -> int:
    """Post one message; the status code when DingTalk took it."""
    mobiles = list(settings.get("at_mobiles") or [])
    # DingTalk @-mentions only numbers that also appear in the text.
    content = text["text"] + ("\n" + " ".join(f"@{m}" for m in mobiles) if mobiles else "")
    body = {"msgtype": "text", "text": {"content": content}, "at": {"atMobiles": mobiles, "isAtAll": False}}
    params = {"access_token": creds["access_token"]}
    if creds.get("secret"):
        ts = int(ctx.clock() * 1000)
        params |= {"timestamp": str(ts), "sign": sign(creds["secret"], ts)}
    p = resolve(url, ctx.policy)
    resp = post_pinned(ctx.http, p, content=orjson.dumps(body), headers={"Content-Type": "application/json"},
                       params=params)  # fmt: skip
    return json_reply(resp, lambda b: b.get("errcode") == 0)


CHANNEL = Channel("dingtalk", "钉钉自定义机器人 DingTalk robot", DingTalkSettings, DingTalkCredentials, URL, send)
