"""A stand-in upstream for the on-call and GitHub servers and their floors: canned Alertmanager and GitHub REST
answers, the same for every variant, from its own process on the load core (as a remote API costs the server
nothing but the wait). GitHub answers carry the budget headers and an ETag, and answer a matching
`If-None-Match` with 304, as GitHub does."""

from __future__ import annotations

import json
import os
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

ALERTS = [
    {
        "labels": {"alertname": "McpHighErrorRate", "severity": "critical" if n % 2 else "warning", "app": f"mcp-{n}"},
        "annotations": {"summary": f"mcp-{n} answers more than 5 % of calls with a server fault"},
        "startsAt": f"2026-12-01T0{n}:00:00Z",
        "fingerprint": f"{n:016x}",
        "status": {"state": "active", "silencedBy": [], "inhibitedBy": []},
    }
    for n in range(5)
]
ISSUES = [
    {
        "number": n,
        "title": f"Bench issue {n}",
        "state": "open",
        "body": "The bench reads this issue. " * 8,
        "user": {"login": "bench-member"},
        "author_association": "MEMBER",
    }
    for n in range(1, 11)
]
REPOSITORY = {"full_name": "bench/bench", "private": False}
ETAG = 'W/"bench-issues-1"'


def _json(body: object, headers: dict[str, str] | None = None) -> Response:
    return Response(json.dumps(body), media_type="application/json", headers=headers)


def _budget() -> dict[str, str]:
    reset = str(int(time.time()) + 3600)
    return {"x-ratelimit-remaining": "4999", "x-ratelimit-reset": reset, "x-ratelimit-resource": "core"}


async def alerts(_: Request) -> Response:
    return _json(ALERTS)


async def issues(request: Request) -> Response:
    headers = {**_budget(), "etag": ETAG}
    if request.headers.get("if-none-match") == ETAG:
        return Response(status_code=304, headers=headers)
    return _json(ISSUES, headers)


async def repository(_: Request) -> Response:
    return _json(REPOSITORY, _budget())


app = Starlette(
    routes=[
        Route("/health", lambda _: _json({"ok": True})),
        Route("/api/v2/alerts", alerts),
        Route("/repos/bench/bench/issues", issues),
        Route("/repos/bench/bench", repository),
    ]
)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ["PORT"]), log_level="warning")
