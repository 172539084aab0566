"""The database server's own telemetry: pool use and admission as metrics, and its dashboard row.

Registered through the kit's `Telemetry` hook from `open_database` (its queries are spans made by
`Database` with the tracer the hook gives); the kit itself knows nothing of databases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.kit import Chart, DashboardRow


class PoolStat(NamedTuple):
    in_use: int
    open: int
    maximum: int
    waiting: int  # callers queued for a connection, in arrival order
    shed: int  # callers refused because they could not be served in time


PoolStats = Callable[[], dict[str, PoolStat]]


class PoolCollector(Collector):
    """Reads pool use at scrape time, so nothing has to keep a gauge in sync."""

    def __init__(self, stats: PoolStats):
        self._stats = stats

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        in_use = GaugeMetricFamily("mcp_db_pool_connections_in_use", "Connections checked out", labels=["pool"])
        size = GaugeMetricFamily("mcp_db_pool_connections", "Connections open in the pool", labels=["pool"])
        limit = GaugeMetricFamily("mcp_db_pool_max_connections", "Configured pool maximum", labels=["pool"])
        waiting = GaugeMetricFamily("mcp_db_pool_waiting", "Calls queued for a connection", labels=["pool"])
        shed = CounterMetricFamily(
            "mcp_db_pool_shed", "Calls refused as busy: they could not get a connection in time", labels=["pool"]
        )
        for pool, stat in self._stats().items():
            in_use.add_metric([pool], stat.in_use)
            size.add_metric([pool], stat.open)
            limit.add_metric([pool], stat.maximum)
            waiting.add_metric([pool], stat.waiting)
            shed.add_metric([pool], stat.shed)
        yield from (in_use, size, limit, waiting, shed)


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
            "Calls waiting for a connection, and refused as busy",
            (
                ("sum by (pool) (mcp_db_pool_waiting{{{sel}}})", "{{pool}} waiting"),
                ("sum by (pool) (rate(mcp_db_pool_shed_total{{{sel}}}[$__rate_interval]))", "{{pool}} refused/s"),
            ),
            description="Callers queue in arrival order; one that cannot be served within DB_ACQUIRE_TIMEOUT_SECONDS "
            "is refused at once with a retryable error (outcome overloaded).",
        ),
    ),
)
