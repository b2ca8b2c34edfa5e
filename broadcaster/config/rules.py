"""The rules a configuration must meet beyond its types: ranges, URLs, names that must not clash.

``config.load_config`` reads and types the values; ``validate`` checks them together, so a bad
config stops start-up with one line naming the key and where the value came from.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .sections import Config

LOG_LEVELS = ("debug", "info", "warning", "error")
SELF = "backend_api"  # this service: the API the dashboard talks to (the real React client has a card for it)
# The entries the service reports itself (docs/protocol.md, "system-status"); a configured check
# may not take one of these names.
SERVICE_NAMES = (SELF, "adw_files", "database", "webhook", "openapi", "upstream", "alerts")
ALERT_RULES = ("adw_failed", "adw_stalled", "adw_over_budget", "service_error", "queue_blocked")


Bad = Callable[[str, str], ConfigError]
"""Makes the error for a key: ``bad("[server] port", "must be ...")``."""


def validate(config: Config, origins: Mapping[str, str]) -> None:
    """Raise ConfigError, one line naming the key and where its value came from, for the first bad value."""

    def bad(where: str, why: str) -> ConfigError:
        return ConfigError(f"{origins.get(where, 'built-in default')}: {where}: {why}")

    for check in (
        _server,
        _backplane,
        _broadcast_and_adw,
        _positive,
        _urls,
        _database,
        _alerts,
        _files_and_checks,
        _patterns_and_level,
    ):
        check(config, bad)


def _server(config: Config, bad: Bad) -> None:
    s = config.server
    if not 0 <= s.port <= 65535:
        raise bad("[server] port", f"must be 0-65535, got {s.port}")
    for prefix in s.path_prefixes:
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise bad(
                "[server] path_prefixes", f'each prefix is "" or starts with / and does not end with /, got {prefix!r}'
            )
    if len(set(s.path_prefixes)) != len(s.path_prefixes):
        raise bad("[server] path_prefixes", "has duplicates")
    if s.ping_interval < 0:
        raise bad("[server] ping_interval", f"must be >= 0 (0 turns protocol pings off), got {s.ping_interval}")
    if s.max_message_size < 256:
        raise bad("[server] max_message_size", f"must be >= 256 bytes, got {s.max_message_size}")
    if s.token and s.token_file is not None:
        raise bad("[server] token_file", "set token or token_file, not both")
    if (s.tls_cert is None) != (s.tls_key is None):
        raise bad("[server] tls_key" if s.tls_key is None else "[server] tls_cert", "tls_cert and tls_key go together")


def _backplane(config: Config, bad: Bad) -> None:
    b = config.backplane
    if b.url and not re.fullmatch(r"rediss?://\S+", b.url):
        raise bad("[backplane] url", f"must be redis://host:port/db (or rediss://), got {b.url[:80]!r}")
    if b.node and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", b.node):
        raise bad("[backplane] node", f"use 1-64 letters, digits, '_', '.', '-', got {b.node[:80]!r}")
    if b.view not in ("", "cluster"):
        raise bad("[backplane] view", f'must be "" (a node) or "cluster" (a view of every node), got {b.view[:40]!r}')
    if b.view and not b.url:
        raise bad("[backplane] view", '"cluster" reads the nodes from Redis: set [backplane] url too')


def _broadcast_and_adw(config: Config, bad: Bad) -> None:
    if config.broadcast.min_interval < 0:
        raise bad("[broadcast] min_interval", f"must be >= 0, got {config.broadcast.min_interval}")
    if config.broadcast.refresh_interval < 0:
        raise bad("[broadcast] refresh_interval", f"must be >= 0, got {config.broadcast.refresh_interval}")
    a = config.adw
    if a.github_repo and not re.fullmatch(r"[\w.-]+/[\w.-]+", a.github_repo):
        raise bad("[adw] github_repo", f"must look like owner/name, got {a.github_repo!r}")
    if a.step_ms <= 0:
        raise bad("[adw] step_ms", f"must be > 0, got {a.step_ms}")
    if a.debounce_ms < a.step_ms:
        raise bad("[adw] debounce_ms", f"must be >= step_ms ({a.step_ms}), got {a.debounce_ms}")
    if a.max_state_bytes < 1024:
        raise bad("[adw] max_state_bytes", f"must be >= 1024, got {a.max_state_bytes}")
    for key in ("trees_poll_interval", "process_scan_interval", "stall_after"):
        if getattr(a, key) <= 0:
            raise bad(f"[adw] {key}", f"must be > 0, got {getattr(a, key)}")


def _positive(config: Config, bad: Bad) -> None:
    """Every duration, count and limit must be positive."""
    for section, keys in (
        (
            "server",
            ("heartbeat_interval", "write_timeout", "handshake_timeout")
            + ("max_subscriptions", "max_connections", "max_connections_per_ip"),
        ),
        ("database", ("poll_interval", "max_value_bytes")),
        ("webhook", ("poll_interval", "timeout")),
        ("routes", ("poll_interval", "timeout")),
        ("upstream", ("poll_interval", "timeout", "max_relays")),
        ("system_status", ("poll_interval", "timeout")),
        ("event_log", ("flush_interval", "batch_max", "keep_per_channel", "max_age_hours", "max_pending")),
        ("backplane", ("node_timeout", "forget_after", "refresh_interval", "queue_max", "max_entry_bytes")),
        ("alerts", ("over_budget_ratio", "max_per_minute", "queue_max", "retries", "keep_recent")),
    ):
        for key in keys:
            value = getattr(getattr(config, section), key, None)
            if value is not None and value <= 0:
                raise bad(f"[{section}] {key}", f"must be > 0, got {value}")


def _urls(config: Config, bad: Bad) -> None:
    for section, key in (("webhook", "status_url"), ("routes", "openapi_url"), ("upstream", "url")):
        url = getattr(getattr(config, section), key)
        if url and not re.match(r"https?://[^/\s]+", url):
            raise bad(f"[{section}] {key}", f'must be an http(s) URL or "" for none, got {url!r}')


def _database(config: Config, bad: Bad) -> None:
    d = config.database
    if not d.url:
        if d.password_file is not None or d.listen:
            key = "password_file" if d.password_file is not None else "listen"
            raise bad(f"[database] {key}", "is for PostgreSQL: set [database] url too")
        return
    if not re.match(r"postgres(ql)?://[^/\s]+", d.url):
        raise bad("[database] url", "must be a postgresql://user@host:port/database URL")
    if d.path is not None or d.history_path is not None:
        raise bad("[database] url", "and [database] path (SQLite) are two databases: set one of them")
    for channel in d.listen:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", channel):
            raise bad("[database] listen", f"channel names are identifiers, got {channel[:80]!r}")


def _alerts(config: Config, bad: Bad) -> None:
    a = config.alerts
    for rule in a.on:
        if rule not in ALERT_RULES:
            raise bad("[alerts] on", f"unknown rule {rule[:60]!r}: the rules are {', '.join(ALERT_RULES)}")
    if a.service_error_after < 0:
        raise bad("[alerts] service_error_after", f"must be >= 0, got {a.service_error_after}")
    if a.dashboard_url and not re.match(r"https?://[^/\s]+", a.dashboard_url):
        raise bad("[alerts] dashboard_url", f'must be an http(s) URL or "" for this service, got {a.dashboard_url!r}')


def _files_and_checks(config: Config, bad: Bad) -> None:
    log_path = config.event_log.path
    if log_path is not None and log_path.resolve() in {
        p.resolve() for p in (config.database.path, config.database.history_path) if p
    }:
        raise bad("[event_log] path", f"must be a file of the service's own, not the agents' database {log_path}")
    names = [check.name for check in config.system_status.checks]
    for check in config.system_status.checks:
        if not re.match(r"https?://[^/\s]+", check.url):
            raise bad("[system_status] checks", f"check {check.name!r}: url must be http(s), got {check.url!r}")
    if len(set(names)) != len(names):
        raise bad("[system_status] checks", "names must be unique")
    for name in names:
        if name in SERVICE_NAMES:
            raise bad(
                "[system_status] checks",
                f"name {name!r} is one of the service's own entries ({', '.join(SERVICE_NAMES)})",
            )


def _patterns_and_level(config: Config, bad: Bad) -> None:
    for n, pattern in enumerate(config.redaction.patterns):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise bad("[redaction] patterns", f"pattern {n + 1} ({pattern[:60]!r}) is not a regex: {exc}") from None
    if config.log_level not in LOG_LEVELS:
        raise bad("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {config.log_level!r}")
