"""SMS through a provider; one real provider format: Aliyun SMS (Dysmsapi ``SendSms``).

A provider is a function ``(ctx, url, credentials, settings, params) -> status``; the channel
picks it by ``settings.provider``. Messages go through a template registered and approved at the
provider beforehand (Chinese SMS rules): semon fills its variables ``${type}``, ``${device}``,
``${address}``, ``${time}``, ``${level}``, ``${event}`` (docs/alerts.md).

Aliyun's RPC-style request with signature v1, per Alibaba Cloud's docs (SendSms,
https://help.aliyun.com/zh/sms/developer-reference/api-dysmsapi-2017-05-25-sendsms, and RPC
签名机制, https://help.aliyun.com/zh/sdk/product-overview/rpc-mechanism): the common parameters
``AccessKeyId, Action=SendSms, Format=JSON, RegionId, SignatureMethod=HMAC-SHA1,
SignatureNonce, SignatureVersion=1.0, Timestamp (UTC yyyy-MM-ddTHH:mm:ssZ), Version=2017-05-25``
plus ``PhoneNumbers, SignName, TemplateCode, TemplateParam`` (JSON); the canonicalized query
is the parameters sorted by name, names and values percent-encoded (RFC 3986: unreserved
``A-Za-z0-9-_.~`` kept, space as ``%20``) and joined with ``&``; ``StringToSign = "GET&%2F&" +
percentEncode(canonicalized)``; ``Signature = base64(HMAC-SHA1(AccessKeySecret + "&",
StringToSign))``. The reply is JSON with ``"Code": "OK"`` on success (anything else, e.g.
``isv.BUSINESS_LIMIT_CONTROL``, is a failure to retry).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote

import orjson
from pydantic import BaseModel, ConfigDict, Field

from semon.notify.channels.base import Channel, DeliveryFailed, SendContext, json_reply
from semon.notify.targets import get_pinned, resolve

ALIYUN_URL = "https://dysmsapi.aliyuncs.com/"


class SmsSettings(BaseModel):
    """Provider, account id, signature name, template and the numbers to text."""

    model_config = ConfigDict(extra="forbid")
    provider: Literal["aliyun"] = "aliyun"
    access_key_id: str = Field(min_length=4, max_length=128)
    sign_name: str = Field(min_length=1, max_length=64, description="短信签名, e.g. 某某维保")
    template_code: str = Field(min_length=1, max_length=64, description="approved template, e.g. SMS_123456789")
    phone_numbers: list[str] = Field(min_length=1, max_length=1000, description="mainland numbers")
    region_id: str = Field("cn-hangzhou", max_length=32)


class SmsCredentials(BaseModel):
    """The provider's secret (Aliyun AccessKey Secret)."""

    model_config = ConfigDict(extra="forbid")
    access_key_secret: str = Field(min_length=8, max_length=200)


def percent_encode(s: str) -> str:
    """RFC 3986 encoding as Aliyun's signature wants it (``~`` kept, space ``%20``)."""
    return quote(s, safe="-_.~")


def aliyun_signature(secret: str, params: dict[str, str], method: str = "GET") -> str:
    """Signature v1 of an RPC request's parameters (without ``Signature`` itself)."""
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    to_sign = f"{method}&{percent_encode('/')}&{percent_encode(canonical)}"
    return base64.b64encode(hmac.new(f"{secret}&".encode(), to_sign.encode(), hashlib.sha1).digest()).decode()


def send_aliyun(ctx: SendContext, url: str, creds: dict[str, Any], s: dict[str, Any], values: dict[str, Any]) -> int:
    """One ``SendSms`` call to every configured number (comma-separated, as the API takes them)."""
    params = {
        "AccessKeyId": s["access_key_id"], "Action": "SendSms", "Format": "JSON", "RegionId": s.get("region_id") or
        "cn-hangzhou", "SignatureMethod": "HMAC-SHA1", "SignatureNonce": uuid.uuid4().hex, "SignatureVersion": "1.0",
        "Timestamp": datetime.fromtimestamp(ctx.clock(), UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "Version": "2017-05-25", "PhoneNumbers": ",".join(s["phone_numbers"]), "SignName": s["sign_name"],
        "TemplateCode": s["template_code"], "TemplateParam": orjson.dumps(values).decode(),
    }  # fmt: skip
    params["Signature"] = aliyun_signature(creds["access_key_secret"], params)
    resp = get_pinned(ctx.http, resolve(url, ctx.policy), params=params)
    return json_reply(resp, lambda b: b.get("Code") == "OK")


PROVIDERS: dict[str, Callable[..., int]] = {"aliyun": send_aliyun}


def send(ctx: SendContext, url: str, creds: dict[str, Any], settings: dict[str, Any], text: dict[str, Any]) -> int:
    """Text the transition through the configured provider."""
    provider = PROVIDERS.get(settings.get("provider", "aliyun"))
    if provider is None:
        raise DeliveryFailed(f"unknown SMS provider {settings.get('provider')!r}")
    return provider(ctx, url, creds, settings, text["params"])


CHANNEL = Channel("sms", "短信 SMS (Aliyun)", SmsSettings, SmsCredentials, ALIYUN_URL, send)
