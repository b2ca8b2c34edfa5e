"""The configuration's sections: one frozen dataclass per TOML table, with the built-in defaults."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sources.values import DEFAULT_SECRET_KEYS, DEFAULT_SECRET_PATTERNS

from .rules import ALERT_RULES


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8002
    path_prefixes: tuple[str, ...] = ("", "/api/v1")
    heartbeat_interval: float = 10.0
    ping_interval: float = 20.0
    max_message_size: int = 65536
    write_timeout: float = 10.0
    cors_origins: tuple[str, ...] = ()  # empty: any http(s)://localhost or 127.0.0.1 origin; "*": any
    allowed_hosts: tuple[str, ...] = ()  # Host names accepted besides loopback ones; "*": any
    handshake_timeout: float = 10.0
    max_subscriptions: int = 256
    token: str = ""  # required of every request but /healthz when set (or token_file)
    token_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    max_connections: int = 10_000
    max_connections_per_ip: int = 1_000


@dataclass(frozen=True, kw_only=True)
class BroadcastConfig:
    min_interval: float = 1.0
    refresh_interval: float = 60.0


@dataclass(frozen=True, kw_only=True)
class AdwConfig:
    agents_dir: Path = Path("agents")
    trees_dir: Path = Path("trees")
    github_repo: str = ""
    debounce_ms: int = 100
    step_ms: int = 20
    force_polling: bool = False
    trees_poll_interval: float = 2.0
    max_state_bytes: int = 1024 * 1024
    process_scan: bool = True  # look at the process table for each ADW's processes (else the state file decides)
    process_scan_interval: float = 5.0
    stall_after: float = 600.0  # seconds without a process or activity before a "running" ADW is stalled


@dataclass(frozen=True, kw_only=True)
class DatabaseConfig:
    path: Path | None = None
    history_path: Path | None = None
    url: str = ""  # postgresql://user@host:port/db: PostgreSQL instead of a SQLite path
    password_file: Path | None = None  # the PostgreSQL password, when the url has none
    listen: tuple[str, ...] = ()  # PostgreSQL LISTEN channels the backend NOTIFYs on a change
    poll_interval: float = 0.25
    max_value_bytes: int = 65_536  # one text value past this is cut, with a marker saying how much


@dataclass(frozen=True, kw_only=True)
class UpstreamConfig:
    url: str = ""
    timeout: float = 30.0
    poll_interval: float = 10.0
    max_relays: int = 50  # WebSockets relayed to the upstream at once, on connections of their own


@dataclass(frozen=True, kw_only=True)
class WebhookConfig:
    status_url: str = "http://localhost:8001/webhook-status"
    poll_interval: float = 5.0
    timeout: float = 2.0


@dataclass(frozen=True, kw_only=True)
class RoutesConfig:
    openapi_url: str = ""
    poll_interval: float = 10.0
    timeout: float = 2.0


@dataclass(frozen=True, kw_only=True)
class CheckConfig:
    name: str
    url: str


@dataclass(frozen=True, kw_only=True)
class SystemStatusConfig:
    poll_interval: float = 5.0
    timeout: float = 2.0
    checks: tuple[CheckConfig, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EventLogConfig:
    path: Path | None = Path(".state/events.db")  # None: in memory, nothing survives a restart
    flush_interval: float = 0.05
    batch_max: int = 500
    keep_per_channel: int = 1000
    max_age_hours: float = 168.0
    max_pending: int = 10_000


@dataclass(frozen=True, kw_only=True)
class BackplaneConfig:
    url: str = ""  # redis://host:6379/0: publish every event to Redis Streams ("" = one machine)
    node: str = ""  # this node's name ("" = the host name)
    view: str = ""  # "cluster": serve the union of every node's channels (see cluster/)
    node_timeout: float = 15.0  # a node record not refreshed for this long marks the node unreachable
    forget_after: float = 3600.0  # an unreachable node's items leave the view after this long
    refresh_interval: float = 3.0  # seconds between refreshes of this node's record
    queue_max: int = 10_000  # events waiting for Redis; past it the oldest waiting ones are dropped
    max_entry_bytes: int = 16 * 1024 * 1024  # an event bigger than this is not published, nor accepted


@dataclass(frozen=True, kw_only=True)
class AlertsConfig:
    on: tuple[str, ...] = ALERT_RULES  # the rules that fire (default: all)
    urls: tuple[str, ...] = ()  # Apprise URLs (secrets: never logged; status shows the scheme only)
    url_file: Path | None = None  # more Apprise URLs, one a line, so the secrets stay out of config.toml
    dashboard_url: str = ""  # the base of the links in alerts ("": this service's own address)
    over_budget_ratio: float = 1.5  # adw_over_budget: current_cost past this times estimated_cost_total
    service_error_after: float = 60.0  # service_error: seconds an entry stays "error" before it fires
    max_per_minute: int = 10  # messages to one destination a minute; more fold into one "N more alerts"
    queue_max: int = 200  # messages waiting for one destination; past it the oldest is dropped
    retries: int = 3  # failed attempts of one message before its destination shows as failing
    keep_recent: int = 50  # resolved alerts kept on the channel


@dataclass(frozen=True, kw_only=True)
class RedactionConfig:
    keys: tuple[str, ...] = DEFAULT_SECRET_KEYS
    patterns: tuple[str, ...] = DEFAULT_SECRET_PATTERNS


@dataclass(frozen=True, kw_only=True)
class Config:
    log_level: str = "info"
    server: ServerConfig = field(default_factory=ServerConfig)
    broadcast: BroadcastConfig = field(default_factory=BroadcastConfig)
    adw: AdwConfig = field(default_factory=AdwConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    upstream: UpstreamConfig = field(default_factory=UpstreamConfig)
    routes: RoutesConfig = field(default_factory=RoutesConfig)
    system_status: SystemStatusConfig = field(default_factory=SystemStatusConfig)
    event_log: EventLogConfig = field(default_factory=EventLogConfig)
    redaction: RedactionConfig = field(default_factory=RedactionConfig)
    backplane: BackplaneConfig = field(default_factory=BackplaneConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    source: Path | None = None  # the file this came from, for messages; not a key


# Each TOML table and its class, in the order of Config's fields (derived: one list to keep).
SECTIONS: dict[str, type[Any]] = {
    name: hint
    for name, hint in typing.get_type_hints(Config).items()
    if isinstance(hint, type) and dataclasses.is_dataclass(hint)
}
TOP_LEVEL_KEYS = ("log_level",)
