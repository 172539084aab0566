"""Floor for the on-call server: asking Alertmanager for the firing alerts over one pooled aiohttp session (the
client the kit's `Upstream` uses) and attaching their runbooks (the server's own runbook pages), no MCP, no
checks."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))
from _floor import floor_app, serve

from apps.oncall.config import DEFAULT_RUNBOOKS
from apps.oncall.runbooks import Runbooks

RUNBOOKS = Runbooks.load([DEFAULT_RUNBOOKS])
FIRING = {"active": "true", "silenced": "false", "inhibited": "false", "unprocessed": "false"}
state: dict[str, Any] = {}


@asynccontextmanager
async def lifespan(_: Any) -> AsyncIterator[None]:
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(os.environ["BENCH_ALERTMANAGER_URL"], timeout=timeout) as client:
        state["client"] = client
        yield


async def list_firing_alerts(arguments: dict[str, Any]) -> dict[str, Any]:
    async with state["client"].get("/api/v2/alerts", params=FIRING) as answer:
        alerts = await answer.json()
    entries, runbooks = [], {}
    for alert in alerts[: arguments.get("limit", 20)]:
        name, app = alert["labels"]["alertname"], alert["labels"].get("app")
        entries.append({"alertname": name, "app": app, "since": alert["startsAt"], "labels": alert["labels"]})
        runbooks[f"{name}/{app}"] = RUNBOOKS.page(name, app)
    return {"alerts": entries, "total": len(alerts), "runbooks": runbooks}


if __name__ == "__main__":
    serve(floor_app(list_firing_alerts, lifespan))
