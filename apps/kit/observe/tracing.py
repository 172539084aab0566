"""OpenTelemetry tracing: a tracer provider always (so log lines carry trace ids), and an OTLP
exporter when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. The kit's endpoint makes one server span per
request; a server adds its own instrumentation through `Telemetry`.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from apps.kit.declare.config import KitSettings

_installed: TracerProvider | None = None


def setup_tracing(settings: KitSettings, default_service_name: str) -> TracerProvider:
    """Install the global tracer provider once per process; later calls return it."""
    global _installed
    if _installed is not None:
        return _installed
    resource = Resource.create({"service.name": settings.otel_service_name or default_service_name})
    provider = TracerProvider(resource=resource)
    if settings.otel_exporter_otlp_endpoint:
        # Reads the standard OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout) itself.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(session=exporter_session())))
    trace.set_tracer_provider(provider)
    _installed = provider
    return provider


def exporter_session() -> Any:
    """The OTLP exporters' HTTP session: the collector's address is configured, so nothing is taken from the
    environment (no proxy variable, and no `.netrc` read on every export)."""
    import requests

    session = requests.Session()
    session.trust_env = False
    return session


def flush_traces(timeout_seconds: float = 5.0) -> bool:
    """Export the spans still buffered: at shutdown the process may exit before the batch timer fires
    (uvicorn re-raises SIGTERM after its drain, so OpenTelemetry's exit hook never runs)."""
    if _installed is None:
        return True
    return _installed.force_flush(int(timeout_seconds * 1000))
