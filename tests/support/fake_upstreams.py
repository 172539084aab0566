"""A scriptable stand-in for the Prometheus and Alertmanager HTTP APIs, for the on-call server's guard tests.

It records every request (method, path, query, form, JSON body, headers) and answers what the test
set for that path; the real services are exercised by the container suite.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Recorded:
    method: str
    path: str
    query: list[tuple[str, str]]
    form: dict[str, str]
    json: Any
    headers: dict[str, str]


@dataclass
class FakeUpstream:
    """`answers[path]` (or `answers["METHOD path"]`, first) is (status, body, headers) or a list of them,
    served in turn (the last repeats)."""

    answers: dict[str, Any] = field(default_factory=lambda: {"/health": (200, {"ok": True}, {})})
    requests: list[Recorded] = field(default_factory=list)
    drip: dict[str, float] = field(default_factory=dict)  # path -> seconds between bytes of a never-ending answer

    def set(self, path: str, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        self.answers[path] = (status, body, headers or {})

    def sequence(self, path: str, *answers: tuple[int, Any]) -> None:
        self.answers[path] = [(status, body, {}) for status, body in answers]

    def api_calls(self) -> list[Recorded]:
        """Every request but the harness's own health checks."""
        return [r for r in self.requests if r.path != "/health"]

    def to(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        form = dict(await request.form()) if "form" in request.headers.get("content-type", "") else {}
        payload = json.loads(body) if body and "json" in request.headers.get("content-type", "") else None
        self.requests.append(
            Recorded(
                request.method,
                request.url.path,
                list(request.query_params.multi_items()),
                {k: str(v) for k, v in form.items()},
                payload,
                dict(request.headers),
            )
        )
        path = request.url.path
        if path in self.drip:
            return StreamingResponse(_dripping(self.drip[path]), 200, media_type="application/json")
        answer = self.answers.get(f"{request.method} {path}", self.answers.get(path, (404, {"error": "not found"}, {})))
        if isinstance(answer, list):
            answer = answer.pop(0) if len(answer) > 1 else answer[0]
        status, content, headers = answer
        if isinstance(content, bytes):
            return Response(content, status, headers=headers)
        return JSONResponse(content, status, headers=headers)

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self.handle, methods=["GET", "POST", "DELETE"])])


async def _dripping(interval: float) -> AsyncIterator[bytes]:
    yield b'{"status": "success", "data": {"resultType": "vector", "result": ['
    for _ in range(10_000):
        await asyncio.sleep(interval)
        yield b" "


def vector(count: int, label_chars: int = 10) -> dict[str, Any]:
    """A Prometheus instant-vector answer with `count` series."""
    return {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                {"metric": {"__name__": "m", "pod": f"pod-{i}", "long": "x" * label_chars}, "value": [1.7e9, str(i)]}
                for i in range(count)
            ],
        },
    }


def matrix(count: int, points: int) -> dict[str, Any]:
    return {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {
                    "metric": {"__name__": "m", "pod": f"pod-{i}"},
                    "values": [[1.7e9 + 60 * t, str(float(t + i))] for t in range(points)],
                }
                for i in range(count)
            ],
        },
    }
