"""Each channel's facts live in its spec; copies that cannot read it (the JS client, the docs) are held to it.

A new channel is its spec and its builder: the hub, the event log, the ETags, the status entries,
the protocol documents read the spec. The JavaScript client and docs/protocol.md cannot import
Python, so these tests hold them to the specs.
"""

from __future__ import annotations

import re
from typing import Any

from broadcaster.channels.health import Health
from broadcaster.channels.schemas import components
from broadcaster.channels.specs import CATALOG, SPECS
from broadcaster.channels.status import SystemStatus
from broadcaster.config import load_config
from tests.helpers import REPO

ENTRY = re.compile(r'^\s*"?([a-z-]+)"?: (null|\{ field: (null|"\w+"), key: ("\w+"|\[[^\]]*\]) \}),$')


def js_families() -> dict[str, Any]:
    """Parse the FAMILIES table of clients/js/client.js: family -> (field, key) or None."""
    text = (REPO / "clients" / "js" / "client.js").read_text()
    block = text.split("const FAMILIES = {\n", 1)[1].split("\n};", 1)[0]
    table: dict[str, Any] = {}
    for line in block.splitlines():
        match = ENTRY.match(line)
        assert match, f"client.js FAMILIES: cannot read {line!r}"
        family, whole, field, key = match.groups()
        if whole == "null":
            table[family] = None
        else:
            keys = tuple(re.findall(r'"(\w+)"', key))
            table[family] = (field.strip('"') if field != "null" else "", keys[0] if len(keys) == 1 else keys)
    return table


def test_the_js_clients_keyed_families_are_the_specs() -> None:
    assert js_families() == {
        family: (spec.keyed.field, spec.keyed.key) if spec.keyed else None for family, spec in SPECS.items()
    }


def test_the_protocol_docs_channel_table_is_the_specs() -> None:
    rows = re.findall(
        r"^\| `([a-z-]+)(?::\{adw_id\})?` \| `(/ws/[^`]+)` \| `(\w+)` \|", (REPO / "docs/protocol.md").read_text(), re.M
    )
    assert {family: (path, kind) for family, path, kind in rows} == {
        family: ("/ws/adw-state/{adw_id}" if spec.param else f"/ws/{family}", spec.type)
        for family, spec in SPECS.items()
    }


def test_the_rest_reads_each_fact_from_the_spec() -> None:
    schemas = components()
    for family, spec in SPECS.items():
        assert schemas[f"{spec.schema}Update"]["properties"]["type"] == {"const": spec.type}, family
        assert (f"{spec.schema}Patch" in schemas) == (spec.keyed is not None), family
    assert [f for f, spec in SPECS.items() if spec.clock_values] == ["workflow-history", "adw-monitor", "system-status"]
    health = Health(load_config(None, env={}, cwd=REPO), SystemStatus(), catalog=CATALOG, adw=None, databases=[])
    health.channel_problems = {"queue": "too big", "adw-state:a1": "too big", "routes": "too big"}
    services = health.report()["services"]
    assert {
        name: (services[name]["status"], services[name]["message"]) for name in ("database", "adw_files", "openapi")
    } == {
        "database": ("error", "queue not updated: too big"),
        "adw_files": ("error", "adw-state:a1 not updated: too big"),
        "openapi": ("error", "routes not updated: too big"),
    }
