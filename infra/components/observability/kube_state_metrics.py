"""kube-state-metrics: container limits and pod labels, for the saturation alerts."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s import http_probe, resources
from infra.components.observability.backend import Backend
from infra.images import image

PORT = 8080


class KubeStateMetrics(Backend):
    def __init__(
        self,
        namespace: str,
        api_server: dict[str, Any],
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("KubeStateMetrics", "kube-state-metrics", namespace, provider, opts)
        self.cluster_reader(
            [
                {
                    "apiGroups": [""],
                    "resources": ["pods", "nodes", "namespaces", "services", "persistentvolumeclaims"],
                    "verbs": ["list", "watch"],
                },
                {
                    "apiGroups": ["apps"],
                    "resources": ["deployments", "statefulsets", "daemonsets", "replicasets"],
                    "verbs": ["list", "watch"],
                },
                {"apiGroups": ["autoscaling"], "resources": ["horizontalpodautoscalers"], "verbs": ["list", "watch"]},
                {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": ["list", "watch"]},
            ]
        )
        self.run(
            "Deployment",
            {
                "image": image("kube-state-metrics"),
                "args": [
                    f"--port={PORT}",
                    "--telemetry-port=8081",
                    "--metric-labels-allowlist=pods=[app.kubernetes.io/name]",
                ],
                "ports": [{"name": "metrics", "containerPort": PORT}, {"name": "telemetry", "containerPort": 8081}],
                "readinessProbe": http_probe("/readyz", "telemetry", 5, 5),
                "livenessProbe": http_probe("/livez", "metrics", 10, 10),
                "resources": resources("50m", "64Mi", "250m", "256Mi"),
            },
            service_account=True,
        )
        self.expose([("metrics", PORT)])
        self.allow("kube-state-metrics-egress", {"policyTypes": ["Egress"], "egress": [api_server]})  # what it lists
        self.register_outputs({})
