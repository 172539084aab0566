"""The GitHub server in a stack: its token is issued by GitHub, so `pulumi up` never generates one and stops
naming the key without it; with it, the app reaches api.github.com by name through its own proxy port only,
and gets Redis (its shared budget, cache and previews) and its token by reference."""

from __future__ import annotations

import json

from infra.mocked import kubernetes_objects, stack_config
from tests.infra.conftest import Declared, run_program
from tests.infra.rendered_proxy import proxy_allowlists

APPS = "mcp-apps"
GITHUB = {
    "module": "apps.github",
    "resourceUrl": "http://mcp-github.mcp-apps.svc/mcp",
    "settings": {"GITHUB_REPOSITORIES": "octo/hello"},
}


def with_github(stack: str = "dev") -> dict:
    return {"mcpfleet:apps": {**stack_config(stack)["mcpfleet:apps"], "mcp-github": GITHUB}}


def test_the_dev_stack_declares_it_and_leaves_it_out_until_its_credential_is_set(dev):
    assert stack_config("dev")["mcpfleet:apps"]["mcp-github"]["module"] == "apps.github"
    assert not [d for d in dev.of_kind("Deployment", APPS) if d["metadata"]["name"] == "mcp-github"]
    result = run_program("dev")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "mcpfleet:apps.mcp-github is left out of this dev stack: set mcpfleet:mcp-github.credential" in (
        result.stderr + result.stdout
    )


def test_without_its_credential_an_existing_cluster_stops_naming_the_key():
    result = run_program("prod", with_github("prod") | {"mcpfleet:apps": {"mcp-github": GITHUB}})
    assert result.returncode != 0
    assert "set the secret mcpfleet:mcp-github.credential" in result.stderr and "never generated" in result.stderr


def test_with_its_token_it_reaches_github_by_name_through_its_own_port():
    result = run_program("dev", with_github() | {"mcpfleet:mcp-github.credential": "github_pat_from_the_stack"})
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    stack = Declared("dev", data["resources"], kubernetes_objects(data["resources"]), data["outputs"])
    assert proxy_allowlists(stack)["mcp-github"] == {"api.github.com:443"}
    [container] = stack.one("Deployment", "mcp-github", APPS)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["GITHUB_CREDENTIAL"]["valueFrom"]["secretKeyRef"]["key"] == "GITHUB_CREDENTIAL"
    assert "REDIS_URL" in env and env["MCP_EGRESS_PROXY"]["value"].startswith("http://egress-proxy.mcp-data.svc:")
    egress = stack.one("NetworkPolicy", "mcp-github", APPS)["spec"]["egress"]
    assert not any("ipBlock" in peer for rule in egress for peer in rule["to"])
