"""Peer: the bare MCP SDK server, no auth, stateless JSON, the same `query` tool on the same pool.

BENCH_DSN=... PORT=... python bench/peers/bare_sdk.py
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

sys.path.insert(0, str(Path(__file__).parent))
from _query import open_pool, query

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: MCPServer[Any]) -> AsyncIterator[None]:
    state["pool"] = await open_pool()
    yield
    await state["pool"].close()


mcp = MCPServer("bench-bare-sdk", lifespan=lifespan)


@mcp.tool()
async def query_rows(table: str, limit: int = 10) -> dict[str, Any]:
    """Read rows."""
    return await query(state["pool"], table, limit)


app = mcp.streamable_http_app(
    stateless_http=True,
    json_response=True,
    transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
