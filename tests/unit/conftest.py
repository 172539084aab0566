from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette

from apps.kit.config import KitSettings
from tests.support import demo_server
from tests.support.postgres import free_port
from tests.support.running import serve_app


@dataclass
class RunningDemo:
    base: str
    app: Starlette

    @property
    def mcp_url(self) -> str:
        return self.base + "/mcp"

    @property
    def calls(self) -> list[str]:
        return self.app.state.server_state.calls


@pytest.fixture
def start_demo(make_settings: Callable[..., KitSettings]) -> Iterator[Callable[..., RunningDemo]]:
    """Start the demo server with settings overrides; every started server stops at teardown."""
    stack: list[Any] = []

    def start(**overrides: Any) -> RunningDemo:
        port = free_port()
        settings = make_settings(MCP_RESOURCE_URL=f"http://127.0.0.1:{port}/mcp", **overrides)
        app = demo_server.server.create_app(settings)
        ctx = serve_app(app, port)
        base = ctx.__enter__()
        stack.append(ctx)
        return RunningDemo(base, app)

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
def demo(start_demo: Callable[..., RunningDemo]) -> RunningDemo:
    return start_demo()
