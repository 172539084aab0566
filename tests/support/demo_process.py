"""The demo server as a real process (for tests that need signals, process-wide settings or its output)."""

from __future__ import annotations

from tests.support.running import ServerProcess, start_process

DemoProcess = ServerProcess


def start_demo_process(**env: str) -> ServerProcess:
    return start_process("tests.support.demo_server", **env)
