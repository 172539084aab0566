"""The FastAPI shell: a focused server's own routes are documented by FastAPI, `/mcp` is not routed through
it, and `apps.kit.run.app.mount` adds a focused server to a FastAPI application a team already runs."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
from fastapi import FastAPI

from apps.kit.cli.token import mint
from apps.kit.run.app import mount
from tests.conftest import ISSUER, SECRET
from tests.support import demo_server
from tests.support.postgres import free_port
from tests.support.raw import post, rpc, tool_call
from tests.support.running import serve_app


def test_the_shell_documents_its_routes_and_keeps_mcp_raw(demo):
    document = httpx.get(demo.base + "/openapi.json").json()
    assert {"/health", "/ready", "/metrics", "/.well-known/mcp-tools.json"} <= set(document["paths"])
    assert "/mcp" not in document["paths"]  # a raw ASGI route: the hot path has no FastAPI layer
    assert document["info"]["title"] == "kit-demo"


def test_a_focused_server_mounts_into_an_existing_fastapi_app(make_settings):
    host = FastAPI(title="inventory-service")
    opened: list[str] = []

    @host.get("/items")
    async def items() -> dict[str, list[str]]:
        return {"items": ["a", "b"]}

    port = free_port()
    url = f"http://127.0.0.1:{port}/tools/demo/mcp"
    runtime = mount(host, demo_server.server, make_settings(MCP_RESOURCE_URL=url), "/tools/demo")
    with serve_app(host, port, health="/tools/demo/health") as base:
        opened.append(type(runtime.server_state).__name__)  # the server's lifespan ran inside the host's
        token = mint(SECRET, issuer=ISSUER, audience=url, subject="alice", scopes="demo:read")
        assert httpx.get(base + "/items").json() == {"items": ["a", "b"]}  # the host's own routes are untouched
        assert httpx.get(base + "/tools/demo/ready").status_code == 200
        listed = post(url, rpc("tools/list"), token).json()["result"]["tools"]
        assert {tool["name"] for tool in listed} == {"echo", "sleep", "fail"}
        echoed = post(url, tool_call("echo", {"text": "hi"}), token).json()["result"]
        assert echoed["isError"] is False
        assert post(url, tool_call("echo", {"text": "hi"})).status_code == 401  # the kit's checks hold there too
        metadata = httpx.get(base + "/.well-known/oauth-protected-resource/tools/demo/mcp").json()
        assert metadata["resource"] == url and metadata["scopes_supported"] == ["demo:read", "demo:write"]
        assert "/tools/demo/health" in httpx.get(base + "/openapi.json").json()["paths"]
    assert opened == ["DemoState"]


def test_mounting_needs_the_resource_url_the_server_is_mounted_at(make_settings):
    with pytest.raises(ValueError, match="must end in /tools/demo/mcp"):
        mount(FastAPI(), demo_server.server, make_settings(MCP_RESOURCE_URL="http://127.0.0.1:9/mcp"), "/tools/demo")


FIRST_CALLS = """
import asyncio, sys
import httpx
from apps import collector
collector.pause()
from apps.kit import create_app, mint
from tests.support import demo_server
from tests.support.raw import BASE_HEADERS, tool_call
app = create_app(demo_server.server)
token = mint(sys.argv[1], issuer=sys.argv[2], audience="http://127.0.0.1/mcp", subject="alice", scopes="demo:read")
async def main():
    async with app.runtime.lifespan(app):
        print("collector running after start-up:", __import__("gc").isenabled())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            headers = {**BASE_HEADERS, "Authorization": "Bearer " + token}
            answer = await client.post("/mcp", json=tool_call("echo", {"text": "hi"}), headers=headers)
            print("tool call:", answer.json()["result"]["structuredContent"], "fastapi:", "fastapi" in sys.modules)
            health = await client.get("/health")
            print("health:", health.json(), "fastapi:", "fastapi" in sys.modules)
asyncio.run(main())
"""


def test_the_shell_is_built_on_its_first_request_so_tool_calls_alone_never_import_fastapi():
    """A serverless instance whose requests are all tool calls (Lambda) does not pay FastAPI's import at its cold
    start; the first request for anything else builds the shell. A fresh process, since this one has FastAPI."""
    env = {**os.environ, "MCP_ISSUER": ISSUER, "MCP_JWT_SECRET": SECRET, "MCP_RESOURCE_URL": "http://127.0.0.1/mcp"}
    run = subprocess.run(
        [sys.executable, "-c", FIRST_CALLS, SECRET, ISSUER], env=env, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in run.stdout.splitlines() if not line.startswith("{")]  # the server's JSON logs
    assert lines == [
        "collector running after start-up: True",
        "tool call: {'text': 'hi'} fastapi: False",
        "health: {'status': 'ok'} fastapi: True",
    ], run.stderr[-2000:]
