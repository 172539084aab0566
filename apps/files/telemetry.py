"""The file server's own telemetry: bytes read and written per root, and its dashboard row.

Space on its volume is the kit's (`mcp_volume_available_bytes`, alerted by `McpVolumeFilling`).
"""

from __future__ import annotations

from prometheus_client import Counter
from prometheus_client.registry import CollectorRegistry

from apps.kit import Chart, DashboardRow


class FileCounters:
    def __init__(self, registry: CollectorRegistry):
        self.bytes = Counter(
            "mcp_files_bytes",
            "Bytes read and written by tool calls",
            ["root", "direction"],
            registry=registry,
        )


DASHBOARD = DashboardRow(
    "File server: volume and traffic",
    (
        Chart(
            "Volume space available",
            (
                ("min by (volume) (mcp_volume_available_bytes{{{sel}}})", "{{volume}} available"),
                ("min by (volume) (mcp_volume_size_bytes{{{sel}}})", "{{volume}} size"),
            ),
            unit="bytes",
            description="McpVolumeFilling fires below 10% available; writes then fail with 'no space left'.",
        ),
        Chart(
            "Bytes read and written",
            (
                (
                    "sum by (root, direction) (rate(mcp_files_bytes_total{{{sel}}}[$__rate_interval]))",
                    "{{root}} {{direction}}",
                ),
            ),
            unit="Bps",
        ),
    ),
)
