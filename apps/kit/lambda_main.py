"""The Lambda handler (`apps.kit.lambda_main.handler`): the server named by `MCP_SERVER` (e.g. `apps.db`), built
when the sandbox starts (Lambda's init phase), not on the first invocation."""

from __future__ import annotations

import os

from apps.kit.serverless import lambda_app

handler = lambda_app(os.environ["MCP_SERVER"])
