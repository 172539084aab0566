"""Prometheus metrics for one server instance, in its own registry.

Names follow the OpenTelemetry MCP semantic conventions where they apply
(`mcp.server.operation.duration` in seconds, `mcp.method.name`,
`gen_ai.tool.name`), rendered the way Prometheus spells them. The alert rules
in `alerts/` and the dashboards read exactly these names.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from apps.kit.wire.outcomes import AuthFailureReason, CallOutcome, RefusalReason

# 5 ms to 10 s, dense around the 1 s p99 objective.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0)

# The tool-call outcomes that are the server's fault, in a stable order: what the error-rate alert and the
# availability SLO count (alerts/rules.py reads this tuple).
SERVER_FAULT_OUTCOMES = tuple(outcome.value for outcome in CallOutcome if outcome.server_fault)


class CgroupLimitsCollector(Collector):
    """The container's CPU and memory limits, read from its cgroup at scrape time.

    With `process_cpu_seconds_total` and `process_resident_memory_bytes` these give
    usage-over-limit wherever cAdvisor and kube-state-metrics are not scraped
    (plain Docker, other orchestrators). Nothing is exported when unlimited.
    """

    def __init__(self, root: Path = Path("/sys/fs/cgroup")):
        self.root = root

    def limits(self) -> tuple[float | None, float | None]:
        """(CPU cores, memory bytes), each None when unlimited or unknown."""
        cpu = memory = None
        cpu_max = _read(self.root / "cpu.max")  # cgroup v2: "max 100000" or "50000 100000"
        if cpu_max and not cpu_max.startswith("max"):
            quota, period = cpu_max.split()[:2]
            cpu = int(quota) / int(period)
        elif (quota_v1 := _read(self.root / "cpu" / "cpu.cfs_quota_us")) and int(quota_v1) > 0:
            cpu = int(quota_v1) / int(_read(self.root / "cpu" / "cpu.cfs_period_us") or 100000)
        mem_max = _read(self.root / "memory.max") or _read(self.root / "memory" / "memory.limit_in_bytes")
        if mem_max and mem_max != "max" and int(mem_max) < 2**60:
            memory = float(mem_max)
        return cpu, memory

    def collect(self):  # type: ignore[no-untyped-def]
        cpu, memory = self.limits()
        if cpu is not None:
            yield GaugeMetricFamily("mcp_process_cpu_limit_cores", "CPU limit of this container, in cores.", cpu)
        if memory is not None:
            yield GaugeMetricFamily("mcp_process_memory_limit_bytes", "Memory limit of this container.", memory)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class KitMetrics:
    """Every metric the kit exposes on `/metrics`."""

    def __init__(self, server: str) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(CgroupLimitsCollector())
        self.operation_duration = Histogram(
            "mcp_server_operation_duration_seconds",
            "Duration of MCP tool calls handled by this server (mcp.server.operation.duration).",
            ["mcp_method_name", "gen_ai_tool_name", "outcome"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "mcp_auth_failures_total",
            "Requests refused at authentication, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.authz_denials = Counter(
            "mcp_authz_denials_total",
            "Tool calls refused for a missing scope, by tool.",
            ["gen_ai_tool_name"],
            registry=self.registry,
        )
        self.rejected_requests = Counter(
            "mcp_rejected_requests_total",
            "Requests to /mcp refused before dispatch (malformed, wrong method or headers), by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "mcp_rate_limited_total",
            "Tool calls refused with 429 by the per-principal rate limit.",
            registry=self.registry,
        )
        self.rate_limit_backend_errors = Counter(
            "mcp_rate_limit_backend_errors_total",
            "Rate-limit decisions taken without Redis because it failed.",
            registry=self.registry,
        )
        self.inflight = Gauge(
            "mcp_inflight_calls",
            "Tool calls in progress.",
            registry=self.registry,
        )
        self.ready = Gauge(
            "mcp_ready",
            "1 when every dependency answered the last readiness check.",
            registry=self.registry,
        )
        self.dependency_up = Gauge(
            "mcp_dependency_up",
            "1 when the dependency answered the last readiness check.",
            ["dependency"],
            registry=self.registry,
        )
        self.info = Gauge(
            "mcp_server_info",
            "Constant 1, labelled with the server's name.",
            ["server"],
            registry=self.registry,
        )
        self.info.labels(server=server).set(1)
        for reason in AuthFailureReason:
            self.auth_failures.labels(reason=reason.value)
        for refusal in RefusalReason:
            self.rejected_requests.labels(reason=refusal.value)

    def declare_tools(self, tools: list[str]) -> None:
        """Export every tool's ok and failure series at 0, so error ratios start from real zeros."""
        for tool in tools:
            self.authz_denials.labels(gen_ai_tool_name=tool)
            for outcome in (CallOutcome.OK.value, *SERVER_FAULT_OUTCOMES):
                self.operation_duration.labels(mcp_method_name="tools/call", gen_ai_tool_name=tool, outcome=outcome)
