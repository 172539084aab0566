"""McpApp: one focused MCP server on Kubernetes, derived from its own declaration and its stack entry.

What it may reach comes from the server's `Needs` and from nothing else: its Secret holds only its own
DSNs, Redis URL and declared secrets; its volumes are the ones it declares; its NetworkPolicy opens
only the egress those imply, and each service it uses admits it on that service's side. Around that,
the seed's production defaults: a ServiceAccount without a token, a hardened Deployment (3 replicas,
rolling 1/1, probes, requests/limits, non-root, read-only root, no capabilities, spread across nodes,
scrape annotations), a Service, a PodDisruptionBudget and a HorizontalPodAutoscaler.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from alerts.names import METRICS_PORT, PORT
from apps.kit import FocusedServer
from infra import fleet
from infra.components.k8s import (
    child_opts,
    container_security,
    http_probe,
    labels,
    pod_security,
    resources,
    secret_env,
)
from infra.components.network import Reachable, namespace_peer, tcp
from infra.components.observability.collector import otlp_egress
from infra.components.postgres import Postgres
from infra.components.redis import Redis
from infra.components.route import ingress_spec
from infra.config import AGENTS_NAMESPACE, APP_NAMESPACE, AppConfig, StackConfig
from infra.egress import EgressPlan
from infra.policy.checks import POLICIES_FOR, RESOURCE_ANNOTATION, SCOPES_ANNOTATION
from infra.wiring import SHUTDOWN_GRACE_SECONDS, secret_values, wiring

APP_UID = 10001
PRE_STOP_SECONDS = 5  # endpoints are removed before the app stops accepting


@dataclass
class Platform:
    """What the platform offers an app; each app takes only what its `Needs` name."""

    stack: StackConfig
    image: pulumi.Input[str]
    provider: k8s.Provider
    postgres: Postgres
    redis: Redis
    services: dict[str, Reachable]  # platform services by the name `Needs.services` uses
    authorization_server: Reachable | None = None  # the local issuer, whose keys every app fetches
    egress: EgressPlan = field(default_factory=lambda: EgressPlan({}))  # who reaches which outside hosts, by name
    app_secrets: dict[str, dict[str, pulumi.Input[str]]] = field(default_factory=dict)  # app -> key -> value


class McpApp(pulumi.ComponentResource):
    url: str

    def __init__(
        self,
        name: str,
        app: AppConfig,
        server: FocusedServer[Any, Any],
        platform: Platform,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("mcpfleet:index:McpApp", name, None, opts)
        self.name, self.app, self.server, self.platform = name, app, server, platform
        self.pod_labels = {**labels(name, "mcp-server"), "app": name}
        self.select = {"app.kubernetes.io/name": name}
        self.meta = {"name": name, "namespace": APP_NAMESPACE, "labels": self.pod_labels}
        self.url = f"http://{name}.{APP_NAMESPACE}.svc/mcp"
        self.read_only_volumes = fleet.read_only_volumes(name, app, server)
        self.policies = fleet.policy_files(platform.stack, name)
        if self.policies:  # the organisation's policies for this app, read-only beside it
            k8s.core.v1.ConfigMap(
                f"{name}-policies",
                # the policy pack checks them against this server's tools (`infra.policy.checks.policy_problems`)
                metadata={**self.meta, "name": f"{name}-policies", "annotations": {POLICIES_FOR: app.module}},
                data=self.policies,
                opts=self._opts(),
            )

        self.service_account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata=self.meta, automount_service_account_token=False, opts=self._opts()
        )
        self.secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata={**self.meta, "name": self.secret_name},
            string_data=self._secret_values(),
            opts=self._opts(),
        )
        self.volume_claims = self._volume_claims()
        self.deployment = self._deployment()
        self.service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=self.meta,
            spec={
                "type": "ClusterIP",
                "selector": self.select,
                "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            },
            opts=self._opts(),
        )
        self.route = self._route() if name in platform.stack.routed() else None
        if self.route is not None:  # reached from outside at its resourceUrl
            self.url = str(app.resource_url)
        self.disruption_budget = k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=self.meta,
            spec={"maxUnavailable": 1, "selector": {"matchLabels": self.select}},
            opts=self._opts(),
        )
        self.autoscaler = self._autoscaler()
        self.network_policy = self._network_policy()
        self.admissions = [
            reachable.admit(name, APP_NAMESPACE, self.select, self, platform.provider)
            for reachable in self._reached()
            if reachable.ours
        ]
        self.register_outputs({"url": self.url})

    def _route(self) -> k8s.networking.v1.Ingress:
        """Its resourceUrl's host, TLS on, `/mcp` and its metadata path only (`infra.components.route`)."""
        settings = fleet.app_settings(self.name, self.app, self.server)
        route = ingress_spec(
            self.name,
            str(self.app.resource_url),
            self.platform.stack.routes,
            settings.mcp_max_body_bytes,
            self.server.pages,
        )
        return k8s.networking.v1.Ingress(
            f"{self.name}-ingress",
            metadata={**self.meta, "annotations": route["annotations"]},
            spec=route["spec"],
            opts=self._opts(),
        )

    def _opts(self, **extra: Any) -> pulumi.ResourceOptions:
        return child_opts(self, self.platform.provider, **extra)

    @property
    def secret_name(self) -> str:
        return f"{self.name}-secrets"

    # --- what the app declared, turned into access ------------------------------------------------
    def _secret_values(self) -> dict[str, pulumi.Input[str]]:
        """Only this app's own values: its DSNs, the Redis URL and its declared secrets."""
        platform = self.platform
        provided = platform.app_secrets.get(self.name, {})
        return secret_values(
            self.app,
            self.server,
            platform.postgres.dsn,
            platform.redis.url_for(self.name) if fleet.uses_redis(self.app, self.server) else None,
            provided,
        )

    def _reached(self) -> list[Reachable]:
        """The in-cluster services this app declared it uses (each admits it on its own side)."""
        needs, platform = self.server.needs, self.platform
        reached = [platform.services[service] for service in needs.services.values()]
        if fleet.uses_redis(self.app, self.server):
            reached.append(platform.redis.reachable)
        if needs.postgres and platform.postgres.reachable is not None:
            reached.append(platform.postgres.reachable)
        if (proxy := self._egress_proxy()) is not None:
            reached.append(proxy)
        if platform.authorization_server is not None:
            reached.append(platform.authorization_server)
        return reached

    def _egress_proxy(self) -> Reachable | None:
        return self.platform.egress.reachable(self.name)

    def _egress(self) -> list[dict[str, Any]]:
        needs, platform = self.server.needs, self.platform
        rules = [otlp_egress(AGENTS_NAMESPACE)]  # every app sends its telemetry
        rules += [platform.services[service].egress() for service in needs.services.values()]
        if fleet.uses_redis(self.app, self.server):
            rules.append(platform.redis.reachable.egress())
        if needs.postgres:
            rules.append(platform.postgres.egress())  # in-cluster pods, or the external instance's CIDR
        if (proxy := self._egress_proxy()) is not None:  # outside hosts by name: its own port on the proxy
            rules.append(proxy.egress())
        if platform.authorization_server is not None:  # the issuer's keys
            rules.append(platform.authorization_server.egress())
        rules += [{"to": [{"ipBlock": {"cidr": str(e.cidr)}}], "ports": tcp(e.port)} for e in self.app.egress]
        return rules

    def _volume_claims(self) -> dict[str, k8s.core.v1.PersistentVolumeClaim]:
        claims = {}
        for volume in self.server.needs.volumes:
            config = self.app.volumes[volume.name]  # `infra.fleet.check` requires an entry per declared volume
            spec: dict[str, Any] = {
                "accessModes": [config.access_mode],
                "resources": {"requests": {"storage": config.size}},
            }
            if config.storage_class:
                spec["storageClassName"] = config.storage_class
            claim = f"{self.name}-{volume.name}"
            claims[volume.name] = k8s.core.v1.PersistentVolumeClaim(
                f"{claim}-pvc",
                metadata={"name": claim, "namespace": APP_NAMESPACE, "labels": self.pod_labels},
                spec=spec,
                opts=self._opts(),
            )
        return claims

    # --- the workload -----------------------------------------------------------------------------
    def _env(self) -> list[dict[str, Any]]:
        platform = self.platform
        wired = wiring(
            self.name,
            self.app,
            self.server,
            platform.stack,
            {name: reachable.url for name, reachable in platform.services.items()},
            provided_secrets=platform.app_secrets.get(self.name, {}),
            egress_proxy=proxy.url if (proxy := self._egress_proxy()) is not None else None,
        )
        plain = [{"name": name, "value": value} for name, value in wired.env.items()]
        if self.policies:
            plain.append({"name": "MCP_POLICY_DIR", "value": fleet.POLICY_DIR})
        return plain + [secret_env(key, self.secret_name, key) for key in wired.secret_env]

    def _deployment(self) -> k8s.apps.v1.Deployment:
        volumes = self.server.needs.volumes
        r = self.app.resources
        read_only = self.read_only_volumes
        mounts = [{"name": "tmp", "mountPath": "/tmp"}] + [
            {"name": v.name, "mountPath": v.mount_path, "readOnly": v.name in read_only} for v in volumes
        ]
        pod_volumes = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}] + [
            {
                "name": v.name,
                "persistentVolumeClaim": {"claimName": f"{self.name}-{v.name}", "readOnly": v.name in read_only},
            }
            for v in volumes
        ]
        if self.policies:
            mounts.append({"name": "policies", "mountPath": fleet.POLICY_DIR, "readOnly": True})
            pod_volumes.append({"name": "policies", "configMap": {"name": f"{self.name}-policies"}})
        single_node = any(c.access_mode == "ReadWriteOnce" for c in self.app.volumes.values())
        # A ReadWriteOnce volume mounts on one node: replace the pod rather than surge a second one.
        strategy = (
            {"type": "Recreate"}
            if single_node
            else {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 1}}
        )
        spread = [
            {
                "maxSkew": 1,
                "topologyKey": key,
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": self.select},
            }
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")
        ]
        # What the identity provider must define for it: the policy pack holds the provider to these
        declared = {SCOPES_ANNOTATION: " ".join(self.server.scopes), RESOURCE_ANNOTATION: str(self.app.resource_url)}
        return k8s.apps.v1.Deployment(
            f"{self.name}-deployment",
            metadata={**self.meta, "annotations": declared},
            spec={
                "replicas": self.app.replicas,
                "revisionHistoryLimit": 5,
                "selector": {"matchLabels": self.select},
                "strategy": strategy,
                "template": {
                    "metadata": {
                        "labels": self.pod_labels,
                        "annotations": {
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(METRICS_PORT),
                            "prometheus.io/path": "/metrics",
                        },
                    },
                    "spec": {
                        "serviceAccountName": self.name,
                        "automountServiceAccountToken": False,
                        # No `<SERVICE>_SERVICE_HOST` variables: the app's settings are what the platform wires.
                        "enableServiceLinks": False,
                        "terminationGracePeriodSeconds": SHUTDOWN_GRACE_SECONDS + PRE_STOP_SECONDS + 5,
                        "securityContext": pod_security(APP_UID, APP_UID if volumes else None),
                        "topologySpreadConstraints": spread,
                        "containers": [
                            {
                                "name": self.name,
                                "image": self.platform.image,
                                "args": [self.app.module],
                                "ports": [
                                    {"name": "http", "containerPort": PORT},
                                    {"name": "metrics", "containerPort": METRICS_PORT},
                                ],
                                "env": self._env(),
                                "resources": resources(r.cpu_request, r.memory_request, r.cpu_limit, r.memory_limit),
                                "livenessProbe": http_probe("/health", "http", 30, 10),
                                "readinessProbe": http_probe("/ready", "http", 5, 5),
                                "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
                                "securityContext": container_security(),
                                "volumeMounts": mounts,
                            }
                        ],
                        "volumes": pod_volumes,
                    },
                },
            },
            opts=self._opts(),
        )

    def _autoscaler(self) -> k8s.autoscaling.v2.HorizontalPodAutoscaler | None:
        if self.app.max_replicas <= self.app.replicas:
            return None  # nothing to scale between
        return k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self.name}-hpa",
            metadata=self.meta,
            spec={
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": self.name},
                "minReplicas": self.app.replicas,
                "maxReplicas": self.app.max_replicas,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": self.app.target_cpu_utilization},
                        },
                    }
                ],
            },
            opts=self._opts(),
        )

    def _network_policy(self) -> k8s.networking.v1.NetworkPolicy:
        ingress_namespace = self.platform.stack.ingress_namespace
        return k8s.networking.v1.NetworkPolicy(
            f"{self.name}-netpol",
            metadata=self.meta,
            spec={
                "podSelector": {"matchLabels": self.select},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {"from": [namespace_peer(ingress_namespace)], "ports": tcp(PORT)},  # /mcp and its metadata
                    {
                        "from": [namespace_peer(*self.platform.stack.observability.scraper())],
                        "ports": tcp(METRICS_PORT),  # /metrics, which the port the ingress reaches does not serve
                    },
                ],
                "egress": self._egress(),
            },
            opts=self._opts(),
        )
