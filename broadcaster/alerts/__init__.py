"""Alerts: rules over the channels, the ``alerts`` channel, acknowledgement, delivery through Apprise.

``add_alerts`` wires it into an application: the engine listens to the pipeline, delivery
reports the ``alerts`` status entry, and ``POST /api/v1/alerts/{id}/ack`` (one) and
``POST /api/v1/alerts/ack`` (every open one) acknowledge. ``create_app`` runs ``Alerts.run`` and
``Delivery.run`` as supervised tasks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from ..channels.health import Health
from ..channels.service_data import route
from ..config import Config
from ..core.events import EventLog
from ..core.pipeline import Pipeline
from ..errors import StartupError
from .delivery import Delivery
from .engine import Alerts

__all__ = ["Alerts", "Delivery", "add_alerts"]
PREFIXES = ("/api/v1", "/api")
ACK = ("Acknowledging an alert: it stays open, out of the bell's count, on every dashboard", ["alerts"])


def add_alerts(
    app: web.Application,
    config: Config,
    *,
    pipeline: Pipeline,
    log: EventLog,
    health: Health,
    clean: Callable[[Any], Any],
    refresh_status: Callable[[], None],
) -> tuple[Alerts, Delivery, list[dict[str, Any]]]:
    """Make the engine and its delivery, plug them in; return both and the ack routes."""
    a = config.alerts
    delivery = Delivery(
        [*a.urls, *_urls_in(a.url_file)],
        max_per_minute=a.max_per_minute,
        queue_max=a.queue_max,
        retries=a.retries,
        on_state=refresh_status,
    )
    health.plug(delivery)
    alerts = Alerts(a, pipeline=pipeline, log=log, base=dashboard_base(config), send=delivery.send, clean=clean)
    pipeline.listeners.append(alerts.observe)
    return alerts, delivery, _add_ack_routes(app, alerts)


def dashboard_base(config: Config) -> str:
    """Return the dashboard's address that alert links start with."""
    if config.alerts.dashboard_url:
        return config.alerts.dashboard_url.rstrip("/") + "/"
    host = config.server.host
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else (f"[{host}]" if ":" in host else host)
    scheme = "https" if config.server.tls_cert else "http"
    return f"{scheme}://{host}:{config.server.port}/"


def _urls_in(path: Path | None) -> list[str]:
    """Return the Apprise URLs of ``[alerts] url_file``: one a line, blank lines and # comments left out."""
    if path is None:
        return []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise StartupError(f"[alerts] url_file: cannot read {path}: {exc.__class__.__name__}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def _add_ack_routes(app: web.Application, alerts: Alerts) -> list[dict[str, Any]]:
    async def ack_one(request: web.Request) -> web.Response:
        alert_id = request.match_info["alert_id"]
        done = alerts.ack(alert_id)
        if done is None:
            return web.json_response({"detail": f"no open alert {alert_id[:120]!r}"}, status=404)
        return web.json_response({"acknowledged": done})

    async def ack_all(request: web.Request) -> web.Response:
        return web.json_response({"acknowledged": alerts.ack(None) or []})

    routes = []
    for prefix in PREFIXES:
        app.router.add_post(prefix + "/alerts/{alert_id}/ack", ack_one)
        app.router.add_post(prefix + "/alerts/ack", ack_all)
        routes.append(route(prefix + "/alerts/{alert_id}/ack", "POST", "alerts_ack", "Acknowledge one alert", *ACK))
        routes.append(route(prefix + "/alerts/ack", "POST", "alerts_ack_all", "Acknowledge every open alert", *ACK))
    return routes
