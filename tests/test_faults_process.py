"""Faults against the real ``adw-broadcaster`` process: the path production takes (no test-server shortcuts)."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import time

import aiohttp

from tests.agents_db import AgentsDb
from tests.conftest import receive, receive_until
from tests.helpers import Service, client_frame, eventually, raw_upgrade, reset, send_queue_bytes

BASE = '[webhook]\nstatus_url = ""\n[adw]\nagents_dir = "agents"\ntrees_dir = "trees"\n[event_log]\npath = ""\n'


def config(server: str = "", extra: str = "") -> str:
    return f"[server]\n{server}\n[broadcast]\nmin_interval = 0\n" + BASE + extra


async def test_bad_values_present_at_start_up_neither_hang_it_nor_stop_a_feed(workspace, write_state) -> None:
    nested: object = "x"
    for _ in range(300):
        nested = {"n": nested}
    write_state("deep", raw=json.dumps({"issue_number": "1", "n": nested}).encode())
    write_state("super", issue_number="²")
    (workspace.agents / "fifo").mkdir()
    os.mkfifo(workspace.agents / "fifo" / "adw_state.json")
    (workspace.agents / "zero").mkdir()
    (workspace.agents / "zero" / "adw_state.json").symlink_to("/dev/zero")
    write_state("good", issue_number="2", status="running")
    db = AgentsDb(workspace.root / "agents.db").create(variant="new")
    db.add_phase("q1", 1, feature_id=1, phase_data=b"\xff\xfe", priority=float("inf"))
    service = Service(workspace.root, config(extra='[database]\npath = "agents.db"\n'))
    await service.start()
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(service.url("/ws/adw-monitor")) as ws:
            monitor = (await receive(ws))["data"]
            assert sorted(w["adw_id"] for w in monitor["workflows"]) == ["deep", "good", "super"]
            write_state("good", issue_number="2", status="completed")
            changed = await receive_until(ws, lambda m: m["data"]["summary"]["completed"] == 1)
            # "deep" and "super" say no status and were just written: running on their activity.
            assert changed[-1]["data"]["summary"]["running"] == 2
            queue = await (await session.get(service.url("/api/v1/queue"))).json()
            assert [(p["queue_id"], p["priority"]) for p in queue["phases"]] == [("q1", "Infinity")]
        sent_at = time.monotonic()
        assert (await service.stop(), time.monotonic() - sent_at < 2.0) == (0, True)
    finally:
        service.kill()
    assert "Traceback" not in service.log


def big_state(write_state) -> None:
    write_state("big", blob="x" * 400_000)  # one snapshot fills a stalled reader's socket buffers


async def test_clients_closed_by_a_ping_timeout_are_dropped_not_held(workspace, write_state) -> None:
    big_state(write_state)
    service = await Service(workspace.root, config("ping_interval = 2.0\nwrite_timeout = 60.0")).start()
    stalled: list[socket.socket] = []
    try:
        baseline = service.socket_count()
        stalled = [raw_upgrade(service.port, "/ws/adw-state/big", rcvbuf=4096) for _ in range(5)]
        await eventually(lambda: send_queue_bytes(service.port) > 5 * 100_000)
        # aiohttp's own ping timeout closes them first, gracefully: the fds go, but the kernel keeps
        # each socket and its unsent bytes for minutes. The service must drop them (a reset) instead.
        await eventually(lambda: service.socket_count() == baseline and send_queue_bytes(service.port) == 0)
    finally:
        for sock in stalled:
            sock.close()
        await service.stop()


async def test_a_protocol_ping_flood_from_a_client_that_never_reads_is_dropped(workspace) -> None:
    service = await Service(workspace.root, config("ping_interval = 0\nwrite_timeout = 1.0")).start()
    try:
        baseline = service.socket_count()
        sock = raw_upgrade(service.port, "/ws/queue", rcvbuf=4096)
        sock.settimeout(0.5)
        ping = client_frame(0x9, b"p" * 125)
        try:
            for _ in range(1000):  # aiohttp answers every ping with a pong the client never reads,
                sock.sendall(ping * 50)  # until its socket buffers are full and the pongs pile up
        except (TimeoutError, ConnectionError):
            pass  # the server stopped reading, or dropped us: both are what is being tested
        await eventually(lambda: service.socket_count() == baseline, timeout=10)
        async with aiohttp.ClientSession() as session, session.ws_connect(service.url("/ws/queue")) as ws:
            assert (await receive(ws))["type"] == "queue_update"  # and the service goes on
        sock.close()
    finally:
        await service.stop()


async def test_shutdown_with_stalled_clients_takes_under_two_seconds(workspace, write_state) -> None:
    big_state(write_state)
    service = await Service(workspace.root, config("ping_interval = 0")).start()  # write_timeout stays 10 s
    assert service.socket_count() >= 1
    stalled = [raw_upgrade(service.port, "/ws/adw-state/big", rcvbuf=4096) for _ in range(10)]
    try:
        async with aiohttp.ClientSession() as session:

            async def subscribers() -> int:
                channels = (await (await session.get(service.url("/api/v1/channels"))).json())["channels"]
                return sum(c["subscribers"] for c in channels if c["channel"] == "adw-state:big")

            async with asyncio.timeout(10):
                while await subscribers() < 10:  # every one upgraded
                    await asyncio.sleep(0.05)
        await fill_send_buffers(service, write_state)
        sent_at = time.monotonic()
        code = await service.stop()
        assert (code, time.monotonic() - sent_at < 2.0) == (0, True), service.log[-3000:]
    finally:
        for sock in stalled:
            sock.close()
        service.kill()


async def fill_send_buffers(service: Service, write_state) -> None:
    """Write big changes until the kernel queues of the stalled sockets stop growing, then one more.

    Once the kernel holds all it will, what the service writes next stays in its own buffers:
    the writers are blocked, and so is a graceful close.
    """
    last, step = -1, 0
    async with asyncio.timeout(30):
        while (queued := send_queue_bytes(service.port)) > last or queued == 0:
            last, step = queued, step + 1
            write_state("big", step=step, blob="x" * 900_000)
            await asyncio.sleep(0.3)  # the kernel's growth is what is watched; it is polled, not awaited
        write_state("big", step=step + 1, blob="y" * 900_000)
        await asyncio.sleep(0.3)


def closed_by_peer(sock: socket.socket) -> bool:
    try:
        return sock.recv(4096) == b""
    except BlockingIOError:
        return False
    except ConnectionError:
        return True


async def test_half_sent_handshakes_are_dropped_after_the_handshake_timeout(workspace) -> None:
    service = await Service(workspace.root, config("handshake_timeout = 0.5")).start()
    half: list[socket.socket] = []
    try:
        for _ in range(50):
            sock = socket.create_connection(("127.0.0.1", service.port))
            sock.sendall(b"GET /ws/queue HTTP/1.1\r\nHost: 127")
            sock.setblocking(False)
            half.append(sock)
        await eventually(lambda: all(closed_by_peer(s) for s in half), timeout=10)
        async with aiohttp.ClientSession() as session:  # a whole request is served as usual
            assert (await session.get(service.url("/api/v1/queue"))).status == 200
    finally:
        for sock in half:
            sock.close()
        await service.stop()


def low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))


async def test_a_descriptor_flood_does_not_kill_the_adw_feed(workspace, write_state) -> None:
    write_state("a1", step=0)
    service = Service(workspace.root, config("handshake_timeout = 1.0"), preexec=low_descriptor_limit)
    await service.start()
    half: list[socket.socket] = []
    try:
        async with aiohttp.ClientSession() as session, session.ws_connect(service.url("/ws/adw-state/a1")) as ws:
            await receive(ws)
            for _ in range(150):  # more than the process may open: accept() and reads fail for a while
                sock = socket.create_connection(("127.0.0.1", service.port))
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 1")
                half.append(sock)
            write_state("a1", step=1)
            changed = await receive_until(ws, lambda m: m["data"].get("step") == 1, timeout=20)
            assert changed[-1]["data"] == {"adw_id": "a1", "step": 1}
            write_state("a1", step=2)
            assert (await receive(ws, timeout=10))["data"] == {"adw_id": "a1", "step": 2}
        assert await service.stop() == 0
    finally:
        for sock in half:
            sock.close()
        service.kill()
    # If the reader ran out of descriptors (it usually does, timing decides), it crashed once with
    # its traceback, was restarted, and said when it ran again; nothing else logged a traceback.
    crashes = service.log.count("adw files crashed (OSError: [Errno 24] Too many open files")
    assert crashes <= 1
    assert ("adw files is running again" in service.log) == (crashes == 1)
    assert service.log.count("Traceback") == crashes
    assert "Error handling request" not in service.log


async def test_resets_and_over_long_request_lines_log_no_traceback(workspace) -> None:
    service = await Service(workspace.root, config()).start()
    try:
        for _ in range(20):  # a peer that resets while aiohttp writes the pongs it owes
            sock = raw_upgrade(service.port, "/ws/queue")
            assert sock.recv(12) == b"HTTP/1.1 101"
            sock.sendall(client_frame(0x9, b"p" * 100) * 200)
            reset(sock)
        for request in (
            b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"GET /?token=leak-me&x=" + b"a" * 20000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Long: " + b"b" * 20000 + b"\r\n\r\n",
        ):
            with socket.create_connection(("127.0.0.1", service.port)) as sock:
                sock.sendall(request)
                assert sock.recv(12) in (b"HTTP/1.1 400", b"HTTP/1.0 400")
        async with aiohttp.ClientSession() as session:
            assert (await session.get(service.url("/api/v1/queue"))).status == 200
    finally:
        assert await service.stop() == 0
    assert "Traceback" not in service.log
    assert "leak-me" not in service.log  # (whether aiohttp's message quotes the line depends on its version)


def test_a_logged_bad_request_line_has_its_token_redacted() -> None:
    import logging

    from aiohttp.http_exceptions import BadStatusLine

    from broadcaster.web.site import InputErrors

    exc = BadStatusLine("GET /ws/queue?token=leak-me&since=3 HTTP/1.1")
    record = logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, "Error handling request", (), None)
    record.exc_info = (BadStatusLine, exc, None)
    assert InputErrors().filter(record)
    message = record.getMessage()
    assert "token=***&since=3" in message and "leak-me" not in message


async def test_a_multiplexed_client_that_stops_reading_is_dropped_alone(workspace, write_state) -> None:
    big_state(write_state)
    service = await Service(workspace.root, config("ping_interval = 0\nwrite_timeout = 1.0")).start()
    stalled = raw_upgrade(service.port, "/ws?channels=adw-state:big,adw-monitor,workflows", rcvbuf=4096)
    stalled.setblocking(False)
    dropped = "dropped 1 client(s): slow client: its socket took nothing for 1s"
    try:
        async with aiohttp.ClientSession() as session:
            url = service.url("/ws?channels=adw-state:big,adw-monitor&patches=1")
            async with session.ws_connect(url, max_msg_size=0) as good:
                await receive_until(good, lambda m: m.get("channel") == "adw-state:big")
                step = 0
                while dropped not in service.log and step < 150:  # bounded: a few MB fill its buffers
                    step += 1
                    write_state("big", step=step, blob="x" * 400_000)
                    message = (await receive_until(good, lambda m: m.get("channel") == "adw-state:big"))[-1]
                    assert (message["seq"], message["data"]["step"]) == (step + 1, step)  # every change, in time
                assert dropped in service.log
                await eventually(lambda: closed_by_peer(stalled), timeout=5)
                write_state("big", step=step + 1, blob="small now")
                message = (await receive_until(good, lambda m: m.get("channel") == "adw-state:big"))[-1]
                assert message["data"] == {"adw_id": "big", "step": step + 1, "blob": "small now"}
    finally:
        stalled.close()
        await service.stop()
