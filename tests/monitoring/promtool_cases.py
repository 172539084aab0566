"""promtool unit tests for every alert: it fires when it should, stays silent on the near miss,
and carries the expected labels and annotations. Built here, run by `promtool test rules`."""

from __future__ import annotations

from typing import Any

from alerts.params import AlertParams
from alerts.rules import alerting_rules
from apps import fleet

P = AlertParams()
APP = 'app="mcp-db", job="mcp-apps"'
DB1 = f'{APP}, instance="db-1:8080"'
FILES1 = 'app="mcp-files", job="mcp-apps", instance="files-1:8080"'
CALL = 'mcp_method_name="tools/call", gen_ai_tool_name="query"'
PROXY = f'job="{P.egress_job}", pod="egress-proxy-7c9d-fghij"'


def rule_of(alert: str, window: str | None = None) -> dict[str, Any]:
    return next(
        r for r in alerting_rules(P) if r["alert"] == alert and (window is None or r["labels"].get("window") == window)
    )


def annotations(alert: str, summary: str, labels: dict[str, str], window: str | None = None) -> dict[str, str]:
    """The expected annotations: the description has only label placeholders, so substitute them."""
    rule = rule_of(alert, window)
    description = rule["annotations"]["description"]
    for name, value in labels.items():
        description = description.replace("{{ $labels." + name + " }}", value)
    return {"summary": summary, "description": description, "runbook_url": rule["annotations"]["runbook_url"]}


def fires(alert: str, at: str, labels: dict[str, str], summary: str, windows: tuple[str, ...] = ()) -> dict[str, Any]:
    """`windows`: for a burn-rate alert, the rows (by long window) expected to fire, one alert each."""
    expected = []
    for window in windows or (None,):
        rule_labels = rule_of(alert, window)["labels"]
        expected.append(
            {
                "exp_labels": {**labels, **rule_labels},
                "exp_annotations": annotations(alert, summary, labels, window),
            }
        )
    return {"eval_time": at, "alertname": alert, "exp_alerts": expected}


def silent(alert: str, at: str) -> dict[str, Any]:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


def case(series: list[tuple[str, str]], alerts: list[dict[str, Any]], interval: str = "1m") -> dict[str, Any]:
    return {
        "interval": interval,
        "input_series": [{"series": s, "values": v} for s, v in series],
        "alert_rule_test": alerts,
    }


def calls(ok_per_step: int, errors_per_step: int, steps: int, invalid_per_step: int = 0) -> list[tuple[str, str]]:
    """Counters of tool calls by outcome; `invalid_params` (the caller's mistake) is a call, not a failure."""
    return [
        (f'mcp_server_operation_duration_seconds_count{{{APP}, {CALL}, outcome="ok"}}', f"0+{ok_per_step}x{steps}"),
        (
            f'mcp_server_operation_duration_seconds_count{{{APP}, {CALL}, outcome="error"}}',
            f"0+{errors_per_step}x{steps}",
        ),
        (
            f'mcp_server_operation_duration_seconds_count{{{APP}, {CALL}, outcome="invalid_params"}}',
            f"0+{invalid_per_step}x{steps}",
        ),
    ]


def buckets(bucket_with_all: float, per_step: int, steps: int) -> list[tuple[str, str]]:
    series = []
    for le in ("0.5", "0.75", "1.0", "1.5", "2.5", "+Inf"):
        filled = le == "+Inf" or float(le) >= bucket_with_all
        series.append(
            (
                f'mcp_server_operation_duration_seconds_bucket{{{APP}, {CALL}, outcome="ok", le="{le}"}}',
                f"0+{per_step if filled else 0}x{steps}",
            )
        )
    return series


def saturation(resource: str, used: float, *, in_kubernetes: bool) -> list[tuple[str, str]]:
    """Usage against a limit of 1 (core or GiB), from cAdvisor/KSM or from the process metrics."""
    gib = 1024**3
    pod = 'namespace="mcp-apps", pod="mcp-db-5d9f-abcde"'
    process_labels = f"{DB1}, {pod}" if in_kubernetes else DB1
    if resource == "cpu":
        process = [
            (f"process_cpu_seconds_total{{{process_labels}}}", f"0+{used * 60:g}x40"),
            (f"mcp_process_cpu_limit_cores{{{process_labels}}}", "1x40"),
        ]
        container = [
            (f'container_cpu_usage_seconds_total{{{pod}, container="mcp-db"}}', f"0+{used * 60:g}x40"),
            (f'kube_pod_container_resource_limits{{{pod}, container="mcp-db", resource="cpu", unit="core"}}', "1x40"),
        ]
    else:
        process = [
            (f"process_resident_memory_bytes{{{process_labels}}}", f"{int(used * gib)}x40"),
            (f"mcp_process_memory_limit_bytes{{{process_labels}}}", f"{gib}x40"),
        ]
        container = [
            (f'container_memory_working_set_bytes{{{pod}, container="mcp-db"}}', f"{int(used * gib)}x40"),
            (
                f'kube_pod_container_resource_limits{{{pod}, container="mcp-db", resource="memory", unit="byte"}}',
                f"{gib}x40",
            ),
        ]
    if not in_kubernetes:
        return process
    labels = [(f'kube_pod_labels{{{pod}, label_app_kubernetes_io_name="mcp-db"}}', "1x40")]
    # The process reports a lower figure: the container figure must win, with no duplicate alert.
    return container + labels + [(process[0][0], process[0][1].replace(f"{used * 60:g}", "1")), process[1]]


def tests() -> list[dict[str, Any]]:
    app = {"app": "mcp-db"}
    db1 = {"app": "mcp-db", "job": "mcp-apps", "instance": "db-1:8080"}
    pod = {"app": "mcp-db", "namespace": "mcp-apps", "pod": "mcp-db-5d9f-abcde"}
    return [
        # Error rate: 5 % fires; 0.5 % does not; 60 % caller mistakes do not; 50 % of a trickle does not.
        case(
            calls(37, 3, 20, invalid_per_step=20),
            [fires("McpHighErrorRate", "15m", app, "mcp-db: 5% of tool calls fail")],
        ),
        case(calls(199, 1, 20), [silent("McpHighErrorRate", "15m")]),
        case(calls(40, 0, 20, invalid_per_step=60), [silent("McpHighErrorRate", "15m")]),
        case(calls(1, 1, 20), [silent("McpHighErrorRate", "15m")], interval="10m"),
        # p99 latency: everything in (1.5 s, 2.5 s] fires (p99 = 2.49 s); everything in (0.75 s, 1 s] does not.
        case(buckets(2.5, 10, 20), [fires("McpHighLatencyP99", "15m", app, "mcp-db: p99 tool-call latency is 2.49s")]),
        case(buckets(1.0, 10, 20), [silent("McpHighLatencyP99", "15m")]),
        # Auth failures: 20/min fires, exactly 10/min does not (the threshold is "more than").
        case(
            [(f'mcp_auth_failures_total{{{DB1}, reason="expired"}}', "0+20x10")],
            [fires("McpAuthFailureBurst", "8m", app, "mcp-db: 20 authentication failures per minute")],
        ),
        case(
            [(f'mcp_auth_failures_total{{{DB1}, reason="expired"}}', "0+10x10")], [silent("McpAuthFailureBurst", "8m")]
        ),
        # Rate-limit rejections: 0.2/s for 30 m fires; exactly 0.1/s does not.
        case(
            [(f"mcp_rate_limited_total{{{DB1}}}", "0+12x40")],
            [fires("McpRateLimitViolations", "35m", app, "mcp-db: 0.20 calls/s refused by the rate limit")],
        ),
        case([(f"mcp_rate_limited_total{{{DB1}}}", "0+6x40")], [silent("McpRateLimitViolations", "35m")]),
        # Policy denials: 20/min to one tool for 5 m fires (by app and tool); 8/min does not.
        case(
            [(f'mcp_authz_denials_total{{{DB1}, gen_ai_tool_name="query"}}', "0+20x15")],
            [
                fires(
                    "McpPolicyDenials",
                    "12m",
                    app | {"gen_ai_tool_name": "query"},
                    "mcp-db: 20 calls a minute to query refused",
                )
            ],
        ),
        case(
            [(f'mcp_authz_denials_total{{{DB1}, gen_ai_tool_name="query"}}', "0+8x15")],
            [silent("McpPolicyDenials", "12m")],
        ),
        # CPU and memory against limits: from the process metrics where no cAdvisor/KSM exists ...
        case(
            saturation("cpu", 0.9, in_kubernetes=False),
            [fires("McpHighCpu", "30m", db1, "mcp-db db-1:8080: CPU at 90% of its limit")],
        ),
        case(saturation("cpu", 0.75, in_kubernetes=False), [silent("McpHighCpu", "30m")]),
        case(
            saturation("memory", 0.9, in_kubernetes=False),
            [fires("McpHighMemory", "30m", db1, "mcp-db db-1:8080: memory at 90% of its limit")],
        ),
        case(saturation("memory", 0.8, in_kubernetes=False), [silent("McpHighMemory", "30m")]),
        # ... and from cAdvisor/KSM in Kubernetes, which then wins over the process figure (one alert).
        case(
            saturation("cpu", 0.9, in_kubernetes=True),
            [fires("McpHighCpu", "30m", pod, "mcp-db mcp-db-5d9f-abcde: CPU at 90% of its limit")],
        ),
        case(
            saturation("memory", 0.9, in_kubernetes=True),
            [fires("McpHighMemory", "30m", pod, "mcp-db mcp-db-5d9f-abcde: memory at 90% of its limit")],
        ),
        case(saturation("memory", 0.8, in_kubernetes=True), [silent("McpHighMemory", "30m")]),
        # A target down for 2 m fires; a blip of 30 s does not; no target at all fires too.
        case([(f"up{{{DB1}}}", "1 1 0 0 0 0")], [fires("McpServerDown", "5m", db1, "mcp-db db-1:8080 is down")]),
        case([(f"up{{{DB1}}}", "1 1 1 1 1 1")], [silent("McpServerDown", "5m")]),
        case(
            [('up{job="prometheus"}', "1x10")],
            [fires("McpServerDown", "5m", {"job": "mcp-apps"}, "no target of job mcp-apps is scraped")],
        ),
        # Not ready for 10 m fires; for 3 m does not.
        case([(f"mcp_ready{{{DB1}}}", "1 0x10")], [fires("McpNotReady", "10m", db1, "mcp-db db-1:8080 is not ready")]),
        case([(f"mcp_ready{{{DB1}}}", "1 0 0 0 1x8")], [silent("McpNotReady", "10m")]),
        # A volume at 5 % available for 15 m fires; at 5 % for 5 m, or at 20 %, it does not.
        case(
            [
                (f'mcp_volume_size_bytes{{{FILES1}, volume="files"}}', "1000x20"),
                (f'mcp_volume_available_bytes{{{FILES1}, volume="files"}}', "50x20"),
            ],
            [
                fires(
                    "McpVolumeFilling",
                    "15m",
                    {"app": "mcp-files", "volume": "files"},
                    "mcp-files: volume files has 5% left",
                )
            ],
        ),
        case(
            [
                (f'mcp_volume_size_bytes{{{FILES1}, volume="files"}}', "1000x20"),
                (f'mcp_volume_available_bytes{{{FILES1}, volume="files"}}', "200x10 50x5 200x5"),
            ],
            [silent("McpVolumeFilling", "15m"), silent("McpVolumeFilling", "20m")],
        ),
        # Denied egress: one refused request fires at once; allowed traffic alone, or a denial of another
        # client, stays silent for this one.
        case(
            [
                (f'mcp_egress_requests_total{{{PROXY}, app="mcp-db", verdict="denied"}}', "0 0 0 1 1 1 1"),
                (f'mcp_egress_requests_total{{{PROXY}, app="mcp-db", verdict="allowed"}}', "0+5x6"),
            ],
            [fires("McpEgressDenied", "5m", app, "mcp-db tried to reach a host it did not declare")],
        ),
        case(
            [
                (f'mcp_egress_requests_total{{{PROXY}, app="mcp-db", verdict="denied"}}', "0x12"),
                (f'mcp_egress_requests_total{{{PROXY}, app="mcp-db", verdict="allowed"}}', "0+5x12"),
            ],
            [silent("McpEgressDenied", "5m"), silent("McpEgressDenied", "11m")],
        ),
        # Error budget, page: 2 % failures (20x the 0.1 % budget) for 7 h pages on both rows (14.4x and 6x);
        # 0.5 % is under both.
        case(
            calls(980, 20, 420),
            [fires("McpErrorBudgetBurnFast", "7h", app, "mcp-db is burning its error budget fast", ("1h", "6h"))],
        ),
        case(calls(995, 5, 420), [silent("McpErrorBudgetBurnFast", "7h")]),
    ]


def slow_tests() -> list[dict[str, Any]]:
    """Multi-day windows, evaluated every 5 minutes to keep promtool fast."""
    app = {"app": "mcp-db"}
    return [
        # Error budget, ticket: 0.2 % (2x) for 3.5 days opens a ticket on the 1x row (3d) but not the 3x row (1d);
        # 0.05 % opens none.
        case(
            calls(998, 2, 1000),
            [fires("McpErrorBudgetBurnSlow", "80h", app, "mcp-db is burning its error budget steadily", ("3d",))],
            interval="5m",
        ),
        case(calls(1999, 1, 1000), [silent("McpErrorBudgetBurnSlow", "80h")], interval="5m"),
    ]


def server_tests() -> list[dict[str, Any]]:
    """The cases each server declares with its own alerts (`ServerAlert.cases`, in its folder)."""
    gathered = []
    for server in fleet.servers().values():
        for alert in server.alerts:
            for example in alert.cases:
                series = [(name.replace("{job}", P.job), values) for name, values in example.series.items()]
                if example.fires is None:
                    expectation = silent(alert.name, example.at)
                else:
                    expectation = fires(alert.name, example.at, example.fires, example.summary)
                gathered.append(case(series, [expectation]))
    return gathered


def documents(rule_file: str) -> list[dict[str, Any]]:
    return [
        {"rule_files": [rule_file], "evaluation_interval": "1m", "tests": tests() + server_tests()},
        {"rule_files": [rule_file], "evaluation_interval": "5m", "tests": slow_tests()},
    ]
