"""The database server's own telemetry: pool use as metrics, its queries as spans.

Registered through the kit's `Telemetry` hook from `open_database`; the kit itself knows nothing
of databases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.kit import Chart, DashboardRow, Telemetry

PoolStats = Callable[[], dict[str, tuple[int, int, int]]]  # pool name -> (in use, open, maximum)


class PoolCollector(Collector):
    """Reads pool use at scrape time, so nothing has to keep a gauge in sync."""

    def __init__(self, stats: PoolStats):
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily]:
        in_use = GaugeMetricFamily("mcp_db_pool_connections_in_use", "Connections checked out", labels=["pool"])
        size = GaugeMetricFamily("mcp_db_pool_connections", "Connections open in the pool", labels=["pool"])
        limit = GaugeMetricFamily("mcp_db_pool_max_connections", "Configured pool maximum", labels=["pool"])
        for pool, (used, opened, maximum) in self._stats().items():
            in_use.add_metric([pool], used)
            size.add_metric([pool], opened)
            limit.add_metric([pool], maximum)
        yield in_use
        yield size
        yield limit


_instrumented = False


def instrument_queries(telemetry: Telemetry) -> None:
    """asyncpg spans (statement text, never credentials) under the tool-call span; once per process."""
    global _instrumented
    if _instrumented:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor().instrument(tracer_provider=telemetry.tracer_provider)  # type: ignore[no-untyped-call]
    _instrumented = True


DASHBOARD = DashboardRow(
    "Database server: connection pools",
    (
        Chart(
            "Pool connections in use against the maximum",
            (
                ("sum by (pool) (mcp_db_pool_connections_in_use{{{sel}}})", "{{pool}} in use"),
                ("sum by (pool) (mcp_db_pool_max_connections{{{sel}}})", "{{pool}} max"),
            ),
            description="At the maximum, calls queue for a connection (see McpHighErrorRate, McpHighLatencyP99).",
        ),
        Chart(
            "Pool connections open",
            (("sum by (pool) (mcp_db_pool_connections{{{sel}}})", "{{pool}} open"),),
        ),
    ),
)
