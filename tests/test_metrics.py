"""/metrics: Prometheus text, parsed with prometheus_client's own parser, checked after known traffic."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import receive
from tests.helpers import TOKEN, Service
from tests.helpers import operate_config as config

BEARER = {"Authorization": f"Bearer {TOKEN}"}


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample by (name, sorted labels)."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(found: dict[Any, float], name: str, **labels: str) -> float:
    return found.get((f"adw_broadcaster_{name}", tuple(sorted(labels.items()))), 0.0)


def total(found: dict[Any, float], name: str) -> float:
    return sum(v for (sample, _), v in found.items() if sample == f"adw_broadcaster_{name}")


async def scrape(session: aiohttp.ClientSession, url: str) -> dict[Any, float]:
    async with session.get(url, headers=BEARER) as response:
        assert response.status == 200
        assert response.content_type == "text/plain"  # the exposition format (its version per library)
        return samples(await response.text())


def frame_bytes(payload: str) -> int:
    size = len(payload.encode())
    return size + (2 if size < 126 else 4 if size < 65536 else 10)


async def test_metrics_count_what_was_sent_recorded_and_closed(workspace, write_state) -> None:
    write_state("a1", step=0)
    server = f"token = '{TOKEN}'"
    service = await Service(
        workspace.root, config(workspace, server).replace("path = ''", "path = 'events.db'")
    ).start()
    url = service.url("/metrics")
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(url) as refused:
                assert refused.status == 401  # covered by the token
            before = await scrape(session, url)
            assert value(before, "messages_sent_total", channel="adw-state") == 0
            clients = [await session.ws_connect(service.url("/ws/adw-state/a1"), headers=BEARER) for _ in range(2)]
            received: list[str] = []
            for ws in clients:
                received.append((await ws.receive()).data)
            for step in (1, 2):
                write_state("a1", step=step)
                for ws in clients:
                    message = await ws.receive(timeout=5)
                    received.append(message.data)
            assert len(received) == 6
            after = await scrape(session, url)
            # Three messages to two clients: six, and their exact bytes on the wire.
            assert value(after, "messages_sent_total", channel="adw-state") == 6
            assert value(after, "bytes_sent_total", channel="adw-state") == sum(map(frame_bytes, received))
            assert value(after, "clients", channel="adw-state") == 2
            assert value(after, "connections") == 2
            assert value(after, "events_recorded_total", channel="adw-state") == 3
            recorded = sum(v for (name, _), v in after.items() if name == "adw_broadcaster_events_recorded_total")
            recorded_before = sum(
                v for (name, _), v in before.items() if name == "adw_broadcaster_events_recorded_total"
            )
            published = value(after, "change_to_publish_seconds_count") - value(
                before, "change_to_publish_seconds_count"
            )
            assert published == recorded - recorded_before > 0  # one latency per event (no throttle here)
            assert value(after, "source_reads_total", source="adw files") >= 3
            assert value(after, "source_last_success_timestamp_seconds", source="adw files") > 1.7e9
            stored = await scrape(session, url)
            async with asyncio.timeout(10):  # the log's size is counted at most every few seconds
                while value(stored, "event_log_events") < total(after, "events_recorded_total"):
                    stored = await scrape(session, url)
            assert value(stored, "event_log_bytes") > 0
            for ws in clients:
                await ws.close()
            async with session.get(service.url("/healthz")) as health:  # the close is counted when its handler ends
                assert health.status == 200
            closed = 0.0
            for _ in range(100):
                closed = value(await scrape(session, url), "clients_closed_total", reason="peer")
                if closed == 2:
                    break
            assert closed == 2
    finally:
        await service.stop()


async def test_two_apps_in_one_process_have_their_own_registries_and_upstream_counts(start) -> None:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"ok": True}, status=200 if request.path == "/api/ok" else 404)

    backend = web.Application()
    backend.router.add_route("*", "/{tail:.*}", ok)
    async with TestServer(backend, host="127.0.0.1") as upstream:
        first = await start(upstream__url=str(upstream.make_url("")))
        second = await start(event_log__path="")
        assert (await first.get("/api/ok")).status == 200
        assert (await first.get("/api/missing")).status == 404
        found = samples(await (await first.get("/metrics")).text())
        assert value(found, "upstream_requests_total", status="2xx") == 1
        assert value(found, "upstream_requests_total", status="4xx") == 1
        other = samples(await (await second.get("/metrics")).text())
        assert ("adw_broadcaster_upstream_requests_total", (("status", "2xx"),)) not in other  # no upstream there
    async with second.ws_connect("/ws/queue") as ws:
        await receive(ws)
        found = samples(await (await second.get("/metrics")).text())
        assert value(found, "messages_sent_total", channel="queue") == 1
