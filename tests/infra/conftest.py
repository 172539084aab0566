"""Run the Pulumi program under mocks once per stack (each in its own process) and share the result."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest

from infra.mocked import kubernetes_objects


@dataclass
class Declared:
    stack: str
    resources: list[dict[str, Any]]
    objects: list[dict[str, Any]]
    outputs: dict[str, Any]

    def of_kind(self, kind: str, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            o
            for o in self.objects
            if o["kind"] == kind and (namespace is None or o["metadata"].get("namespace") == namespace)
        ]

    def one(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        [found] = [o for o in self.of_kind(kind, namespace) if o["metadata"]["name"] == name]
        return found

    def components(self) -> list[str]:
        return [r["type"] for r in self.resources if r["type"].startswith("mcpfleet:")]


def run_program(
    stack: str, overrides: dict[str, Any] | None = None, images: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The program as a user runs it: without the test run's own image overrides, plus `images`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCPFLEET_IMAGE_")} | (images or {})
    return subprocess.run(
        [sys.executable, "-m", "infra.mocked", "--stack", stack, "--overrides", json.dumps(overrides or {})],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def declared(stack: str) -> Declared:
    result = run_program(stack)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return Declared(stack, data["resources"], kubernetes_objects(data["resources"]), data["outputs"])


@pytest.fixture(scope="session")
def dev() -> Declared:
    return declared("dev")


@pytest.fixture(scope="session")
def prod() -> Declared:
    return declared("prod")


@pytest.fixture(scope="session", params=["dev", "prod"])
def stack(request: pytest.FixtureRequest, dev: Declared, prod: Declared) -> Declared:
    return {"dev": dev, "prod": prod}[request.param]


def authz_config(declared: Declared) -> dict[str, Any]:
    """The local authorization server's configuration as the stack deploys it (`infra.authz.config`)."""
    [container] = declared.one("Deployment", "authz", "mcp-auth")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    return json.loads(env["AUTHZ_CONFIG"])  # type: ignore[no-any-return]
