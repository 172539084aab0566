"""The laptop's edge: on a kind cluster, an ingress controller so the same routes as in prod answer at
`https://<app>.localhost/mcp`, and (with `routes.selfSigned`) a certificate for them.

The controller is Traefik from its official Helm chart, pinned (the community ingress-nginx controller was
retired in March 2026, so a new install does not start there). Its HTTPS entry point is a NodePort that kind
maps to the laptop's `cluster.httpsPort` on 127.0.0.1 only (`infra.components.cluster.kind_config`); no
hostPort, so its namespace stays at the `restricted` Pod Security level. It sees Ingresses in the apps
namespace (and the local authorization server's) only and may reach the apps' MCP port, the authorization
server's port and the API server, nothing else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from alerts.names import AUTH_NAMESPACE, AUTHZ_PORT, PORT
from infra.components.baseline import guarded_namespace
from infra.components.cluster import HTTPS_NODE_PORT
from infra.components.k8s import child_opts
from infra.components.network import api_server_egress, namespace_peer, tcp
from infra.config import APP_NAMESPACE, SELF_SIGNED_SECRET, StackConfig

TRAEFIK_CHART = "traefik"
TRAEFIK_CHART_VERSION = "41.3.0"  # Traefik v3.7.11
TRAEFIK_REPOSITORY = "https://traefik.github.io/charts"
HTTPS_PORT = 8443  # the chart's `websecure` entry point in the pod
CERTIFICATE_DAYS = 90


def routed_hosts(stack: StackConfig) -> list[str]:
    """Every host the edge serves: each routed app's, and the local authorization server's (the issuer's)."""
    hosts = {urlsplit(str(app.resource_url)).hostname or "" for app in stack.routed().values()}
    if stack.issuer_routed():
        hosts.add(urlsplit(stack.issuer).hostname or "")
    return sorted(hosts)


def watched_namespaces(stack: StackConfig) -> list[str]:
    """Where the edge reads Ingresses: the apps', and the local authorization server's."""
    return [APP_NAMESPACE, *([AUTH_NAMESPACE] if stack.identity.provider == "local" else [])]


def traefik_values(stack: StackConfig) -> dict[str, Any]:
    """The chart's values: one replica, Ingresses of the routes' class in the apps namespace, HTTPS only."""
    return {
        "deployment": {"replicas": 1},
        "ingressClass": {"enabled": True, "isDefaultClass": False, "name": stack.routes.class_name},
        "providers": {
            "kubernetesCRD": {"enabled": False},
            "kubernetesIngress": {"enabled": True, "namespaces": watched_namespaces(stack)},
        },
        "ports": {
            "web": {"expose": {"default": False}},
            "websecure": {"port": HTTPS_PORT, "exposedPort": 443, "nodePort": HTTPS_NODE_PORT},
        },
        "service": {"spec": {"type": "NodePort"}},
        "log": {"format": "json"},
        # Request headers (the bearer token among them) are dropped from access lines by the chart's default.
        "accessLog": {"enabled": True, "format": "json"},
    }


class DevEdge(pulumi.ComponentResource):
    certificate_pem: pulumi.Output[str] | None

    def __init__(
        self, name: str, stack: StackConfig, provider: k8s.Provider, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mcpfleet:index:DevEdge", name, None, opts)
        namespace = stack.ingress_namespace
        created = guarded_namespace(namespace, "restricted", self, provider)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-traefik",
            metadata={"name": "traefik", "namespace": namespace},
            spec={
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "traefik"}},
                "policyTypes": ["Ingress", "Egress"],
                # The laptop's loopback port arrives through kind's node port: the edge admits any source, on
                # HTTPS only.
                "ingress": [{"ports": tcp(HTTPS_PORT)}],
                "egress": [
                    {"to": [namespace_peer(APP_NAMESPACE)], "ports": tcp(PORT)},  # the apps' MCP port
                    *(
                        [{"to": [namespace_peer(AUTH_NAMESPACE)], "ports": tcp(AUTHZ_PORT)}]
                        if stack.identity.provider == "local"
                        else []
                    ),
                    api_server_egress(stack.cluster.api_server_cidrs),  # it watches Ingresses and Services
                ],
            },
            opts=child_opts(self, provider, depends_on=[created]),
        )
        k8s.helm.v3.Release(
            f"{name}-traefik",
            name="traefik",
            chart=TRAEFIK_CHART,
            version=TRAEFIK_CHART_VERSION,
            repository_opts={"repo": TRAEFIK_REPOSITORY},
            namespace=namespace,
            values=traefik_values(stack),
            opts=child_opts(self, provider, depends_on=[created]),
        )
        self.certificate_pem = self._certificate(name, stack, provider) if stack.routes.self_signed else None
        self.register_outputs({"certificate_pem": self.certificate_pem})

    def _certificate(self, name: str, stack: StackConfig, provider: k8s.Provider) -> pulumi.Output[str]:
        """A throwaway CA for this stack, and one certificate it signs for every routed host (a wildcard under
        `localhost` is refused by TLS libraries). Clients trust the CA, exported as `dev_certificate`."""
        child = pulumi.ResourceOptions(parent=self)
        hours = CERTIFICATE_DAYS * 24
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            subject={"common_name": f"mcpfleet {stack.cluster.name} development CA"},
            is_ca_certificate=True,
            set_subject_key_id=True,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            validity_period_hours=hours,
            opts=child,
        )
        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-request",
            private_key_pem=key.private_key_pem,
            dns_names=routed_hosts(stack),
            subject={"common_name": routed_hosts(stack)[0]},
            opts=child,
        )
        certificate = tls.LocallySignedCert(
            f"{name}-certificate",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            allowed_uses=["digital_signature", "key_encipherment", "server_auth"],
            validity_period_hours=hours,
            early_renewal_hours=hours // 3,
            opts=child,
        )
        for namespace in watched_namespaces(stack):  # an Ingress reads its TLS Secret from its own namespace
            k8s.core.v1.Secret(
                f"{name}-tls" if namespace == APP_NAMESPACE else f"{name}-tls-{namespace}",
                metadata={"name": SELF_SIGNED_SECRET, "namespace": namespace},
                type="kubernetes.io/tls",
                string_data={"tls.crt": certificate.cert_pem, "tls.key": key.private_key_pem},
                opts=child_opts(self, provider),
            )
        return ca.cert_pem
