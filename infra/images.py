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
from pathlib import Path

PINNED: dict[str, str] = {
    "postgres": "postgres:16.6-alpine",
    "redis": "redis:7.4.1-alpine",
    "python": "python:3.11.11-slim-bookworm",
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
# Everything the apps image is built from (the Dockerfile copies exactly these): a change to any of them
# gives the image a new tag, for the kind build and the container tests alike.
APP_IMAGE_INPUTS = (
    "Dockerfile",
    "pyproject.toml",
    "uv.lock",
    "apps",
    "sidecars",  # the egress proxy's meter runs from this image
    "runbooks",  # the on-call server ships them
    "certs",
)


def app_image_digest(base: str | None = None) -> str:
    """A digest of the image's inputs and its base image (the pin, or its override)."""
    digest = hashlib.sha256()
    for entry in APP_IMAGE_INPUTS:
        path = REPO / entry
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            if "__pycache__" in file.parts or file.suffix in (".pyc",):
                continue
            digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    digest.update((base or image("python")).encode())
    return digest.hexdigest()[:12]


def build_command(tag: str) -> list[str]:
    """`docker build` of the apps image on the pinned base (or its override), as the kind stack and the tests run it."""
    return ["docker", "build", "--build-arg", f"BASE_IMAGE={image('python')}", "-t", tag, str(REPO)]


def apps_image_tag() -> str:
    """A tag that changes whenever anything copied into the apps image, or its base, changes."""
    return f"mcpfleet/apps:{app_image_digest()}"


def build_apps_image() -> tuple[str, float]:
    """Build (or reuse) the apps image; returns its tag and the seconds spent. The build runs on the host
    network with the classic builder: the offline stand-in base installs packages while it builds."""
    tag = apps_image_tag()
    started = time.monotonic()
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
        command = build_command(tag)
        command[2:2] = ["--network", "host"]
        built = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "DOCKER_BUILDKIT": "0"})
        if built.returncode != 0:
            raise RuntimeError(f"docker build failed:\n{built.stdout[-3000:]}{built.stderr[-3000:]}")
    return tag, time.monotonic() - started
