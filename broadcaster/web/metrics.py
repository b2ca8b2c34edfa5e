"""``GET /metrics``: Prometheus text, built with the official ``prometheus-client``.

Each app has its own ``CollectorRegistry`` (two apps in one process never collide). Counters are
kept as plain numbers where the work happens (``counters.Counters``) and read at scrape time by
one collector; the change-to-publish latency is a ``Histogram`` observed per published event.
Labels are channel families (``adw-state`` for every ADW's channel), source names, close reasons
and status classes: bounded, whatever the number of ADWs. Covered by the token when one is set.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..channels.service_data import route
from ..core.counters import Counters, family
from ..core.hub import Hub
from .keys import COUNTERS, EVENT_LOG, HUB, SUPERVISOR

PREFIX = "adw_broadcaster_"
REGISTRY = web.AppKey("metrics_registry", CollectorRegistry)
LOG_SIZE = web.AppKey("metrics_log_size", list)  # [events, bytes, measured at]
UPSTREAM_SET = web.AppKey("metrics_upstream", bool)  # an upstream is configured: its counter is always shown
LOG_SIZE_EVERY = 1.0  # seconds a measured event-log size is reused (a COUNT over the log, in its thread)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ServiceCollector(Collector):
    """Read the app's counters and state at scrape time."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    def collect(self) -> Iterator[Any]:
        yield from self._delivery()
        yield from self._sources()
        yield from self._storage()

    def _delivery(self) -> Iterator[Any]:
        """Clients, connections, frames and bytes written, events recorded and coalesced, closes."""
        counters: Counters = self._app[COUNTERS]
        hub: Hub = self._app[HUB]
        clients = GaugeMetricFamily(PREFIX + "clients", "Subscriptions open, per channel family", labels=["channel"])
        for name, n in _per_family(hub.subscriber_counts()).items():
            clients.add_metric([name], n)
        yield clients
        yield _gauge("connections", "WebSocket connections open", len(hub.clients))

        messages = CounterMetricFamily(PREFIX + "messages_sent", "Frames written to sockets", labels=["channel"])
        sent_bytes = CounterMetricFamily(
            PREFIX + "bytes_sent", "Bytes of frames written to sockets", labels=["channel"]
        )
        for name, (n, size) in sorted(counters.sent.items()):
            messages.add_metric([name], n)
            sent_bytes.add_metric([name], size)
        yield messages
        yield sent_bytes
        yield _counter("events_recorded", "Real changes recorded in the event log", "channel", counters.recorded)
        yield _counter(
            "events_coalesced",
            "Changes replaced by a newer one inside a throttle window",
            "channel",
            counters.coalesced,
        )
        yield _counter("clients_closed", "Client connections ended, by reason", "reason", counters.closed)

    def _sources(self) -> Iterator[Any]:
        """Reads per source, failed reads (crashes of the reader included), the last good read."""
        counters: Counters = self._app[COUNTERS]
        errors = dict(counters.read_errors)
        for part in self._app[SUPERVISOR].parts.values():  # a crashed reader is a failed read too
            if part.name in counters.reads or part.restarts:
                errors[part.name] = errors.get(part.name, 0) + part.restarts
        yield _counter(
            "source_reads",
            "Reads a source handed on (a file change, a database commit, a poll)",
            "source",
            counters.reads,
        )
        yield _counter("source_read_errors", "Reads that failed, crashes of the reader included", "source", errors)
        last = GaugeMetricFamily(
            PREFIX + "source_last_success_timestamp_seconds",
            "When each source last read successfully (Unix time)",
            labels=["source"],
        )
        for name, at in sorted(counters.last_read.items()):
            last.add_metric([name], at)
        yield last

    def _storage(self) -> Iterator[Any]:
        """The event log's size; the bus's and the upstream's counts where they are in use."""
        counters: Counters = self._app[COUNTERS]
        events, size, _ = self._app[LOG_SIZE]
        yield _gauge("event_log_events", "Events the event log holds", events)
        yield _gauge("event_log_bytes", "Bytes of the event log's files (0 in memory)", size)
        if counters.backplane:
            yield _counter(
                "backplane_entries",
                "Entries through Redis: a node's published, dropped (queue full) or refused; a view's read or bad",
                "outcome",
                counters.backplane,
            )
        if self._app[UPSTREAM_SET] or counters.upstream:
            yield _counter(
                "upstream_requests", "Requests forwarded to the upstream, by status class", "status", counters.upstream
            )


def _per_family(counts: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for channel, n in counts.items():
        out[family(channel)] = out.get(family(channel), 0) + n
    return dict(sorted(out.items()))


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _counter(name: str, doc: str, label: str, values: dict[str, int]) -> CounterMetricFamily:
    metric = CounterMetricFamily(PREFIX + name, doc, labels=[label])
    for key, n in sorted(values.items()):
        metric.add_metric([key], n)
    return metric


async def metrics(request: web.Request) -> web.StreamResponse:
    """Answer the Prometheus text of this app's registry."""
    app = request.app
    held = app[LOG_SIZE]
    if time.monotonic() - held[2] >= LOG_SIZE_EVERY:
        try:
            held[0], held[1] = await app[EVENT_LOG].store.size()
            held[2] = time.monotonic()
        except Exception:  # a log that cannot be counted right now: the last figures stand
            pass
    body = generate_latest(app[REGISTRY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_metrics(app: web.Application, counters: Counters, *, upstream: bool) -> list[dict[str, Any]]:
    """Serve ``/metrics`` from a registry of this app's own; return its Route."""
    registry = CollectorRegistry()
    app[COUNTERS] = counters
    app[REGISTRY] = registry
    app[LOG_SIZE] = [0, 0, float("-inf")]
    app[UPSTREAM_SET] = upstream
    registry.register(ServiceCollector(app))
    latency = Histogram(
        PREFIX + "change_to_publish_seconds",
        "From a source's fresh read reaching the pipeline to the hub handing the frame out",
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    counters.latency = latency.observe
    app.router.add_get("/metrics", metrics, allow_head=False)
    return [route("/metrics", "GET", "metrics", "Prometheus metrics", "The text format", ["ops"])]
