"""The Lambda handler (`apps.lambda_main.handler`): the server named by `MCP_SERVER` (e.g. `apps.db`), built
when the sandbox starts (Lambda's init phase), not on the first invocation. Outside `apps.kit`, so the collector
is paused before the kit loads (`apps.collector`)."""

from __future__ import annotations

import os

from apps import collector

collector.pause()
from apps.kit import lambda_app  # noqa: E402

handler = lambda_app(os.environ["MCP_SERVER"])
