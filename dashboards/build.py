"""The fleet dashboard, built with Grafana's own typed builders (grafana-foundation-sdk) from `AlertParams`.

    python -m dashboards.build          # regenerate dashboards/*.json
    python -m dashboards.build --check  # exit 1 if a checked-in file differs

Every threshold drawn is the alert's own (`AlertParams`), every query selects the fleet's scrape job
and the `app` variable, and each server that exports series of its own adds its row (`FocusedServer.
dashboard`): a new server's folder brings its row, nothing here changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as board
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.common import VizLegendOptions
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import LegendDisplayMode, LegendPlacement

from alerts.params import AlertParams
from alerts.render import write_or_check
from alerts.rules import SERVER_FAULTS
from apps.fleet import servers
from apps.kit import Chart, DashboardRow, FocusedServer

DASHBOARDS_DIR = Path(__file__).parent
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")


def fleet() -> list[FocusedServer[Any, Any]]:
    """Every server of the fleet (`apps.fleet`, the one registry)."""
    return list(servers().values())


class Panels:
    """Builds panels with the fleet's conventions: the Prometheus datasource variable, stable ids."""

    def __init__(self, p: AlertParams):
        self.p = p
        self.sel = f'job="{p.job}", app="$app"'
        self.next_id = 0

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _targets(self, queries: tuple[tuple[str, str], ...]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
        return [
            prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i)).datasource(DATASOURCE)
            for i, (expr, legend) in enumerate(queries)
        ]

    def row(self, title: str) -> board.Row:
        return board.Row(title).id(self._id())

    def series(
        self,
        title: str,
        *queries: tuple[str, str],
        unit: str = "short",
        threshold: float | None = None,
        description: str = "",
    ) -> timeseries.Panel:
        panel = (
            timeseries.Panel()
            .id(self._id())
            .title(title)
            .description(description)
            .datasource(DATASOURCE)
            .unit(unit)
            .span(8)
            .height(8)
            .targets(self._targets(queries))
            .legend(VizLegendOptions().display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM))
        )
        return panel.thresholds(thresholds(threshold)) if threshold is not None else panel

    def stat(self, title: str, query: tuple[str, str], unit: str, steps: list[tuple[float, str]]) -> stat.Panel:
        return (
            stat.Panel()
            .id(self._id())
            .title(title)
            .datasource(DATASOURCE)
            .unit(unit)
            .span(8)
            .height(8)
            .targets(self._targets((query,)))
            .thresholds(
                board.ThresholdsConfig()
                .mode(model.ThresholdsMode.ABSOLUTE)
                .steps([model.Threshold(None, "red"), *(model.Threshold(v, c) for v, c in steps)])
            )
        )

    def chart(self, chart: Chart) -> timeseries.Panel:
        queries = tuple((expr.format(sel=self.sel), legend) for expr, legend in chart.queries)
        return self.series(chart.title, *queries, unit=chart.unit, description=chart.description)


def thresholds(value: float) -> board.ThresholdsConfig:
    steps = [model.Threshold(None, "green"), model.Threshold(value, "red")]
    return board.ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps(steps)


def quantile(panels: Panels, q: str) -> tuple[str, str]:
    expr = (
        f"histogram_quantile({q}, sum by (gen_ai_tool_name, le) "
        f"(rate(mcp_server_operation_duration_seconds_bucket{{{panels.sel}}}[$__rate_interval])))"
    )
    return expr, "{{gen_ai_tool_name}}"


def sections(p: AlertParams, panels: Panels) -> list[tuple[board.Row, list[Any]]]:
    """The fleet-wide rows: what every server exports."""
    sel = panels.sel
    calls = f"mcp_server_operation_duration_seconds_count{{{sel}}}"
    faults = f'mcp_server_operation_duration_seconds_count{{{sel}, outcome=~"{SERVER_FAULTS}"}}'
    rate = "[$__rate_interval]"
    return [
        (
            panels.row("Traffic and errors"),
            [
                panels.series(
                    "Tool calls per second by tool",
                    (f"sum by (gen_ai_tool_name) (rate({calls}{rate}))", "{{gen_ai_tool_name}}"),
                    unit="reqps",
                ),
                panels.series(
                    "Tool calls per second by outcome",
                    (f"sum by (outcome) (rate({calls}{rate}))", "{{outcome}}"),
                    unit="reqps",
                ),
                panels.series(
                    "Error ratio (server faults)",
                    (f"sum(rate({faults}{rate})) / sum(rate({calls}{rate}))", "error ratio"),
                    unit="percentunit",
                    threshold=p.error_ratio,
                    description=f"McpHighErrorRate fires above {p.error_ratio:.0%} for {p.error_for}.",
                ),
                panels.stat(
                    f"SLO error budget remaining ({p.slo_period}, {p.slo_target:.1%})",
                    ('mcp:slo_error_budget:remaining_ratio{app="$app"}', "budget left"),
                    "percentunit",
                    [(0.25, "orange"), (0.5, "green")],
                ),
            ],
        ),
        (
            panels.row("Latency"),
            [
                panels.series("p50 by tool", quantile(panels, "0.5"), unit="s"),
                panels.series("p95 by tool", quantile(panels, "0.95"), unit="s"),
                panels.series(
                    "p99 by tool",
                    quantile(panels, "0.99"),
                    unit="s",
                    threshold=p.latency_p99_seconds,
                    description=f"McpHighLatencyP99 fires above {p.latency_p99_seconds:g} s for {p.latency_for}.",
                ),
            ],
        ),
        (
            panels.row("Security"),
            [
                panels.series(
                    "Authentication failures per minute by reason",
                    (f"sum by (reason) (rate(mcp_auth_failures_total{{{sel}}}{rate})) * 60", "{{reason}}"),
                    threshold=p.auth_failures_per_minute,
                    description=f"McpAuthFailureBurst fires above {p.auth_failures_per_minute:g} per minute.",
                ),
                panels.series(
                    "Authorization denials per second by tool",
                    (
                        f"sum by (gen_ai_tool_name) (rate(mcp_authz_denials_total{{{sel}}}{rate}))",
                        "{{gen_ai_tool_name}}",
                    ),
                    unit="reqps",
                ),
                panels.series(
                    "Rate-limit rejections per second",
                    (f"sum(rate(mcp_rate_limited_total{{{sel}}}{rate}))", "429s"),
                    unit="reqps",
                    threshold=p.rate_limited_per_second,
                ),
                panels.series(
                    "Requests refused before dispatch by reason",
                    (f"sum by (reason) (rate(mcp_rejected_requests_total{{{sel}}}{rate}))", "{{reason}}"),
                    unit="reqps",
                    description="Malformed bodies, wrong headers, foreign origins: 4xx, never a fault of ours.",
                ),
            ],
        ),
        (
            panels.row("Saturation"),
            [
                panels.series(
                    "In-flight calls by replica", (f"sum by (instance) (mcp_inflight_calls{{{sel}}})", "{{instance}}")
                ),
                panels.series(
                    "CPU against limit",
                    ('mcp:cpu_usage:ratio_limit{app="$app"}', "{{pod}}{{instance}}"),
                    unit="percentunit",
                    threshold=p.cpu_ratio,
                ),
                panels.series(
                    "Memory against limit",
                    ('mcp:memory_usage:ratio_limit{app="$app"}', "{{pod}}{{instance}}"),
                    unit="percentunit",
                    threshold=p.memory_ratio,
                ),
                panels.series(
                    "Replicas up and ready", (f"sum(up{{{sel}}})", "up"), (f"sum(mcp_ready{{{sel}}})", "ready")
                ),
            ],
        ),
    ]


def overview(p: AlertParams | None = None, servers: list[FocusedServer[Any, Any]] | None = None) -> board.Dashboard:
    p = p or AlertParams()
    panels = Panels(p)
    builder = (
        board.Dashboard("MCP overview")
        .uid("mcp-overview")
        .description("Focused MCP servers: traffic, errors, latency, security, saturation, SLO budget.")
        .tags(["mcpfleet", "mcp"])
        .timezone("utc")
        .refresh("30s")
        .time("now-3h", "now")
        .readonly()
        .with_variable(board.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            board.QueryVariable("app")
            .label("App")
            .datasource(DATASOURCE)
            .query(f'label_values(mcp_server_info{{job="{p.job}"}}, app)')
            .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(model.VariableSort.ALPHABETICAL_ASC)
        )
        .link(
            board.DashboardLink("Runbooks")
            .type(model.DashboardLinkType.LINK)
            .url(p.runbook_base_url)
            .target_blank(True)
        )
    )
    rows = sections(p, panels)
    for server in servers if servers is not None else fleet():
        if server.dashboard is not None:
            rows.append(server_row(panels, server.name, server.dashboard))
    for row, row_panels in rows:
        builder = builder.with_row(row)
        for panel in row_panels:
            builder = builder.with_panel(panel)
    return builder


def server_row(panels: Panels, name: str, row: DashboardRow) -> tuple[board.Row, list[Any]]:
    return panels.row(f"{row.title} ({name})"), [panels.chart(chart) for chart in row.charts]


DASHBOARDS = {"mcp-overview.json": overview}


def to_json(dashboard: board.Dashboard) -> str:
    return json.dumps(dashboard.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def rendered() -> dict[Path, str]:
    return {DASHBOARDS_DIR / name: to_json(build()) for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    return write_or_check(rendered(), argv, "python -m dashboards.build", __doc__.splitlines()[0])


if __name__ == "__main__":
    raise SystemExit(main())
