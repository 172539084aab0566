"""Prometheus recording and alerting rules for every MCP app, from `AlertParams`.

Every alert carries `severity`, `summary`, `description` and a `runbook_url` that
names a file in `runbooks/`. Series are grouped `by (app)`: the scrape config gives
each MCP target `job=<params.job>` and `app=<its name>`.
"""

from __future__ import annotations

from typing import Any

from alerts.params import AlertParams, BurnRate
from apps import fleet
from apps.kit import SERVER_FAULT_OUTCOMES

SERVER_FAULTS = "|".join(SERVER_FAULT_OUTCOMES)  # tool-call outcomes that spend the error budget


def slo_windows(p: AlertParams) -> list[str]:
    """Every window a burn-rate row reads, shortest first, and the SLO period itself."""
    windows = {w for burn in p.burn_rates for w in (burn.long, burn.short)} | {p.slo_period}
    return sorted(windows, key=_seconds)


def _seconds(window: str) -> int:
    return int(window[:-1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[window[-1]]


def _calls(p: AlertParams, extra: str = "") -> str:
    return f'mcp_server_operation_duration_seconds_count{{job="{p.job}", mcp_method_name="tools/call"{extra}}}'


# Pages about who is calling, not about the service's health: a reliability page on the same app never inhibits
# them (alerts/routing.py), so a probe with forged tokens stays visible while the app also burns its budget.
SECURITY_ALERTS = frozenset({"McpAuthFailureBurst", "McpPolicyDenials", "McpEgressDenied"})
SECURITY = "security"


def _alert(
    p: AlertParams, name: str, expr: str, for_: str, severity: str, summary: str, description: str
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_ not in ("0s", "0m", ""):
        rule["for"] = for_
    rule["labels"] = {"severity": severity}
    if name in SECURITY_ALERTS:
        rule["labels"]["category"] = SECURITY
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook_url": f"{p.runbook_base_url}/{name}.md",
    }
    return rule


def slo_recording_rules(p: AlertParams) -> list[dict[str, Any]]:
    rules = []
    faults, calls = _calls(p, f', outcome=~"{SERVER_FAULTS}"'), _calls(p)
    for window in slo_windows(p):
        rules.append(
            {
                "record": f"mcp:slo_errors:ratio_rate{window}",
                "expr": f"sum by (app) (rate({faults}[{window}]))\n/\nsum by (app) (rate({calls}[{window}]))",
            }
        )
    rules.append(
        {
            "record": "mcp:slo_error_budget:remaining_ratio",
            "expr": f"1 - mcp:slo_errors:ratio_rate{p.slo_period} / {p.error_budget}",
        }
    )
    return rules


def saturation_recording_rules(p: AlertParams) -> list[dict[str, Any]]:
    """Usage over limit: from cAdvisor and kube-state-metrics, else the app's own process metrics."""
    ns = p.apps_namespace
    app_of_pod = (
        f'label_replace(kube_pod_labels{{namespace="{ns}"}}, "app", "$1", "label_app_kubernetes_io_name", "(.+)")'
    )
    rules = []
    for resource, usage, process_usage, limit_metric in (
        (
            "cpu",
            f'rate(container_cpu_usage_seconds_total{{namespace="{ns}", container!="", '
            f'container!="POD"}}[{p.saturation_window}])',
            f'rate(process_cpu_seconds_total{{job="{p.job}"}}[{p.saturation_window}])',
            "mcp_process_cpu_limit_cores",
        ),
        (
            "memory",
            f'container_memory_working_set_bytes{{namespace="{ns}", container!="", container!="POD"}}',
            f'process_resident_memory_bytes{{job="{p.job}"}}',
            "mcp_process_memory_limit_bytes",
        ),
    ):
        rules.append(
            {
                "record": f"mcp:container_{resource}:ratio_limit",
                "expr": f"(\n  sum by (namespace, pod) ({usage})\n"
                f'  / sum by (namespace, pod) (kube_pod_container_resource_limits{{namespace="{ns}", '
                f'resource="{resource}"}})\n)\n* on (namespace, pod) group_left (app) {app_of_pod}',
            }
        )
        rules.append(
            {
                "record": f"mcp:process_{resource}:ratio_limit",
                "expr": f'{process_usage}\n/ on (job, instance) group_left {limit_metric}{{job="{p.job}"}}',
            }
        )
        rules.append(
            {
                "record": f"mcp:{resource}_usage:ratio_limit",
                "expr": f"mcp:container_{resource}:ratio_limit\nor\n(mcp:process_{resource}:ratio_limit "
                f"unless on (namespace, pod) mcp:container_{resource}:ratio_limit)",
            }
        )
    return rules


def alerting_rules(p: AlertParams) -> list[dict[str, Any]]:
    j = p.job
    calls = _calls(p)
    faults = _calls(p, f', outcome=~"{SERVER_FAULTS}"')
    alerts = [
        _alert(
            p,
            "McpHighErrorRate",
            f"(\n  sum by (app) (rate({faults}[{p.error_window}]))\n"
            f"  / sum by (app) (rate({calls}[{p.error_window}]))\n) > {p.error_ratio}\n"
            f"and on (app)\nsum by (app) (rate({calls}[{p.error_window}])) > {p.min_call_rate}",
            p.error_for,
            "critical",
            "{{ $labels.app }}: {{ $value | humanizePercentage }} of tool calls fail",
            f"More than {p.error_ratio:.0%} of tool calls to {{{{ $labels.app }}}} failed on the server side "
            f"(outcome {', '.join(SERVER_FAULT_OUTCOMES)}) over {p.error_window}.",
        ),
        _alert(
            p,
            "McpHighLatencyP99",
            f"histogram_quantile(0.99,\n  sum by (app, le) (rate(mcp_server_operation_duration_seconds_bucket"
            f'{{job="{j}", mcp_method_name="tools/call"}}[{p.latency_window}]))\n) > {p.latency_p99_seconds}',
            p.latency_for,
            "warning",
            "{{ $labels.app }}: p99 tool-call latency is {{ $value | humanizeDuration }}",
            f"The 99th percentile of tool-call duration on {{{{ $labels.app }}}} is above "
            f"{p.latency_p99_seconds:g}s over {p.latency_window}.",
        ),
        _alert(
            p,
            "McpAuthFailureBurst",
            f'sum by (app) (rate(mcp_auth_failures_total{{job="{j}"}}[{p.auth_window}])) * 60 '
            f"> {p.auth_failures_per_minute:g}",
            p.auth_for,
            "warning",
            "{{ $labels.app }}: {{ $value | humanize }} authentication failures per minute",
            f"More than {p.auth_failures_per_minute:g} requests per minute to {{{{ $labels.app }}}} are refused at "
            "authentication (bad, expired or foreign tokens, or none).",
        ),
        _alert(
            p,
            "McpRateLimitViolations",
            f'sum by (app) (rate(mcp_rate_limited_total{{job="{j}"}}[{p.rate_limit_window}])) '
            f"> {p.rate_limited_per_second:g}",
            p.rate_limit_for,
            "warning",
            '{{ $labels.app }}: {{ $value | printf "%.2f" }} calls/s refused by the rate limit',
            f"{{{{ $labels.app }}}} has refused more than {p.rate_limited_per_second:g} tool calls per second "
            f"with HTTP 429 for {p.rate_limit_for}.",
        ),
        _alert(
            p,
            "McpPolicyDenials",
            f'sum by (app, gen_ai_tool_name) (rate(mcp_authz_denials_total{{job="{j}"}}[{p.denial_window}])) * 60 '
            f"> {p.denials_per_minute:g}",
            p.denial_for,
            "warning",
            "{{ $labels.app }}: {{ $value | humanize }} calls a minute to {{ $labels.gen_ai_tool_name }} refused",
            f"More than {p.denials_per_minute:g} calls a minute to {{{{ $labels.gen_ai_tool_name }}}} on "
            f"{{{{ $labels.app }}}} were refused by its scopes or policies for {p.denial_for}. The audit stream "
            "says who (the McpPrincipalDenialBurst alert, per principal, comes from it).",
        ),
        _alert(
            p,
            "McpHighCpu",
            f"mcp:cpu_usage:ratio_limit > {p.cpu_ratio}",
            p.saturation_for,
            "warning",
            "{{ $labels.app }} {{ or $labels.pod $labels.instance }}: CPU at {{ $value | humanizePercentage }}"
            " of its limit",
            f"CPU use of an {{{{ $labels.app }}}} replica is above {p.cpu_ratio:.0%} of its limit "
            f"for {p.saturation_for}: calls will be throttled.",
        ),
        _alert(
            p,
            "McpHighMemory",
            f"mcp:memory_usage:ratio_limit > {p.memory_ratio}",
            p.saturation_for,
            "warning",
            "{{ $labels.app }} {{ or $labels.pod $labels.instance }}: memory at "
            "{{ $value | humanizePercentage }} of its limit",
            f"Memory of an {{{{ $labels.app }}}} replica is above {p.memory_ratio:.0%} of its limit "
            f"for {p.saturation_for}: it is close to being OOM-killed.",
        ),
        _alert(
            p,
            "McpServerDown",
            f'up{{job="{j}"}} == 0\nor\nabsent(up{{job="{j}"}})',
            p.down_for,
            "critical",
            "{{ if $labels.instance }}{{ $labels.app }} {{ $labels.instance }} is down"
            "{{ else }}no target of job {{ $labels.job }} is scraped{{ end }}",
            f"Prometheus cannot scrape an MCP server (or none of job {j} exists) for {p.down_for}.",
        ),
        _alert(
            p,
            "McpNotReady",
            f'mcp_ready{{job="{j}"}} == 0',
            p.not_ready_for,
            "warning",
            "{{ $labels.app }} {{ $labels.instance }} is not ready",
            f"A replica of {{{{ $labels.app }}}} reports a dependency (database, Redis) not answering for "
            f"{p.not_ready_for}; it receives no traffic meanwhile.",
        ),
        _alert(
            p,
            "McpVolumeFilling",
            f'min by (app, volume) (\n  mcp_volume_available_bytes{{job="{j}"}}\n'
            f'  / mcp_volume_size_bytes{{job="{j}"}}\n) < {p.volume_available_ratio}',
            p.volume_for,
            "warning",
            "{{ $labels.app }}: volume {{ $labels.volume }} has {{ $value | humanizePercentage }} left",
            f"Less than {p.volume_available_ratio:.0%} of the {{{{ $labels.volume }}}} volume of "
            f"{{{{ $labels.app }}}} is available for {p.volume_for}; when it is full, writes fail.",
        ),
        _alert(
            p,
            "McpEgressDenied",
            f'sum by (app) (increase(mcp_egress_requests_total{{job="{p.egress_job}", verdict="denied"}}'
            f"[{p.egress_denied_window}])) > 0",
            "0m",
            "warning",
            "{{ $labels.app }} tried to reach a host it did not declare",
            f"The egress proxy refused a request of {{{{ $labels.app }}}} in the last {p.egress_denied_window}: "
            "a host or port outside its allowlist, or a name that resolves to a private address. Callers cannot "
            "cause this; the app's own code or configuration did.",
        ),
    ]
    alerts += [burn_rate_alert(p, burn) for burn in p.burn_rates]
    return alerts + server_alerts(p)


def server_alerts(p: AlertParams) -> list[dict[str, Any]]:
    """The alerts each server of the fleet declares on its own series, linked to the runbooks in its folder."""
    rules = []
    for module, server in fleet.servers().items():
        for alert in server.alerts:
            expr = alert.expr.replace("{job}", p.job)
            rule = _alert(p, alert.name, expr, alert.for_, alert.severity, alert.summary, alert.description)
            relative = fleet.folder(module).relative_to(fleet.APPS_DIR.parent)
            rule["annotations"]["runbook_url"] = f"{p.source_url}/{relative}/runbooks/{alert.name}.md"
            rules.append(rule)
    return rules


def burn_rate_alert(p: AlertParams, burn: BurnRate) -> dict[str, Any]:
    """One rule per row of the burn-rate table; its description is written from the row's numbers."""
    budget = p.error_budget
    period_days = _seconds(p.slo_period) / 86400
    exhausted_in = period_days / burn.burn
    speed = "fast" if burn.severity == "critical" else "steadily"
    rule = _alert(
        p,
        burn.alert,
        f"mcp:slo_errors:ratio_rate{burn.long} > {burn.burn:g} * {budget}\n"
        f"and\nmcp:slo_errors:ratio_rate{burn.short} > {burn.burn:g} * {budget}",
        p.for_of(burn),
        burn.severity,
        f"{{{{ $labels.app }}}} is burning its error budget {speed}",
        f"{{{{ $labels.app }}}} fails more than {burn.burn:g}x the rate its {p.slo_target:.1%} {p.slo_period} "
        f"SLO allows, over {burn.long} and still over {burn.short}: at this rate the budget is gone in "
        f"{exhausted_in:.1f} days.",
    )
    rule["labels"]["window"] = burn.long
    return rule


def render_rules(p: AlertParams | None = None) -> dict[str, Any]:
    p = p or AlertParams()
    return {
        "groups": [
            {"name": "mcp-slo.rules", "interval": p.slo_rules_interval, "rules": slo_recording_rules(p)},
            {"name": "mcp-saturation.rules", "rules": saturation_recording_rules(p)},
            {"name": "mcp.alerts", "rules": alerting_rules(p)},
        ]
    }


def alert_names(p: AlertParams | None = None) -> list[str]:
    return [rule["alert"] for rule in alerting_rules(p or AlertParams())]
