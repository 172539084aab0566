"""Metrics by push, for serverless instances.

Nothing scrapes an instance that may not exist, so with `MCP_SERVERLESS` and an OTLP endpoint the server's
Prometheus registry (every series its alerts and dashboards read) is also exported over OTLP/HTTP. Each sample
becomes a gauge with its Prometheus name and labels (a counter's `_total`, a histogram's `_bucket`, `_sum` and
`_count` keep their cumulative values), so `rate()` and `histogram_quantile()` read them as before once the
collector (or Prometheus's OTLP receiver) stores them. The reader exports on a timer while the instance has CPU;
a Lambda invocation flushes it before it returns (`flush_metrics`), and the lifespan's end flushes the last.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from apps.kit.declare.config import KitSettings

if TYPE_CHECKING:
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.sdk.metrics import MeterProvider

EXPORT_SECONDS = 15.0
SKIPPED_SUFFIXES = ("_created",)  # prometheus_client's creation timestamps are not series anyone reads

_provider: MeterProvider | None = None


class RegistrySnapshot:
    """The registry's samples, read once per export: an export asks for each name once, so a name asked for
    again means the next export, which reads the registry afresh."""

    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.asked: set[str] = set()
        self.samples: dict[str, list[tuple[dict[str, str], float]]] = {}

    def of(self, name: str) -> list[tuple[dict[str, str], float]]:
        if name in self.asked or not self.asked:
            samples: dict[str, list[tuple[dict[str, str], float]]] = {}
            for family in self.registry.collect():
                for sample in family.samples:
                    samples.setdefault(sample.name, []).append((dict(sample.labels), float(sample.value)))
            self.samples, self.asked = samples, set()
        self.asked.add(name)
        return self.samples.get(name, [])


def sample_names(registry: CollectorRegistry) -> list[str]:
    """Every sample name a family of the registry declares (a histogram's three, a counter's `_total`)."""
    names = []
    for family in registry.collect():
        suffixes = {
            "counter": ("_total",),
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("_sum", "_count"),
            "gauge": ("",),
        }.get(family.type, ())
        names += [family.name + suffix for suffix in suffixes if not (family.name + suffix).endswith(SKIPPED_SUFFIXES)]
    return names


def push_registry(registry: CollectorRegistry, settings: KitSettings, service_name: str) -> MeterProvider | None:
    """Export `registry` over OTLP when the server is serverless and an endpoint is set; else nothing."""
    global _provider
    if not (settings.mcp_serverless and settings.otel_exporter_otlp_endpoint):
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.metrics import Observation
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    from apps.kit.observe.tracing import exporter_session

    exporter = OTLPMetricExporter(session=exporter_session())
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=EXPORT_SECONDS * 1000)
    resource = Resource.create({"service.name": settings.otel_service_name or service_name})
    provider = MeterProvider(resource=resource, metric_readers=[reader])
    meter = provider.get_meter("mcpfleet.kit.prometheus")
    snapshot = RegistrySnapshot(registry)

    def observe(name: str) -> object:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, labels) for labels, value in snapshot.of(name)]

        return callback

    for name in sample_names(registry):
        meter.create_observable_gauge(name, callbacks=[observe(name)])  # type: ignore[list-item]
    _provider = provider
    return provider


def flush_metrics(timeout_seconds: float = 1.0) -> bool:
    """Export now (a Lambda invocation, before its sandbox is frozen); True when nothing is pushed."""
    if _provider is None:
        return True
    return _provider.force_flush(int(timeout_seconds * 1000))


def stop_metrics() -> None:
    """The last export, at the lifespan's end."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None
