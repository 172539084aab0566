"""The MCP SDK's own Streamable HTTP client, with a bearer token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


@asynccontextmanager
async def mcp_client(
    url: str, token: str | None, *, new_connection_per_request: bool = False, timeout: float = 30
) -> AsyncIterator[Client]:
    """`new_connection_per_request` disables keep-alive, so a load balancer can spread every request."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    limits = httpx2.Limits(max_keepalive_connections=0) if new_connection_per_request else httpx2.Limits()
    async with httpx2.AsyncClient(headers=headers, timeout=timeout, limits=limits) as http:
        transport = streamable_http_client(url, http_client=http, terminate_on_close=False)
        async with Client(transport, cache=None) as client:
            yield client
