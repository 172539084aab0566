"""What every server's floor shares: one `POST /mcp` route that hands a tool call's arguments to the floor's
handler and wraps what it returns in a JSON-RPC answer, served by uvicorn on loopback. No MCP and no checks, so a
floor costs its handler's work and a plain Python HTTP path."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


def floor_app(handler: Handler, lifespan: Any = None) -> Starlette:
    async def endpoint(request: Request) -> Response:
        message = json.loads(await request.body())
        result = {"structuredContent": await handler(message["params"]["arguments"]), "isError": False}
        answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        return Response(json.dumps(answer), media_type="application/json")

    return Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])], lifespan=lifespan)


def serve(app: Starlette) -> None:
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
