"""Serverless instances push their Prometheus registry over OTLP: every sample arrives as a gauge under its
Prometheus name and labels (a counter's `_total`, a histogram's buckets, sum and count), read at export time;
nothing is pushed by a server that is scraped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram

from apps.kit.declare.config import KitSettings
from apps.kit.observe import push as metrics_push
from tests.support.otlp import OtlpReceiver


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    otlp = OtlpReceiver()
    yield otlp
    metrics_push.stop_metrics()  # its last export, while the receiver still answers
    otlp.server.shutdown()


def settings(endpoint: str | None, serverless: bool) -> KitSettings:
    return KitSettings(
        mcp_resource_url="http://x/mcp",
        mcp_issuer="https://issuer.test",
        mcp_jwt_secret="s" * 32,
        mcp_serverless=serverless,
        otel_exporter_otlp_endpoint=endpoint,
    )


def test_the_registry_is_pushed_under_its_prometheus_names(receiver, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    registry = CollectorRegistry()
    calls = Counter("mcp_calls", "calls", ["tool"], registry=registry)
    duration = Histogram("mcp_duration_seconds", "duration", ["tool"], buckets=(0.1, 1.0), registry=registry)
    assert metrics_push.push_registry(registry, settings(receiver.url, True), "mcp-db") is not None
    calls.labels("query").inc(3)
    duration.labels("query").observe(0.5)
    assert metrics_push.flush_metrics(5)
    points = receiver.gauges()
    assert points["mcp_calls_total"] == [({"tool": "query"}, 3.0)]
    buckets = {labels["le"]: value for labels, value in points["mcp_duration_seconds_bucket"]}
    assert buckets == {"0.1": 0.0, "1.0": 1.0, "+Inf": 1.0}
    assert points["mcp_duration_seconds_count"] == [({"tool": "query"}, 1.0)]
    assert points["mcp_duration_seconds_sum"] == [({"tool": "query"}, 0.5)]
    assert not any(name.endswith("_created") for name in points)
    calls.labels("query").inc()  # read at the next export, not at setup
    receiver.bodies.clear()
    assert metrics_push.flush_metrics(5)
    assert receiver.gauges()["mcp_calls_total"] == [({"tool": "query"}, 4.0)]


def test_a_scraped_server_pushes_nothing(receiver):
    registry = CollectorRegistry()
    assert metrics_push.push_registry(registry, settings(receiver.url, False), "mcp-db") is None
    assert metrics_push.push_registry(registry, settings(None, True), "mcp-db") is None
    assert metrics_push.flush_metrics(1) and receiver.bodies == []
