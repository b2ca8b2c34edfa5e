"""``/ws``, the multiplexed socket: subscribe by query or message, per-channel resume, errors, limits."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from aiohttp import WSMsgType

from tests.conftest import EPOCH, ISO_TIME, receive, receive_until

QUEUE_EMPTY = {"phases": [], "total": 0, "paused": False}


def state_frame(adw_id: str, seq: int, data: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "type": "adw_state_update",
        "channel": f"adw-state:{adw_id}",
        "adw_id": adw_id,
        "seq": seq,
        "timestamp": ISO_TIME,
        "data": {"adw_id": adw_id, **data},
        **extra,
    }


async def pong_after(ws: Any, mark: str = "mark") -> list[dict[str, Any]]:
    """Ping and return everything that came before the pong (the socket is answered in order)."""
    await ws.send_json({"type": "ping", "timestamp": mark})
    seen = await receive_until(ws, lambda m: m == {"type": "pong", "timestamp": mark})
    return seen[:-1]


@pytest.mark.parametrize("prefix", ["", "/api/v1"])
async def test_query_subscription_sends_subscribed_then_each_snapshot(start, write_state, prefix: str) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect(f"{prefix}/ws?channels=queue,adw-state:a1") as ws:
        assert await receive(ws) == {"type": "subscribed", "channels": ["queue", "adw-state:a1"], "epoch": EPOCH}
        assert await receive(ws) == {
            "type": "queue_update",
            "channel": "queue",
            "seq": 0,
            "epoch": EPOCH,
            "timestamp": ISO_TIME,
            "data": QUEUE_EMPTY,
        }
        assert await receive(ws) == state_frame("a1", 1, {"step": 0}, epoch=EPOCH)
        write_state("a1", step=1)
        assert await receive(ws) == state_frame("a1", 2, {"step": 1})  # the same bytes a single socket gets


async def test_subscribe_and_unsubscribe_by_message(start, write_state) -> None:
    write_state("a1", step=0, issue_number=7, status="running")
    write_state("a2", step=0)
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "channels": ["adw-state:a1", "adw-state:a2", "workflows"]})
        assert await receive(ws) == {
            "type": "subscribed",
            "channels": ["adw-state:a1", "adw-state:a2", "workflows"],
            "epoch": EPOCH,
        }
        first = [await receive(ws) for _ in range(3)]
        assert [(m["channel"], m["seq"]) for m in first] == [("adw-state:a1", 1), ("adw-state:a2", 1), ("workflows", 1)]
        await ws.send_json({"type": "unsubscribe", "channels": ["adw-state:a1"]})
        assert await receive(ws) == {"type": "unsubscribed", "channels": ["adw-state:a1"]}
        write_state("a1", step=1, issue_number=8)
        seen = await receive_until(ws, lambda m: m.get("channel") == "workflows")
        seen += await pong_after(ws)
        assert [m["channel"] for m in seen] == ["workflows"]  # a1's own channel no longer comes
        write_state("a2", step=1)
        assert await receive(ws) == state_frame("a2", 2, {"step": 1})


async def test_resume_is_per_channel_under_one_epoch(start, write_state) -> None:
    write_state("a1", step=0)
    write_state("a2", step=0)
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws?channels=adw-state:a1,adw-state:a2") as ws, client.ws_connect("/ws") as watch:
        await receive(ws)
        (await receive(ws), await receive(ws))
        write_state("a1", step=1)
        assert (await receive(ws))["seq"] == 2
        await ws.close()
        await watch.send_json({"type": "subscribe", "channels": ["adw-state:a1"]})
        await receive_until(watch, lambda m: m.get("seq") == 2)
        write_state("a1", step=2)  # a1 moves on while the client is away; a2 does not
        await receive_until(watch, lambda m: m.get("seq") == 3)
    epoch = (await (await client.get("/api/v1/channels")).json())["epoch"]
    async with client.ws_connect("/ws?channels=adw-state:a1,adw-state:a2&since=adw-state:a1:2,adw-state:a2:1") as ws:
        assert await receive(ws) == {"type": "subscribed", "channels": ["adw-state:a1", "adw-state:a2"], "epoch": epoch}
        # Without the epoch nothing can be trusted: both come whole, not recovered.
        assert await receive(ws) == state_frame("a1", 3, {"step": 2}, epoch=epoch, recovered=False)
        assert await receive(ws) == state_frame("a2", 1, {"step": 0}, epoch=epoch, recovered=False)
    async with client.ws_connect("/ws") as ws:
        since = {"adw-state:a1": 2, "adw-state:a2": 1}
        await ws.send_json({"type": "subscribe", "channels": list(since), "since": since, "epoch": epoch})
        assert await receive(ws) == {"type": "subscribed", "channels": ["adw-state:a1", "adw-state:a2"], "epoch": epoch}
        assert await receive(ws) == state_frame("a1", 3, {"step": 2}, epoch=epoch, recovered=True)
        assert await pong_after(ws) == []  # a2 is up to date: nothing replayed
        write_state("a2", step=1)
        assert await receive(ws) == state_frame("a2", 2, {"step": 1}, epoch=epoch)  # its first frame here


BAD_SUBSCRIBES = [
    (["nope"], {"type": "error", "channel": "nope", "detail": "unknown channel; the channels are "}),
    (["adw-state:../etc"], {"type": "error", "channel": "adw-state:../etc", "detail": "invalid adw_id '../etc'"}),
    (["queue:1"], {"type": "error", "channel": "queue:1", "detail": "queue takes no ':' suffix"}),
    ([17], {"type": "error", "detail": "a channel name is a string, got int"}),
    (["x" * 500], {"type": "error", "channel": "x" * 100, "detail": "unknown channel; the channels are "}),
]


@pytest.mark.parametrize(("channels", "expected"), BAD_SUBSCRIBES, ids=["unknown", "dotdot", "suffix", "int", "long"])
async def test_a_bad_channel_gets_an_error_frame_and_the_rest_goes_through(
    start, write_state, channels: list[Any], expected: dict[str, Any]
) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws") as ws:
        await ws.send_json({"type": "subscribe", "channels": [*channels, "adw-state:a1"]})
        error = await receive(ws)
        detail = error.pop("detail")
        assert detail.startswith(expected.pop("detail"))
        assert error == expected
        assert await receive(ws) == {"type": "subscribed", "channels": ["adw-state:a1"], "epoch": EPOCH}
        assert await receive(ws) == state_frame("a1", 1, {"step": 0}, epoch=EPOCH)


BAD_MESSAGES = [
    ("not json", "not JSON: send a JSON object with a type"),
    ("[1, 2]", "not a JSON object: send a JSON object with a type"),
    ('{"type": "subscribe"}', "subscribe needs channels: a list of channel names"),
    ('{"type": "subscribe", "channels": "queue"}', "subscribe needs channels: a list of channel names"),
    (
        '{"type": "subscribe", "channels": ["queue"], "since": 3}',
        'since is an object of channel -> seq, e.g. {"queue": 1',
    ),
    ('{"type": "subscribe", "channels": ["queue"], "epoch": 3}', "epoch is a string: the one the server sent"),
    ('{"type": "subscribe", "channels": ["queue"], "patches": "yes"}', "patches is true or false"),
    ('{"type": "unsubscribe"}', "unsubscribe needs channels: a list of channel names"),
]


async def test_bad_messages_get_error_frames_and_the_subscriptions_keep_flowing(start, write_state) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0)
    async with client.ws_connect("/ws?channels=adw-state:a1") as ws:
        await receive(ws)
        await receive(ws)
        for step, (text, detail) in enumerate(BAD_MESSAGES, start=1):
            await ws.send_str(text)
            error = await receive(ws)
            assert (error, error.pop("detail").startswith(detail)) == ({"type": "error"}, True), text
            write_state("a1", step=step)
            assert await receive(ws) == state_frame("a1", step + 1, {"step": step}), text
        await ws.send_bytes(b"\x00\x01")
        assert await receive(ws) == {
            "type": "error",
            "detail": "binary messages are not part of the protocol: send JSON text",
        }
        await ws.send_json({"type": "unsubscribe", "channels": ["queue", "adw-state:a1"]})
        assert await receive(ws) == {"type": "error", "channel": "queue", "detail": "not subscribed"}
        assert await receive(ws) == {"type": "unsubscribed", "channels": ["adw-state:a1"]}
        await ws.send_json({"type": "subscribe", "channels": ["adw-state:a1"], "since": {"adw-state:a1": "²"}})
        assert await receive(ws) == {
            "type": "error",
            "channel": "adw-state:a1",
            "detail": "since must be a non-negative integer (a seq), got '²'",
        }
        assert await receive(ws) == {"type": "subscribed", "channels": [], "epoch": EPOCH}
        await ws.send_str('{"type": "client_ready"}')  # well-formed and unknown: ignored, as on single paths
        assert await pong_after(ws) == []


async def test_at_most_max_subscriptions_per_socket(start, write_state) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0, server__max_subscriptions=3, server__max_message_size=1 << 20)
    async with client.ws_connect("/ws?channels=queue,adw-state:a1") as ws:
        await receive_until(ws, lambda m: m.get("channel") == "adw-state:a1")
        many = [f"adw-state:x{i}" for i in range(10_000)]
        await ws.send_json({"type": "subscribe", "channels": ["queue", *many]})
        assert await receive(ws) == {
            "type": "error",
            "detail": "at most 3 subscriptions per socket: 9999 channel(s) not subscribed",
        }
        assert await receive(ws) == {"type": "subscribed", "channels": ["queue", "adw-state:x0"], "epoch": EPOCH}
        assert [(m["channel"], m["seq"]) for m in (await receive(ws), await receive(ws))] == [
            ("queue", 0),  # asked again: the whole snapshot again (how a client recovers from a gap)
            ("adw-state:x0", 0),
        ]
        write_state("a1", step=1)
        assert await receive(ws) == state_frame("a1", 2, {"step": 1})


async def test_an_oversized_subscribe_closes_only_that_socket(start, write_state) -> None:
    write_state("a1", step=0)
    client = await start(broadcast__min_interval=0, server__max_message_size=1024)
    async with client.ws_connect("/ws?channels=adw-state:a1") as other, client.ws_connect("/ws") as ws:
        await receive(other)
        await receive(other)
        await ws.send_str(orjson.dumps({"type": "subscribe", "channels": ["queue"] * 200}).decode())
        msg = await ws.receive(timeout=5)
        assert (msg.type, ws.close_code) == (WSMsgType.CLOSE, 1009)
        write_state("a1", step=1)
        assert await receive(other) == state_frame("a1", 2, {"step": 1})


async def test_a_malformed_query_is_refused_before_the_upgrade(start) -> None:
    client = await start()
    for query, detail in [
        ("since=queue", "since is channel:seq pairs, got 'queue'"),
        ("patches=maybe", "patches is 1 or 0, got 'maybe'"),
    ]:
        response = await client.get(f"/ws?channels=queue&{query}")
        assert (response.status, await response.json()) == (400, {"detail": detail})


async def test_one_message_causes_at_most_twenty_error_frames(start) -> None:
    client = await start()
    bad = [f"nope{i}" for i in range(50)]
    for url, send in [("/ws", True), (f"/ws?channels={','.join(bad)},queue", False)]:
        async with client.ws_connect(url) as ws:
            if send:
                await ws.send_json({"type": "subscribe", "channels": [*bad, "queue"]})
            errors = [await receive(ws) for _ in range(20)]
            assert [e["channel"] for e in errors] == bad[:20]
            assert await receive(ws) == {"type": "error", "detail": "30 more error(s) in that message not shown"}
            assert await receive(ws) == {"type": "subscribed", "channels": ["queue"], "epoch": EPOCH}
