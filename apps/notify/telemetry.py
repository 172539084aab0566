"""The notification server's own telemetry: deliveries by target and outcome, their latency, its dashboard row,
and its alert: `McpNotifyDeliveryFailing` on the share of failed deliveries per target (runbook:
`runbooks/McpNotifyDeliveryFailing.md` in this folder).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram
from prometheus_client.registry import CollectorRegistry

from apps.kit import AlertCase, Chart, DashboardRow, ServerAlert

OUTCOMES = ("delivered", "failed", "throttled", "refused")


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry, targets: dict[str, str]):
        self.deliveries = Counter(
            "mcp_notify_deliveries",
            "Deliveries attempted, by target and outcome (refused: the target's address is not allowed)",
            ["target", "kind", "outcome"],
            registry=registry,
        )
        self.latency = Histogram(
            "mcp_notify_delivery_seconds",
            "Time to hand a message to its target",
            ["kind"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        for target, kind in targets.items():  # every series exists from the start, so rate() sees the first failure
            for outcome in OUTCOMES:
                self.deliveries.labels(target=target, kind=kind, outcome=outcome)


DASHBOARD = DashboardRow(
    "Notification server: deliveries",
    (
        Chart(
            "Deliveries per second by target and outcome",
            (
                (
                    "sum by (target, outcome) (rate(mcp_notify_deliveries_total{{{sel}}}[$__rate_interval]))",
                    "{{target}} {{outcome}}",
                ),
            ),
            unit="reqps",
            description="failed or refused deliveries fire McpNotifyDeliveryFailing; throttled means the target "
            "answered 429 and is being waited for.",
        ),
        Chart(
            "Delivery latency p95 by kind",
            (
                (
                    "histogram_quantile(0.95, sum by (kind, le) "
                    "(rate(mcp_notify_delivery_seconds_bucket{{{sel}}}[$__rate_interval])))",
                    "{{kind}} p95",
                ),
            ),
            unit="s",
        ),
    ),
)


DELIVERIES = (  # one target's deliveries as scraped, for the alert's cases
    'mcp_notify_deliveries_total{app="mcp-notify", job="{job}", instance="notify-1:8080", target="sre-oncall", '
    'kind="webhook"'
)
FAILED_RATIO = 0.2  # of a target's delivery attempts
FAILED_WINDOW = "10m"
FAILED_FOR = "5m"

ALERTS = (
    ServerAlert(
        "McpNotifyDeliveryFailing",
        '(\n  sum by (app, target) (rate(mcp_notify_deliveries_total{job="{job}", outcome=~"failed|refused"}'
        f"[{FAILED_WINDOW}]))\n"
        '  / sum by (app, target) (rate(mcp_notify_deliveries_total{job="{job}"}'
        f"[{FAILED_WINDOW}]))\n) > {FAILED_RATIO}",
        FAILED_FOR,
        "warning",
        "{{ $labels.app }}: {{ $value | humanizePercentage }} of deliveries to {{ $labels.target }} fail",
        f"More than {FAILED_RATIO:.0%} of the messages {{{{ $labels.app }}}} tried to deliver to target "
        f"{{{{ $labels.target }}}} over {FAILED_WINDOW} failed or were refused: people are not being told.",
        cases=(
            # Deliveries to one target failing 1 in 2 for 10 m fire; 1 in 10 does not.
            AlertCase(
                {f'{DELIVERIES}, outcome="delivered"}}': "0+6x20", f'{DELIVERIES}, outcome="failed"}}': "0+6x20"},
                at="15m",
                fires={"app": "mcp-notify", "target": "sre-oncall"},
                summary="mcp-notify: 50% of deliveries to sre-oncall fail",
            ),
            AlertCase(
                {f'{DELIVERIES}, outcome="delivered"}}': "0+9x20", f'{DELIVERIES}, outcome="failed"}}': "0+1x20"},
                at="15m",
            ),
        ),
    ),
)
