"""The egress proxy (Squid): the one way out of the cluster over HTTP(S), by host name, per app.

Its configuration is `infra.egress`'s rendering of every app's allowlist. Each app reaches only its own
port on it (a NetworkPolicy on the proxy's side admits that app's pods on that port alone), so the
proxy knows the app by the port and never trusts a pod address. The proxy's own egress is DNS, public
addresses on the ports some public host is declared on, and private ranges only on the ports of hosts the
stack marks internal; Squid refuses private addresses for every other name after resolving it. A meter
beside Squid (`sidecars.egress_meter`, from the apps image) counts each request for Prometheus.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from infra.components.k8s import child_opts, config_hash, container_security, labels, pod_security, resources
from infra.components.network import Reachable, tcp
from infra.config import DATA_NAMESPACE, OBSERVABILITY_NAMESPACE
from infra.egress import PRIVATE_DESTINATIONS, PROXY_NAME, EgressPlan, squid_conf
from infra.images import image
from sidecars.egress_meter import METRICS_PORT

SQUID_UID = 13  # the `proxy` user of the Debian/Ubuntu squid package the official image is built from
CONFIG_DIR = "/etc/mcpfleet-squid"
SQUID_COMMAND = ["squid", "-N", "-f", f"{CONFIG_DIR}/squid.conf"]  # in the foreground, the rendered config
# Squid's writable paths on a read-only root filesystem, each an emptyDir (volume name -> path)
SCRATCH = {"spool": "/var/spool/squid", "run": "/run", "log": "/var/log/squid", "tmp": "/tmp"}
PRIVATE_V4 = [block for block in PRIVATE_DESTINATIONS.split() if ipaddress.ip_network(block).version == 4]
IN_NETWORK = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


class EgressProxy(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        plan: EgressPlan,
        apps_image: pulumi.Input[str],
        provider: k8s.Provider,
        scraper: tuple[str, dict[str, str]] = (OBSERVABILITY_NAMESPACE, {"app.kubernetes.io/name": "prometheus"}),
        opts: pulumi.ResourceOptions | None = None,
    ):
        """`scraper`: the namespace and pod labels of the Prometheus that reads each replica's meter."""
        super().__init__("mcpfleet:index:EgressProxy", name, None, opts)
        self.plan = plan
        self.ports = plan.ports
        lbl = labels(PROXY_NAME, "egress-proxy")
        select = {"app.kubernetes.io/name": PROXY_NAME}
        conf = squid_conf(plan)
        k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata={"name": PROXY_NAME, "namespace": DATA_NAMESPACE},
            data={"squid.conf": conf},
            opts=child_opts(self, provider),
        )
        first = next(iter(self.ports.values()))
        probe = {"tcpSocket": {"port": first}, "periodSeconds": 10, "timeoutSeconds": 2}
        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata={"name": PROXY_NAME, "namespace": DATA_NAMESPACE, "labels": lbl},
            spec={
                "replicas": 2,
                "selector": {"matchLabels": select},
                "template": {
                    "metadata": {"labels": lbl, "annotations": {"mcpfleet.io/config-hash": config_hash(conf)}},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": pod_security(SQUID_UID, SQUID_UID),
                        "containers": [
                            {
                                "name": "squid",
                                "image": image("squid"),
                                "command": SQUID_COMMAND,
                                "ports": [{"name": f"p{port}", "containerPort": port} for port in self.ports.values()],
                                "readinessProbe": probe,
                                "livenessProbe": {**probe, "initialDelaySeconds": 10},
                                "volumeMounts": [
                                    {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                                    *({"name": volume, "mountPath": path} for volume, path in SCRATCH.items()),
                                ],
                                "securityContext": container_security(),
                                "resources": resources("50m", "64Mi", "500m", "256Mi"),
                            },
                            {
                                # Counts Squid's log lines (UDP on loopback) by client and verdict, for Prometheus.
                                "name": "meter",
                                "image": apps_image,
                                "args": ["sidecars.egress_meter", *(f"--client={client}" for client in self.ports)],
                                "ports": [{"name": "metrics", "containerPort": METRICS_PORT}],
                                "readinessProbe": {"tcpSocket": {"port": "metrics"}, "periodSeconds": 10},
                                "livenessProbe": {"tcpSocket": {"port": "metrics"}, "periodSeconds": 20},
                                "securityContext": container_security(),
                                "resources": resources("10m", "32Mi", "100m", "96Mi"),
                            },
                        ],
                        "volumes": [
                            {"name": "config", "configMap": {"name": PROXY_NAME}},
                            *({"name": volume, "emptyDir": {}} for volume in SCRATCH),
                        ],
                    },
                },
            },
            opts=child_opts(self, provider),
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata={"name": PROXY_NAME, "namespace": DATA_NAMESPACE},
            spec={"maxUnavailable": 1, "selector": {"matchLabels": select}},
            opts=child_opts(self, provider),
        )
        k8s.core.v1.Service(
            f"{name}-service",
            metadata={"name": PROXY_NAME, "namespace": DATA_NAMESPACE, "labels": lbl},
            spec={
                "selector": select,
                "ports": [{"name": f"p{port}", "port": port, "targetPort": port} for port in self.ports.values()],
            },
            opts=child_opts(self, provider),
        )
        self.metrics = Reachable(PROXY_NAME, DATA_NAMESPACE, METRICS_PORT, pod_labels=select)
        self.metrics.admit("prometheus", *scraper, self, provider)
        k8s.networking.v1.NetworkPolicy(
            f"{name}-egress",
            metadata={"name": f"{PROXY_NAME}-egress", "namespace": DATA_NAMESPACE},
            spec={"podSelector": {"matchLabels": select}, "policyTypes": ["Egress"], "egress": self.egress_rules()},
            opts=child_opts(self, provider),
        )
        self.register_outputs({})

    def egress_rules(self) -> list[dict[str, Any]]:
        """Public addresses on the public hosts' ports; in-network ranges only on the internal hosts' ports."""
        hosts = [host for allowed in self.plan.allowlists.values() for host in allowed]
        public = sorted({host.port for host in hosts if not host.internal})
        internal = sorted({host.port for host in hosts if host.internal})
        rules = []
        if public:
            everywhere_public = {"ipBlock": {"cidr": "0.0.0.0/0", "except": PRIVATE_V4}}
            rules.append({"to": [everywhere_public], "ports": tcp(*public)})
        if internal:
            rules.append({"to": [{"ipBlock": {"cidr": block}} for block in IN_NETWORK], "ports": tcp(*internal)})
        return rules
