"""The sweep on a fake clock: heartbeats after exactly a heartbeat interval of quiet, pings and their
deadline, slow clients dropped after the write timeout; and it looks only at clients that are due."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import orjson
import pytest
from aiohttp import web

from broadcaster.channels.specs import CATALOG
from broadcaster.core.client import Client
from broadcaster.core.events import Event
from broadcaster.core.hub import Hub
from broadcaster.core.schedule import Schedule

HEARTBEAT = 10.0
WRITE_TIMEOUT = 5.0


@dataclass
class Peer:
    """The far end of one client's socket: what the server wrote, as (opcode, payload) frames."""

    client: Client
    transport: asyncio.Transport
    sock: socket.socket

    def frames(self) -> list[tuple[int, bytes]]:
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return []
        frames, at = [], 0
        while at < len(data):
            opcode, length, at = data[at] & 0x0F, data[at + 1] & 0x7F, at + 2
            if length == 126:
                length, at = int.from_bytes(data[at : at + 2], "big"), at + 2
            frames.append((opcode, data[at : at + length]))
            at += length
        return frames

    def kinds(self) -> list[str]:
        """Name each frame: a message's type, or ping."""
        return ["ping" if op == 0x9 else orjson.loads(payload)["type"] for op, payload in self.frames()]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def peers() -> AsyncIterator[list[Peer]]:
    made: list[Peer] = []
    yield made
    for peer in made:
        peer.transport.close()
        peer.sock.close()
    await asyncio.sleep(0)


async def connect(peers: list[Peer], clock: Clock) -> Peer:
    ours, theirs = socket.socketpair()
    transport, _ = await asyncio.get_running_loop().connect_accepted_socket(asyncio.Protocol, ours)
    theirs.setblocking(False)
    client = Client(
        web.WebSocketResponse(),
        heartbeat_interval=HEARTBEAT,
        write_timeout=WRITE_TIMEOUT,
        transport=transport,
        clock=clock,
    )
    peers.append(Peer(client, transport, theirs))
    return peers[-1]


def event(channel: str, seq: int) -> Event:
    return Event(channel, seq, "workflows_update", [], f"{channel}-{seq}", 0.0)


def sweeps(hub: Hub, clock: Clock, until: float) -> None:
    """Sweep once a second (the app's interval) up to ``until``."""
    while clock.now < until:
        clock.now = round(clock.now + 1.0, 6)
        hub.sweep()


async def test_a_heartbeat_goes_after_exactly_a_quiet_interval_and_a_busy_client_gets_none(peers) -> None:
    clock = Clock()
    hub = Hub(catalog=CATALOG, tick=clock, sweep_interval=1.0)
    quiet, busy = await connect(peers, clock), await connect(peers, clock)
    hub.publish(event("workflows", 1))
    hub.publish(event("routes", 1))
    hub.attach(quiet.client, "workflows")  # its first frame at t=0, then nothing
    hub.attach(busy.client, "routes")
    assert (quiet.kinds(), busy.kinds()) == (["workflows_update"], ["workflows_update"])
    for second in range(1, 31):
        sweeps(hub, clock, second)
        hub.publish(event("routes", second + 1))  # busy gets a change every second
        got = quiet.kinds()
        assert got == (["heartbeat"] if second % 10 == 0 else []), second
        assert busy.kinds() == ["workflows_update"]  # never a heartbeat


async def test_a_peer_that_leaves_a_ping_unanswered_is_dropped_one_interval_later(peers) -> None:
    clock = Clock()
    hub = Hub(catalog=CATALOG, tick=clock, sweep_interval=1.0, ping_interval=4.0)
    silent, answering = await connect(peers, clock), await connect(peers, clock)
    hub.publish(event("workflows", 1))
    for peer in (silent, answering):
        hub.attach(peer.client, "workflows")
        peer.frames()
    sweeps(hub, clock, 4.0)
    assert (silent.kinds(), answering.kinds()) == (["ping"], ["ping"])
    answering.client.heard()  # its pong came
    sweeps(hub, clock, 7.0)
    assert silent.client.closed_reason is None
    sweeps(hub, clock, 8.0)
    assert silent.client.closed_reason == "no answer to a ping within 4s"
    assert (answering.client.closed_reason, answering.kinds()) == (None, [])
    sweeps(hub, clock, 9.0)  # the sweep that sees its answer, then one more: 4 s of quiet since
    assert answering.kinds() == ["ping"]


async def test_a_client_whose_socket_stays_full_is_dropped_after_the_write_timeout(peers) -> None:
    clock = Clock()
    hub = Hub(catalog=CATALOG, tick=clock, sweep_interval=1.0)
    slow = await connect(peers, clock)
    hub.publish(event("workflows", 1))
    hub.attach(slow.client, "workflows")
    clock.now = 2.5
    slow.client.high_water = -1  # its socket "full": the next frame is parked
    hub.publish(event("workflows", 2))
    assert slow.client.parked
    sweeps(hub, clock, 3.0)  # the first sweep after it filled starts the clock
    sweeps(hub, clock, 7.0)
    assert slow.client.closed_reason is None
    sweeps(hub, clock, 8.0)
    assert slow.client.closed_reason == f"slow client: its socket took nothing for {WRITE_TIMEOUT:g}s"


def test_the_schedule_hands_out_what_is_due_once_and_never_files_later_than_asked() -> None:
    schedule: Schedule[str] = Schedule(1.0)
    schedule.add("a", 2.5)  # the sweep at 3
    schedule.add("b", 10.0)
    schedule.add("b", 4.0)  # due earlier now: it moves
    schedule.add("b", 20.0)  # later: it stays at 4
    schedule.add("c", 1.0)
    schedule.remove("c")
    assert (schedule.take(2.9), len(schedule)) == ([], 2)
    assert schedule.take(3.0) == ["a"]
    schedule.add("a", 0.0)  # in the past: the next sweep, not one already done
    assert schedule.take(3.5) == []
    assert sorted(schedule.take(4.2)) == ["a", "b"]
    assert (schedule.take(100.0), len(schedule)) == ([], 0)
