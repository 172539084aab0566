"""The Python MCP SDK's own OAuth client (`mcp.client.auth.OAuthClientProvider`) against the platform's
authorization server and a real server verifying its tokens: discovery from the 401, dynamic registration, PKCE
S256 with the resource, the token, then `tools/call`; the person signs in with Debian's Chromium (`person.mjs`).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

from tests.conftest import requirement_missing
from tests.support.authz import PASSWORDS, authorized_fleet

HERE = Path(__file__).parent
NODE22 = HERE / "node_modules" / "node" / "bin" / "node"
CHROMIUM = "/usr/bin/chromium"
REDIRECT = "http://127.0.0.1:33418/callback"


class Memory:
    """The SDK's token storage protocol, in memory; what it stored is what the test reads."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client = client_info


async def test_the_python_sdk_oauth_client_signs_in_and_calls_a_tool(tmp_path):
    if not NODE22.exists() or not (HERE / "node_modules" / "playwright-core").is_dir() or not Path(CHROMIUM).exists():
        requirement_missing("Node 22, playwright-core and chromium are needed: scripts/test installs them")
    asked: list[str] = []

    async def redirect(url: str) -> None:
        asked.append(url)

    async def person() -> AuthorizationCodeResult:
        """Chromium at the authorization URL the SDK made, signing the writer in."""
        result = await asyncio.to_thread(
            subprocess.run,
            [str(NODE22), "person.mjs", asked[-1], REDIRECT, "writer", PASSWORDS["writer"]],
            capture_output=True, text=True, timeout=90, cwd=HERE, env={**os.environ, "CHROMIUM": CHROMIUM},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        query = parse_qs(urlsplit(result.stdout.strip()).query)
        return AuthorizationCodeResult(code=query["code"][0], state=query["state"][0], iss=query.get("iss", [None])[0])

    storage = Memory()
    with authorized_fleet(tmp_path) as fleet:
        provider = OAuthClientProvider(
            server_url=fleet.demo_url,
            client_metadata=OAuthClientMetadata(
                client_name="mcpfleet interop: Python SDK",
                redirect_uris=[REDIRECT],  # type: ignore[list-item]
                grant_types=["authorization_code", "refresh_token"],
                response_types=["code"],
                token_endpoint_auth_method="none",
            ),
            storage=storage,
            redirect_handler=redirect,
            callback_handler=person,
        )
        async with httpx2.AsyncClient(auth=provider, timeout=30) as http:
            transport = streamable_http_client(fleet.demo_url, http_client=http, terminate_on_close=False)
            async with Client(transport, cache=None) as client:
                tools = await client.list_tools()
                echoed = await client.call_tool("echo", {"text": "hello from the Python SDK"})
                written = await client.call_tool("write", {"key": "python"})
    [authorization] = asked
    query: dict[str, Any] = parse_qs(urlsplit(authorization).query)
    assert query["code_challenge_method"] == ["S256"] and query["resource"] == [fleet.demo_url]
    assert storage.client is not None and storage.client.client_id  # registered dynamically
    assert storage.tokens is not None and set((storage.tokens.scope or "").split()) == {"demo:read", "demo:write"}
    assert {tool.name for tool in tools.tools} == {"echo", "fail", "sleep", "write"}
    assert echoed.is_error is False and written.is_error is False
