"""The one place an MQTT client is made: broker URL (``mqtt://`` or ``mqtts://``), TLS files
and credentials → a configured paho client.

Every semon process that talks to the broker — collector, canary, maintenance notices,
simulators — builds its client here, so TLS (docs/tls.md) works for all of them or for none.
The server name is always checked against the broker's certificate: a terminal on 4G must
not hand its data to whoever answers on the address, and there is deliberately no switch to
turn that off (use a certificate whose SAN names the host the clients dial).
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from semon.errors import ConfigError

PLAIN_SCHEMES = ("mqtt", "tcp")
TLS_SCHEMES = ("mqtts", "ssl")
DEFAULT_PORTS = {"mqtt": 1883, "tcp": 1883, "mqtts": 8883, "ssl": 8883}

C = TypeVar("C", bound=mqtt.Client)


@dataclass(frozen=True)
class MqttTarget:
    """Where the broker is and how to reach it; ``tls`` is None for plain TCP."""

    host: str
    port: int
    tls: TlsFiles | None = None
    username: str | None = None
    password: str | None = None

    @property
    def url(self) -> str:
        """``mqtt[s]://host:port`` (no credentials)."""
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of a TLS connection: the CA bundle that signed the broker's certificate
    (None = the system's trust store) and an optional client certificate and key."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # The setting names the files came from, so an error names what the operator must fix.
    names: tuple[str, str, str] = ("SEMON_MQTT_CA_FILE", "SEMON_MQTT_CERT_FILE", "SEMON_MQTT_KEY_FILE")

    def context(self) -> ssl.SSLContext:
        """A client context: TLS 1.2+, certificate and server name verified; ConfigError on a
        missing or unreadable file."""
        ca_name, cert_name, key_name = self.names
        for name, path in ((ca_name, self.ca_file), (cert_name, self.cert_file), (key_name, self.key_file)):
            if path is not None and not Path(path).is_file():
                raise ConfigError(name, f"file {path} not found (a PEM file; docs/tls.md)")
        if self.key_file is not None and self.cert_file is None:
            raise ConfigError(cert_name, f"{key_name} is set but no client certificate; set both or neither")
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
        except (ssl.SSLError, OSError) as e:
            raise ConfigError(ca_name, f"cannot load CA certificates from {self.ca_file}: {e}") from e
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = True  # create_default_context does; stated so no edit can lose it
        ctx.verify_mode = ssl.CERT_REQUIRED
        if self.cert_file is not None:
            try:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
            except (ssl.SSLError, OSError) as e:
                raise ConfigError(cert_name, f"cannot load client certificate / key: {e}") from e
        return ctx


def parse_target(
    url: str,
    tls: TlsFiles | None = None,
    *,
    username: str | None = None,
    password: str | None = None,
    setting: str = "SEMON_MQTT_URL",
) -> MqttTarget:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]`` (``tcp://`` / ``ssl://`` too; a bare
    ``host:port`` is plain MQTT). ``tls`` gives the files of an ``mqtts`` URL (default: system
    CAs, no client certificate); they are refused on a plain URL, which would ignore them."""
    u = urlparse(url if "://" in url else f"mqtt://{url}")
    scheme = u.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ConfigError(setting, f"unsupported scheme {u.scheme!r} in {url!r} (use mqtt://host:1883 or mqtts://host:8883)")
    try:
        port = u.port or DEFAULT_PORTS[scheme]
    except ValueError as e:
        raise ConfigError(setting, f"bad port in {url!r}: {e}") from e
    if not u.hostname:
        raise ConfigError(setting, f"no host in {url!r} (use mqtt://host:port)")
    secure = scheme in TLS_SCHEMES
    if not secure and tls is not None and (tls.ca_file or tls.cert_file or tls.key_file):
        raise ConfigError(setting, f"{url!r} is plain MQTT but TLS files are set; use mqtts://{u.hostname}:8883")
    files = (tls or TlsFiles()) if secure else None
    if files is not None:
        files.context()  # fail now, at start, on a missing or unreadable file
    return MqttTarget(u.hostname, port, files, username or u.username, password or u.password)


@overload
def make_client(target: MqttTarget, client_id: str, *, cls: type[C], **kwargs: Any) -> C: ...


@overload
def make_client(target: MqttTarget, client_id: str, **kwargs: Any) -> mqtt.Client: ...


def make_client(
    target: MqttTarget,
    client_id: str,
    *,
    cls: type[C] = mqtt.Client,  # type: ignore[assignment]
    **kwargs: Any,
) -> C:
    """A paho client (callback API v2, MQTT 3.1.1) for ``target``: credentials and TLS set;
    ``kwargs`` go to the constructor (clean_session, manual_ack…). Not yet connected."""
    kwargs.setdefault("protocol", mqtt.MQTTv311)
    c = cls(CallbackAPIVersion.VERSION2, client_id=client_id, **kwargs)
    if target.username:
        c.username_pw_set(target.username, target.password)
    if target.tls is not None:
        c.tls_set_context(target.tls.context())
    return c


def probe_tls(target: MqttTarget, timeout_s: float = 5.0) -> None:
    """Handshake once with the broker; raise ConfigError when it presents a certificate the
    configured CA does not trust (or that does not name the host) — a configuration error a
    reconnect loop would otherwise retry silently for ever. An unreachable broker is left to
    the caller's reconnects (it may come up later); plain targets are not probed."""
    if target.tls is None:
        return
    ctx = target.tls.context()
    try:
        with socket.create_connection((target.host, target.port), timeout=timeout_s) as raw:
            with ctx.wrap_socket(raw, server_hostname=target.host):
                pass
    except ssl.SSLCertVerificationError as e:
        raise ConfigError(
            target.tls.names[0],
            f"the broker at {target.url} presented a certificate this CA does not accept: {e.verify_message} "
            "(check the CA file and that the certificate's SAN names the host in the URL)",
        ) from e
    except ssl.SSLError as e:
        raise ConfigError(target.tls.names[0], f"TLS handshake with {target.url} failed: {e} (a TLS port?)") from e
    except OSError:
        return
