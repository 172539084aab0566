"""Prometheus: scrapes the MCP apps by pod discovery and evaluates the repo's rule file, as rendered."""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from alerts.names import METRICS_PORT as APP_METRICS_PORT
from alerts.render import RULES_FILE
from infra.components.k8s import config_hash, http_probe, resources
from infra.components.network import api_server_egress, namespace_peer, tcp
from infra.components.observability.backend import CONFIG_DIR, Backend, read, volume_claim
from infra.components.observability.collector import SPANMETRICS
from infra.config import AGENTS_NAMESPACE, APP_NAMESPACE, DATA_NAMESPACE, StackConfig
from infra.egress import PROXY_NAME, EgressPlan
from infra.images import image
from sidecars.egress_meter import METRICS_PORT as EGRESS_METRICS_PORT

PORT = 9090


def rule_files() -> dict[str, str]:
    """The exact rule files of alerts/ that Prometheus loads."""
    return {RULES_FILE.name: read(RULES_FILE)}


class Prometheus(Backend):
    def __init__(
        self,
        namespace: str,
        stack: StackConfig,
        egress: EgressPlan,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Prometheus", "prometheus", namespace, provider, opts)
        config = read(CONFIG_DIR / "prometheus.yml")
        rules = rule_files()
        self.config = self.config_map("prometheus", {"prometheus.yml": config})
        self.rules = self.config_map("prometheus-rules", rules)
        self.cluster_reader(
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes", "nodes/proxy", "nodes/metrics", "services", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"],
                },
                {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            ]
        )
        self.run(
            "StatefulSet",
            {
                "image": image("prometheus"),
                "args": [
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={stack.observability.prometheus_retention}",
                    "--web.enable-lifecycle",
                ],
                "ports": [{"name": "web", "containerPort": PORT}],
                "readinessProbe": http_probe("/-/ready", "web", 5, 5),
                "livenessProbe": http_probe("/-/healthy", "web", 30, 15),
                "resources": resources("250m", "512Mi", "1", "2Gi"),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/prometheus/prometheus.yml", "subPath": "prometheus.yml"},
                    {"name": "rules", "mountPath": "/etc/prometheus/rules"},
                    {"name": "data", "mountPath": "/prometheus"},
                ],
            },
            service_account=True,
            annotations={"mcpfleet.io/config-hash": config_hash(config, *rules.values())},
            volumes=[
                {"name": "config", "configMap": {"name": "prometheus"}},
                {"name": "rules", "configMap": {"name": "prometheus-rules"}},
            ],
            extra_spec=volume_claim(stack.observability.prometheus_storage),
        )
        self.expose([("web", PORT)])
        # Beyond its own namespace (Alertmanager, kube-state-metrics): the apps' pods, the collector's span
        # metrics, the API server (pod and node discovery, the cAdvisor proxy) and the egress proxy's meter.
        apps = {"to": [namespace_peer(APP_NAMESPACE)], "ports": tcp(APP_METRICS_PORT)}
        collector = {
            "to": [namespace_peer(AGENTS_NAMESPACE, {"app.kubernetes.io/name": "otel-collector"})],
            "ports": tcp(SPANMETRICS),
        }
        api_server = api_server_egress(stack.cluster.api_server_cidrs)
        reaches: list[dict[str, Any]] = [apps, collector, api_server]
        if egress.ports:  # the egress proxy's meter (denied egress)
            proxy = {"app.kubernetes.io/name": PROXY_NAME}
            reaches.append({"to": [namespace_peer(DATA_NAMESPACE, proxy)], "ports": tcp(EGRESS_METRICS_PORT)})
        self.allow("prometheus-egress", {"policyTypes": ["Egress"], "egress": reaches})
        self.register_outputs({})
