"""Credentials people actually hold never leave, by name or by look; database texts are bounded.

Against a real service process: every message (WS), answer (HTTP), stored event (events API) and
the event-log file itself.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from broadcaster.config import load_config
from broadcaster.errors import ConfigError
from sources.values import REDACTED
from tests.agents_db import AgentsDb
from tests.conftest import receive
from tests.helpers import Service

# The names the attack run got through, in the spellings it used, and a few more.
SECRET_NAMES = (
    "github_pat GITHUB_PAT OPENAI_KEY aws_secret_access_key access_key ssh_key signing_key secret_key_base"
    " passwd pwd auth bearer jwt session_id creds database_url tokenValue TOKEN2 x-api-key ANTHROPIC_KEY"
    " client_secret dsn"
).split()
COUNTS = {"total_tokens": 1234, "max_tokens": 4096, "tokens_used": 7, "author": "bob", "auth_method": "oauth"}
# Credential-looking text (built here so no scanner mistakes this file for a leak), in a longer text.
GITHUB = "ghp_" + "A1b2C3d4E5" * 4
LOOKS = {
    "github": GITHUB,
    "github_fine": "github_pat_" + "11ABCDEFG0" * 5,
    "openai": "sk-proj-" + "Ab3De6Gh9J" * 4,
    "anthropic": "sk-ant-api03-" + "Zy8Xw7Vu6T" * 4,
    "aws": "AKIA" + "IOSFODNN7EXAMPL2",
    "slack": "xoxb-" + "1234567890-abcdefghij",
    "jwt": "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0" + ".dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\n-----END RSA PRIVATE KEY-----",
}


def config(workspace: Any, extra: str = "") -> str:
    return (
        "[server]\n[broadcast]\nmin_interval = 0\n[webhook]\nstatus_url = ''\n"
        f"[adw]\nagents_dir = '{workspace.agents}'\ntrees_dir = '{workspace.trees}'\n"
        f"[event_log]\npath = '{workspace.root / 'events.db'}'\n{extra}"
    )


async def everywhere(service: Service, channel: str, path: str) -> list[Any]:
    """Return a channel's data as the socket, the HTTP answer and the events API give it."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(service.url(f"/ws/{channel.replace(':', '/')}")) as ws:
            sent = (await receive(ws))["data"]
        async with session.get(service.url(path)) as response:
            answered = await response.json()
        async with session.get(service.url(f"/api/v1/events?channel={channel}")) as response:
            stored = (await response.json())["events"][-1]["data"]
    return [sent, answered, stored]


async def test_every_credential_name_and_look_is_redacted_everywhere_and_ids_stay_exact(workspace, write_state) -> None:
    adw_id = GITHUB[:40]  # a valid ADW id that looks like a GitHub token: ids are never redacted
    names = {name: f"value-of-{name}" for name in SECRET_NAMES}
    texts = {f"{kind}_note": f"please use {secret} now" for kind, secret in LOOKS.items()}
    write_state(
        adw_id,
        issue_number="5",
        nl_input=f"deploy with postgres://bob:hunter2@db:5432/app and {LOOKS['openai']}",
        env={**names, **COUNTS},
        **texts,
        last_error=f"401 for token {LOOKS['jwt']} at https://api.example/v1",
    )
    db = AgentsDb(workspace.root / "agents.db").create()
    db.add_history(adw_id, "failed", error_message=f"push refused: {GITHUB}", structured_input={"apiKey": "k-1"})
    service = await Service(
        workspace.root, config(workspace, f"[database]\npath = '{workspace.root / 'agents.db'}'\n")
    ).start()
    try:
        expected = {
            "adw_id": adw_id,
            "issue_number": "5",
            "nl_input": f"deploy with postgres://bob:{REDACTED}@db:5432/app and {REDACTED}",
            "env": {**dict.fromkeys(SECRET_NAMES, REDACTED), **COUNTS},
            **{name: f"please use {REDACTED} now" for name in texts},
            "last_error": f"401 for token {REDACTED} at https://api.example/v1",
        }
        assert await everywhere(service, f"adw-state:{adw_id}", f"/api/v1/adw-state/{adw_id}") == [expected] * 3
        histories = await everywhere(service, "workflow-history", "/api/v1/workflow-history")
        for data in histories:
            row = data["workflows"][0]
            assert (row["adw_id"], row["error_message"], row["structured_input"]) == (
                adw_id,
                f"push refused: {REDACTED}",
                {"apiKey": REDACTED},
            )
    finally:
        assert await service.stop() == 0
    stored = b"".join(p.read_bytes() for p in workspace.root.iterdir() if p.name.startswith("events.db"))
    for secret in [*names.values(), *LOOKS.values(), "hunter2"]:
        assert secret.split("\n")[0].encode() not in stored, secret
    assert adw_id.encode() in stored


async def test_patterns_are_configurable_with_a_secret_group(workspace, write_state) -> None:
    write_state("a1", note="ticket-123456 and ghp_" + "x" * 40)
    patterns = "[redaction]\npatterns = ['ticket-(?P<secret>[0-9]{6})']\n"  # replaces the defaults
    service = await Service(workspace.root, config(workspace, patterns)).start()
    try:
        data = await everywhere(service, "adw-state:a1", "/api/v1/adw-state/a1")
        assert data == [{"adw_id": "a1", "note": f"ticket-{REDACTED} and ghp_{'x' * 40}"}] * 3
    finally:
        await service.stop()


def test_a_pattern_that_is_not_a_regex_is_a_one_line_error(tmp_path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[redaction]\npatterns = ['ok', 'broken(']\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"{path}: [redaction] patterns: pattern 2 ('broken(') is not a regex: missing ), unterminated subpattern"
        " at position 6"
    )


async def test_a_database_text_over_max_value_bytes_is_cut_with_a_marker(workspace) -> None:
    db = AgentsDb(workspace.root / "agents.db").create()
    db.add_history("h1", "failed", error_message="é" * 60_000)  # 120,000 bytes of UTF-8
    db.add_phase("q1", 1, parent_issue=1, phase_data='{"title": "Plan", "content": "' + "c" * 100_000 + '"}')
    extra = f"[database]\npath = '{workspace.root / 'agents.db'}'\nmax_value_bytes = 4097\n"
    service = await Service(workspace.root, config(workspace, extra)).start()
    try:
        for data in await everywhere(service, "workflow-history", "/api/v1/workflow-history"):
            # 4,097 bytes end inside a two-byte character: the cut is on the character before it.
            assert data["workflows"][0]["error_message"] == "é" * 2048 + "... [cut: 115,904 more bytes]"
        for data in await everywhere(service, "queue", "/api/v1/queue"):
            phase = data["phases"][0]
            assert (phase["phase"], phase["metadata"]["content"]) == (
                "Plan",
                "c" * 4097 + "... [cut: 95,903 more bytes]",
            )
    finally:
        await service.stop()
