"""A server process: the app under uvicorn, and Prometheus's own HTTP server when metrics have a port of their own.

SIGTERM stops accepting, drains the calls in flight, then closes the server's state (`apps.kit.http.serving`).
"""

from __future__ import annotations

from typing import Any

import uvicorn
from prometheus_client import start_http_server

from apps.kit.declare.config import load_settings
from apps.kit.declare.server import FocusedServer
from apps.kit.http.serving import uvicorn_config
from apps.kit.run.app import create_app


def serve(server: FocusedServer[Any, Any]) -> None:
    settings = load_settings(server.settings_cls)
    app = create_app(server, settings)
    if settings.mcp_metrics_port is not None:  # prometheus_client's own server, on a thread of its own
        start_http_server(settings.mcp_metrics_port, settings.host, registry=app.runtime.metrics.registry)
    uvicorn.Server(uvicorn_config(app, settings)).run()
