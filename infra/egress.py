"""What leaves the cluster over HTTP(S): each client's allowlist of outside hosts, and the egress proxy's config.

An app's allowlist is what it declares (`Needs.outside_hosts`), what its settings name
(`Needs.outside_hosts_from`, e.g. a webhook target's host) and, when tokens are checked against a JWKS,
the issuer's key host. Two platform clients are too: Alertmanager when the stack's webhook is outside the
cluster, and the collector when the audit stream also goes to a SIEM outside it.
The proxy (Squid) identifies a client by the port it connects to: one listening port per client, and
each client's NetworkPolicy reaches only its own. After resolving a name the proxy refuses loopback,
private, link-local and metadata addresses unless the host is marked internal; every request is logged
as one JSON line (app, host, port, verdict), and counted. One rendering, used by Kubernetes and the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apps.kit import FocusedServer, OutsideHost
from infra import fleet
from infra.components.network import Reachable
from infra.config import DATA_NAMESPACE, AppConfig, StackConfig, in_cluster_host
from sidecars.egress_meter import LOG_PORT as METER_LOG_PORT

FIRST_APP_PORT = 3130  # 3128 stays unassigned: a caller that reaches the proxy without an app port gets nothing
PROXY_NAME = "egress-proxy"
ALERTMANAGER = "alertmanager"  # a platform client: notifications to a webhook outside the cluster
COLLECTOR = "otel-collector"  # a platform client: the audit stream to a SIEM outside the cluster
# Never reachable through the proxy (after resolution) unless the host is marked internal: unspecified,
# private (RFC 1918, unique-local), shared (CGNAT), loopback, link-local (the cloud metadata address
# 169.254.169.254 among them), IETF, benchmarking, multicast and reserved blocks, and NAT64 (Squid matches
# an IPv4-mapped address as IPv4).
PRIVATE_DESTINATIONS = (
    "0.0.0.0/8 10.0.0.0/8 100.64.0.0/10 127.0.0.0/8 169.254.0.0/16 172.16.0.0/12 192.0.0.0/24 "
    "192.168.0.0/16 198.18.0.0/15 224.0.0.0/4 240.0.0.0/4 ::1 64:ff9b::/96 "
    "fc00::/7 fe80::/10 fec0::/10 ff00::/8"
)


def allowlist(name: str, app: AppConfig, server: FocusedServer[Any, Any], stack: StackConfig) -> list[OutsideHost]:
    """The outside hosts one app may reach through the proxy, sorted (empty: it gets no proxy port)."""
    hosts = set(server.needs.outside_hosts)
    if server.needs.outside_hosts_from is not None:
        hosts |= set(server.needs.outside_hosts_from(fleet.app_settings(name, app, server)))
    if stack.identity.provider != "local":  # the issuer's keys, outside the cluster
        hosts.add(OutsideHost.of_url(stack.keys_url))
    return sorted(hosts)


def webhook_allowlist(stack: StackConfig) -> list[OutsideHost]:
    """Alertmanager's outside host: the webhook's, unless the receiver runs in the cluster or the Alertmanager is
    neither the platform's nor the operator's it configures (`external`: its route and egress are its owners')."""
    webhook = OutsideHost.of_url(str(stack.observability.webhook_url))
    if in_cluster_host(webhook.host) or stack.observability.mode == "external":
        return []  # in the cluster: reached directly
    return [webhook]


def audit_export_allowlist(stack: StackConfig) -> list[OutsideHost]:
    """The collector's outside host: the SIEM's, when the audit stream goes to one outside the cluster."""
    export = stack.observability.audit_export
    if export is None:
        return []
    siem = OutsideHost.of_url(str(export.logs_url))
    return [] if in_cluster_host(siem.host) else [siem]


@dataclass(frozen=True)
class EgressPlan:
    """Each app's allowlist and its own port on the proxy."""

    allowlists: dict[str, list[OutsideHost]]

    @property
    def ports(self) -> dict[str, int]:
        """app -> its listening port, in the order of app names (stable for a stable set of apps)."""
        served = sorted(app for app, hosts in self.allowlists.items() if hosts)
        return {app: FIRST_APP_PORT + n for n, app in enumerate(served)}

    def reachable(self, client: str) -> Reachable | None:
        """What one client reaches: its own port on the proxy, and no other (None: it has no outside host)."""
        port = self.ports.get(client)
        if port is None:
            return None
        return Reachable(PROXY_NAME, DATA_NAMESPACE, port, pod_labels={"app.kubernetes.io/name": PROXY_NAME})


def plan(stack: StackConfig, servers: Mapping[str, FocusedServer[Any, Any]]) -> EgressPlan:
    for client in (ALERTMANAGER, COLLECTOR):
        if client in stack.apps:
            raise ValueError(f"an app may not be named {client!r}: the egress proxy knows a platform client by it")
    apps = {name: allowlist(name, app, servers[name], stack) for name, app in stack.on_cluster().items()}
    return EgressPlan({**apps, ALERTMANAGER: webhook_allowlist(stack), COLLECTOR: audit_export_allowlist(stack)})


def _acl(app: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", app.lower())


def squid_conf(egress: EgressPlan, log_path: str = "stdio:/dev/stdout", meter_port: int = METER_LOG_PORT) -> str:
    """Squid's whole configuration: a port per app, its exact host:port pairs, private addresses refused; each
    request's JSON line to `log_path` (the pod's log, for Loki) and to the meter beside it (the counts)."""
    lines = [
        "# Generated by infra.egress from the apps' declarations; do not edit.",
        "# Each app connects to its own port; it may reach exactly its own host:port pairs.",
        "cache deny all",
        "forwarded_for delete",
        "httpd_suppress_version_string on",
        "pid_filename none",
        "pinger_enable off",  # no ICMP helper: it needs privileges the pod does not have, and nothing uses it
        "cache_log stdio:/dev/stderr",
        "logfile_rotate 0",
        "shutdown_lifetime 3 seconds",
        "connect_timeout 10 seconds",
        "read_timeout 60 seconds",
        "request_header_max_size 64 KB",
        'logformat mcp_json {"event":"egress","app":"%{app}note","method":"%rm","host":"%>rd","port":"%>rP",'
        '"verdict":"%Ss","status":%>Hs,"bytes":%<st,"ms":%tr}',
        "buffered_logs off",
        "acl request_of_a_client note app",  # a connection without a request (a TCP probe) is not logged
        f"access_log {log_path} mcp_json request_of_a_client",
        # unbuffered: the meter counts each request as it happens (UDP datagrams are otherwise held until 1400 B)
        f"access_log udp://127.0.0.1:{meter_port} logformat=mcp_json buffer-size=0KB request_of_a_client",
        f"acl private_destination dst {PRIVATE_DESTINATIONS}",
        "acl CONNECT method CONNECT",
    ]
    internal: list[str] = []
    allow: list[str] = []
    for app, port in egress.ports.items():
        acl = _acl(app)
        lines += [f"http_port {port} name={app}", f"acl from_{acl} myportname {app}", f"note app {app} from_{acl}"]
        for n, host in enumerate(egress.allowlists[app]):
            lines += [f"acl {acl}_host_{n} dstdomain {host.host}", f"acl {acl}_port_{n} port {host.port}"]
            allow.append(f"http_access allow from_{acl} {acl}_host_{n} {acl}_port_{n}")
            if host.internal:
                internal.append(f"http_access allow from_{acl} {acl}_host_{n} {acl}_port_{n}")
    # An internal host's private addresses are allowed before the private-address refusal; nothing else is.
    lines += internal
    lines += ["http_access deny private_destination", *allow, "http_access deny all"]
    return "\n".join(lines) + "\n"
