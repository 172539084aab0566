"""A small focused server used to test the kit without a database.

`python -m tests.support.demo_server` serves it like any app (used by the
shutdown test, which needs a real process to send SIGTERM to).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import Field

from apps.kit import CallerError, Check, FocusedServer, KitSettings, ServerError, Telemetry, ToolArgs, serve


@dataclass
class DemoState:
    calls: list[str] = field(default_factory=list)
    healthy: bool = True

    def readiness_checks(self) -> Mapping[str, Check]:
        async def check() -> None:
            if not self.healthy:
                raise ConnectionError("backend down")

        return {"backend": check}


@asynccontextmanager
async def demo_state(settings: KitSettings, telemetry: Telemetry) -> AsyncIterator[DemoState]:
    yield DemoState()


server: FocusedServer[DemoState, KitSettings] = FocusedServer("kit-demo", KitSettings, demo_state)


class EchoArgs(ToolArgs):
    text: Annotated[str, Field(min_length=1, max_length=200)]
    times: Annotated[int, Field(ge=1, le=5)] = 1


class WriteArgs(ToolArgs):
    key: Annotated[str, Field(pattern=r"^[a-z]+$")]
    secret: str = ""


class SleepArgs(ToolArgs):
    seconds: Annotated[float, Field(ge=0, le=30)]


class FailArgs(ToolArgs):
    mode: Annotated[str, Field(pattern=r"^(caller|server|crash)$")]


@server.tool(scopes={"demo:read"}, read_only=True)
async def echo(args: EchoArgs, state: DemoState) -> dict[str, object]:
    """Repeat the text."""
    state.calls.append("echo")
    return {"text": " ".join([args.text] * args.times)}


@server.tool(scopes={"demo:write"}, read_only=False, idempotent=True)
async def write(args: WriteArgs, state: DemoState) -> dict[str, object]:
    """Pretend to write; needs demo:write."""
    state.calls.append("write")
    return {"written": args.key}


@server.tool(scopes={"demo:read"}, read_only=True)
async def sleep(args: SleepArgs, state: DemoState) -> dict[str, object]:
    """Take a while (for drain and latency tests)."""
    state.calls.append("sleep")
    await asyncio.sleep(args.seconds)
    return {"slept": args.seconds}


@server.tool(scopes={"demo:read"}, read_only=True)
async def fail(args: FailArgs, state: DemoState) -> dict[str, object]:
    """Fail as the caller's mistake, as a server fault, or by crashing."""
    state.calls.append("fail")
    if args.mode == "caller":
        raise CallerError("no such thing")
    if args.mode == "server":
        raise ServerError("backend unavailable; retry later")
    raise RuntimeError("internal detail that must not reach the client")


if __name__ == "__main__":
    serve(server)
