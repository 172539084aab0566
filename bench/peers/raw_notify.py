"""Floor for the notification server: raw Starlette doing a preview's own work, the outbound secret check (the
server's own policy, in a worker thread), rendering the webhook body and keeping it in Redis for ten minutes,
no MCP, no checks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apps.notify.policy import refuse_secrets, strip_mass_mentions

state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    state["redis"] = Redis.from_url(os.environ["BENCH_REDIS_URL"])
    yield
    await state["redis"].aclose()


async def endpoint(request: Request) -> Response:
    message = json.loads(await request.body())
    arguments = message["params"]["arguments"]
    await asyncio.to_thread(refuse_secrets, arguments["subject"], arguments["body"])
    subject, _ = strip_mass_mentions(arguments["subject"])
    text, _ = strip_mass_mentions(arguments["body"])
    preview_id = uuid.uuid4().hex
    rendered = {"json": {"id": preview_id, "target": arguments["target"], "subject": subject, "body": text}}
    content = json.dumps(rendered, sort_keys=True)
    digest = hashlib.sha256(content.encode()).hexdigest()
    preview = {"target": arguments["target"], "rendered": rendered, "sha256": digest}
    await state["redis"].set(f"bench:notify:preview:{preview_id}", json.dumps(preview), ex=600)
    result = {"structuredContent": {"preview_id": preview_id, "rendered": rendered}, "isError": False}
    answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
    return Response(json.dumps(answer), media_type="application/json")


app = Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
