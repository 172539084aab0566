"""McpApp: one focused MCP server on Kubernetes, with the seed's production defaults.

ServiceAccount without a token, a hardened Deployment (3 replicas, rolling 1/1, probes,
requests/limits, non-root, read-only root, no capabilities, spread across nodes, scrape
annotations), a Service, a PodDisruptionBudget, a HorizontalPodAutoscaler and its NetworkPolicy.
Secrets reach the pod only through `secretKeyRef`.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s import (
    child_opts,
    container_security,
    http_probe,
    labels,
    namespace_peer,
    pod_security,
    resources,
    secret_env,
)
from infra.components.observability.collector import otlp_endpoint
from infra.config import AGENTS_NAMESPACE, APP_NAMESPACE, OBSERVABILITY_NAMESPACE, AppConfig, StackConfig

PORT = 8080
SHUTDOWN_GRACE_SECONDS = 25  # the app drains this long after SIGTERM
PRE_STOP_SECONDS = 5  # endpoints are removed before the app stops accepting


class McpApp(pulumi.ComponentResource):
    url: str

    def __init__(
        self,
        name: str,
        app: AppConfig,
        stack: StackConfig,
        image: pulumi.Input[str],
        provider: k8s.Provider,
        secrets: dict[str, pulumi.Input[str]],
        egress: list[dict[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ):
        """`secrets` are this app's own values (DSNs, Redis URL, JWT secret); they go to its Secret only.
        `egress` are the NetworkPolicy rules reaching what it uses (each dependency publishes its own)."""
        super().__init__("mcpfleet:index:McpApp", name, None, opts)
        lbl = {**labels(name, "mcp-server"), "app": name}
        select = {"app.kubernetes.io/name": name}
        meta = {"name": name, "namespace": APP_NAMESPACE, "labels": lbl}
        self.url = f"http://{name}.{APP_NAMESPACE}.svc/mcp"

        k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=meta, automount_service_account_token=False, opts=child_opts(self, provider)
        )
        secret_name = f"{name}-secrets"
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={**meta, "name": secret_name},
            string_data=secrets,
            opts=child_opts(self, provider),
        )
        env: list[dict[str, Any]] = [
            {"name": "MCP_RESOURCE_URL", "value": str(app.resource_url)},
            {"name": "MCP_ISSUER", "value": str(stack.issuer)},
            {"name": "RATE_LIMIT_PER_MINUTE", "value": str(app.rate_limit_per_minute)},
            {"name": "RATE_LIMIT_REDIS_FAILURE", "value": stack.redis_failure_mode},
            {"name": "PORT", "value": str(PORT)},
            {"name": "SHUTDOWN_GRACE_SECONDS", "value": str(SHUTDOWN_GRACE_SECONDS)},
            {"name": "OTEL_SERVICE_NAME", "value": name},
            {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": otlp_endpoint(AGENTS_NAMESPACE)},
            {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": f"service.namespace={APP_NAMESPACE}"},
        ]
        if stack.jwks_url:
            env.append({"name": "MCP_JWKS_URL", "value": str(stack.jwks_url)})
            env.append({"name": "MCP_JWT_ALGORITHMS", "value": "RS256 ES256"})
        env += [secret_env(key, secret_name, key) for key in sorted(secrets)]

        r = app.resources
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=meta,
            spec={
                "replicas": app.replicas,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": select},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}},
                "template": {
                    "metadata": {
                        "labels": lbl,
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(PORT),
                            "prometheus.io/path": "/metrics",
                        },
                    },
                    "spec": {
                        "serviceAccountName": name,
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": SHUTDOWN_GRACE_SECONDS + PRE_STOP_SECONDS + 5,
                        "securityContext": pod_security(10001),
                        "topologySpreadConstraints": [
                            {
                                "maxSkew": 1,
                                "topologyKey": "kubernetes.io/hostname",
                                "whenUnsatisfiable": "ScheduleAnyway",
                                "labelSelector": {"matchLabels": select},
                            },
                            {
                                "maxSkew": 1,
                                "topologyKey": "topology.kubernetes.io/zone",
                                "whenUnsatisfiable": "ScheduleAnyway",
                                "labelSelector": {"matchLabels": select},
                            },
                        ],
                        "containers": [
                            {
                                "name": name,
                                "image": image,
                                "args": [app.module],
                                "ports": [{"name": "http", "containerPort": PORT}],
                                "env": env,
                                "resources": resources(r.cpu_request, r.memory_request, r.cpu_limit, r.memory_limit),
                                "livenessProbe": http_probe("/health", "http", 30, 10),
                                "readinessProbe": http_probe("/ready", "http", 5, 5),
                                "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
                                "securityContext": container_security(),
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            }
                        ],
                        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
                    },
                },
            },
            opts=child_opts(self, provider),
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta,
            spec={
                "type": "ClusterIP",
                "selector": select,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
            opts=child_opts(self, provider),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta,
            spec={"maxUnavailable": 1, "selector": {"matchLabels": select}},
            opts=child_opts(self, provider),
        )
        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=meta,
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                "minReplicas": app.replicas,
                "maxReplicas": app.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": app.target_cpu_utilization},
                        },
                    }
                ],
            },
            opts=child_opts(self, provider),
        )
        egress = list(egress)
        if stack.jwks_url:  # the issuer's keys, over HTTPS
            egress.append({"ports": [{"protocol": "TCP", "port": 443}]})
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol",
            metadata=meta,
            spec={
                "podSelector": {"matchLabels": select},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [namespace_peer(stack.ingress_namespace)], "ports": [{"protocol": "TCP", "port": PORT}]},
                    {
                        "from": [namespace_peer(OBSERVABILITY_NAMESPACE, {"app.kubernetes.io/name": "prometheus"})],
                        "ports": [{"protocol": "TCP", "port": PORT}],
                    },
                ],
                "egress": egress,
            },
            opts=child_opts(self, provider),
        )
        self.register_outputs({"url": self.url})
