"""Baseline: the namespaces with their Pod Security levels, and default-deny NetworkPolicies.

Apps, data, observability and (with `identity.provider: local`) the authorization server run `restricted`. Only
the node agents' namespace is `privileged`: the log collector reads container logs from the node (hostPath), which
no stricter level admits, so it lives alone there rather than lowering the level of Prometheus, Grafana or Loki.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s import child_opts
from infra.config import AGENTS_NAMESPACE, APP_NAMESPACE, AUTH_NAMESPACE, DATA_NAMESPACE, OBSERVABILITY_NAMESPACE

POD_SECURITY = {
    APP_NAMESPACE: "restricted",
    DATA_NAMESPACE: "restricted",
    OBSERVABILITY_NAMESPACE: "restricted",
    AGENTS_NAMESPACE: "privileged",
}
DNS_EGRESS = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def guarded_namespace(
    namespace: str, level: str, parent: pulumi.Resource, provider: k8s.Provider
) -> k8s.core.v1.Namespace:
    """A namespace at a Pod Security level, where nothing may talk to anything (but DNS) until a policy says so."""
    created = k8s.core.v1.Namespace(
        namespace,
        metadata={
            "name": namespace,
            "labels": {
                "pod-security.kubernetes.io/enforce": level,
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": level,
                "app.kubernetes.io/part-of": "mcpfleet",
            },
        },
        opts=child_opts(parent, provider),
    )
    k8s.networking.v1.NetworkPolicy(
        f"{namespace}-default-deny",
        metadata={"name": "default-deny", "namespace": namespace},
        spec={"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        opts=child_opts(parent, provider, depends_on=[created]),
    )
    k8s.networking.v1.NetworkPolicy(
        f"{namespace}-allow-dns",
        metadata={"name": "allow-dns", "namespace": namespace},
        spec={"podSelector": {}, "policyTypes": ["Egress"], "egress": [DNS_EGRESS]},
        opts=child_opts(parent, provider, depends_on=[created]),
    )
    return created


class Baseline(pulumi.ComponentResource):
    namespaces: dict[str, k8s.core.v1.Namespace]

    def __init__(
        self,
        name: str,
        provider: k8s.Provider,
        local_issuer: bool = False,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:Baseline", name, None, opts)
        levels = POD_SECURITY | ({AUTH_NAMESPACE: "restricted"} if local_issuer else {})
        self.namespaces = {
            namespace: guarded_namespace(namespace, level, self, provider) for namespace, level in levels.items()
        }
        self.register_outputs({})
