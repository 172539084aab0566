"""Each server's `server.json` validates against the MCP registry's published schema (2025-12-11, the copy PyPI's
`skillsaw` bundles byte for byte, so the check runs offline), and says what is deployed: the stack's URL and
issuer, the tools the app's settings register with their scopes and pinned digests, its organisation policies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import skillsaw

from infra.catalogue import PUBLISHER, SCHEMA, catalogue, registry_name, server_json
from infra.config import StackConfigError, parse, stack_values
from infra.fleet import load_server

OFFICIAL = Path(skillsaw.__file__).parent / "schemas/mcp_registry/v2025_12_11/server.schema.json"


def _stack(name: str, **changes):
    values = stack_values(name)
    return parse(values | changes)


@pytest.fixture(scope="module")
def official() -> jsonschema.Validator:
    schema = json.loads(OFFICIAL.read_text())
    assert schema["$id"] == SCHEMA  # the schema our files name is the one they are checked against
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    return validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)


@pytest.mark.parametrize("stack_name", ["dev", "prod", "serverless"])
def test_every_servers_server_json_validates_against_the_registrys_schema(official, stack_name):
    stack = _stack(stack_name)
    entries = catalogue(stack)
    assert set(entries) == set(stack.apps)
    for name, entry in entries.items():
        assert list(official.iter_errors(entry)) == [], name
        assert entry["remotes"][0]["url"] == str(stack.apps[name].resource_url)
    names = [entry["name"] for entry in entries.values()]
    assert len(set(names)) == len(names)


def test_a_wrong_server_json_fails_the_schema(official):
    entry = catalogue(_stack("prod"))["mcp-db"]
    assert not list(official.iter_errors(entry))
    for broken in (
        {**entry, "name": "no-slash"},
        {**entry, "description": "x" * 101},
        {**entry, "remotes": [{"type": "websocket", "url": "https://mcp-db.example.com/mcp"}]},
    ):
        assert list(official.iter_errors(broken))


def test_the_tools_are_those_the_settings_register_with_their_pinned_digests():
    stack = _stack("dev")
    entry = catalogue(stack)["mcp-db"]
    deployment = entry["_meta"][PUBLISHER]["dev.mcpfleet/deployment"]
    lock = json.loads(Path("apps/db/tools.lock.json").read_text())
    assert {tool["name"]: tool["sha256"] for tool in deployment["tools"]} == {
        name: tool["sha256"] for name, tool in lock["tools"].items()
    }
    assert deployment["scopes"] == ["db:read", "db:write"] and deployment["issuer"] == stack.issuer
    assert deployment["policies"] == sorted(p.name for p in Path(stack.policies, "mcp-db").glob("*.cedar"))
    # A read-only files server lists no write tool, and not their scope.
    files = stack.apps["mcp-files"]
    read_only = files.model_copy(update={"settings": {**files.settings, "FILES_READ_ONLY": "true"}})
    deployment = server_json("mcp-files", read_only, load_server("apps.files"), stack)["_meta"][PUBLISHER]
    tools = deployment["dev.mcpfleet/deployment"]["tools"]
    assert tools and all(tool["readOnly"] for tool in tools)
    assert deployment["dev.mcpfleet/deployment"]["scopes"] == ["files:read"]


def test_names_come_from_the_resource_urls_domain():
    app = _stack("prod").apps["mcp-db"]
    assert registry_name("mcp-db", app) == "com.example/mcp-db"
    local = _stack("dev").apps["mcp-db"]
    assert registry_name("mcp-db", local) == "localhost/mcp-db"


def test_a_description_over_the_registrys_limit_is_refused_naming_the_server():
    stack = _stack("dev")
    server = load_server("apps.db")
    long_winded = type(server).__new__(type(server))
    long_winded.__dict__.update(server.__dict__ | {"instructions": "Reads " + "and reads " * 20 + "rows. More."})
    with pytest.raises(StackConfigError, match=r"mcp-db: the first sentence of its instructions has \d+ characters"):
        server_json("mcp-db", stack.apps["mcp-db"], long_winded, stack)


def test_the_command_writes_each_server_json_and_the_catalogue_for_people(tmp_path):
    ran = subprocess.run(
        [sys.executable, "-m", "infra.catalogue", "--stack", "prod", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 0, ran.stderr
    assert "| query | db:read | yes |" in ran.stdout and "https://mcp-db.example.com/mcp" in ran.stdout
    assert json.loads((tmp_path / "mcp-db" / "server.json").read_text())["name"] == "com.example/mcp-db"
    assert (tmp_path / "README.md").read_text().strip() == ran.stdout.strip()
