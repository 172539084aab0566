"""Shared fixtures: settings, tokens, a served demo app, captured JSON log lines."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from apps.kit import create_app
from apps.kit.cli.token import mint
from apps.kit.declare.config import KitSettings
from apps.kit.observe.logs import JsonFormatter

SECRET = "test-secret-0123456789-abcdefghijklmnop"
ISSUER = "https://issuer.mcpfleet.test"


# The longest files start first, so parallel workers (`--dist loadfile`) do not wait on one of them at the end.
LONGEST_FIRST = (
    "tests/integration/test_one_machine.py",
    "tests/integration/test_monitoring_e2e.py",
    "tests/integration/test_cloud_run_contract.py",
    "tests/integration/test_oncall_container.py",
    "tests/monitoring/test_rules.py",
    "tests/infra/test_fleet.py",
    "tests/infra/test_serverless.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order within a file, and of the rest, is kept


def requirement_missing(reason: str) -> None:
    """Skip locally, but fail in CI: there, every test must run."""
    if os.environ.get("CI"):
        pytest.fail(f"required in CI: {reason}")
    pytest.skip(reason)


@pytest.fixture
def set_env(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """A clean server environment: valid kit defaults plus overrides (None removes a variable)."""

    def apply(**values: Any) -> None:
        for name in list(os.environ):
            if name.startswith(("MCP_", "REDIS_", "RATE_LIMIT", "DB_", "OTEL_", "PORT", "LOG_LEVEL")):
                monkeypatch.delenv(name)
        base = {"MCP_RESOURCE_URL": "http://127.0.0.1:9/mcp", "MCP_ISSUER": ISSUER, "MCP_JWT_SECRET": SECRET}
        for key, value in {**base, **values}.items():
            if value is None:
                monkeypatch.delenv(key, raising=False)
            else:
                monkeypatch.setenv(key, str(value))

    return apply


@pytest.fixture
def make_settings(set_env: Callable[..., None]) -> Callable[..., KitSettings]:
    def make(cls: type[KitSettings] = KitSettings, **values: Any) -> KitSettings:
        set_env(**values)
        return cls()

    return make


class LogCapture(logging.Handler):
    """Collect the exact JSON lines the app writes."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def events(self, event: str) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.lines]
        return [p for p in parsed if p.get("event") == event]


@pytest.fixture
def logs() -> Iterator[LogCapture]:
    capture = LogCapture()
    root = logging.getLogger()
    root.addHandler(capture)
    yield capture
    root.removeHandler(capture)


@pytest.fixture
def redis_server() -> Iterator[Any]:
    """A throwaway redis-server (the Debian binary) on a loopback port, fresh for each test."""
    from tests.support import redis as local_redis

    if not local_redis.available():
        requirement_missing("redis-server is not installed (apt-get install redis-server)")
    server = local_redis.LocalRedis().start()
    yield server
    server.stop()


@pytest.fixture
def token_for() -> Callable[..., str]:
    def make(scopes: str, audience: str, subject: str = "alice", **kw: Any) -> str:
        return mint(SECRET, issuer=ISSUER, audience=audience, subject=subject, scopes=scopes, **kw)

    return make


@pytest.fixture
def start_server(make_settings: Callable[..., KitSettings]) -> Iterator[Callable[..., Any]]:
    """Serve any focused server in this process: `start_server(server, **settings)`; all stop at teardown."""
    from tests.support.postgres import free_port
    from tests.support.running import Running, serve_app

    started: list[Any] = []

    def start(server: Any, **overrides: Any) -> Running:
        port = free_port()
        settings = make_settings(
            server.settings_cls, **{"MCP_RESOURCE_URL": f"http://127.0.0.1:{port}/mcp", **overrides}
        )
        app = create_app(server, settings)
        serving = serve_app(app, port)
        base = serving.__enter__()
        started.append(serving)
        return Running(base, app)

    yield start
    for serving in reversed(started):
        serving.__exit__(None, None, None)
