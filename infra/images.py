"""Every container image the platform and its tests run: official images, pinned by version.

One source for Kubernetes (via Pulumi) and the integration tests. Any entry can be
overridden with `MCPFLEET_IMAGE_<NAME>` (e.g. `MCPFLEET_IMAGE_POSTGRES`), which is how a
mirror registry, or the offline stand-ins built by `scripts/images-offline`, are used.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PINNED: dict[str, str] = {
    "postgres": "postgres:16.6-alpine",
    "redis": "redis:7.4.1-alpine",
    "python": "python:3.11.11-slim-bookworm",
    "node": "node:22.22.0-bookworm-slim",  # the local authorization server's base (`authz/`)
    "prometheus": "prom/prometheus:v2.55.1",
    "alertmanager": "prom/alertmanager:v0.27.0",
    "grafana": "grafana/grafana:11.3.1",
    "loki": "grafana/loki:3.3.2",
    "otelcol": "otel/opentelemetry-collector-contrib:0.116.0",
    "squid": "ubuntu/squid:5.2-22.04_beta",  # Canonical's official Squid image (the egress proxy)
    "kube-state-metrics": "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.14.0",
}


def env_name(name: str) -> str:
    return "MCPFLEET_IMAGE_" + name.upper().replace("-", "_")


def image(name: str) -> str:
    """The image reference to run for `name`: the override if set, else the pinned official image."""
    if name not in PINNED:
        raise KeyError(f"unknown image {name!r}; known: {sorted(PINNED)}")
    return os.environ.get(env_name(name)) or PINNED[name]


def overridden() -> dict[str, str]:
    """The entries currently overridden from the environment."""
    return {name: image(name) for name in PINNED if os.environ.get(env_name(name))}


REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class BuiltImage:
    """An image built from this repository: its build context, every input its Dockerfile copies (a change to any
    gives it a new tag, for the kind build and the container tests alike), and the pinned base it builds on."""

    name: str
    context: Path
    inputs: tuple[str, ...]  # relative to the context
    base: str  # a key of PINNED

    def digest(self, base: str | None = None) -> str:
        """A digest of the image's inputs and its base image (the pin, or its override)."""
        digest = hashlib.sha256()
        for entry in self.inputs:
            path = self.context / entry
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                if "__pycache__" in file.parts or "node_modules" in file.parts or file.suffix == ".pyc":
                    continue
                digest.update(str(file.relative_to(self.context)).encode() + b"\0" + file.read_bytes())
        digest.update((base or image(self.base)).encode())
        return digest.hexdigest()[:12]

    def tag(self) -> str:
        """A tag that changes whenever anything copied into the image, or its base, changes."""
        return f"mcpfleet/{self.name}:{self.digest()}"

    def build_command(self, tag: str) -> list[str]:
        """`docker build` on the pinned base (or its override), as the kind stack and the tests run it."""
        return ["docker", "build", "--build-arg", f"BASE_IMAGE={image(self.base)}", "-t", tag, str(self.context)]

    def build(self) -> tuple[str, float]:
        """Build (or reuse) the image; returns its tag and the seconds spent. The build runs on the host network
        with the classic builder: the offline stand-in bases install packages while they build."""
        tag = self.tag()
        started = time.monotonic()
        if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
            command = self.build_command(tag)
            command[2:2] = ["--network", "host"]
            built = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
            if built.returncode != 0:
                raise RuntimeError(f"docker build failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}")
        return tag, time.monotonic() - started


APPS = BuiltImage(
    "apps",
    REPO,
    (
        "Dockerfile",
        "pyproject.toml",
        "uv.lock",
        "apps",
        "sidecars",  # the egress proxy's meter runs from this image
        "runbooks",  # the on-call server ships them
        "certs",
    ),
    "python",
)
AUTHZ = BuiltImage("authz", REPO / "authz", ("Dockerfile", "package.json", "package-lock.json", "server.mjs"), "node")
