"""Floor for the GitHub server: raw Starlette listing a repository's issues from GitHub's REST API over one
pooled httpx client with the credential, no MCP, no checks, no cache and no budget bookkeeping."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    headers = {"Authorization": f"Bearer {os.environ['BENCH_GITHUB_TOKEN']}", "Accept": "application/vnd.github+json"}
    async with httpx.AsyncClient(base_url=os.environ["BENCH_GITHUB_URL"], headers=headers, timeout=10) as client:
        state["client"] = client
        yield


async def endpoint(request: Request) -> Response:
    message = json.loads(await request.body())
    arguments = message["params"]["arguments"]
    path = f"/repos/{arguments['owner']}/{arguments['repo']}/issues"
    answer = await state["client"].get(path, params={"per_page": 30, "state": arguments.get("state", "open")})
    fields = ("number", "title", "state", "body")
    issues = [{f: i.get(f) for f in fields} | {"author": i["user"]["login"]} for i in answer.json()]
    result = {"structuredContent": {"issues": issues, "more": False}, "isError": False}
    answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
    return Response(json.dumps(answer), media_type="application/json")


app = Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
