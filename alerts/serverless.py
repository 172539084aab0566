"""Alerts for serverless apps, from what their platform exports.

Nothing scrapes an instance that may not exist, so the Prometheus rules (CPU, memory, restarts, and the rules
on the apps' own series) do not see a Cloud Run or Lambda app. Its alerts are the cloud's own instead: Cloud
Monitoring alert policies for Cloud Run (`infra/components/cloud_run.py`), CloudWatch alarms for Lambda and its
HTTP API (`infra/components/lambda_app.py`). Each names its runbook in `runbooks/`, as the Prometheus rules do.
A caller's mistake never fires one: the app answers those with 4xx, and these count 5xx, platform errors and
throttling only.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.params import AlertParams


@dataclass(frozen=True)
class ServerlessAlert:
    name: str
    summary: str
    for_seconds: int

    def runbook_url(self, params: AlertParams | None = None) -> str:
        return f"{(params or AlertParams()).runbook_base_url}/{self.name}.md"

    def description(self, app: str, params: AlertParams | None = None) -> str:
        return f"{self.summary.replace('APP', app)}. Runbook: {self.runbook_url(params)}"


SERVER_ERRORS = ServerlessAlert(
    "McpServerlessServerErrors", "APP (serverless) answers 5xx or fails invocations: a server fault", 600
)
SATURATED = ServerlessAlert(
    "McpServerlessSaturated", "APP (serverless) is at its most instances: requests wait or are throttled", 900
)
SERVERLESS_ALERTS = (SERVER_ERRORS, SATURATED)
SERVER_ERROR_RATE = 0.05  # 5xx answers per second, sustained over `for_seconds`
