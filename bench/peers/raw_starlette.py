"""Peer: raw Starlette and asyncpg, no MCP: the floor of what a Python HTTP JSON endpoint costs here."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parent))
from _query import open_pool, query

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    state["pool"] = await open_pool()
    yield
    await state["pool"].close()


async def endpoint(request: Request) -> Response:
    message = json.loads(await request.body())
    arguments = message["params"]["arguments"]
    result = await query(state["pool"], arguments["table"], arguments.get("limit", 10))
    body = {"jsonrpc": "2.0", "id": message["id"], "result": {"structuredContent": result, "isError": False}}
    return Response(json.dumps(body), media_type="application/json")


app = Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
