"""Cluster: a local kind cluster (dev) or an existing cluster (prod); yields the Kubernetes provider.

With kind, the program also builds the apps image from the repo's Dockerfile and loads it
into the cluster (no registry needed), and maps one laptop port (127.0.0.1 only) to the dev ingress
controller's HTTPS node port (`infra.components.dev_edge`); with an existing cluster the image comes
from a registry reference in config.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s
import yaml

from infra.config import ClusterConfig
from infra.images import APPS, AUTHZ, BuiltImage

REPO = Path(__file__).resolve().parents[2]
HTTPS_NODE_PORT = 30443  # kind: the dev ingress controller's HTTPS node port, mapped to the laptop's httpsPort


def kind_config(config: ClusterConfig) -> str:
    """kind's cluster file: one node whose HTTPS node port is the laptop's `httpsPort` on loopback only."""
    node = {
        "role": "control-plane",
        "extraPortMappings": [
            {
                "containerPort": HTTPS_NODE_PORT,
                "hostPort": config.https_port,
                "listenAddress": "127.0.0.1",
                "protocol": "TCP",
            }
        ],
    }
    return yaml.safe_dump({"kind": "Cluster", "apiVersion": "kind.x-k8s.io/v1alpha4", "nodes": [node]})


class Cluster(pulumi.ComponentResource):
    provider: k8s.Provider
    image: pulumi.Output[str]
    authz_image: pulumi.Output[str] | None  # the local authorization server's, when the stack runs one

    def __init__(
        self, name: str, config: ClusterConfig, local_issuer: bool = False, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("mcpfleet:index:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if config.mode == "kind":
            kind = command.local.Command(
                f"{name}-kind",
                create=f"printf %s {shlex.quote(kind_config(config))} | "
                f"kind create cluster --name {config.name} --config=- --wait 120s >/dev/null && "
                f"kind get kubeconfig --name {config.name}",
                delete=f"kind delete cluster --name {config.name}",
                opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stdout"]),
            )
            tag = f"mcpfleet/apps:dev-{APPS.digest()}"
            load = self._built(f"{name}-apps-image", APPS, tag, config, kind)
            self.authz_image = None
            if local_issuer:
                authz_tag = f"mcpfleet/authz:dev-{AUTHZ.digest()}"
                loaded = self._built(f"{name}-authz-image", AUTHZ, authz_tag, config, kind)
                self.authz_image = loaded.stdout.apply(lambda _: authz_tag)
            self.provider = k8s.Provider(
                f"{name}-provider", kubeconfig=kind.stdout, enable_server_side_apply=True, opts=child
            )
            self.image = load.stdout.apply(lambda _: tag)
        else:
            self.provider = k8s.Provider(
                f"{name}-provider", context=config.context, enable_server_side_apply=True, opts=child
            )
            self.image = pulumi.Output.from_input(config.image or "")
            self.authz_image = pulumi.Output.from_input(config.authz_image) if config.authz_image else None
        self.register_outputs({"image": self.image})

    def _built(self, name: str, built: BuiltImage, tag: str, config: ClusterConfig, kind: Any) -> Any:
        """Build an image of this repository and load it into the kind cluster (again when its inputs change)."""
        return command.local.Command(
            name,
            create=f"{shlex.join(built.build_command(tag))} && kind load docker-image {tag} --name {config.name}",
            dir=str(REPO),
            triggers=[tag],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[kind]),
        )
