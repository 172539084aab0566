"""Grafana: both datasources and every dashboard of `dashboards/`, provisioned from the repo's files."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s import config_hash, http_probe, resources, secret_env
from infra.components.network import namespace_peer
from infra.components.observability.backend import CONFIG_DIR, REPO, Backend, read
from infra.config import StackConfig
from infra.images import image

PORT = 3000
DASHBOARDS_DIR = REPO / "dashboards"


def dashboard_files() -> dict[str, str]:
    return {path.name: read(path) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


class Grafana(Backend):
    def __init__(
        self,
        namespace: str,
        stack: StackConfig,
        admin_password: pulumi.Input[str],
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Grafana", "grafana", namespace, provider, opts)
        self.admin = k8s.core.v1.Secret(
            "grafana-admin",
            metadata={"name": "grafana-admin", "namespace": namespace},
            string_data={"GF_SECURITY_ADMIN_PASSWORD": admin_password},
            opts=self._opts(),
        )
        datasources = read(CONFIG_DIR / "grafana-datasources.yaml")
        provider_file = read(CONFIG_DIR / "grafana-dashboards.yaml")
        dashboards = dashboard_files()
        self.config_map("grafana-datasources", {"datasources.yaml": datasources})
        self.config_map("grafana-dashboard-provider", {"dashboards.yaml": provider_file})
        self.config_map("grafana-dashboards", dashboards)
        self.run(
            "Deployment",
            {
                "image": image("grafana"),
                "env": [
                    secret_env("GF_SECURITY_ADMIN_PASSWORD", "grafana-admin", "GF_SECURITY_ADMIN_PASSWORD"),
                    {"name": "GF_USERS_ALLOW_SIGN_UP", "value": "false"},
                    {"name": "GF_ANALYTICS_REPORTING_ENABLED", "value": "false"},
                ],
                "ports": [{"name": "http", "containerPort": PORT}],
                "readinessProbe": http_probe("/api/health", "http", 5, 10),
                "livenessProbe": http_probe("/api/health", "http", 30, 20),
                "resources": resources("100m", "128Mi", "500m", "512Mi"),
                "volumeMounts": [
                    {"name": "datasources", "mountPath": "/etc/grafana/provisioning/datasources"},
                    {"name": "dashboard-provider", "mountPath": "/etc/grafana/provisioning/dashboards"},
                    {"name": "dashboards", "mountPath": "/var/lib/grafana/dashboards"},
                    {"name": "data", "mountPath": "/var/lib/grafana"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            },
            uid=472,
            annotations={"mcpfleet.io/config-hash": config_hash(datasources, provider_file, *dashboards.values())},
            volumes=[
                {"name": "datasources", "configMap": {"name": "grafana-datasources"}},
                {"name": "dashboard-provider", "configMap": {"name": "grafana-dashboard-provider"}},
                {"name": "dashboards", "configMap": {"name": "grafana-dashboards"}},
                {"name": "data", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {}},
            ],
        )
        self.expose([("http", PORT)], "LoadBalancer" if stack.allow_load_balancer else "ClusterIP")
        self.allow(
            "grafana-from-ingress",
            {
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [namespace_peer(stack.ingress_namespace)], "ports": [{"protocol": "TCP", "port": PORT}]}
                ],
            },
        )
        self.url = f"http://grafana.{namespace}.svc:{PORT}"
        self.register_outputs({"url": self.url})
