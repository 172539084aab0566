"""Run any focused server for a test: in this process under a real uvicorn, or as a real process.

    running = start_server(server, RATE_LIMIT_PER_MINUTE="3")   # (the `start_server` fixture)
    process = start_process("tests.support.demo_server", OTEL_EXPORTER_OTLP_ENDPOINT=url)

Either way the server answers on a loopback port with the test issuer and secret, and its resource URL
is its own `/mcp`, so `token()` mints tokens it accepts.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn

from apps.kit.cli.token import mint
from apps.kit.http.serving import uvicorn_config
from tests.conftest import ISSUER, SECRET
from tests.support.postgres import free_port


def wait_for_health(base: str, timeout: float = 30, path: str = "/health") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + path, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{base} did not start")


@contextlib.contextmanager
def serve_app(app: Any, port: int | None = None, health: str = "/health") -> Iterator[str]:
    """Yield the base URL while the app serves; stop it (running its lifespan shutdown) after."""
    port = port or free_port()
    if hasattr(app, "runtime"):  # a focused server: the configuration `serve()` uses
        config = uvicorn_config(app, app.runtime.settings, host="127.0.0.1", port=port)
    else:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    wait_for_health(base, 15, health)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@dataclass
class Running:
    """A server serving in this process: its URLs, its app (metrics registry, state) and tokens for it."""

    base: str
    app: Any

    @property
    def mcp_url(self) -> str:
        return self.base + "/mcp"

    @property
    def state(self) -> Any:
        return self.app.state.server_state

    @property
    def calls(self) -> list[str]:
        return self.state.calls  # type: ignore[no-any-return]

    def token(self, scopes: str, subject: str = "alice", **claims: Any) -> str:
        return mint(SECRET, issuer=ISSUER, audience=self.mcp_url, subject=subject, scopes=scopes, **claims)


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log: Any = None  # its stdout: a file, never a pipe nobody drains (a full pipe would stall the server's writes)

    def output(self) -> bytes:
        """Everything the process wrote (its log lines and audit events)."""
        self.log.seek(0)
        return self.log.read()  # type: ignore[no-any-return]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def token(self, scopes: str = "demo:read") -> str:
        return mint(SECRET, issuer=ISSUER, audience=self.url, subject="alice", scopes=scopes)


def start_process(module: str, **env: str) -> ServerProcess:
    """Start `python -m <module>` with `env` added; return once /health answers."""
    port = free_port()
    environment = {
        **os.environ,
        "MCP_RESOURCE_URL": f"http://127.0.0.1:{port}/mcp",
        "MCP_ISSUER": ISSUER,
        "MCP_JWT_SECRET": SECRET,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        **env,
    }
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-m", module], env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_health(f"http://127.0.0.1:{port}")
    except RuntimeError:
        process.kill()
        raise
    return ServerProcess(process, port, log)
