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
