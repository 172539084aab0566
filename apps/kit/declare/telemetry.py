"""What a server's state gets to observe itself: the metrics registry and the tracer provider.

The kit knows no server. A server that has more to say (a database pool's use, its queries as
spans) registers its own collectors and instrumentation here, from its state factory; what it
registers is scraped and exported with the kit's own series.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.trace import Tracer, TracerProvider
from prometheus_client.registry import Collector, CollectorRegistry


@dataclass(frozen=True)
class Telemetry:
    registry: CollectorRegistry
    tracer_provider: TracerProvider

    def register(self, collector: Collector) -> None:
        """Export a server's own series on /metrics (read at scrape time)."""
        self.registry.register(collector)

    def tracer(self, name: str) -> Tracer:
        return self.tracer_provider.get_tracer(name)


@dataclass(frozen=True)
class Chart:
    """One dashboard panel of a server's own series. In `queries` (expr, legend), `{sel}` stands for the
    fleet's selector (`job="mcp-apps", app="$app"`), so a server never hard-codes the job or the app."""

    title: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "short"
    description: str = ""


@dataclass(frozen=True)
class DashboardRow:
    """A row a server adds to the fleet dashboard for the series only it exports."""

    title: str
    charts: tuple[Chart, ...]


@dataclass(frozen=True)
class AlertCase:
    """A promtool case for a server's alert: the series (name{labels} -> promtool values, `{job}` for the
    fleet's scrape job, one sample a minute) and, at `at`, the labels and summary it fires with, or
    nothing (`fires=None`: the near miss it must stay silent on)."""

    series: dict[str, str]
    at: str
    fires: dict[str, str] | None = None
    summary: str = ""


@dataclass(frozen=True)
class ServerAlert:
    """An alert on series only this server exports, declared next to them with its promtool cases; `alerts/`
    renders it with the fleet's rules and links it to `apps/<server>/runbooks/<name>.md`, and the monitoring
    tests run its cases. In `expr`, `{job}` stands for the fleet's scrape job. Summaries and descriptions are
    Prometheus templates."""

    name: str
    expr: str
    for_: str
    severity: str
    summary: str
    description: str
    cases: tuple[AlertCase, ...] = ()
