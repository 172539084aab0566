"""The MCP overview dashboard (one per platform, an `app` variable picks the server).

    python -m dashboards.build          # regenerate dashboards/*.json
    python -m dashboards.build --check  # exit 1 if a checked-in file differs

Stable uid, a Prometheus datasource variable, no hard-coded instance: every query
selects `job="mcp-apps", app="$app"`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alerts.render import write_or_check
from alerts.rules import SERVER_FAULTS

DASHBOARDS_DIR = Path(__file__).parent
JOB = 'job="mcp-apps"'
SEL = f'{JOB}, app="$app"'
DS = {"type": "prometheus", "uid": "${datasource}"}


def panel(
    title: str,
    targets: list[tuple[str, str]],
    *,
    unit: str = "short",
    kind: str = "timeseries",
    description: str = "",
    thresholds: list[tuple[float, str]] | None = None,
) -> dict[str, Any]:
    steps = [{"color": "green", "value": None}] + [{"color": c, "value": v} for v, c in (thresholds or [])]
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "fieldConfig": {
            "defaults": {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}},
            "overrides": [],
        },
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def row(title: str) -> dict[str, Any]:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def quantile(q: str) -> str:
    return (
        f"histogram_quantile({q}, sum by (gen_ai_tool_name, le) "
        f"(rate(mcp_server_operation_duration_seconds_bucket{{{SEL}}}[$__rate_interval])))"
    )


def panels() -> list[dict[str, Any]]:
    calls = f"mcp_server_operation_duration_seconds_count{{{SEL}}}"
    return [
        row("Traffic and errors"),
        panel(
            "Tool calls per second by tool",
            [(f"sum by (gen_ai_tool_name) (rate({calls}[$__rate_interval]))", "{{gen_ai_tool_name}}")],
            unit="reqps",
        ),
        panel(
            "Tool calls per second by outcome",
            [(f"sum by (outcome) (rate({calls}[$__rate_interval]))", "{{outcome}}")],
            unit="reqps",
        ),
        panel(
            "Error ratio (server faults)",
            [
                (
                    f'sum(rate(mcp_server_operation_duration_seconds_count{{{SEL}, outcome=~"{SERVER_FAULTS}"}}'
                    f"[$__rate_interval])) / sum(rate({calls}[$__rate_interval]))",
                    "error ratio",
                )
            ],
            unit="percentunit",
            thresholds=[(0.01, "red")],
            description="Alert McpHighErrorRate at 1 %.",
        ),
        panel(
            "SLO error budget remaining (30 d, 99.9 %)",
            [('mcp:slo_error_budget:remaining_ratio{app="$app"}', "budget left")],
            unit="percentunit",
            kind="stat",
            thresholds=[(0.0, "red"), (0.25, "orange"), (0.5, "green")],
        ),
        row("Latency"),
        panel("p50 by tool", [(quantile("0.5"), "{{gen_ai_tool_name}}")], unit="s"),
        panel("p95 by tool", [(quantile("0.95"), "{{gen_ai_tool_name}}")], unit="s"),
        panel(
            "p99 by tool",
            [(quantile("0.99"), "{{gen_ai_tool_name}}")],
            unit="s",
            thresholds=[(1.0, "red")],
            description="Alert McpHighLatencyP99 at 1 s.",
        ),
        row("Security"),
        panel(
            "Authentication failures per minute by reason",
            [(f"sum by (reason) (rate(mcp_auth_failures_total{{{SEL}}}[$__rate_interval])) * 60", "{{reason}}")],
            thresholds=[(10, "red")],
        ),
        panel(
            "Authorization denials per second by tool",
            [
                (
                    f"sum by (gen_ai_tool_name) (rate(mcp_authz_denials_total{{{SEL}}}[$__rate_interval]))",
                    "{{gen_ai_tool_name}}",
                )
            ],
            unit="reqps",
        ),
        panel(
            "Rate-limit rejections per second",
            [(f"sum(rate(mcp_rate_limited_total{{{SEL}}}[$__rate_interval]))", "429s")],
            unit="reqps",
        ),
        row("Saturation"),
        panel("In-flight calls by replica", [(f"sum by (instance) (mcp_inflight_calls{{{SEL}}})", "{{instance}}")]),
        panel(
            "DB pool connections in use",
            [
                (f"sum by (pool) (mcp_db_pool_connections_in_use{{{SEL}}})", "{{pool}} in use"),
                (f"sum by (pool) (mcp_db_pool_max_connections{{{SEL}}})", "{{pool}} max"),
            ],
        ),
        panel(
            "CPU against limit",
            [('mcp:cpu_usage:ratio_limit{app="$app"}', "{{pod}}{{instance}}")],
            unit="percentunit",
            thresholds=[(0.8, "red")],
        ),
        panel(
            "Memory against limit",
            [('mcp:memory_usage:ratio_limit{app="$app"}', "{{pod}}{{instance}}")],
            unit="percentunit",
            thresholds=[(0.85, "red")],
        ),
        panel("Replicas up and ready", [(f"sum(up{{{SEL}}})", "up"), (f"sum(mcp_ready{{{SEL}}})", "ready")]),
    ]


def layout(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows span the width; panels flow two or three to a row; ids are stable."""
    x = y = 0
    for panel_id, item in enumerate(items, start=1):
        item["id"] = panel_id
        if item["type"] == "row":
            y += 1 if x else 0
            item["gridPos"] = {"h": 1, "w": 24, "x": 0, "y": y}
            x, y = 0, y + 1
            continue
        width = 8
        if x + width > 24:
            x, y = 0, y + 8
        item["gridPos"] = {"h": 8, "w": width, "x": x, "y": y}
        x += width
    return items


def overview() -> dict[str, Any]:
    return {
        "uid": "mcp-overview",
        "title": "MCP overview",
        "description": "Focused MCP servers: traffic, errors, latency, security, saturation, SLO budget.",
        "tags": ["mcpfleet", "mcp"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "editable": False,
        "refresh": "30s",
        "time": {"from": "now-3h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "label": "Prometheus",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                },
                {
                    "name": "app",
                    "label": "App",
                    "type": "query",
                    "datasource": DS,
                    "query": {"query": f"label_values(mcp_server_info{{{JOB}}}, app)", "refId": "apps"},
                    "definition": f"label_values(mcp_server_info{{{JOB}}}, app)",
                    "refresh": 2,
                    "sort": 1,
                    "current": {},
                    "hide": 0,
                },
            ]
        },
        "annotations": {"list": []},
        "links": [
            {
                "title": "Runbooks",
                "type": "link",
                "url": "https://github.com/mcpfleet/mcpfleet/tree/main/runbooks",
                "targetBlank": True,
            }
        ],
        "panels": layout(panels()),
    }


DASHBOARDS = {"mcp-overview.json": overview}


def rendered() -> dict[Path, str]:
    return {DASHBOARDS_DIR / name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    return write_or_check(rendered(), argv, "python -m dashboards.build", __doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main())
