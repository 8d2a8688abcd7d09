"""Runtime configuration, read from ``SEMON_*`` environment variables (or a ``.env`` file)."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from semon.errors import ConfigError
from semon.mqtt_connect import MqttTarget, TlsFiles, parse_target

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_nets(text: str) -> tuple[IPNetwork, ...]:
    """``SEMON_WEBHOOK_ALLOW_NETS``: comma-separated CIDRs (``127.0.0.0/8, ::1/128``)."""
    nets = []
    for part in (p.strip() for p in text.split(",")):
        if part:
            try:
                nets.append(ipaddress.ip_network(part, strict=False))
            except ValueError as e:
                raise ValueError(f"SEMON_WEBHOOK_ALLOW_NETS: {part!r} is not a CIDR network ({e})") from e
    return tuple(nets)


class Settings(BaseSettings):
    """Everything a semon process can be told; see the configuration table in README."""

    model_config = SettingsConfigDict(env_prefix="SEMON_", env_file=".env", extra="ignore")

    # Where the MQTT broker is. "embedded" starts amqtt in-process (demo / laptop default).
    mqtt_url: str = "embedded"
    mqtt_embedded_port: int = 1883
    mqtt_client_id: str = "semon-collector"
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    # credentials.csv written by `semon mqtt-auth`: with it, a missing SEMON_MQTT_PASSWORD is
    # looked up there for the user, and a collector's user defaults to its client id (the broker
    # binds the two: dynamic-security plugin, config/mosquitto/mosquitto.conf).
    mqtt_credentials_file: Path | None = None
    # TLS (mqtts:// URLs, docs/tls.md): CA bundle that signed the broker's certificate (empty =
    # the system's trust store), and an optional client certificate and key (PEM).
    mqtt_ca_file: Path | None = None
    mqtt_cert_file: Path | None = None
    mqtt_key_file: Path | None = None
    # Shared-subscription group: several collectors split the stream (Mosquitto / EMQX).
    mqtt_share_group: str | None = None
    # "I/N": this collector owns the devices whose CRC-32 of the id is I modulo N, on its own
    # session; N collectors split a stream by device without a hashing broker (docs/scaling.md).
    collector_partition: str | None = None
    # This collector may wait for its partition's lease and take it over when the owner dies
    # (needs PostgreSQL: a session advisory lock per partition; docs/scaling.md "Failover").
    collector_standby: bool = False
    # Where device messages come from: the MQTT session, or partitions of a NATS JetStream stream
    # (ingest/jetstream_source.py, docs/scaling.md). With jetstream, SEMON_MQTT_URL is a NATS
    # node's MQTT listener, used to publish alarms and answer canary pings.
    source: Literal["mqtt", "jetstream"] = "mqtt"
    nats_urls: str = "nats://127.0.0.1:4222"
    jetstream_stream: str = "SEMON"
    # Must equal the N of the cluster's subject mapping {{partition(N, …)}} (config/nats/).
    jetstream_partitions: int = Field(4, ge=1, le=1024)
    jetstream_replicas: int = Field(3, ge=1, le=5)
    # Comma-separated partitions this collector consumes; empty = all.
    jetstream_owned: str | None = None
    # Comma-separated partitions this collector takes over when their lease is free (their
    # preferred owner is dead); needs PostgreSQL. First attempt after the delay, so that at a
    # simultaneous start each preferred owner takes its own first.
    jetstream_standby: str | None = None
    jetstream_standby_delay_s: float = Field(5.0, ge=0)
    # Unacknowledged messages come back after this long (a lost fetch reply, a dead collector).
    jetstream_ack_wait_s: float = Field(10.0, gt=0)
    # Other MQTT listeners (comma-separated, e.g. the cluster's other nodes) the JetStream
    # source's publishing session moves to when its node is lost.
    mqtt_fallback_urls: str | None = None
    # Must match the broker's max_inflight_messages: the collector flushes (and so acks)
    # before that many messages are waiting, or the broker would stop sending.
    mqtt_max_inflight: int = Field(10_000, ge=2)

    # InfluxDB v1-compatible HTTP API. Empty -> telemetry goes to the embedded SQLite store.
    influx_url: str | None = None
    influx_db: str = "semon"
    influx_token: str | None = None
    influx_timeout_s: float = 5.0

    # Relational store (registry, alarms, dead letters). SQLite by default.
    db_url: str = "sqlite:///semon-data/semon.db"
    telemetry_sqlite_path: Path = Path("semon-data/telemetry.db")

    # Collector behaviour.
    data_dir: Path = Path("semon-data")
    batch_max_lines: int = Field(5000, ge=1)
    batch_max_age_s: float = Field(0.5, gt=0)
    spool_max_bytes: int = Field(1 << 30, ge=1 << 20)
    # /health turns "degraded" while the oldest journaled batch waits longer than this for the
    # telemetry store (alarms are unaffected: they never wait for telemetry).
    telemetry_lag_degraded_s: float = Field(60.0, gt=0)
    max_payload_bytes: int = Field(65536, ge=256)
    max_future_skew_s: float = 300.0
    # Platform alarm message_loss: this many of one device's messages never arrived (seq gaps,
    # docs/protocol.md) within the window.
    seq_gap_alarm_count: int = Field(10, ge=1)
    seq_gap_alarm_window_s: float = Field(600.0, gt=0)
    # A status or event ts this far ahead of its device's own clock estimate is a clock jump,
    # evaluated at the estimated time (docs/protocol.md); 0 = no check, for accelerated
    # simulations (`semon simulate --speed N`), whose device time runs N× the wall clock.
    clock_jump_s: float = Field(60.0, ge=0)
    registry_refresh_s: float = 10.0
    # Operator rules file (TOML): thresholds, enabling, per kind / firm / device overrides.
    rules_file: Path | None = None
    health_port: int = 9108
    # Where the collector's /health and /metrics listen; 0.0.0.0 to let another host scrape them.
    health_host: str = "127.0.0.1"

    # API.
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    # "keys": every request needs an API key; "open": no key = anonymous regulator (demo only).
    api_auth: Literal["keys", "open"] = "keys"
    api_rate_per_s: float = Field(50.0, gt=0)
    api_rate_burst: int = Field(100, ge=1)
    api_max_body_bytes: int = Field(1 << 20, ge=1024)

    log_level: str = "INFO"

    # Alert delivery (docs/alerts.md). The collector marks an alarm transition published only
    # after the broker's PUBACK; it waits this long for it before leaving it to the relay.
    alarm_puback_timeout_s: float = Field(5.0, ge=0)
    # The dispatcher (webhook outbox, escalation, rescue records) runs inside `semon api`
    # unless disabled here; `semon deliver` runs it alone. Several may run at once.
    dispatcher_enabled: bool = True
    dispatcher_poll_s: float = Field(0.5, gt=0)
    # An alarm_events id the scan has not seen while newer ones exist belongs to a transaction
    # still open (or rolled back); after this long it is given up as a rolled-back gap.
    notify_gap_timeout_s: float = Field(60.0, gt=0)
    webhook_timeout_s: float = Field(10.0, gt=0)
    # Retry n waits min(base * 2**(n-1), max) seconds (minus up to 10 % jitter).
    webhook_backoff_base_s: float = Field(1.0, gt=0)
    webhook_backoff_max_s: float = Field(30.0, gt=0)
    # After this many failed attempts a delivery is "dead" (listed, redeliverable by hand).
    webhook_max_attempts: int = Field(25, ge=1)
    webhook_concurrency: int = Field(4, ge=1, le=64)
    # Webhook URLs resolving to loopback / private / link-local addresses are refused unless
    # allowed (a firm must not make the server probe the internal network).
    webhook_allow_private: bool = False
    # Severity -> seconds an active alarm may stay unacknowledged before it escalates to the
    # regulator (and again every as many seconds while unresolved). Absent = never.
    escalation_after_s: dict[str, float] = {"critical": 300.0}
    # Rescue workflow (TSG T5002-2017: arrive within 30 min in cities; 96333 KPI: dispatch
    # within 3 min).
    rescue_alarm_types: list[str] = ["trapped_passenger"]
    rescue_arrival_limit_s: float = Field(1800.0, gt=0)
    rescue_response_limit_s: float = Field(180.0, gt=0)
    # Hazard scan beside the dispatcher: proposals from alarms, overdue escalation (docs/hazards.md).
    hazard_scan_s: float = Field(60.0, gt=0)
    hazard_board_s: float = Field(900.0, gt=0)
    # Non-public networks (comma-separated CIDRs) that webhook and channel targets may reach
    # anyway, e.g. an internal receiver; every other target must resolve to global addresses.
    webhook_allow_nets: str = ""
    # Fernet key (urlsafe base64 of 32 bytes, `Fernet.generate_key()`) sealing webhook and channel
    # secrets at rest; required once any exists.
    secret_key: str | None = Field(None, repr=False)
    # Extra CA bundle (PEM) trusted for channel TLS (SMTP STARTTLS, a private relay).
    notify_ca_file: str | None = None
    # Pipeline canary (docs/alerts.md): `semon api` / `semon deliver` ping every collector through
    # the broker each interval; no echo from one for the timeout raises "monitoring degraded".
    canary_enabled: bool = True
    canary_interval_s: float = Field(5.0, gt=0)
    canary_timeout_s: float = Field(20.0, gt=0)
    # Local calendar days (due dates, "overdue", "today", per-day rates): an IANA zone.
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, v: str) -> str:
        from semon.timeutil import zone

        try:
            zone(v)
        except ValueError as e:
            raise ValueError(f"SEMON_TIMEZONE: {e}") from None
        return v

    @model_validator(mode="after")
    def _password_from_credentials(self) -> Settings:
        # Every MQTT client reading mqtt_username / mqtt_password (canary, maintenance, simulator)
        # then logs in with the generated credential without knowing the file.
        if self.mqtt_username and self.mqtt_password is None and self.mqtt_credentials_file is not None:
            from semon.mqtt_auth import password_for

            self.mqtt_password = password_for(self.mqtt_credentials_file, self.mqtt_username)
        return self

    @field_validator("webhook_allow_nets")
    @classmethod
    def _allow_nets(cls, v: str) -> str:
        """Every entry a CIDR network, so a typo is a start-up error, not a refused receiver."""
        parse_nets(v)
        return v
    # Map tiles of the console's map ({z}/{x}/{y} template, e.g. the city's own tile server);
    # unset: a plain vector outline, no network.
    map_tile_url: str | None = None

    @cached_property
    def spool_path(self) -> Path:
        """Durable spool for telemetry while InfluxDB is slow or down."""
        return self.data_dir / "spool.db"

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, v: str) -> str:
        if v.upper() not in LOG_LEVELS:
            raise ConfigError("SEMON_LOG_LEVEL", f"{v!r} is not a log level (use one of {', '.join(LOG_LEVELS)})")
        return v.upper()

    @field_validator("db_url")
    @classmethod
    def _supported_db(cls, v: str) -> str:
        scheme = v.split("://", 1)[0].lower() if "://" in v else ""
        if scheme in ("postgres", "postgresql"):
            # Heroku-style postgres:// is what many hosts hand out; SQLAlchemy knows only postgresql.
            return "postgresql+psycopg://" + v.split("://", 1)[1]
        if scheme.startswith("postgresql+") or scheme.startswith("sqlite"):
            return v
        if scheme.startswith(("mysql", "mariadb")):
            raise ConfigError("SEMON_DB_URL", "MySQL / MariaDB is not supported; use postgresql://user:pw@host/db "
                              "or sqlite:///path/semon.db")  # fmt: skip
        raise ConfigError("SEMON_DB_URL", f"unsupported database URL {v.split('@')[-1]!r} "
                          "(use postgresql://user:pw@host/db or sqlite:///path/semon.db)")  # fmt: skip

    @model_validator(mode="after")
    def _mqtt_usable(self) -> Settings:
        self.mqtt_target()  # a bad URL or TLS file is a start-up error, not a reconnect loop
        return self

    def mqtt_target(self) -> MqttTarget:
        """The broker to connect to, with TLS files and credentials (the embedded broker
        listens on plain 127.0.0.1)."""
        if self.mqtt_url == "embedded":
            return MqttTarget("127.0.0.1", self.mqtt_embedded_port)
        tls = TlsFiles(self.mqtt_ca_file, self.mqtt_cert_file, self.mqtt_key_file)
        return parse_target(self.mqtt_url, tls, username=self.mqtt_username, password=self.mqtt_password)

    def mqtt_endpoint(self) -> tuple[str, int]:
        """Host and port of the broker."""
        t = self.mqtt_target()
        return t.host, t.port

    def mqtt_login(self, default_user: str | None = None) -> tuple[str, str | None] | None:
        """``(user, password)`` to log in to the broker with, or None for an anonymous login:
        SEMON_MQTT_USERNAME (else ``default_user`` when a credentials file is configured), its
        password from SEMON_MQTT_PASSWORD or else from SEMON_MQTT_CREDENTIALS_FILE."""
        user = self.mqtt_username or (default_user if self.mqtt_credentials_file else None)
        if user is None:
            return None
        if self.mqtt_password is None and self.mqtt_credentials_file is not None:
            from semon.mqtt_auth import password_for

            return user, password_for(self.mqtt_credentials_file, user)
        return user, self.mqtt_password


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (used by tests and the demo);
    raises :class:`ConfigError` naming the ``SEMON_*`` variable of the first bad value."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as e:
        raise config_error(e) from e


def config_error(e: ValidationError) -> ConfigError:
    """The ValidationError of loading settings as one ConfigError: the variable's name
    (``SEMON_BATCH_MAX_LINES``, not the field's), the value and what is wrong, in plain words."""
    problems: list[tuple[str, str]] = []
    for err in e.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, ConfigError):
            problems.append((cause.setting, cause.message))
            continue
        field = str(err["loc"][0]) if err["loc"] else "settings"
        value = err.get("input")
        secret = any(w in field for w in ("password", "token", "secret", "url"))  # URLs may carry passwords
        shown = f"{value!r} is not valid: " if isinstance(value, str | int | float) and not secret else ""
        problems.append((f"SEMON_{field.upper()}", f"{shown}{err['msg']}"))
    if not problems:
        return ConfigError("settings", str(e))
    (setting, message), rest = problems[0], problems[1:]
    more = f" (and {len(rest)} more: {'; '.join(f'{n}: {m}' for n, m in rest)})" if rest else ""
    return ConfigError(setting, message + more)
