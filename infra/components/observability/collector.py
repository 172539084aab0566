"""The OpenTelemetry collector, one per node: OTLP from the apps and their container logs from the node.

It is the one workload that reads host paths (`/var/log/pods`), so it runs in the node agents'
namespace, the only one at Pod Security level `privileged`, with a policy exemption that says why.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s import config_hash, container_security, http_probe, resources
from infra.components.network import namespace_peer, tcp
from infra.components.observability.backend import CONFIG_DIR, Backend, read
from infra.components.observability.loki import PORT as LOKI
from infra.config import APP_NAMESPACE, OBSERVABILITY_NAMESPACE
from infra.images import image

OTLP_GRPC, OTLP_HTTP, SPANMETRICS = 4317, 4318, 8889


def otlp_endpoint(namespace: str) -> str:
    """Where an app sends traces (OTLP/HTTP)."""
    return f"http://otel-collector.{namespace}.svc:{OTLP_HTTP}"


def sampling_env(ratio: float) -> dict[str, str]:
    """How an app samples its traces (read by the OpenTelemetry SDK): this ratio, or a sampled caller's choice."""
    return {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": f"{ratio:g}"}


def otlp_egress(namespace: str) -> dict[str, Any]:
    """The NetworkPolicy egress rule an app needs to send telemetry to the collector."""
    return {
        "to": [namespace_peer(namespace, {"app.kubernetes.io/name": "otel-collector"})],
        "ports": [{"protocol": "TCP", "port": OTLP_GRPC}, {"protocol": "TCP", "port": OTLP_HTTP}],
    }


class Collector(Backend):
    def __init__(
        self,
        namespace: str,
        api_server: dict[str, Any],
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Collector", "otel-collector", namespace, provider, opts)
        config = read(CONFIG_DIR / "otelcol.yaml")
        self.config = self.config_map("otel-collector", {"otelcol.yaml": config})
        self.cluster_reader(
            [
                {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["apps"], "resources": ["replicasets", "deployments"], "verbs": ["get", "list", "watch"]},
            ]
        )
        self.run(
            "DaemonSet",
            {
                "image": image("otelcol"),
                "args": ["--config=/etc/otelcol/otelcol.yaml"],
                "env": [{"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "ports": [
                    {"name": "otlp-grpc", "containerPort": OTLP_GRPC},
                    {"name": "otlp-http", "containerPort": OTLP_HTTP},
                    {"name": "spanmetrics", "containerPort": SPANMETRICS},
                    {"name": "health", "containerPort": 13133},
                ],
                "readinessProbe": http_probe("/", "health", 5, 10),
                "livenessProbe": http_probe("/", "health", 15, 20),
                "resources": resources("100m", "128Mi", "500m", "512Mi"),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/otelcol"},
                    {"name": "pod-logs", "mountPath": "/var/log/pods", "readOnly": True},
                ],
                "securityContext": {**container_security(), "runAsNonRoot": False, "runAsUser": 0},
            },
            uid=0,
            service_account=True,
            annotations={
                "mcpfleet.io/config-hash": config_hash(config),
                "mcpfleet.io/policy-exempt": "non-root: reads node container logs owned by root",
            },
            volumes=[
                {"name": "config", "configMap": {"name": "otel-collector"}},
                {"name": "pod-logs", "hostPath": {"path": "/var/log/pods", "type": "Directory"}},
            ],
        )
        self.expose([("otlp-grpc", OTLP_GRPC), ("otlp-http", OTLP_HTTP), ("spanmetrics", SPANMETRICS)])
        self.allow(
            "otel-collector-ingress",
            {
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [namespace_peer(APP_NAMESPACE)],
                        "ports": [{"protocol": "TCP", "port": OTLP_GRPC}, {"protocol": "TCP", "port": OTLP_HTTP}],
                    },
                    {
                        "from": [namespace_peer(OBSERVABILITY_NAMESPACE, {"app.kubernetes.io/name": "prometheus"})],
                        "ports": [{"protocol": "TCP", "port": SPANMETRICS}],
                    },
                ],
            },
        )
        # Logs go to Loki; the k8sattributes processor reads the API server.
        loki = {"to": [namespace_peer(OBSERVABILITY_NAMESPACE, {"app.kubernetes.io/name": "loki"})], "ports": tcp(LOKI)}
        self.allow("otel-collector-egress", {"policyTypes": ["Egress"], "egress": [loki, api_server]})
        self.register_outputs({})
