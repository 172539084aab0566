"""Peer: FastMCP with its JWT verifier (HS256, issuer, audience), stateless JSON, the same tool and pool.

Runs in its own virtualenv (`python -m bench` makes it): FastMCP pins its own dependencies.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastmcp import FastMCP
from fastmcp.server.auth.providers.jwt import JWTVerifier

sys.path.insert(0, str(Path(__file__).parent))
from _query import open_pool, query

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Any) -> AsyncIterator[None]:
    state["pool"] = await open_pool()
    yield
    await state["pool"].close()


verifier = JWTVerifier(
    public_key=os.environ["BENCH_JWT_SECRET"],
    issuer=os.environ["BENCH_ISSUER"],
    audience=os.environ["BENCH_AUDIENCE"],
    algorithm="HS256",
)
mcp = FastMCP("bench-fastmcp", auth=verifier, lifespan=lifespan)


@mcp.tool()
async def query_rows(table: str, limit: int = 10) -> dict[str, Any]:
    """Read rows."""
    return await query(state["pool"], table, limit)


app = mcp.http_app(path="/mcp", stateless_http=True, json_response=True)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
