"""A focused server on AWS Lambda, behind an API Gateway HTTP API: the same ASGI app, its lifespan entered once
per sandbox.

The usual adapter runs the ASGI lifespan around every invocation, so a warm sandbox reopens (and then fails to
reopen) the server's pools on each request. Here the sandbox's init phase builds the app, opens its state in
one event loop that lives as long as the sandbox, and Mangum (with its lifespan off) translates each event
into a request on that loop. Between invocations the CPU is frozen, so the settings are forced into the
serverless profile (no background refresher; `/ready` checks when asked), and buffered spans and the pushed
metrics (`apps.kit.metrics_push`) are flushed before an invocation returns, within a small budget. On
SIGTERM (which Lambda sends when an extension is registered) the lifespan closes: pools closed, last spans
flushed.

`python -m awslambdaric apps.lambda_main.handler` with `MCP_SERVER=apps.db` runs it in the container image.
"""

from __future__ import annotations

import asyncio
import signal
from types import FrameType
from typing import Any

from mangum import Mangum

from apps.kit.config import KitSettings, load_settings
from apps.kit.logs import log_event
from apps.kit.metrics_push import flush_metrics
from apps.kit.server import FocusedServer, load_server
from apps.kit.tracing import flush_traces

FLUSH_SECONDS = 1.0  # an invocation waits at most this long for its spans to leave


class LambdaApp:
    def __init__(self, server: FocusedServer[Any, Any], settings: KitSettings | None = None):
        settings = settings or load_settings(server.settings_cls)
        self.settings = settings.model_copy(update={"mcp_serverless": True})
        self.app = server.create_app(self.settings)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # Mangum runs every invocation on the current loop: this one
        self._lifespan = self.app.runtime.lifespan(self.app)
        self.loop.run_until_complete(self._lifespan.__aenter__())
        self._open = True
        self.adapter = Mangum(self.app, lifespan="off")
        self.invocations = 0

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.invocations += 1
        try:
            return self.adapter(event, context)
        finally:
            flush_traces(FLUSH_SECONDS)
            flush_metrics(FLUSH_SECONDS)

    def close(self) -> None:
        """Close the server's state once (pools, Redis, the limiter's lent slots) and flush the last spans."""
        if self._open:
            self._open = False
            self.loop.run_until_complete(self._lifespan.__aexit__(None, None, None))
            log_event("sandbox_stopped", invocations=self.invocations)

    def stop_on_sigterm(self) -> None:
        def stop(signum: int, frame: FrameType | None) -> None:
            self.close()
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)


def lambda_app(module: str) -> LambdaApp:
    """The Lambda handler of the server declared in `<module>.server` (e.g. `apps.db`)."""
    app = LambdaApp(load_server(module))
    app.stop_on_sigterm()
    return app
