"""The GitHub server's own telemetry: its upstream calls by outcome, the budget GitHub reports left, its
dashboard row, and two alerts (runbooks in `runbooks/` of this folder): `McpGithubBudgetLow` (the shared hourly
budget is running out) and `McpGithubUpstreamFailing` (GitHub fails or refuses this server's credential).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge
from prometheus_client.registry import CollectorRegistry

from apps.kit import AlertCase, Chart, DashboardRow, ServerAlert

# What an upstream call came to. Only `failed` (5xx, unreachable, timed out) and `credential_refused` (401)
# are the server's side; `caller_error` (404, 422 ...) and `throttled` (GitHub's rate limits) are not.
OUTCOMES = ("ok", "not_modified", "caller_error", "throttled", "credential_refused", "failed")
BUDGET_LOW = 500  # calls left in the hour (a fine-grained token has 5,000)
FAILING_RATIO = 0.2
FAILING_WINDOW = "10m"


class GithubMetrics:
    def __init__(self, registry: CollectorRegistry):
        self.calls = Counter(
            "mcp_github_upstream_calls", "Calls to GitHub's API, by method and outcome", ["method", "outcome"],
            registry=registry,
        )  # fmt: skip
        self.remaining = Gauge(
            "mcp_github_budget_remaining", "Calls left of the credential's hourly budget, as GitHub last said",
            registry=registry,
        )  # fmt: skip
        for method in ("GET", "POST"):  # every series exists from the start, so rate() sees the first failure
            for outcome in OUTCOMES:
                self.calls.labels(method, outcome)


DASHBOARD = DashboardRow(
    "GitHub server: upstream",
    (
        Chart(
            "GitHub calls per second by outcome",
            (("sum by (outcome) (rate(mcp_github_upstream_calls_total{{{sel}}}[$__rate_interval]))", "{{outcome}}"),),
            unit="reqps",
            description="failed and credential_refused fire McpGithubUpstreamFailing; throttled means GitHub's "
            "rate limits, not_modified a 304 answered from the cache (free).",
        ),
        Chart(
            "GitHub budget left (calls this hour)",
            (("min(mcp_github_budget_remaining{{{sel}}})", "left"),),
            description=f"under {BUDGET_LOW} fires McpGithubBudgetLow; under GITHUB_BUDGET_RESERVE calls are refused",
        ),
    ),
)

CALLS = 'mcp_github_upstream_calls_total{app="mcp-github", job="{job}", instance="github-1:8080", method="GET"'
BUDGET = 'mcp_github_budget_remaining{app="mcp-github", job="{job}", instance="github-1:8080"}'

ALERTS = (
    ServerAlert(
        "McpGithubBudgetLow",
        f'min by (app) (mcp_github_budget_remaining{{job="{{job}}"}}) < {BUDGET_LOW}',
        "5m",
        "warning",
        "{{ $labels.app }}: {{ $value }} GitHub calls left this hour",
        f"GitHub reports fewer than {BUDGET_LOW} calls left of {{{{ $labels.app }}}}'s hourly budget; under its "
        "reserve, calls are refused until the reset.",
        cases=(
            AlertCase(
                {BUDGET: "4000 3000 2000 1000 400x10"},
                at="12m",
                fires={"app": "mcp-github"},
                summary="mcp-github: 400 GitHub calls left this hour",
            ),
            AlertCase({BUDGET: "4000 3000 2000 1000 600x10"}, at="12m"),
        ),
    ),
    ServerAlert(
        "McpGithubUpstreamFailing",
        '(\n  sum by (app) (rate(mcp_github_upstream_calls_total{job="{job}", outcome=~"failed|credential_refused"}'
        f"[{FAILING_WINDOW}]))\n"
        f'  / sum by (app) (rate(mcp_github_upstream_calls_total{{job="{{job}}"}}[{FAILING_WINDOW}]))\n'
        f") > {FAILING_RATIO}",
        "5m",
        "critical",
        "{{ $labels.app }}: {{ $value | humanizePercentage }} of GitHub calls fail",
        f"More than {FAILING_RATIO:.0%} of {{{{ $labels.app }}}}'s calls to GitHub over {FAILING_WINDOW} failed "
        "(5xx, unreachable, timed out) or its credential was refused (401). Callers' mistakes (404, 422) and "
        "GitHub's rate limits do not count.",
        cases=(
            AlertCase(
                {f'{CALLS}, outcome="ok"}}': "0+5x20", f'{CALLS}, outcome="failed"}}': "0+5x20"},
                at="15m",
                fires={"app": "mcp-github"},
                summary="mcp-github: 50% of GitHub calls fail",
            ),
            # Callers asking for what does not exist, and GitHub throttling: not a failure of the server.
            AlertCase(
                {
                    f'{CALLS}, outcome="ok"}}': "0+5x20",
                    f'{CALLS}, outcome="caller_error"}}': "0+10x20",
                    f'{CALLS}, outcome="throttled"}}': "0+10x20",
                },
                at="15m",
            ),
        ),
    ),
)
