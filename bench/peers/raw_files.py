"""Floor for the files server: raw Starlette reading the same file in a worker thread, no MCP, no checks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ROOT = Path(os.environ["BENCH_FILES_ROOT"])
LIMITER = anyio.CapacityLimiter(8)  # the files server's default worker threads


def read(path: Path, length: int) -> str:
    with path.open("rb") as handle:
        return handle.read(length).decode("utf-8")


async def endpoint(request: Request) -> Response:
    message = json.loads(await request.body())
    arguments = message["params"]["arguments"]
    text = await anyio.to_thread.run_sync(read, ROOT / arguments["path"], 256 * 1024, limiter=LIMITER)
    result = {"structuredContent": {"text": text, "truncated": False}, "isError": False}
    return Response(
        json.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result}), media_type="application/json"
    )


app = Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
