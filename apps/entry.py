"""A server process's start (`python -m apps.<name>`): the collector paused (`apps.collector`) before the
server's modules, and the kit with them, load; then the server declared in `apps/<name>/server.py` serves."""

from __future__ import annotations

from apps import collector


def serve(module: str) -> None:
    collector.pause()
    from apps.kit import load_server
    from apps.kit import serve as serve_server

    serve_server(load_server(module))
