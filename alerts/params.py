"""The knobs of every alert: thresholds, windows, `for:` durations, names, URLs.

Defaults are the seed's numbers (error rate > 1 %, p99 > 1 s, auth failures > 10/min,
CPU > 80 %, memory > 85 % of the limit, 99.9 % availability over 30 days). The
checked-in YAML is rendered from these defaults; tests and stacks pass overrides.
"""

from __future__ import annotations

from dataclasses import dataclass

from alerts.names import APP_NAMESPACE, EGRESS_JOB, SCRAPE_JOB


@dataclass(frozen=True)
class BurnRate:
    """One multiwindow burn-rate alert rule (SRE workbook): the budget burns `burn` times the sustainable
    rate over both `long` and `short` (the short window confirms it is still burning)."""

    alert: str
    severity: str
    burn: float
    long: str
    short: str


# Page when the month's budget would be gone in about 2 or 5 days; open a ticket at 10 or 30 days.
BURN_RATES = (
    BurnRate("McpErrorBudgetBurnFast", "critical", 14.4, "1h", "5m"),
    BurnRate("McpErrorBudgetBurnFast", "critical", 6, "6h", "30m"),
    BurnRate("McpErrorBudgetBurnSlow", "warning", 3, "1d", "2h"),
    BurnRate("McpErrorBudgetBurnSlow", "warning", 1, "3d", "6h"),
)


@dataclass(frozen=True)
class AlertParams:
    # What the MCP scrape job is called, and the namespace its pods run in (Kubernetes).
    job: str = SCRAPE_JOB
    egress_job: str = EGRESS_JOB
    apps_namespace: str = APP_NAMESPACE
    source_url: str = "https://github.com/mcpfleet/mcpfleet/blob/main"  # runbook links: <source_url>/<path>

    error_ratio: float = 0.01
    error_window: str = "5m"
    error_for: str = "5m"
    min_call_rate: float = 0.05  # calls/s; below it one failed call is not a 1 % error rate
    latency_p99_seconds: float = 1.0
    latency_window: str = "5m"
    latency_for: str = "5m"
    auth_failures_per_minute: float = 10.0
    auth_window: str = "2m"
    auth_for: str = "1m"
    rate_limited_per_second: float = 0.1
    denials_per_minute: float = 10.0  # calls refused by the policies, per app and tool
    denial_window: str = "5m"
    denial_for: str = "5m"
    rate_limit_window: str = "10m"
    rate_limit_for: str = "15m"
    cpu_ratio: float = 0.8
    memory_ratio: float = 0.85
    saturation_window: str = "5m"
    saturation_for: str = "15m"
    down_for: str = "1m"
    egress_denied_window: str = "10m"  # how long a refused request keeps McpEgressDenied firing
    volume_available_ratio: float = 0.1  # of a declared volume still writable
    volume_for: str = "10m"
    not_ready_for: str = "5m"

    slo_target: float = 0.999  # availability over `slo_period`
    slo_period: str = "30d"
    slo_rules_interval: str = "30s"  # the SLO recording rules' evaluation interval
    burn_rates: tuple[BurnRate, ...] = BURN_RATES
    slo_page_for: str = "2m"
    slo_ticket_for: str = "15m"

    # Alertmanager
    webhook_url: str = "http://alert-receiver.mcp-observability.svc:8080/alerts"
    webhook_proxy_url: str | None = None  # Alertmanager's own port on the egress proxy, for an outside webhook
    group_wait: str = "30s"
    group_interval: str = "5m"
    repeat_interval_critical: str = "1h"
    repeat_interval_warning: str = "4h"

    @property
    def runbook_base_url(self) -> str:
        """Where the fleet's runbooks (`runbooks/`) are linked; a server's own are under its folder."""
        return f"{self.source_url}/runbooks"

    @property
    def error_budget(self) -> float:
        return round(1 - self.slo_target, 10)

    def for_of(self, burn: BurnRate) -> str:
        """Pages wait `slo_page_for`, tickets `slo_ticket_for`."""
        return self.slo_page_for if burn.severity == "critical" else self.slo_ticket_for
