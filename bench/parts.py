"""What each part of the kit costs per call: the kit's in-process path timed whole, then with one part left out.

    uv run python -m bench.parts            # about 30 seconds

A `tools/call` to the demo server's `echo` tool is handed to the ASGI app in this process (no socket, no HTTP
parser, no tool work), 3,000 times per measure, best of five, on core 0; log and audit lines go to /dev/null.
Each other line leaves one part out (replaced by a no-op, in a process of its own), so the difference is that
part's cost. It is a profile, not a target: the targets are same-run ratios in `python -m bench`.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SECRET = "parts-secret-0123456789-abcdefghijklmnopqrstuv"  # noqa: S105 - signs this script's own tokens only
ISSUER = "https://issuer.parts.test"
RESOURCE = "http://127.0.0.1:9/mcp"
PARTS = {
    "": "the whole path",
    "audit": "the audit event",
    "log": "the tool_call log line",
    "spans": "the server span (10 % sampled, as shipped)",
    "kernel": "the MCP SDK's tools/call path (era check, typed params, framing)",
    "parse": "the strict JSON parse (against a plain json.loads)",
    "metrics": "the in-flight gauge and duration histogram",
    "limit": "the rate limit (in memory)",
}


def _leave_out(part: str, app: Any) -> None:
    """Replace one part of the running app with a no-op."""
    import apps.kit.call.pipeline as pipeline
    import apps.kit.http.gate as gate
    from apps.kit.call.ratelimit.memory import Decision
    from apps.kit.call.sdk import Reply

    calls = app.endpoint.calls
    if part == "audit":
        calls.audit.record = lambda **_: None
    elif part == "log":
        setattr(pipeline, "log_event", lambda *_, **__: None)  # noqa: B010 - the name the pipeline calls
    elif part == "spans":
        from opentelemetry import trace

        calls._tracer = trace.NoOpTracer()
    elif part == "kernel":

        async def answer(message: dict[str, Any], version: Any, headers: Any, served: Any) -> Reply:
            served.result = await served.run(message["params"].get("arguments"))
            return Reply(200, {"jsonrpc": "2.0", "id": message["id"], "result": served.result.result}, served.result)

        calls.protocol.answer = answer
    elif part == "parse":
        setattr(gate, "parse_json", json.loads)  # noqa: B010 - the name the gate calls
    elif part == "metrics":

        class Nothing:
            def labels(self, **_: Any) -> Nothing:
                return self

            def inc(self, *_: Any) -> None: ...
            def dec(self, *_: Any) -> None: ...
            def observe(self, *_: Any) -> None: ...

        calls.metrics.inflight = calls.metrics.operation_duration = Nothing()
    elif part == "limit":

        async def hit(_: str) -> Decision:
            return Decision(True)

        calls.limiter.hit = hit


async def _measure(part: str) -> float:
    from apps.kit import KitSettings, create_app
    from apps.kit.cli.token import mint
    from tests.support.demo_server import server

    app = create_app(server, KitSettings())
    token = mint(SECRET, issuer=ISSUER, audience=RESOURCE, subject="parts", scopes="demo:read")
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                       "params": {"name": "echo", "arguments": {"text": "hello"}}}).encode()  # fmt: skip
    headers = [
        (b"host", b"127.0.0.1:9"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json, text/event-stream"),
        (b"mcp-protocol-version", b"2025-11-25"),
        (b"authorization", b"Bearer " + token.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": "/mcp", "raw_path": b"/mcp", "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 5555), "server": ("127.0.0.1", 9)}  # fmt: skip

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def call() -> int:
        sent: list[dict[str, Any]] = []

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        await app(dict(scope), receive, send)
        return int(sent[0]["status"])

    lifespan: asyncio.Queue[dict[str, str]] = asyncio.Queue()
    started = asyncio.Event()

    async def lifespan_send(message: MutableMapping[str, Any]) -> None:
        started.set()

    await lifespan.put({"type": "lifespan.startup"})
    running = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}}, lifespan.get, lifespan_send))
    await started.wait()
    _leave_out(part, app)
    for _ in range(500):  # warm
        if await call() != 200:
            raise SystemExit(f"the call was not answered 200 with {part or 'nothing'} left out")
    best = float("inf")
    for _ in range(5):
        began = time.process_time()
        for _ in range(3000):
            await call()
        best = min(best, (time.process_time() - began) / 3000)
    await lifespan.put({"type": "lifespan.shutdown"})
    await running
    return best * 1e6


def main() -> int:
    if len(sys.argv) > 1:  # one measure, in a process of its own (a part left out stays out)
        import uvloop

        print(f"{uvloop.run(_measure(sys.argv[1])):.1f}", file=sys.stderr)  # its log lines went to stdout
        return 0
    env = {**os.environ, "MCP_RESOURCE_URL": RESOURCE, "MCP_ISSUER": ISSUER, "MCP_JWT_SECRET": SECRET,
           "RATE_LIMIT_PER_MINUTE": "1000000", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
           "OTEL_TRACES_SAMPLER_ARG": "0.1", "PYTHONPATH": str(ROOT)}  # fmt: skip
    whole = 0.0
    print("the kit's in-process cost of one tools/call (demo echo tool), microseconds of CPU")
    for part, what in PARTS.items():
        command = ["taskset", "-c", "0", sys.executable, "-m", "bench.parts", part or "none"]
        done = subprocess.run(
            command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=True
        )
        cost = float(done.stderr.strip().splitlines()[-1])
        if not part:
            whole = cost
            print(f"  {whole:6.1f}  {what}")
        else:
            print(f"  {whole - cost:6.1f}  {what}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
