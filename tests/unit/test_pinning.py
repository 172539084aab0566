"""Tool-manifest pinning: any change to any part of a tool definition is caught, in code and on a live server."""

from __future__ import annotations

import copy
import json

import httpx
import pytest

from apps import fleet
from apps.kit.cli.pin import main as pin
from apps.kit.declare.manifest import (
    DIGEST_META,
    MANIFEST_PATH,
    SCOPES_META,
    drift,
    manifest,
    to_lock_text,
    tool_digest,
)
from tests.support import demo_server
from tests.support.mcp_client import mcp_client

FLEET = fleet.modules()


@pytest.mark.parametrize("module", FLEET)
def test_every_server_matches_its_committed_lock(module):
    assert pin(["check", module]) == 0, f"run: python -m apps.kit.cli.pin lock {module}"


def definitions() -> list[dict]:
    return [spec.definition for spec in demo_server.server.specs.values()]


MUTATIONS = {
    "name": lambda d: d.update(name="echo2"),
    "description": lambda d: d.update(description=d["description"] + " Also deletes."),
    "a schema bound": lambda d: d["inputSchema"]["properties"]["times"].update(maximum=500),
    "a new argument": lambda d: d["inputSchema"]["properties"].update(path={"type": "string"}),
    "readOnlyHint flipped": lambda d: d["annotations"].update(readOnlyHint=False),
    "an output schema": lambda d: d.update(outputSchema={"type": "object"}),
    "its scope": lambda d: d["_meta"].update({SCOPES_META: ["demo:write"]}),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_any_change_to_a_definition_changes_its_digest_and_is_reported(mutation):
    before = manifest("kit-demo", definitions())
    changed = copy.deepcopy(definitions())
    echo = next(d for d in changed if d["name"] == "echo")
    description = echo["description"]
    MUTATIONS[mutation](echo)
    after = manifest("kit-demo", changed)
    assert after["sha256"] != before["sha256"]
    lines = drift(before, after)
    assert lines, mutation
    if mutation not in ("name", "description"):
        assert echo["description"] == description  # a scanner hashing descriptions only would miss this one
        assert tool_digest(echo) != before["tools"]["echo"]["sha256"]


def test_drift_names_the_field_and_the_command_that_accepts_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "apps" / "db").mkdir(parents=True)
    from apps.db.server import server

    locked = server.manifest()
    locked["tools"]["query"]["definition"]["annotations"]["readOnlyHint"] = False
    locked["tools"]["query"]["sha256"] = tool_digest(locked["tools"]["query"]["definition"])
    (tmp_path / "apps" / "db" / "tools.lock.json").write_text(to_lock_text(locked))
    assert pin(["check", "apps.db"]) == 1
    err = capsys.readouterr().err
    lines = [line.strip() for line in err.splitlines()]
    assert "~ tool 'query'" in err and "tools.query.annotations.readOnlyHint: false -> true" in lines
    assert "python -m apps.kit.cli.pin lock apps.db" in err


def test_a_scope_change_fails_pin_check_and_names_the_path(tmp_path, monkeypatch, capsys):
    """Moving `query` from db:read to db:write changes who may call it: that is drift, like a schema change."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "apps" / "db").mkdir(parents=True)
    from apps.db.server import server

    locked = server.manifest()
    assert locked["tools"]["query"]["definition"]["scopes"] == ["db:read"]
    locked["tools"]["query"]["definition"]["scopes"] = ["db:write"]
    locked["tools"]["query"]["definition"]["inputSchema"]["properties"]["limit"]["maximum"] = 100000
    locked["tools"]["query"]["sha256"] = tool_digest(locked["tools"]["query"]["definition"])
    (tmp_path / "apps" / "db" / "tools.lock.json").write_text(to_lock_text(locked))
    assert pin(["check", "apps.db"]) == 1
    lines = [line.strip() for line in capsys.readouterr().err.splitlines()]
    assert 'tools.query.scopes[0]: "db:write" -> "db:read"' in lines
    assert "tools.query.inputSchema.properties.limit.maximum: 100000 -> 1000" in lines


async def test_a_live_server_publishes_its_digests_and_manifest(demo, token_for):
    published = httpx.get(demo.base + MANIFEST_PATH).json()
    assert published == demo_server.server.manifest()
    async with mcp_client(demo.mcp_url, token_for("demo:read demo:write", demo.mcp_url)) as client:
        tools = (await client.list_tools()).tools
    for tool in tools:
        definition = tool.model_dump(by_alias=True, exclude_none=True)
        assert tool.meta[DIGEST_META] == tool_digest(definition) == published["tools"][tool.name]["sha256"]


def test_verify_holds_a_live_server_to_the_lock(demo, token_for, tmp_path, capsys):
    lock = tmp_path / "tools.lock.json"
    lock.write_text(to_lock_text(demo_server.server.manifest()))
    token = token_for("demo:read", demo.mcp_url)
    assert pin(["verify", demo.mcp_url, "--lock", str(lock)]) == 0
    assert pin(["verify", demo.mcp_url, "--lock", str(lock), "--token", token]) == 0
    trusted = json.loads(lock.read_text())  # the pin says `echo` takes at most 3 repetitions
    trusted["tools"]["echo"]["definition"]["inputSchema"]["properties"]["times"]["maximum"] = 3
    trusted["tools"]["echo"]["sha256"] = tool_digest(trusted["tools"]["echo"]["definition"])
    lock.write_text(to_lock_text(trusted))
    capsys.readouterr()
    assert pin(["verify", demo.mcp_url, "--lock", str(lock), "--token", token]) == 1
    err = capsys.readouterr().err
    assert "manifest ~ tool 'echo'" in err and "tools/list ~ tool 'echo'" in err and "inputSchema" in err
