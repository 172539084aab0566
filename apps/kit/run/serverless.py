"""A focused server on AWS Lambda, behind an API Gateway HTTP API: the same ASGI app, its lifespan entered once
per sandbox.

The usual adapter runs the ASGI lifespan around every invocation, so a warm sandbox reopens (and then fails to
reopen) the server's pools on each request. Here the sandbox's init phase builds the app, opens its state in
one event loop that lives as long as the sandbox, and Mangum (with its lifespan off) translates each event
into a request on that loop. Between invocations the CPU is frozen, so the settings are forced into the
serverless profile (no background refresher; `/ready` checks when asked), and buffered spans and the pushed
metrics (`apps.kit.observe.push`) are flushed before an invocation returns, within a small budget. On
SIGTERM (which Lambda sends when an extension is registered) the lifespan closes: pools closed, last spans
flushed.

With SnapStart (`AWS_LAMBDA_INITIALIZATION_TYPE=snap-start`) Lambda snapshots the sandbox once init is done and
starts new sandboxes from that snapshot. Init then only loads the modules (most of a cold start); the app is
built and its lifespan entered after each restore (34 to 43 ms to the first answer here: `lambda-snapstart` in
`python -m bench`), so no connection, signing key, instance id or random state is shared by the sandboxes
restored from one snapshot: a connection in the snapshot would be dead on arrival, and `random` (which draws
OpenTelemetry's trace and span ids) is reseeded first.

`python -m awslambdaric apps.lambda_main.handler` (`LAMBDA_HANDLER`) with `MCP_SERVER=apps.db` runs it in the
container image.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from types import FrameType
from typing import Any

from mangum import Mangum

from apps.kit.declare.config import KitSettings, load_settings
from apps.kit.declare.server import FocusedServer, load_server
from apps.kit.observe.logs import log_event
from apps.kit.observe.push import flush_metrics
from apps.kit.observe.tracing import flush_traces
from apps.kit.run.app import create_app

LAMBDA_HANDLER = ("awslambdaric", "apps.lambda_main.handler")  # the image's command on Lambda, after `python -m`
FLUSH_SECONDS = 1.0  # an invocation waits at most this long for its spans to leave
SNAP_START = "snap-start"  # AWS_LAMBDA_INITIALIZATION_TYPE while Lambda prepares a SnapStart snapshot


class LambdaApp:
    def __init__(self, server: FocusedServer[Any, Any], settings: KitSettings | None = None):
        settings = settings or load_settings(server.settings_cls)
        self.server = server
        self.settings = settings.model_copy(update={"mcp_serverless": True})
        self.invocations = 0
        self._open = False

    def open(self) -> None:
        """Build the app and enter its lifespan, on an event loop that lives as long as the sandbox."""
        self.app = create_app(self.server, self.settings)
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)  # Mangum runs every invocation on the current loop: this one
        self._lifespan = self.app.runtime.lifespan(self.app)
        self.loop.run_until_complete(self._lifespan.__aenter__())
        self._open = True
        self.adapter = Mangum(self.app, lifespan="off")

    def restored(self) -> None:
        """SnapStart's after-restore hook: fresh randomness for this sandbox, then the app."""
        random.seed()  # from os.urandom: the snapshot's state is every restored sandbox's
        self.open()

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
    if os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE") == SNAP_START:
        from snapshot_restore_py import register_after_restore  # the hooks awslambdaric runs

        register_after_restore(app.restored)
    else:
        app.open()
    app.stop_on_sigterm()
    return app
