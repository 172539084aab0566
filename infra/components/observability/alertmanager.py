"""Alertmanager: routes and templates rendered from `alerts/`, notifications to the stack's webhook (an outside
one by name, through the egress proxy)."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

import pulumi
import pulumi_kubernetes as k8s
import yaml

from alerts.params import AlertParams
from alerts.render import TEMPLATES_DIR
from alerts.routing import render_alertmanager
from apps.kit import url_port
from infra.components.k8s import config_hash, http_probe, resources
from infra.components.network import Reachable, namespace_peer, tcp
from infra.components.observability.backend import Backend, read
from infra.config import StackConfig
from infra.egress import ALERTMANAGER, EgressPlan
from infra.images import image

PORT = 9093


def alertmanager_files(
    stack: StackConfig, proxy: Reachable | None = None, timing: dict[str, str] | None = None
) -> dict[str, str]:
    """alertmanager.yml and its templates; with `proxy`, notifications go through Alertmanager's port on it;
    `timing` overrides the grouping's waits (`group_wait`, `group_interval`: the one-machine stack's)."""
    params = AlertParams(
        webhook_url=str(stack.observability.webhook_url), webhook_proxy_url=proxy.url if proxy else None
    )
    if timing is not None:
        params = replace(params, group_wait=timing["group_wait"], group_interval=timing["group_interval"])
    files = {
        "alertmanager.yml": yaml.safe_dump(render_alertmanager(params, "/etc/alertmanager/templates"), sort_keys=False)
    }
    files.update({path.name: read(path) for path in sorted(TEMPLATES_DIR.glob("*.tmpl"))})
    return files


class Alertmanager(Backend):
    def __init__(
        self,
        namespace: str,
        stack: StackConfig,
        egress: EgressPlan,
        provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("Alertmanager", "alertmanager", namespace, provider, opts)
        proxy = egress.reachable(ALERTMANAGER)
        files = alertmanager_files(stack, proxy)
        self.config = self.config_map("alertmanager", files)
        templates = [name for name in files if name.endswith(".tmpl")]
        self.run(
            "Deployment",
            {
                "image": image("alertmanager"),
                "args": ["--config.file=/etc/alertmanager/alertmanager.yml", "--storage.path=/alertmanager"],
                "ports": [{"name": "web", "containerPort": PORT}],
                "readinessProbe": http_probe("/-/ready", "web", 5, 5),
                "livenessProbe": http_probe("/-/healthy", "web", 30, 15),
                "resources": resources("50m", "64Mi", "250m", "256Mi"),
                "volumeMounts": [
                    {
                        "name": "config",
                        "mountPath": "/etc/alertmanager/alertmanager.yml",
                        "subPath": "alertmanager.yml",
                    },
                    *(
                        {"name": "config", "mountPath": f"/etc/alertmanager/templates/{t}", "subPath": t}
                        for t in templates
                    ),
                    {"name": "data", "mountPath": "/alertmanager"},
                ],
            },
            annotations={"mcpfleet.io/config-hash": config_hash(*files.values())},
            volumes=[{"name": "config", "configMap": {"name": "alertmanager"}}, {"name": "data", "emptyDir": {}}],
        )
        self.expose([("web", PORT)])
        # Notifications go to the webhook: through Alertmanager's own port on the egress proxy when it is outside,
        # else to the receiver's namespace on its port (in this namespace, the namespace's own policy allows it).
        webhook = urlsplit(str(stack.observability.webhook_url))
        if proxy is not None:
            self.allow("alertmanager-egress", {"policyTypes": ["Egress"], "egress": [proxy.egress()]})
            proxy.admit("alertmanager", namespace, {"app.kubernetes.io/name": "alertmanager"}, self, provider)
        elif (receiver_namespace := (webhook.hostname or "").split(".")[1]) != namespace:
            port = url_port(str(stack.observability.webhook_url))
            rule = {"to": [namespace_peer(receiver_namespace)], "ports": tcp(port)}
            self.allow("alertmanager-egress", {"policyTypes": ["Egress"], "egress": [rule]})
        self.register_outputs({})
