"""The demo server as a real process (for tests that need signals or process-wide settings)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from apps.kit.token import mint
from tests.conftest import ISSUER, SECRET
from tests.support.postgres import free_port


@dataclass
class DemoProcess:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def token(self, scopes: str = "demo:read") -> str:
        return mint(SECRET, issuer=ISSUER, audience=self.url, subject="alice", scopes=scopes)


def start_demo_process(**env: str) -> DemoProcess:
    """Start `python -m tests.support.demo_server` with `env` added; return once /health answers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    environment = {
        **os.environ,
        "MCP_RESOURCE_URL": url,
        "MCP_ISSUER": ISSUER,
        "MCP_JWT_SECRET": SECRET,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.demo_server"],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5).status_code == 200:
                return DemoProcess(process, port)
        except httpx.HTTPError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("demo server did not start")
