"""What every observability backend is built from: one ComponentResource per backend, in one namespace.

A backend declares its workload (one container, hardened by default), its Service, its ConfigMaps
and, when it reads the Kubernetes API, a ServiceAccount with a ClusterRole of its own. Children are
kept as attributes so tests and other components can refer to them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s import child_opts, container_security, labels, pod_security

REPO = Path(__file__).resolve().parents[3]
CONFIG_DIR = REPO / "infra" / "observability"
NOBODY = 65534


def read(path: Path) -> str:
    return path.read_text()


class Backend(pulumi.ComponentResource):
    """Base of Prometheus, Alertmanager, Grafana, Loki, the collector and kube-state-metrics."""

    workload: k8s.apps.v1.Deployment | k8s.apps.v1.StatefulSet | k8s.apps.v1.DaemonSet
    service: k8s.core.v1.Service

    def __init__(
        self, kind: str, name: str, namespace: str, provider: k8s.Provider, opts: pulumi.ResourceOptions | None
    ):
        super().__init__(f"mcpfleet:observability:{kind}", name, None, opts)
        self.name, self.namespace, self._provider = name, namespace, provider

    def _opts(self, **extra: Any) -> pulumi.ResourceOptions:
        return child_opts(self, self._provider, **extra)

    def config_map(self, name: str, data: dict[str, str]) -> k8s.core.v1.ConfigMap:
        return k8s.core.v1.ConfigMap(
            f"{name}-config", metadata={"name": name, "namespace": self.namespace}, data=data, opts=self._opts()
        )

    def expose(self, ports: list[tuple[str, int]], service_type: str = "ClusterIP") -> None:
        self.service = k8s.core.v1.Service(
            f"{self.name}-service",
            metadata={"name": self.name, "namespace": self.namespace, "labels": labels(self.name, self.name)},
            spec={
                "type": service_type,
                "selector": {"app.kubernetes.io/name": self.name},
                "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports],
            },
            opts=self._opts(),
        )

    def cluster_reader(self, rules: list[dict[str, Any]]) -> None:
        """A ServiceAccount bound to a ClusterRole holding exactly `rules`."""
        name, role = self.name, f"mcpfleet-{self.name}"
        k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata={"name": name, "namespace": self.namespace}, opts=self._opts()
        )
        k8s.rbac.v1.ClusterRole(f"{name}-role", metadata={"name": role}, rules=rules, opts=self._opts())
        k8s.rbac.v1.ClusterRoleBinding(
            f"{name}-binding",
            metadata={"name": role},
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            subjects=[{"kind": "ServiceAccount", "name": name, "namespace": self.namespace}],
            opts=self._opts(),
        )

    def run(
        self,
        kind: str,
        container: dict[str, Any],
        *,
        uid: int = NOBODY,
        volumes: list[dict[str, Any]] | None = None,
        service_account: bool = False,
        annotations: dict[str, str] | None = None,
        extra_spec: dict[str, Any] | None = None,
    ) -> None:
        """The backend's workload: one container, non-root by default, with its own labels."""
        name = self.name
        lbl = labels(name, name)
        pod: dict[str, Any] = {
            "automountServiceAccountToken": service_account,
            "securityContext": pod_security(uid, uid) if uid else {"seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": name, "securityContext": container_security(), **container}],
            "volumes": volumes or [],
        }
        if service_account:
            pod["serviceAccountName"] = name
        spec: dict[str, Any] = {
            "selector": {"matchLabels": {"app.kubernetes.io/name": name}},
            "template": {"metadata": {"labels": lbl, "annotations": annotations or {}}, "spec": pod},
            **(extra_spec or {}),
        }
        meta = {"name": name, "namespace": self.namespace, "labels": lbl}
        if kind == "Deployment":
            self.workload = k8s.apps.v1.Deployment(
                f"{name}-deployment", metadata=meta, spec={"replicas": 1, **spec}, opts=self._opts()
            )
        elif kind == "StatefulSet":
            self.workload = k8s.apps.v1.StatefulSet(
                f"{name}-statefulset",
                metadata=meta,
                spec={"replicas": 1, "serviceName": name, **spec},
                opts=self._opts(),
            )
        else:
            self.workload = k8s.apps.v1.DaemonSet(f"{name}-daemonset", metadata=meta, spec=spec, opts=self._opts())

    def allow(self, policy: str, spec: dict[str, Any]) -> k8s.networking.v1.NetworkPolicy:
        """A NetworkPolicy of this backend's namespace, selecting this backend's pods unless `spec` says."""
        full = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": self.name}}, **spec}
        return k8s.networking.v1.NetworkPolicy(
            policy, metadata={"name": policy, "namespace": self.namespace}, spec=full, opts=self._opts()
        )


def volume_claim(size: str) -> dict[str, Any]:
    return {
        "volumeClaimTemplates": [
            {
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
            }
        ]
    }
