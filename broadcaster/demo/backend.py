"""The demo's fake backend on 127.0.0.1: the webhook service, a growing OpenAPI document, a flaky health check."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from aiohttp import web


@dataclasses.dataclass
class Backend:
    """What the fake webhook service / backend currently answers."""

    started: float = dataclasses.field(default_factory=time.monotonic)
    received: int = 0
    failed: int = 0
    recent_failures: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    last_successful: str | None = None
    frontend_up: bool = True
    paths: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {
            "/api/v1/orders": {"get": {"operationId": "list_orders", "summary": "List orders", "tags": ["orders"]}},
            "/api/v1/cart": {
                "get": {"operationId": "get_cart", "summary": "Current cart", "tags": ["cart"]},
                "post": {"operationId": "add_to_cart", "summary": "Add an item", "tags": ["cart"]},
            },
        }
    )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/webhook-status", self._webhook_status)
        app.router.add_get("/openapi.json", self._openapi)
        app.router.add_get("/health", self._health)
        return app

    async def _webhook_status(self, request: web.Request) -> web.Response:
        ok = self.received - self.failed
        return web.json_response(
            {
                "status": "healthy" if self.failed * 4 <= max(self.received, 1) else "degraded",
                "uptime": round(time.monotonic() - self.started, 1),
                "stats": {
                    "total_received": self.received,
                    "successful": ok,
                    "failed": self.failed,
                    "success_rate": round(ok / self.received * 100, 1) if self.received else 100.0,
                },
                "recent_failures": self.recent_failures[-5:],
                "last_successful": self.last_successful,
            }
        )

    async def _openapi(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"openapi": "3.1.0", "info": {"title": "webshop", "version": "1.0"}, "paths": self.paths}
        )

    async def _health(self, request: web.Request) -> web.Response:
        if self.frontend_up:
            return web.json_response({"status": "ok"})
        return web.json_response({"status": "restarting"}, status=503)
