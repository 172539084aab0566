"""Observability: one component per backend, as kube-prometheus does.

Prometheus, Alertmanager, Grafana, Loki and kube-state-metrics run in the observability
namespace (Pod Security `restricted`); the OpenTelemetry collector, a node agent that reads
host paths, runs in the node agents' namespace. Each backend is configured from the repo's
own files, read at program time.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from alerts.params import AlertParams
from infra.components.k8s import child_opts
from infra.components.network import Reachable, api_server_egress
from infra.components.observability.alertmanager import PORT as ALERTMANAGER_PORT
from infra.components.observability.alertmanager import Alertmanager, alertmanager_files
from infra.components.observability.collector import Collector
from infra.components.observability.grafana import Grafana, dashboard_files
from infra.components.observability.kube_state_metrics import KubeStateMetrics
from infra.components.observability.loki import Loki
from infra.components.observability.operator import OperatorMonitoring
from infra.components.observability.prometheus import PORT as PROMETHEUS_PORT
from infra.components.observability.prometheus import Prometheus, rule_files
from infra.config import AGENTS_NAMESPACE, OBSERVABILITY_NAMESPACE, StackConfig
from infra.egress import ALERTMANAGER, EgressPlan

__all__ = ["SERVICES", "Observability", "alertmanager_files", "dashboard_files", "rule_files", "services"]

# What apps may declare they use (`Needs.services`), by the name they use; each such app is admitted by a
# policy of its own. The one-machine composition gives its containers these same host names.
SERVICES = {
    "prometheus": Reachable("prometheus", OBSERVABILITY_NAMESPACE, PROMETHEUS_PORT),
    "alertmanager": Reachable("alertmanager", OBSERVABILITY_NAMESPACE, ALERTMANAGER_PORT),
}


def services(stack: StackConfig) -> dict[str, Reachable]:
    """The platform's Prometheus and Alertmanager, or the cluster's own (operator, external): those are not ours,
    so nothing is created on their side (their namespace's policies are their owners')."""
    monitoring = stack.observability.monitoring
    if monitoring is None:
        return SERVICES
    return {
        "prometheus": Reachable.at(str(monitoring.prometheus_url), monitoring.prometheus_labels, ours=False),
        "alertmanager": Reachable.at(str(monitoring.alertmanager_url), monitoring.alertmanager_labels, ours=False),
    }


class Observability(pulumi.ComponentResource):
    grafana_url: str | None

    def __init__(
        self,
        name: str,
        stack: StackConfig,
        provider: k8s.Provider,
        egress: EgressPlan,
        grafana_admin_password: pulumi.Input[str] | None = None,
        audit_export_credential: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:Observability", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = OBSERVABILITY_NAMESPACE
        password = (
            grafana_admin_password
            or random.RandomPassword(f"{name}-grafana-admin", length=24, special=False, opts=child).result
        )
        api_server = api_server_egress(stack.cluster.api_server_cidrs)
        self.grafana_url = None
        if stack.observability.bundled:
            self.prometheus = Prometheus(ns, stack, egress, provider, child)
            self.alertmanager = Alertmanager(ns, stack, egress, provider, child)
            self.kube_state_metrics = KubeStateMetrics(ns, api_server, provider, child)
            self.grafana = Grafana(ns, stack, password, provider, child)
            self.grafana_url = self.grafana.url
        elif stack.observability.mode == "operator":
            assert stack.observability.monitoring is not None
            params = AlertParams(
                webhook_url=str(stack.observability.webhook_url),
                webhook_proxy_url=proxy.url if (proxy := egress.reachable(ALERTMANAGER)) else None,
            )
            self.operator = OperatorMonitoring("operator", params, stack.observability.monitoring, provider, child)
            if proxy is not None:  # the operator's Alertmanager reaches an outside webhook through its proxy port
                monitoring = stack.observability.monitoring
                proxy.admit(ALERTMANAGER, monitoring.namespace, monitoring.alertmanager_labels, self, provider)
        self.loki = Loki(ns, stack, provider, child)
        self.collector = Collector(
            AGENTS_NAMESPACE, stack, egress, api_server, provider, audit_export_credential, child
        )
        # Within the namespace the backends talk freely (Grafana -> Prometheus, Loki; Prometheus -> Alertmanager).
        same_namespace: dict[str, Any] = {"podSelector": {}}
        self.internal = k8s.networking.v1.NetworkPolicy(
            "observability-internal",
            metadata={"name": "internal", "namespace": ns},
            spec={
                "podSelector": {},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [same_namespace]}],
                "egress": [{"to": [same_namespace]}],
            },
            opts=child_opts(self, provider),
        )
        self.services = services(stack)
        self.register_outputs({"grafana_url": self.grafana_url})
