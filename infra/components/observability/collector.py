"""The OpenTelemetry collector, one per node: OTLP from the apps and their container logs from the node.

It is the one workload that reads host paths (`/var/log/pods`), so it runs in the node agents'
namespace, the only one at Pod Security level `privileged`, with a policy exemption that says why.
Its config is `infra/observability/otelcol.yaml` plus, when the stack names a SIEM, that SIEM's exporter
in the audit pipeline: one rendering, used by Kubernetes and the one-machine composition.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import yaml

from infra.components.k8s import config_hash, container_security, http_probe, resources
from infra.components.network import Reachable, namespace_peer, tcp
from infra.components.observability.backend import CONFIG_DIR, Backend, read
from infra.components.observability.loki import PORT as LOKI
from infra.config import APP_NAMESPACE, OBSERVABILITY_NAMESPACE, AuditExportConfig, StackConfig
from infra.egress import COLLECTOR, EgressPlan
from infra.images import image

OTLP_GRPC, OTLP_HTTP, SPANMETRICS = 4317, 4318, 8889
SIEM_EXPORTER = "otlphttp/siem"
SIEM_CREDENTIAL_ENV = "AUDIT_EXPORT_CREDENTIAL"  # the SIEM's credential, from a Secret (never in the ConfigMap)
SIEM_SECRET_NAME = "audit-export"  # noqa: S105 (the Secret object's name, not a value)


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


def siem_exporter(export: AuditExportConfig, proxy_url: str | None) -> dict[str, Any]:
    """The SIEM's OTLP/HTTP exporter: a deadline per request, a bounded queue and retry of its own (a slow or
    absent SIEM delays nothing else, Loki's copy included), through `proxy_url` when the SIEM is outside."""
    exporter: dict[str, Any] = {
        "logs_endpoint": str(export.logs_url),
        "timeout": "10s",
        "compression": "gzip",
        "retry_on_failure": {
            "enabled": True,
            "initial_interval": "5s",
            "max_interval": "30s",
            "max_elapsed_time": "300s",
        },
        "sending_queue": {"enabled": True, "num_consumers": 2, "queue_size": 1000},
    }
    if proxy_url is not None:
        exporter["proxy_url"] = proxy_url
    if export.header is not None:
        exporter["headers"] = {export.header: f"${{env:{SIEM_CREDENTIAL_ENV}}}"}
    return exporter


def collector_config(stack: StackConfig, proxy_url: str | None) -> str:
    """otelcol.yaml for this stack: the repository's file, and the SIEM's exporter in `logs/audit` only."""
    base = read(CONFIG_DIR / "otelcol.yaml")
    export = stack.observability.audit_export
    if export is None:
        return base
    config = yaml.safe_load(base)
    config["exporters"][SIEM_EXPORTER] = siem_exporter(export, proxy_url)
    config["service"]["pipelines"]["logs/audit"]["exporters"].append(SIEM_EXPORTER)
    header = "# Rendered by infra.components.observability.collector from infra/observability/otelcol.yaml and the\n"
    header += "# stack's observability.auditExport; do not edit.\n"
    return header + yaml.safe_dump(config, sort_keys=False)


class Collector(Backend):
    def __init__(
        self,
        namespace: str,
        stack: StackConfig,
        egress: EgressPlan,
        api_server: dict[str, Any],
        provider: k8s.Provider,
        siem_credential: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Collector", "otel-collector", namespace, provider, opts)
        proxy = egress.reachable(COLLECTOR)
        config = collector_config(stack, proxy.url if proxy else None)
        self.config = self.config_map("otel-collector", {"otelcol.yaml": config})
        export = stack.observability.audit_export
        env: list[dict[str, Any]] = [
            {"name": "K8S_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}
        ]
        if export is not None and export.header is not None:
            if siem_credential is None:
                raise ValueError(
                    f"observability.auditExport.header is {export.header!r}: set its value with "
                    "pulumi config set --secret mcpfleet:auditExportCredential"
                )
            self.siem_secret = k8s.core.v1.Secret(
                "otel-collector-audit-export",
                metadata={"name": SIEM_SECRET_NAME, "namespace": namespace},
                string_data={"credential": siem_credential},
                opts=self._opts(),
            )
            env.append(
                {
                    "name": SIEM_CREDENTIAL_ENV,
                    "valueFrom": {"secretKeyRef": {"name": SIEM_SECRET_NAME, "key": "credential"}},
                }
            )
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
                "env": env,
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
                        "from": [namespace_peer(*stack.observability.scraper())],
                        "ports": [{"protocol": "TCP", "port": SPANMETRICS}],
                    },
                ],
            },
        )
        # Logs go to Loki; the k8sattributes processor reads the API server; the audit stream to the SIEM, if any:
        # through the collector's own port on the egress proxy, or to the SIEM's namespace when it is in the cluster.
        loki = {"to": [namespace_peer(OBSERVABILITY_NAMESPACE, {"app.kubernetes.io/name": "loki"})], "ports": tcp(LOKI)}
        egress_rules = [loki, api_server]
        if proxy is not None:
            egress_rules.append(proxy.egress())
            proxy.admit(COLLECTOR, namespace, {"app.kubernetes.io/name": "otel-collector"}, self, provider)
        elif export is not None:  # a Service in the cluster: its namespace, on its port
            siem = Reachable.at(str(export.logs_url), {}, ours=False)
            egress_rules.append({"to": [namespace_peer(siem.namespace)], "ports": tcp(siem.port)})
        self.allow("otel-collector-egress", {"policyTypes": ["Egress"], "egress": egress_rules})
        self.register_outputs({})
