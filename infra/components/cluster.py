"""Cluster: a local kind cluster (dev) or an existing cluster (prod); yields the Kubernetes provider.

With kind, the program also builds the apps image from the repo's Dockerfile and loads it
into the cluster (no registry needed); with an existing cluster the image comes from a
registry reference in config.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pulumi
import pulumi_command as command
import pulumi_kubernetes as k8s

from infra.config import ClusterConfig

REPO = Path(__file__).resolve().parents[2]
IMAGE_INPUTS = ("Dockerfile", "pyproject.toml", "uv.lock", "apps", "infra/postgres")


def source_digest() -> str:
    """A digest of everything the apps image is built from: a change rebuilds and reloads it."""
    digest = hashlib.sha256()
    for entry in IMAGE_INPUTS:
        path = REPO / entry
        files = (
            sorted(p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
            if path.is_dir()
            else [path]
        )
        for file in files:
            digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()[:12]


class Cluster(pulumi.ComponentResource):
    provider: k8s.Provider
    image: pulumi.Output[str]

    def __init__(self, name: str, config: ClusterConfig, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mcpfleet:index:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        if config.mode == "kind":
            kind = command.local.Command(
                f"{name}-kind",
                create=f"kind create cluster --name {config.name} --wait 120s >/dev/null && "
                f"kind get kubeconfig --name {config.name}",
                delete=f"kind delete cluster --name {config.name}",
                opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["stdout"]),
            )
            tag = f"mcpfleet/apps:dev-{source_digest()}"
            load = command.local.Command(
                f"{name}-apps-image",
                create=f"docker build -t {tag} . && kind load docker-image {tag} --name {config.name}",
                dir=str(REPO),
                triggers=[tag],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[kind]),
            )
            self.provider = k8s.Provider(
                f"{name}-provider", kubeconfig=kind.stdout, enable_server_side_apply=True, opts=child
            )
            self.image = load.stdout.apply(lambda _: tag)
        else:
            self.provider = k8s.Provider(
                f"{name}-provider", context=config.context, enable_server_side_apply=True, opts=child
            )
            self.image = pulumi.Output.from_input(config.image or "")
        self.register_outputs({"image": self.image})
