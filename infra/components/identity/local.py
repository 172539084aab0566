"""The local authorization server on the cluster (`identity.provider: local`, the dev stack): `authz/` (panva's
oidc-provider) in a namespace of its own, configured from the servers' declarations (`infra.authz`).

Its signing key is an RSA key Pulumi keeps (so a restart or a new pod signs with the same key and tokens stay
valid); the people's passwords and the cookie keys are generated and reach the pod only through a Secret (the
passwords are stack outputs, marked secret, for the people to sign in with). Every app reaches it for the JWKS,
the edge routes the issuer's host to it (with TLS), and it reaches nothing: it calls no one. One replica: its
state (registrations, grants, sessions) is in memory, a development store.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import pulumi_tls as tls

from apps.kit import FocusedServer
from infra import authz
from infra.components.k8s import child_opts, container_security, labels, pod_security, resources, secret_env
from infra.components.network import Reachable, namespace_peer, tcp
from infra.config import AUTH_NAMESPACE, AUTHZ_PORT, SELF_SIGNED_SECRET, StackConfig

NAME = "authz"
UID = 10001
SIGNING_KEY = "AUTHZ_SIGNING_KEY"


def reachable() -> Reachable:
    return Reachable(NAME, AUTH_NAMESPACE, AUTHZ_PORT)


def ingress_spec(issuer: str, class_name: str, tls_secret: str) -> dict[str, Any]:
    """The issuer's host, TLS on, the authorization server's own paths only (`infra.authz.ROUTED`)."""
    host = urlsplit(issuer).hostname or ""
    backend = {"service": {"name": NAME, "port": {"name": "http"}}}
    paths = [{"path": path, "pathType": kind, "backend": backend} for path, kind in authz.ROUTED.items()]
    return {
        "ingressClassName": class_name,
        "tls": [{"hosts": [host], "secretName": tls_secret}],
        "rules": [{"host": host, "http": {"paths": paths}}],
    }


class AuthorizationServer(pulumi.ComponentResource):
    passwords: dict[str, pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        stack: StackConfig,
        servers: dict[str, FocusedServer[Any, Any]],
        image: pulumi.Input[str],
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:AuthorizationServer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.passwords = {
            login: random.RandomPassword(f"{name}-{login}", length=24, special=False, opts=child).result
            for login in stack.identity.people
        }
        cookie_keys = random.RandomPassword(f"{name}-cookie-keys", length=48, special=False, opts=child).result
        key = tls.PrivateKey(f"{name}-signing-key", algorithm="RSA", rsa_bits=2048, opts=child)
        in_namespace = child_opts(self, provider)  # its namespace is the baseline's
        k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={"name": NAME, "namespace": AUTH_NAMESPACE},
            string_data={
                SIGNING_KEY: key.private_key_pem_pkcs8,
                authz.COOKIE_KEYS_VARIABLE: cookie_keys,
                **{authz.password_variable(login): password for login, password in self.passwords.items()},
            },
            opts=in_namespace,
        )
        urls = {app_name: str(app.resource_url) for app_name, app in stack.apps.items()}
        every = authz.stack_scopes(stack)
        settings = authz.config(stack, servers, urls, stack.issuer, every_scope=every, behind_proxy=True)
        self._workload(name, image, settings, provider, in_namespace)
        if stack.issuer_routed():  # reached from outside the cluster
            routes = stack.routes
            tls_secret = routes.secret_name or (SELF_SIGNED_SECRET if routes.self_signed else f"{NAME}-tls")
            annotations = {"cert-manager.io/cluster-issuer": routes.cluster_issuer} if routes.cluster_issuer else {}
            if routes.class_name == "traefik":
                annotations["traefik.ingress.kubernetes.io/router.entrypoints"] = "websecure"
            k8s.networking.v1.Ingress(
                f"{name}-route",
                metadata={
                    "name": NAME,
                    "namespace": AUTH_NAMESPACE,
                    "labels": labels(NAME, authz.ROUTE_COMPONENT),
                    "annotations": annotations,
                },
                spec=ingress_spec(stack.issuer, routes.class_name, tls_secret),
                opts=in_namespace,
            )
        self._policy(name, stack, provider, in_namespace)
        self.register_outputs({})

    def _workload(
        self, name: str, image: pulumi.Input[str], settings: dict[str, Any], provider: k8s.Provider, opts: Any
    ) -> None:
        lbl = labels(NAME, authz.ROUTE_COMPONENT)
        health = {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5, "timeoutSeconds": 3}
        secret_names = [SIGNING_KEY, authz.COOKIE_KEYS_VARIABLE, *settings_passwords(settings)]
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": NAME, "namespace": AUTH_NAMESPACE, "labels": lbl},
            spec={
                "replicas": 1,  # in-memory grants and sessions: one pod holds them
                "strategy": {"type": "Recreate"},
                "selector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                "template": {
                    "metadata": {"labels": lbl},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security(UID, UID),
                        "containers": [
                            {
                                "name": NAME,
                                "image": image,
                                "env": [
                                    {"name": "AUTHZ_CONFIG", "value": json.dumps(settings, separators=(",", ":"))},
                                    *(secret_env(variable, NAME, variable) for variable in secret_names),
                                ],
                                "ports": [{"name": "http", "containerPort": AUTHZ_PORT}],
                                "readinessProbe": health,
                                "livenessProbe": {**health, "initialDelaySeconds": 10, "failureThreshold": 6},
                                "securityContext": container_security(),
                                "resources": resources("50m", "96Mi", "500m", "256Mi"),
                                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                            }
                        ],
                        "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
                    },
                },
            },
            opts=opts,
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": NAME, "namespace": AUTH_NAMESPACE, "labels": lbl},
            spec={
                "selector": {"app.kubernetes.io/name": NAME},
                "ports": [{"name": "http", "port": AUTHZ_PORT, "targetPort": "http"}],
            },
            opts=opts,
        )

    def _policy(self, name: str, stack: StackConfig, provider: k8s.Provider, opts: Any) -> None:
        """In: the edge (people and clients; each app is admitted by a policy of its own, `authz-from-<app>`, for
        the keys); out: nothing, it calls no one."""
        k8s.networking.v1.NetworkPolicy(
            f"{name}-policy",
            metadata={"name": NAME, "namespace": AUTH_NAMESPACE},
            spec={
                "podSelector": {"matchLabels": {"app.kubernetes.io/name": NAME}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "from": [namespace_peer(stack.ingress_namespace)],
                        "ports": tcp(AUTHZ_PORT),
                    }
                ],
                "egress": [],
            },
            opts=opts,
        )


def settings_passwords(settings: dict[str, Any]) -> list[str]:
    return [person["passwordVariable"] for person in settings["people"].values()]
