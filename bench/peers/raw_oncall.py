"""Floor for the on-call server: raw Starlette asking Alertmanager for the firing alerts over one pooled httpx
client and attaching their runbooks (the server's own runbook pages), no MCP, no checks."""

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

from apps.oncall.config import DEFAULT_RUNBOOKS
from apps.oncall.runbooks import Runbooks

RUNBOOKS = Runbooks.load([DEFAULT_RUNBOOKS])
FIRING = {"active": "true", "silenced": "false", "inhibited": "false", "unprocessed": "false"}
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Starlette) -> AsyncIterator[None]:
    async with httpx.AsyncClient(base_url=os.environ["BENCH_ALERTMANAGER_URL"], timeout=15) as client:
        state["client"] = client
        yield


async def endpoint(request: Request) -> Response:
    message = json.loads(await request.body())
    answer = await state["client"].get("/api/v2/alerts", params=FIRING)
    alerts = answer.json()
    entries, runbooks = [], {}
    for alert in alerts[: message["params"]["arguments"].get("limit", 20)]:
        name, app = alert["labels"]["alertname"], alert["labels"].get("app")
        entries.append({"alertname": name, "app": app, "since": alert["startsAt"], "labels": alert["labels"]})
        runbooks[f"{name}/{app}"] = RUNBOOKS.page(name, app)
    result = {"structuredContent": {"alerts": entries, "total": len(alerts), "runbooks": runbooks}, "isError": False}
    answer = {"jsonrpc": "2.0", "id": message["id"], "result": result}
    return Response(json.dumps(answer), media_type="application/json")


app = Starlette(routes=[Route("/mcp", endpoint, methods=["POST"])], lifespan=lifespan)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
