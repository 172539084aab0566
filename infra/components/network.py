"""Who may talk to whom: NetworkPolicy peers, and the in-cluster services apps declare they use.

Every namespace starts from default-deny (Baseline). A service an app may use is a `Reachable`: it
gives the app's egress rule, and admits that app, and only it, on its own side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Network
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s


def namespace_peer(namespace: str, pod_labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A NetworkPolicy peer: pods (optionally with these labels) in another namespace."""
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}}}
    if pod_labels:
        peer["podSelector"] = {"matchLabels": pod_labels}
    return peer


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


@dataclass(frozen=True)
class Reachable:
    """An in-cluster service: its Service name and namespace, the pods behind it, its port."""

    name: str
    namespace: str
    port: int
    scheme: str = "http"
    pod_labels: dict[str, str] = field(default_factory=dict)
    # A service of the platform's: its side admits each client. A cluster's own (the operator's Prometheus) is not:
    # its namespace's policies are its owners', and a policy made there would isolate its pods.
    ours: bool = True

    @classmethod
    def at(cls, url: str, pod_labels: dict[str, str], ours: bool = True) -> Reachable:
        """The service a `http://name.namespace.svc:port` URL names."""
        parts = urlsplit(url)
        name, namespace = (parts.hostname or "").split(".")[:2]
        return cls(name, namespace, parts.port or 80, parts.scheme, pod_labels, ours)

    @property
    def host(self) -> str:
        return f"{self.name}.{self.namespace}.svc"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def egress(self) -> dict[str, Any]:
        """The egress rule that reaches this service, and nothing else."""
        labels = self.pod_labels or {"app.kubernetes.io/name": self.name}
        return {"to": [namespace_peer(self.namespace, labels)], "ports": tcp(self.port)}

    def admit(
        self,
        client: str,
        client_namespace: str,
        client_labels: dict[str, str],
        parent: pulumi.Resource,
        provider: k8s.Provider,
    ) -> k8s.networking.v1.NetworkPolicy:
        """On this service's side: let `client`'s pods in, on this port only."""
        labels = self.pod_labels or {"app.kubernetes.io/name": self.name}
        return k8s.networking.v1.NetworkPolicy(
            f"{self.name}-from-{client}",
            metadata={"name": f"{self.name}-from-{client}", "namespace": self.namespace},
            spec={
                "podSelector": {"matchLabels": labels},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [namespace_peer(client_namespace, client_labels)], "ports": tcp(self.port)}],
            },
            opts=pulumi.ResourceOptions(parent=parent, provider=provider),
        )


API_SERVER_PORTS = (443, 6443)  # the Service's port, and the endpoints' port kind and kubeadm clusters use


def api_server_egress(cidrs: list[IPv4Network | IPv6Network]) -> dict[str, Any]:
    """The egress rule a workload that reads the Kubernetes API needs: the API server's blocks, its ports only."""
    return {"to": [{"ipBlock": {"cidr": str(block)}} for block in cidrs], "ports": tcp(*API_SERVER_PORTS)}
