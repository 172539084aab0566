"""Observability: Prometheus, Alertmanager, Grafana, Loki, the OpenTelemetry collector and
kube-state-metrics, each configured from the repo's own files, read at program time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from alerts.params import AlertParams
from alerts.render import RULES_FILE, TEMPLATES_DIR
from alerts.routing import render_alertmanager
from infra.components.k8s import (
    config_hash,
    container_security,
    http_probe,
    labels,
    namespace_peer,
    opts,
    pod_security,
    resources,
    secret_env,
)
from infra.config import APP_NAMESPACE, OBSERVABILITY_NAMESPACE, StackConfig
from infra.images import image

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "infra" / "observability"
DASHBOARDS_DIR = REPO / "dashboards"
NS = OBSERVABILITY_NAMESPACE
NOBODY = 65534


def read(path: Path) -> str:
    return path.read_text()


def rule_files() -> dict[str, str]:
    """The exact rule files of alerts/ that Prometheus loads."""
    return {RULES_FILE.name: read(RULES_FILE)}


def dashboard_files() -> dict[str, str]:
    return {path.name: read(path) for path in sorted(DASHBOARDS_DIR.glob("*.json"))}


def alertmanager_files(stack: StackConfig) -> dict[str, str]:
    params = AlertParams(webhook_url=str(stack.observability.webhook_url))
    files = {
        "alertmanager.yml": yaml.safe_dump(render_alertmanager(params, "/etc/alertmanager/templates"), sort_keys=False)
    }
    files.update({path.name: read(path) for path in sorted(TEMPLATES_DIR.glob("*.tmpl"))})
    return files


class Observability(pulumi.ComponentResource):
    grafana_url: str

    def __init__(
        self,
        name: str,
        stack: StackConfig,
        provider: k8s.Provider,
        grafana_admin_password: pulumi.Input[str] | None = None,
        o: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:Observability", name, None, o)
        self._provider = provider
        self._prometheus(stack)
        self._alertmanager(stack)
        self._kube_state_metrics()
        self._loki(stack)
        self._collector()
        self._grafana(
            stack,
            grafana_admin_password
            or random.RandomPassword(
                f"{name}-grafana-admin", length=24, special=False, opts=pulumi.ResourceOptions(parent=self)
            ).result,
        )
        self._network_policies(stack)
        self.grafana_url = f"http://grafana.{NS}.svc:3000"
        self.register_outputs({"grafana_url": self.grafana_url})

    # --- helpers ---------------------------------------------------------------------------
    def _o(self, **extra: Any) -> pulumi.ResourceOptions:
        return opts(self, self._provider, **extra)

    def _config_map(self, name: str, data: dict[str, str]) -> k8s.core.v1.ConfigMap:
        return k8s.core.v1.ConfigMap(
            f"{name}-config", metadata={"name": name, "namespace": NS}, data=data, opts=self._o()
        )

    def _service(self, name: str, ports: list[tuple[str, int]], service_type: str = "ClusterIP") -> None:
        k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": name, "namespace": NS, "labels": labels(name, name)},
            spec={
                "type": service_type,
                "selector": {"app.kubernetes.io/name": name},
                "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports],
            },
            opts=self._o(),
        )

    def _service_account(self, name: str, rules: list[dict[str, Any]]) -> None:
        k8s.core.v1.ServiceAccount(f"{name}-sa", metadata={"name": name, "namespace": NS}, opts=self._o())
        k8s.rbac.v1.ClusterRole(f"{name}-role", metadata={"name": f"mcpfleet-{name}"}, rules=rules, opts=self._o())
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-binding",
            metadata={"name": f"mcpfleet-{name}"},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": f"mcpfleet-{name}"},
            subjects=[{"kind": "ServiceAccount", "name": name, "namespace": NS}],
            opts=self._o(),
        )

    def _workload(
        self,
        kind: str,
        name: str,
        container: dict[str, Any],
        *,
        uid: int = NOBODY,
        volumes: list[dict[str, Any]] | None = None,
        service_account: str | None = None,
        annotations: dict[str, str] | None = None,
        extra_spec: dict[str, Any] | None = None,
        pod_extra: dict[str, Any] | None = None,
    ) -> None:
        lbl = labels(name, name)
        pod: dict[str, Any] = {
            "automountServiceAccountToken": service_account is not None,
            "securityContext": pod_security(uid, uid) if uid else {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": name, "securityContext": container_security(), **container}],
            "volumes": volumes or [],
            **(pod_extra or {}),
        }
        if service_account:
            pod["serviceAccountName"] = service_account
        spec: dict[str, Any] = {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": lbl, "annotations": annotations or {}}, "spec": pod},
            **(extra_spec or {}),
        }
        meta = {"name": name, "namespace": NS, "labels": lbl}
        if kind == "Deployment":
            k8s.apps.v1.Deployment(f"{name}-deployment", metadata=meta, spec={"replicas": 1, **spec}, opts=self._o())
        elif kind == "StatefulSet":
            k8s.apps.v1.StatefulSet(
                f"{name}-statefulset", metadata=meta, spec={"replicas": 1, "serviceName": name, **spec}, opts=self._o()
            )
        else:
            k8s.apps.v1.DaemonSet(f"{name}-daemonset", metadata=meta, spec=spec, opts=self._o())

    # --- parts -----------------------------------------------------------------------------
    def _prometheus(self, stack: StackConfig) -> None:
        config = read(CONFIG_DIR / "prometheus.yml")
        rules = rule_files()
        self._config_map("prometheus", {"prometheus.yml": config})
        self._config_map("prometheus-rules", rules)
        self._service_account(
            "prometheus",
            [
                {
                    "apiGroups": [""],
                    "resources": ["nodes", "nodes/proxy", "nodes/metrics", "services", "endpoints", "pods"],
                    "verbs": ["get", "list", "watch"],
                },
                {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            ],
        )
        self._workload(
            "StatefulSet",
            "prometheus",
            {
                "image": image("prometheus"),
                "args": [
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    f"--storage.tsdb.retention.time={stack.observability.prometheus_retention}",
                    "--web.enable-lifecycle",
                ],
                "ports": [{"name": "web", "containerPort": 9090}],
                "readinessProbe": http_probe("/-/ready", "web", 5, 5),
                "livenessProbe": http_probe("/-/healthy", "web", 30, 15),
                "resources": resources("250m", "512Mi", "1", "2Gi"),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/prometheus/prometheus.yml", "subPath": "prometheus.yml"},
                    {"name": "rules", "mountPath": "/etc/prometheus/rules"},
                    {"name": "data", "mountPath": "/prometheus"},
                ],
            },
            service_account="prometheus",
            annotations={"mcpfleet.io/config-hash": config_hash(config, *rules.values())},
            volumes=[
                {"name": "config", "configMap": {"name": "prometheus"}},
                {"name": "rules", "configMap": {"name": "prometheus-rules"}},
            ],
            extra_spec={
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": stack.observability.prometheus_storage}},
                        },
                    }
                ]
            },
        )
        self._service("prometheus", [("web", 9090)])

    def _alertmanager(self, stack: StackConfig) -> None:
        files = alertmanager_files(stack)
        self._config_map("alertmanager", files)
        templates = [name for name in files if name.endswith(".tmpl")]
        self._workload(
            "Deployment",
            "alertmanager",
            {
                "image": image("alertmanager"),
                "args": ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"],
                "ports": [{"name": "web", "containerPort": 9093}],
                "readinessProbe": http_probe("/-/ready", "web", 5, 5),
                "livenessProbe": http_probe("/-/healthy", "web", 30, 15),
                "resources": resources("50m", "64Mi", "250m", "256Mi"),
                "volumeMounts": [
                    {
                        "name": "config",
                        "mountPath": "/etc/alertmanager/alertmanager.yml",
                        "subPath": "alertmanager.yml",
                    },
                    *(
                        {"name": "config", "mountPath": f"/etc/alertmanager/templates/{t}", "subPath": t}
                        for t in templates
                    ),
                    {"name": "data", "mountPath": "/alertmanager"},
                ],
            },
            annotations={"mcpfleet.io/config-hash": config_hash(*files.values())},
            volumes=[{"name": "config", "configMap": {"name": "alertmanager"}}, {"name": "data", "emptyDir": {}}],
        )
        self._service("alertmanager", [("web", 9093)])

    def _kube_state_metrics(self) -> None:
        self._service_account(
            "kube-state-metrics",
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
            ],
        )
        self._workload(
            "Deployment",
            "kube-state-metrics",
            {
                "image": image("kube-state-metrics"),
                "args": [
                    "--port=8080",
                    "--telemetry-port=8081",
                    "--metric-labels-allowlist=pods=[app.kubernetes.io/name]",
                ],
                "ports": [{"name": "metrics", "containerPort": 8080}, {"name": "telemetry", "containerPort": 8081}],
                "readinessProbe": http_probe("/readyz", "telemetry", 5, 5),
                "livenessProbe": http_probe("/livez", "metrics", 10, 10),
                "resources": resources("50m", "64Mi", "250m", "256Mi"),
            },
            service_account="kube-state-metrics",
        )
        self._service("kube-state-metrics", [("metrics", 8080)])

    def _loki(self, stack: StackConfig) -> None:
        config = read(CONFIG_DIR / "loki.yaml")
        self._config_map("loki", {"loki.yaml": config})
        self._workload(
            "StatefulSet",
            "loki",
            {
                "image": image("loki"),
                "args": ["-config.file=/etc/loki/loki.yaml", "-target=all"],
                "ports": [{"name": "http", "containerPort": 3100}, {"name": "grpc", "containerPort": 9095}],
                "readinessProbe": http_probe("/ready", "http", 15, 10),
                "livenessProbe": http_probe("/ready", "http", 60, 20),
                "resources": resources("100m", "256Mi", "1", "1Gi"),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/loki"},
                    {"name": "data", "mountPath": "/loki"},
                    {"name": "tmp", "mountPath": "/tmp"},
                ],
            },
            uid=10001,
            annotations={"mcpfleet.io/config-hash": config_hash(config)},
            volumes=[{"name": "config", "configMap": {"name": "loki"}}, {"name": "tmp", "emptyDir": {}}],
            extra_spec={
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": stack.observability.loki_storage}},
                        },
                    }
                ]
            },
        )
        self._service("loki", [("http", 3100)])

    def _collector(self) -> None:
        config = read(CONFIG_DIR / "otelcol.yaml")
        self._config_map("otel-collector", {"otelcol.yaml": config})
        self._service_account(
            "otel-collector",
            [
                {"apiGroups": [""], "resources": ["pods", "namespaces", "nodes"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["apps"], "resources": ["replicasets", "deployments"], "verbs": ["get", "list", "watch"]},
            ],
        )
        security = {**container_security(), "runAsNonRoot": False, "runAsUser": 0}
        self._workload(
            "DaemonSet",
            "otel-collector",
            {
                "image": image("otelcol"),
                "args": ["--config=/etc/otelcol/otelcol.yaml"],
                "env": [{"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "ports": [
                    {"name": "otlp-grpc", "containerPort": 4317},
                    {"name": "otlp-http", "containerPort": 4318},
                    {"name": "spanmetrics", "containerPort": 8889},
                    {"name": "health", "containerPort": 13133},
                ],
                "readinessProbe": http_probe("/", "health", 5, 10),
                "livenessProbe": http_probe("/", "health", 15, 20),
                "resources": resources("100m", "128Mi", "500m", "512Mi"),
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/otelcol"},
                    {"name": "pod-logs", "mountPath": "/var/log/pods", "readOnly": True},
                ],
                "securityContext": security,
            },
            uid=0,
            service_account="otel-collector",
            annotations={
                "mcpfleet.io/config-hash": config_hash(config),
                "mcpfleet.io/policy-exempt": "non-root: reads node container logs owned by root",
            },
            volumes=[
                {"name": "config", "configMap": {"name": "otel-collector"}},
                {"name": "pod-logs", "hostPath": {"path": "/var/log/pods", "type": "Directory"}},
            ],
        )
        self._service("otel-collector", [("otlp-grpc", 4317), ("otlp-http", 4318), ("spanmetrics", 8889)])

    def _grafana(self, stack: StackConfig, admin_password: pulumi.Input[str]) -> None:
        k8s.core.v1.Secret(
            "grafana-admin",
            metadata={"name": "grafana-admin", "namespace": NS},
            string_data={"GF_SECURITY_ADMIN_PASSWORD": admin_password},
            opts=self._o(),
        )
        datasources = read(CONFIG_DIR / "grafana-datasources.yaml")
        provider = read(CONFIG_DIR / "grafana-dashboards.yaml")
        dashboards = dashboard_files()
        self._config_map("grafana-datasources", {"datasources.yaml": datasources})
        self._config_map("grafana-dashboard-provider", {"dashboards.yaml": provider})
        self._config_map("grafana-dashboards", dashboards)
        self._workload(
            "Deployment",
            "grafana",
            {
                "image": image("grafana"),
                "env": [
                    secret_env("GF_SECURITY_ADMIN_PASSWORD", "grafana-admin", "GF_SECURITY_ADMIN_PASSWORD"),
                    {"name": "GF_USERS_ALLOW_SIGN_UP", "value": "false"},
                    {"name": "GF_ANALYTICS_REPORTING_ENABLED", "value": "false"},
                ],
                "ports": [{"name": "http", "containerPort": 3000}],
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
            annotations={"mcpfleet.io/config-hash": config_hash(datasources, provider, *dashboards.values())},
            volumes=[
                {"name": "datasources", "configMap": {"name": "grafana-datasources"}},
                {"name": "dashboard-provider", "configMap": {"name": "grafana-dashboard-provider"}},
                {"name": "dashboards", "configMap": {"name": "grafana-dashboards"}},
                {"name": "data", "emptyDir": {}},
                {"name": "tmp", "emptyDir": {}},
            ],
        )
        self._service("grafana", [("http", 3000)], "LoadBalancer" if stack.allow_load_balancer else "ClusterIP")

    def _network_policies(self, stack: StackConfig) -> None:
        same_namespace: dict[str, Any] = {"podSelector": {}}
        k8s.networking.v1.NetworkPolicy(
            "observability-internal",
            metadata={"name": "internal", "namespace": NS},
            spec={
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [same_namespace]}],
                "egress": [{"to": [same_namespace]}],
            },
            opts=self._o(),
        )
        k8s.networking.v1.NetworkPolicy(
            "collector-from-apps",
            metadata={"name": "collector-from-apps", "namespace": NS},
            spec={
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "otel-collector"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {
                        "from": [namespace_peer(APP_NAMESPACE)],
                        "ports": [{"protocol": "TCP", "port": 4317}, {"protocol": "TCP", "port": 4318}],
                    }
                ],
            },
            opts=self._o(),
        )
        k8s.networking.v1.NetworkPolicy(
            "grafana-from-ingress",
            metadata={"name": "grafana-from-ingress", "namespace": NS},
            spec={
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "grafana"}},
                "policyTypes": ["Ingress"],
                "ingress": [
                    {"from": [namespace_peer(stack.ingress_namespace)], "ports": [{"protocol": "TCP", "port": 3000}]}
                ],
            },
            opts=self._o(),
        )
        # Scrapers, the Kubernetes API readers and the webhook sender reach outside the namespace.
        for name in ("prometheus", "kube-state-metrics", "otel-collector", "alertmanager"):
            k8s.networking.v1.NetworkPolicy(
                f"{name}-egress",
                metadata={"name": f"{name}-egress", "namespace": NS},
                spec={
                    "podSelector": {"matchLabels": {"app.kubernetes.io/name": name}},
                    "policyTypes": ["Egress"],
                    "egress": [{}],
                },
                opts=self._o(),
            )
