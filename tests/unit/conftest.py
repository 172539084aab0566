from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.support import demo_server
from tests.support.running import Running

RunningDemo = Running


@pytest.fixture
def start_demo(start_server: Callable[..., Running]) -> Callable[..., Running]:
    """Start the demo server with settings overrides; every started server stops at teardown."""

    def start(**overrides: Any) -> Running:
        return start_server(demo_server.server, **overrides)

    return start


@pytest.fixture
def demo(start_demo: Callable[..., Running]) -> Running:
    return start_demo()
