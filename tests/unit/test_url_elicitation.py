"""URL-mode elicitation (MCP 2025-11-25): a tool that needs the person to visit a URL first (to link an upstream
account) raises `ConnectRequired`; a client that declared URL elicitation gets the spec's -32042 error carrying the
elicitation, any other client a tool error saying where to go. Counted `connect_required`: no fault of anyone's."""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.kit import ConnectRequired, FocusedServer, KitSettings, ToolArgs
from apps.kit.wire.jsonrpc import URL_ELICITATION_REQUIRED
from tests.support.raw import BASE_HEADERS, rpc, tool_call

CONNECT = "https://mcp-github.example.com/connect?state=abc"
MESSAGE = "Connect your GitHub account to continue."
ELICITATION = {"mode": "url", "elicitationId": "elicit-1", "url": CONNECT, "message": MESSAGE}
INTEROP = Path(__file__).resolve().parents[1] / "interop"


class NoArgs(ToolArgs):
    pass


@asynccontextmanager
async def no_state(settings: KitSettings, telemetry: Any) -> AsyncIterator[None]:
    yield None


SERVER: FocusedServer[None, KitSettings] = FocusedServer("kit-connect", KitSettings, no_state)


@SERVER.tool(scopes={"demo:read"}, read_only=True)
async def whoami(args: NoArgs, state: None) -> dict[str, str]:
    """Say who the person is upstream; they must link their account first."""
    raise ConnectRequired(CONNECT, MESSAGE, "elicit-1")


def initialize(base: str, token: str, capabilities: dict) -> str:  # type: ignore[type-arg]
    params = {
        "protocolVersion": "2025-11-25",
        "capabilities": capabilities,
        "clientInfo": {"name": "t", "version": "1"},
    }
    answer = httpx.post(
        base + "/mcp", json=rpc("initialize", params), headers=BASE_HEADERS | {"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200
    return answer.headers.get("mcp-session-id", "")


def call(base: str, token: str, session: str) -> httpx.Response:
    headers = BASE_HEADERS | {"Authorization": f"Bearer {token}"} | ({"Mcp-Session-Id": session} if session else {})
    return httpx.post(base + "/mcp", json=tool_call("whoami", {}), headers=headers)


def test_a_client_that_declared_url_elicitation_gets_the_specs_error(start_server):
    running = start_server(SERVER)
    token = running.token("demo:read")
    session = initialize(running.base, token, {"elicitation": {"form": {}, "url": {}}})
    assert session.endswith(".form.url")
    answer = call(running.base, token, session)
    assert answer.status_code == 200
    error = answer.json()["error"]
    assert error["code"] == URL_ELICITATION_REQUIRED == -32042
    assert error["data"] == {
        "elicitations": [
            {
                "mode": "url",
                "elicitationId": "elicit-1",
                "url": CONNECT,
                "message": "Connect your GitHub account to continue.",
            }
        ]
    }
    metrics = httpx.get(running.base + "/metrics").text
    assert 'outcome="connect_required"' in metrics


def test_a_client_without_url_elicitation_is_told_where_to_go_in_the_tool_result(start_server):
    running = start_server(SERVER)
    token = running.token("demo:read")
    session = initialize(running.base, token, {"elicitation": {"form": {}}})
    assert session.endswith(".form")
    result = call(running.base, token, session).json()["result"]
    assert result["isError"] is True and CONNECT in result["content"][0]["text"]


def test_the_typescript_sdk_client_receives_the_elicitation(start_server):
    node = INTEROP / "node_modules" / "node" / "bin" / "node"
    if not (INTEROP / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir() or not node.exists():
        pytest.skip("tests/interop/node_modules: scripts/test installs it")
    running = start_server(SERVER)
    result = subprocess.run(
        [str(node), "ts_url_elicitation.mjs", running.mcp_url, running.token("demo:read")],
        capture_output=True, text=True, timeout=60, cwd=INTEROP,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["error"] == "UrlElicitationRequiredError"
    assert report["elicitations"] == [
        {
            "mode": "url",
            "elicitationId": "elicit-1",
            "url": CONNECT,
            "message": "Connect your GitHub account to continue.",
        }
    ]
