"""Every container image the platform and its tests run: official images, pinned by version.

One source for Kubernetes (via Pulumi) and the integration tests. Any entry can be
overridden with `MCPFLEET_IMAGE_<NAME>` (e.g. `MCPFLEET_IMAGE_POSTGRES`), which is how a
mirror registry, or the offline stand-ins built by `scripts/images-offline`, are used.
"""

from __future__ import annotations

import os

PINNED: dict[str, str] = {
    "postgres": "postgres:16.6-alpine",
    "redis": "redis:7.4.1-alpine",
    "python": "python:3.11.11-slim-bookworm",
    "prometheus": "prom/prometheus:v2.55.1",
    "alertmanager": "prom/alertmanager:v0.27.0",
    "grafana": "grafana/grafana:11.3.1",
    "loki": "grafana/loki:3.3.2",
    "otelcol": "otel/opentelemetry-collector-contrib:0.116.0",
    "kube-state-metrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.14.0",
}


def env_name(name: str) -> str:
    return "MCPFLEET_IMAGE_" + name.upper().replace("-", "_")


def image(name: str) -> str:
    """The image reference to run for `name`: the override if set, else the pinned official image."""
    if name not in PINNED:
        raise KeyError(f"unknown image {name!r}; known: {sorted(PINNED)}")
    return os.environ.get(env_name(name)) or PINNED[name]


def overridden() -> dict[str, str]:
    """The entries currently overridden from the environment."""
    return {name: image(name) for name in PINNED if os.environ.get(env_name(name))}
