"""``sources.http.Poll`` on the in-memory Fetch: every url at once, then again each interval."""

from __future__ import annotations

from sources.http import MemoryFetch, Poll, Reply


async def test_poll_fetches_every_url_each_round_and_reports_failures_as_replies() -> None:
    fetch = MemoryFetch({"http://a/status": Reply(200, b'{"status": "ok"}')})
    source = Poll(fetch, {"a": "http://a/status", "b": "http://b/health"}, interval=0.01, timeout=1.0)
    rounds = source.changes()
    try:
        first = await anext(rounds)
        assert first == {"a": Reply(200, b'{"status": "ok"}'), "b": Reply(error="http://b/health: connection refused")}
        assert (first["a"].problem(), first["b"].problem()) == (None, "http://b/health: connection refused")
        assert source.failed(first) and not source.failed({"a": first["a"]})
        fetch.replies["http://b/health"] = Reply(503)
        second = await anext(rounds)
        assert (second["b"].ok, second["b"].problem()) == (False, "HTTP 503")
        assert fetch.calls == ["http://a/status", "http://b/health"] * 2
    finally:
        await rounds.aclose()
