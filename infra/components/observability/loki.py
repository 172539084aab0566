"""Loki, single binary: the apps' JSON log lines, pushed by the collector over OTLP."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from alerts.render import AUDIT_RULES_FILE
from infra.components.k8s import config_hash, http_probe, resources
from infra.components.network import Reachable, namespace_peer
from infra.components.observability.backend import CONFIG_DIR, Backend, read, volume_claim
from infra.config import AGENTS_NAMESPACE, StackConfig
from infra.images import image

PORT = 3100


BUNDLED_ALERTMANAGER = "http://alertmanager.mcp-observability.svc:9093"


def loki_config(stack: StackConfig) -> str:
    """loki.yaml, its ruler notifying the stack's Alertmanager (the platform's, or the cluster's own)."""
    config = read(CONFIG_DIR / "loki.yaml")
    assert f"alertmanager_url: {BUNDLED_ALERTMANAGER}\n" in config
    monitoring = stack.observability.monitoring
    if monitoring is None:
        return config
    return config.replace(BUNDLED_ALERTMANAGER, str(monitoring.alertmanager_url).rstrip("/"))


class Loki(Backend):
    def __init__(
        self, namespace: str, stack: StackConfig, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("Loki", "loki", namespace, provider, opts)
        config = loki_config(stack)
        rules = AUDIT_RULES_FILE.read_text()  # alerts on unusual callers, over the audit stream (alerts/audit.py)
        self.config = self.config_map("loki", {"loki.yaml": config, "audit-rules.yml": rules})
        self.run(
            "StatefulSet",
            {
                "image": image("loki"),
                "args": ["-config.file=/etc/loki/loki.yaml", "-target=all"],
                "ports": [{"name": "http", "containerPort": PORT}, {"name": "grpc", "containerPort": 9095}],
                "readinessProbe": http_probe("/ready", "http", 15, 10),
                "livenessProbe": http_probe("/ready", "http", 60, 20),
                "resources": resources("100m", "256Mi", "1", "1Gi"),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/loki"},
                    {"name": "rules", "mountPath": "/etc/loki-rules", "readOnly": True},
                    {"name": "data", "mountPath": "/loki"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            },
            uid=10001,
            annotations={"mcpfleet.io/config-hash": config_hash(config + rules)},
            volumes=[
                {"name": "config", "configMap": {"name": "loki", "items": [{"key": "loki.yaml", "path": "loki.yaml"}]}},
                # the ruler reads `<directory>/<tenant>/`; without auth the tenant is `fake`
                {
                    "name": "rules",
                    "configMap": {
                        "name": "loki",
                        "items": [{"key": "audit-rules.yml", "path": "fake/audit-rules.yml"}],
                    },
                },
                {"name": "tmp", "emptyDir": {}},
            ],
            extra_spec=volume_claim(stack.observability.loki_storage),
        )
        self.expose([("http", PORT)])
        if (monitoring := stack.observability.monitoring) is not None:
            # The cluster's Grafana reads the logs; the ruler's alerts go to the cluster's Alertmanager.
            self.allow(
                "loki-from-grafana",
                {
                    "policyTypes": ["Ingress"],
                    "ingress": [
                        {
                            "from": [namespace_peer(monitoring.namespace, monitoring.grafana_labels)],
                            "ports": [{"protocol": "TCP", "port": PORT}],
                        }
                    ],
                },
            )
            alertmanager = Reachable.at(str(monitoring.alertmanager_url), monitoring.alertmanager_labels, ours=False)
            self.allow("loki-to-alertmanager", {"policyTypes": ["Egress"], "egress": [alertmanager.egress()]})
        self.allow(
            "loki-from-collector",
            {
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [namespace_peer(AGENTS_NAMESPACE, {"app.kubernetes.io/name": "otel-collector"})],
                        "ports": [{"protocol": "TCP", "port": PORT}],
                    }
                ],
            },
        )
        self.register_outputs({})
