"""Keep the protocol documents true: check messages and HTTP answers against them.

``conftest`` applies these to every WebSocket message an aiohttp client in the tests receives
and to every HTTP answer of an app the tests start; the browser test applies them to the frames
Chromium receives.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import orjson
from aiohttp import web
from jsonschema import Draft202012Validator

from broadcaster.channels.schemas import components, schema_name
from broadcaster.web.protocol_docs import openapi
from broadcaster.web.proxy import UPSTREAM_ROUTE

PREFIXES = ("", "/api/v1")


@cache
def validator(name: str) -> Draft202012Validator:
    root = {"$ref": f"#/components/schemas/{name}", "components": {"schemas": components()}}
    return Draft202012Validator(root)


def check_message(message: Any) -> None:
    """Fail unless ``message`` (a parsed server frame) matches the schema its type names."""
    name = schema_name(message)
    assert name is not None, f"no schema for {message!r:.200}"
    errors = sorted(validator(name).iter_errors(message), key=str)
    assert not errors, f"{name}: {errors[0].message} at {list(errors[0].absolute_path)} in {message!r:.300}"


KNOWN_TYPES = {"heartbeat", "pong", "subscribed", "unsubscribed", "error"}


def check_frame(text: str) -> None:
    """Check a received text frame if it is one of this service's messages (proxied sockets carry others)."""
    if text == "pong":
        return
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    kind = message.get("type") if isinstance(message, dict) else None
    if isinstance(kind, str) and (kind in KNOWN_TYPES or kind.endswith("_update")):
        check_message(message)


@cache
def _operations() -> list[tuple[re.Pattern[str], dict[str, Any]]]:
    document = openapi(PREFIXES)
    found = []
    for path, item in document["paths"].items():
        pattern = re.compile("^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(path)) + "$")
        found.append((pattern, item))
    return found


@cache
def _body_validator(schema_json: bytes) -> Draft202012Validator:
    schema = orjson.loads(schema_json)
    return Draft202012Validator({**schema, "components": {"schemas": components()}})


def check_answer(request: web.Request, response: web.StreamResponse) -> None:
    """Fail unless an answer of the service matches the OpenAPI document."""
    if isinstance(response, web.WebSocketResponse) or request.match_info.route.name == UPSTREAM_ROUTE:
        return  # an upgraded socket, or the upstream's own answer
    if request.method == "OPTIONS" and response.status == 204:
        return  # a CORS preflight: headers only
    item = next((item for pattern, item in _operations() if pattern.match(request.path)), {})
    operation = item.get(request.method.lower())  # a method the document lacks must be a JSON error
    body = response.body if isinstance(response, web.Response) else None
    status = response.status
    if operation is None:
        assert status >= 400, f"{request.method} {request.path} answered {status} but is not in the OpenAPI document"
        documented: Any = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorDetail"}}}}
    else:
        responses = operation["responses"]
        documented = responses.get(str(status)) or (responses["default"] if status >= 400 else None)
        assert documented is not None, f"{request.method} {request.path}: {status} is not documented"
    content = documented.get("content")
    if content is None:
        assert not body, f"{request.path}: {status} is documented without a body"
        return
    if status >= 400 or response.content_type == "application/json":
        assert response.content_type in content, f"{request.path}: {response.content_type} is not documented"
    schema = content[response.content_type]["schema"]
    if response.content_type != "application/json":
        return
    assert isinstance(body, bytes), f"{request.path}: expected a JSON body"
    errors = list(_body_validator(orjson.dumps(schema)).iter_errors(orjson.loads(body)))
    assert not errors, (
        f"{request.method} {request.path} {status}: {errors[0].message} at {list(errors[0].absolute_path)}"
    )


@web.middleware
async def answers_checked(request: web.Request, handler: Any) -> web.StreamResponse:
    """Check every answer of the app against the OpenAPI document (the tests' outermost middleware)."""
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:  # left to aiohttp's own rendering: not one of our JSON answers
        raise AssertionError(f"{request.method} {request.path}: {exc.status} escaped as an exception") from None
    check_answer(request, response)
    return response
