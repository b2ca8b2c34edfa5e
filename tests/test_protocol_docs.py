"""/asyncapi.json and /broadcaster/openapi.json: served, whole, true to the routes and to what the sockets send.

(Every message and answer of every other test is checked against them too: see conftest.)
"""

from __future__ import annotations

from typing import Any

from jsonschema import Draft202012Validator

from broadcaster.channels.schemas import components, schema_name
from broadcaster.channels.specs import SPECS
from broadcaster.web.proxy import UPSTREAM_ROUTE
from tests.agents_db import AgentsDb
from tests.conftest import receive, receive_until


def refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in refs(value)]
    return []


def resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = document
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


async def test_both_documents_are_served_whole_with_every_reference_resolving(start) -> None:
    client = await start()
    asyncapi = await (await client.get("/asyncapi.json")).json()
    openapi = await (await client.get("/openapi.json")).json()
    assert (asyncapi["asyncapi"], openapi["openapi"]) == ("3.0.0", "3.1.0")
    for document in (asyncapi, openapi):
        for ref in refs(document):
            assert resolve(document, ref) is not None, ref
        for schema in document["components"]["schemas"].values():
            Draft202012Validator.check_schema(schema)
    assert {c["address"] for c in asyncapi["channels"].values()} == {
        "/ws",
        "/ws/adw-state/{adw_id}",
        *(f"/ws/{f}" for f in SPECS if f != "adw-state"),
    }
    assert set(asyncapi["servers"]) == {"root", "api_v1"}
    for operation in asyncapi["operations"].values():
        assert resolve(asyncapi, operation["channel"]["$ref"])["address"]
    assert "Resume:" in asyncapi["info"]["description"] and "Close codes:" in asyncapi["info"]["description"]


async def test_every_route_of_the_app_is_in_the_openapi_document(start) -> None:
    client = await start(upstream__url="http://127.0.0.1:9")
    openapi = await (await client.get("/broadcaster/openapi.json")).json()  # /openapi.json is the upstream's
    served = set()
    for resource in client.app.router.resources():
        for route in resource:
            if route.method not in ("HEAD", "OPTIONS") and route.name != UPSTREAM_ROUTE:
                served.add((resource.canonical, route.method.lower()))
    assert served == {(path, method) for path, item in openapi["paths"].items() for method in item}


async def test_every_kind_of_message_on_ws_matches_its_schema(start, write_state, workspace) -> None:
    db = AgentsDb(workspace.root / "agents.db").create()
    db.add_phase("q-1", 1, title="Plan", parent_issue=7, status="queued")
    db.add_history("h1", "completed", duration_seconds=60, actual_cost_total=1.5)
    write_state("a1", issue_number=1, status="running", current_phase="plan")
    client = await start(
        broadcast__min_interval=0,
        server__heartbeat_interval=0.2,
        database__path=str(db.path),
        database__poll_interval=0.05,
    )
    everything = [f for f in SPECS if f != "adw-state"] + ["adw-state:a1"]
    seen: set[str | None] = set()
    async with client.ws_connect(f"/ws?channels={','.join(everything)}&patches=1") as ws:
        first = await receive_until(ws, lambda m: m.get("channel") == "adw-state:a1")
        seen.update(schema_name(m) for m in first)
        write_state("a1", issue_number=2, status="running", current_phase="build")
        db.set_phase("q-1", status="running")
        patched = {"QueuePatch", "WorkflowExecutionListPatch", "AdwMonitorPatch"}

        def all_patched(message: dict[str, Any]) -> bool:
            seen.add(schema_name(message))
            return patched <= seen

        later = await receive_until(ws, all_patched)
        later += await receive_until(ws, lambda m: m.get("type") == "heartbeat")
        seen.update(schema_name(m) for m in later)
        await ws.send_json({"type": "ping", "timestamp": 1})
        await ws.send_json({"type": "subscribe", "channels": ["nope"]})
        await ws.send_json({"type": "unsubscribe", "channels": ["queue"]})
        replies = await receive_until(ws, lambda m: m.get("type") == "unsubscribed")
        seen.update(schema_name(m) for m in replies)
    expected = {f"{name}Update" for name in ("WorkflowExecutionList", "AdwMonitor", "Queue", "AdwState")}
    expected |= {"WorkflowExecutionListPatch", "AdwMonitorPatch", "QueuePatch", "Subscribed", "Unsubscribed"}
    expected |= {"Error", "Heartbeat", "Pong", "RouteListUpdate", "SystemStatusUpdate", "WebhookStatusUpdate"}
    expected |= {"WorkflowHistoryUpdate"}
    assert expected <= seen, expected - seen  # each of them validated on arrival (conftest)


def test_a_message_that_breaks_its_schema_is_caught() -> None:
    schemas = components()
    root = {"components": {"schemas": schemas}}
    good = {
        "type": "queue_update",
        "channel": "queue",
        "seq": 1,
        "timestamp": "t",
        "data": {"phases": [], "total": 0, "paused": False},
    }
    bad = {**good, "data": {"phases": [], "total": -1, "paused": False}}
    validator = Draft202012Validator({"$ref": "#/components/schemas/QueueUpdate", **root})
    assert (validator.is_valid(good), validator.is_valid(bad)) == (True, False)
    assert not validator.is_valid({**good, "unexpected": 1})  # envelopes are closed
    assert schema_name({"type": "adw_monitor_update", "patch": {}}) == "AdwMonitorPatch"
    assert schema_name({"type": "nope"}) is None


async def test_wrong_paths_answer_json_errors_the_document_describes(start) -> None:
    client = await start()
    for path, status in [("/nope", 404), ("/api/v1/adw-state/..%2f", 400), ("/api/v1/events?limit=x", 400)]:
        response = await client.get(path)
        assert (response.status, set(await response.json())) == (status, {"detail"})
    response = await client.post("/api/v1/queue")
    assert (response.status, set(await response.json())) == (405, {"detail"})
    response = await client.get("/ws/queue")  # a WebSocket path without the upgrade
    assert (response.status, set(await response.json())) == (400, {"detail"})
    assert (await receive_first_over_ws(client))["type"] == "queue_update"


async def receive_first_over_ws(client: Any) -> dict[str, Any]:
    async with client.ws_connect("/ws/queue") as ws:
        return await receive(ws)
