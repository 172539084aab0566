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


USER_MODE = {
    "module": "apps.github",
    "resourceUrl": "https://mcp-github.localhost/mcp",
    "settings": {"GITHUB_REPOSITORIES": "octo/hello", "GITHUB_IDENTITY": "user", "GITHUB_APP_CLIENT_ID": "Iv23liAbc"},
}


def test_in_user_mode_it_gets_its_vault_its_pages_and_a_sign_in_client_at_the_authorization_server():
    overrides = {"mcpfleet:apps": {**stack_config("dev")["mcpfleet:apps"], "mcp-github": USER_MODE}}
    result = run_program("dev", overrides | {"mcpfleet:mcp-github.credential": "the-apps-client-secret"})
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(result.stdout)
    stack = Declared("dev", data["resources"], kubernetes_objects(data["resources"]), data["outputs"])
    # GitHub's web host too: the token exchange and refresh are there
    assert proxy_allowlists(stack)["mcp-github"] == {"api.github.com:443", "github.com:443"}
    [container] = stack.one("Deployment", "mcp-github", APPS)["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["MCP_SIGNIN_CLIENT_ID"]["value"] == "mcp-github-pages"
    assert env["MCP_ISSUER_INTERNAL_URL"]["value"] == "http://authz.mcp-auth.svc:9400"
    for secret in ("GITHUB_VAULT_URL", "GITHUB_VAULT_KEYS", "GITHUB_CREDENTIAL"):
        assert "secretKeyRef" in env[secret]["valueFrom"], secret
    # its vault is its own role and schema, applied with the others
    [job] = stack.of_kind("Job", "mcp-data")
    assert job["spec"]["template"]["spec"]["containers"][0]["args"][-1] == "apps.github"
    # its pages are routed exactly, beside /mcp, and the policy pack accepts them
    [rule] = stack.one("Ingress", "mcp-github", APPS)["spec"]["rules"]
    paths = [(p["path"], p["pathType"]) for p in rule["http"]["paths"]]
    assert paths == [
        ("/mcp", "Exact"),
        ("/.well-known/oauth-protected-resource/mcp", "Exact"),
        ("/connect/github", "Exact"),
        ("/connect/github/signed-in", "Exact"),
        ("/connect/github/consent", "Exact"),
        ("/connect/github/callback", "Exact"),
    ]
    # the authorization server knows its pages as a public client, redirecting there alone
    [authz] = stack.of_kind("Deployment", "mcp-auth")
    config = next(e["value"] for e in authz["spec"]["template"]["spec"]["containers"][0]["env"]
                  if e["name"] == "AUTHZ_CONFIG")  # fmt: skip
    assert json.loads(config)["clients"] == [
        {
            "client_id": "mcp-github-pages",
            "client_name": "mcpfleet-github (its own pages)",
            "redirect_uris": ["https://mcp-github.localhost/connect/github/signed-in"],
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
    ]


def test_user_mode_without_what_it_needs_stops_pulumi_up_naming_it():
    missing_client = {**USER_MODE, "settings": {**USER_MODE["settings"], "GITHUB_APP_CLIENT_ID": None}}
    missing_client["settings"] = {k: v for k, v in missing_client["settings"].items() if v is not None}
    overrides = {"mcpfleet:apps": {**stack_config("dev")["mcpfleet:apps"], "mcp-github": missing_client}}
    result = run_program("dev", overrides | {"mcpfleet:mcp-github.credential": "the-apps-client-secret"})
    assert result.returncode != 0
    assert "GITHUB_IDENTITY=user needs GITHUB_APP_CLIENT_ID" in result.stderr
