"""Merge patches of list channels: exact against whole data, and on a real ``/ws`` socket."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import hypothesis.strategies as st
from aiohttp import web
from hypothesis import given, settings

from broadcaster.channels.specs import CATALOG, SPECS
from broadcaster.core.client import Client
from broadcaster.core.deltas import Keyed
from broadcaster.core.events import Event
from broadcaster.core.hub import Hub
from broadcaster.core.patches import Patcher, apply_merge_patch, keyed_form, list_form, merge_diff
from tests.conftest import EPOCH, ISO_TIME, receive
from tests.helpers import server_frames

MONITOR = Keyed("workflows", "adw_id")
LEAF = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.sampled_from(["a", "b", "²"]))
VALUE = st.recursive(LEAF, lambda inner: st.dictionaries(st.sampled_from("xyz"), inner, max_size=3), max_leaves=6)
ITEM = st.fixed_dictionaries({"status": st.sampled_from(["running", "failed"]), "cost": VALUE, "extra": VALUE})


@st.composite
def monitors(draw: st.DrawFn) -> dict[str, Any]:
    ids = draw(st.lists(st.sampled_from([f"a{i}" for i in range(8)]), unique=True, max_size=6))
    return {
        "workflows": [{"adw_id": i, **draw(ITEM)} for i in ids],
        "summary": {"total": len(ids), "note": draw(VALUE)},
        "last_updated": draw(st.sampled_from(["t1", "t2"])),
    }


@settings(max_examples=300, deadline=None)
@given(st.lists(monitors(), min_size=2, max_size=5))
def test_a_patch_applied_to_the_last_state_gives_the_new_state_exactly(states: list[dict[str, Any]]) -> None:
    patcher = Patcher(MONITOR)
    patcher.start(states[0], 1)
    held = keyed_form(states[0], MONITOR)
    for seq, state in enumerate(states[1:], start=2):
        base_seq = patcher.seq
        patch = patcher.patch(state, seq)
        assert base_seq == seq - 1
        if patch is not None:
            held = apply_merge_patch(held, patch)
        else:  # only a null outside the items (summary.note here) cannot be patched: it goes whole
            assert null_in(state["summary"])
            held = keyed_form(state, MONITOR)
        assert list_form(held, MONITOR) == state


def null_in(value: Any) -> bool:
    return value is None or isinstance(value, dict) and any(null_in(v) for v in value.values())


def test_items_with_nulls_are_patched_exactly_through_their_null_paths() -> None:
    old = {"workflows": [{"adw_id": "a", "last_error": "boom", "pr": {"n": 1}}], "summary": {}}
    items = [{"adw_id": "a", "last_error": None, "pr": {"n": None}}, {"adw_id": "b", "end": None}]
    new: dict[str, Any] = {"workflows": items, "summary": {}}
    patcher = Patcher(MONITOR)
    patcher.start(old, 1)
    patch = patcher.patch(new, 2)
    assert patch == {
        "workflows": {
            "items": {"a": {"last_error": None, "pr": {"n": None}}, "b": {"adw_id": "b"}},
            "nulls": {"a": [["last_error"], ["pr", "n"]], "b": [["end"]]},
            "order": ["a", "b"],
        }
    }
    assert list_form(apply_merge_patch(keyed_form(old, MONITOR), patch), MONITOR) == new


def test_merge_diff_is_minimal_and_refuses_what_rfc7396_cannot_say() -> None:
    old = {"a": 1, "b": {"c": 2, "d": 3}, "gone": 4}
    assert merge_diff(old, {"a": 1, "b": {"c": 2, "d": 5}}) == {"b": {"d": 5}, "gone": None}
    assert merge_diff(old, old) == {}
    assert merge_diff([1], [1, 2]) == [1, 2]  # arrays are replaced whole
    for new in ({**old, "a": None}, {**old, "new": {"x": None}}):
        try:
            merge_diff(old, new)
        except Exception as exc:
            assert type(exc).__name__ == "Unpatchable"
        else:
            raise AssertionError(f"{new} has a null a merge patch cannot carry")


def test_one_item_changed_in_a_thousand_is_a_patch_of_that_item() -> None:
    items = [{"adw_id": f"a{i:04}", "status": "running", "current_phase": "plan", "cost": 0.5} for i in range(1000)]
    patcher = Patcher(MONITOR)
    patcher.start({"workflows": items, "summary": {"running": 1000}}, 1)
    changed = [*items[:500], {**items[500], "current_phase": "build"}, *items[501:]]
    assert patcher.patch({"workflows": changed, "summary": {"running": 1000}}, 2) == {
        "workflows": {"items": {"a0500": {"current_phase": "build"}}}
    }
    gone = changed[:10] + changed[11:]
    assert patcher.patch({"workflows": gone, "summary": {"running": 999}}, 3) == {
        "workflows": {"items": {"a0010": None}, "nulls": {"a0010": None}, "order": [i["adw_id"] for i in gone]},
        "summary": {"running": 999},
    }


def test_every_keyed_channel_has_a_patch_form() -> None:
    routes = [{"path": "/api/x", "method": "GET", "handler": "x"}, {"path": "/api/x", "method": "POST", "handler": "y"}]
    keyed = SPECS["routes"].keyed
    assert keyed is not None
    assert keyed_form(routes, keyed) == {
        "items": {"GET /api/x": routes[0], "POST /api/x": routes[1]},
        "order": ["GET /api/x", "POST /api/x"],
        "nulls": {},
    }
    assert sorted(f for f, spec in SPECS.items() if spec.keyed) == [
        "adw-monitor",
        "queue",
        "routes",
        "workflow-history",
        "workflows",
    ]


async def test_a_patch_subscriber_rebuilds_exactly_what_a_whole_subscriber_gets(start, write_state) -> None:
    for i in range(5):
        write_state(f"a{i}", issue_number=i + 1, status="running", current_phase="plan")
    client = await start(broadcast__min_interval=0)
    async with (
        client.ws_connect("/ws?channels=workflows,queue&patches=1") as patched,
        client.ws_connect("/ws?channels=workflows") as whole,
    ):
        assert await receive(patched) == {"type": "subscribed", "channels": ["workflows", "queue"], "epoch": EPOCH}
        first = await receive(patched)
        assert (first["channel"], first["seq"], len(first["data"])) == ("workflows", 1, 5)  # whole, at first
        assert (await receive(patched))["channel"] == "queue"
        await receive(whole)
        await receive(whole)
        keyed = SPECS["workflows"].keyed
        assert keyed is not None
        held = keyed_form(first["data"], keyed)
        write_state("a2", issue_number=33, status="running", current_phase="plan")
        update = await receive(patched)
        assert update == {
            "type": "workflows_update",
            "channel": "workflows",
            "seq": 2,
            "base_seq": 1,
            "patch": {"items": {"a2": {"issue_number": 33}}},
            "timestamp": ISO_TIME,
        }
        held = apply_merge_patch(held, update["patch"])
        assert list_form(held, keyed) == (await receive(whole))["data"]
        write_state("a9", issue_number=9, status="running", current_phase="plan")  # a new item: order moves
        update = await receive(patched)
        assert (update["seq"], update["base_seq"], update["patch"]["items"]["a9"]["issue_number"]) == (3, 2, 9)
        held = apply_merge_patch(held, update["patch"])
        assert list_form(held, keyed) == (await receive(whole))["data"]


def workflows_event(seq: int, n: int) -> Event:
    data = [{"adw_id": "a", "issue_number": 1, "phase": "plan", "github_url": f"n={n}"}]
    return Event("workflows", seq, "workflows_update", data, f"digest-{n}", 0.0)


async def test_a_patch_goes_only_to_a_client_holding_its_base_else_the_whole_message() -> None:
    hub = Hub(catalog=CATALOG)
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    client = Client(web.WebSocketResponse(), heartbeat_interval=1e9, write_timeout=10, transport=transport)
    theirs.setblocking(False)

    def arrived() -> list[tuple[int, int | None, str]]:
        try:
            frames = server_frames(theirs.recv(1 << 16))
        except BlockingIOError:
            return []
        return [(m["seq"], m.get("base_seq"), "patch" if "patch" in m else "whole") for m in frames]

    try:
        hub.publish(workflows_event(1, 1))
        hub.attach(client, "workflows", patches=True)
        hub.publish(workflows_event(2, 2))
        assert arrived() == [(1, None, "whole"), (2, 1, "patch")]
        client.high_water = -1  # its socket "full": frames are parked, the newest per channel kept
        hub.publish(workflows_event(3, 3))
        hub.publish(workflows_event(4, 4))  # replaces 3, whose patch the client will never see
        client.high_water = 1 << 20
        client.flush()
        assert arrived() == [(4, None, "whole")]  # a patch on 3 would not fit what it holds (2)
        hub.publish(workflows_event(5, 5))
        hub.publish(workflows_event(6, 5))  # the same state again (a change undone in one window): nothing
        hub.publish(workflows_event(7, 7))
        assert arrived() == [(5, 4, "patch"), (7, 5, "patch")]  # the base is what was sent, not 6
        hub.attach(client, "workflows", patches=False)  # subscribed again without patches: whole from now on
        hub.publish(workflows_event(8, 8))
        assert arrived() == [(7, None, "whole"), (8, None, "whole")]
    finally:
        transport.close()
        theirs.close()
