"""The FastAPI shell: a focused server's own routes are documented by FastAPI, `/mcp` is not routed through
it, and `apps.kit.app.mount` adds a focused server to a FastAPI application a team already runs."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from apps.kit.app import mount
from apps.kit.token import mint
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
