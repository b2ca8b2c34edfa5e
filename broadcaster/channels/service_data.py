"""The polled services' payloads: webhook status, and routes from an OpenAPI document (pure functions)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from sources.http import Reply
from sources.values import Cleaner


def webhook_status(reply: Reply, cleaner: Cleaner) -> dict[str, Any]:
    """Return the webhook service's own JSON (cleaned), or ``{status: "error", message}`` when it has none."""
    problem = reply.problem()
    if problem is None:
        try:
            data = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            problem = "the webhook service did not answer with JSON"
        else:
            if isinstance(data, dict):
                cleaned: dict[str, Any] = cleaner.clean(data)
                return cleaned
            problem = f"the webhook service answered a JSON {type(data).__name__}, not an object"
    return {"status": "error", "message": problem}


_ROUTE_METHODS = ("get", "post", "put", "patch", "delete")


def openapi_routes(document: Any) -> list[dict[str, Any]]:
    """Return the Routes of an OpenAPI document (one per method; HEAD and OPTIONS left out)."""
    paths = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(paths, dict):
        raise ValueError("not an OpenAPI document: no 'paths' object")
    routes = []
    for path, operations in paths.items():
        if not isinstance(operations, dict):
            continue
        for method in _ROUTE_METHODS:
            op = operations.get(method)
            if not isinstance(op, dict):
                continue
            name = str(op.get("operationId") or op.get("summary") or f"{method.upper()} {path}")
            tags = op.get("tags")
            routes.append(
                route(
                    path,
                    method.upper(),
                    name,
                    str(op.get("summary") or ""),
                    str(op.get("description") or ""),
                    tags if isinstance(tags, list) else [],
                )
            )
    return routes


def route(path: str, method: str, name: str, summary: str, description: str, tags: list[Any]) -> dict[str, Any]:
    """Return one Route; ``handler`` repeats ``name`` for clients that read that key."""
    return {
        "path": path,
        "method": method,
        "name": name,
        "handler": name,
        "summary": summary,
        "description": description,
        "tags": [str(t) for t in tags],
    }


def merge_routes(*groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the routes of all groups, the first one of a (method, path) pair kept, sorted."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for group in groups:
        for r in group:
            seen.setdefault((r["path"], r["method"]), r)
    return [seen[key] for key in sorted(seen)]
