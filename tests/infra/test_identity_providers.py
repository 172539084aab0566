"""The identity provider as code, under the program's mocks: `keycloak` and `auth0` configured from the servers'
declarations (each server's resource URL and scopes, nothing listed twice), `external` with a token profile, and
the policy pack refusing a provider that does not define a scope an app declares."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from apps import fleet as apps_fleet
from infra.config import StackConfigError, parse
from infra.mocked import kubernetes_objects
from infra.policy.checks import check_stack, provider_problems
from tests.infra.conftest import Declared, run_program

APPS = "mcp-apps"
KEYCLOAK = {
    "mcpfleet:identity": {
        "provider": "keycloak",
        "keycloak": {"url": "https://sso.example.com", "registrationTrustedHosts": ["127.0.0.1", "localhost"]},
    },
    "mcpfleet:issuer": "https://sso.example.com/realms/mcpfleet",
    "mcpfleet:jwksUrl": None,
}
AUTH0 = {
    "mcpfleet:identity": {"provider": "auth0", "auth0": {"domain": "mcpfleet.eu.auth0.com"}},
    "mcpfleet:issuer": "https://mcpfleet.eu.auth0.com/",
    "mcpfleet:jwksUrl": None,
}


def declared(overrides: dict[str, Any]) -> Declared:
    result = run_program("prod", overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads(result.stdout)
    return Declared("prod", data["resources"], kubernetes_objects(data["resources"]), data["outputs"])


@pytest.fixture(scope="module")
def keycloak() -> Declared:
    return declared(KEYCLOAK)


@pytest.fixture(scope="module")
def auth0() -> Declared:
    return declared(AUTH0)


def inputs(stack: Declared, kind: str) -> list[dict[str, Any]]:
    return [r["inputs"] for r in stack.resources if r["type"] == kind]


def env_of(stack: Declared, app: str) -> dict[str, Any]:
    [container] = stack.one("Deployment", app, APPS)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value") for e in container["env"]}


def declared_scopes(stack: Declared) -> dict[str, tuple[str, list[str]]]:
    """Each deployed app's resource URL and declared scopes, from the servers themselves."""
    servers = apps_fleet.servers()
    found = {}
    for deployment in stack.of_kind("Deployment", APPS):
        annotations = deployment["metadata"].get("annotations") or {}
        if "mcpfleet.dev/scopes" in annotations:
            module = next(c for c in deployment["spec"]["template"]["spec"]["containers"])["args"][0]
            found[deployment["metadata"]["name"]] = (annotations["mcpfleet.dev/resource"], servers[module].scopes)
    return found


def test_keycloak_gets_a_client_scope_and_an_audience_mapper_per_declared_scope(keycloak):
    [realm] = inputs(keycloak, "keycloak:index/realm:Realm")
    assert realm["realm"] == "mcpfleet" and realm["enabled"] is True
    scopes = {s["name"] for s in inputs(keycloak, "keycloak:openid/clientScope:ClientScope")}
    mappers = inputs(keycloak, "keycloak:openid/audienceProtocolMapper:AudienceProtocolMapper")
    apps = declared_scopes(keycloak)
    assert scopes == {scope for _, app_scopes in apps.values() for scope in app_scopes}
    audiences = sorted(m["includedCustomAudience"] for m in mappers)
    assert audiences == sorted(url for url, app_scopes in apps.values() for _ in app_scopes)  # one per scope
    assert all(m["addToAccessToken"] is True and m["addToIdToken"] is False for m in mappers)
    [optional] = inputs(keycloak, "keycloak:index/realmOptionalClientScopes:RealmOptionalClientScopes")
    assert set(optional["optionalScopes"]) == scopes
    [policy] = inputs(keycloak, "keycloak:index/realmClientRegistrationPolicy:RealmClientRegistrationPolicy")
    assert (policy["providerId"], policy["subType"]) == ("trusted-hosts", "anonymous")
    assert policy["config"]["trusted-hosts"] == "127.0.0.1##localhost"


def test_every_server_verifies_keycloak_tokens_by_its_realm_keys_and_profile(keycloak):
    for app in declared_scopes(keycloak):
        env = env_of(keycloak, app)
        assert env["MCP_ISSUER"] == "https://sso.example.com/realms/mcpfleet"
        assert env["MCP_JWKS_URL"] == "https://sso.example.com/realms/mcpfleet/protocol/openid-connect/certs"
        assert env["MCP_TOKEN_PROFILE"] == "keycloak"
    squid = keycloak.one("ConfigMap", "egress-proxy", "mcp-data")["data"]["squid.conf"]
    assert "sso.example.com" in squid  # the keys are fetched through the egress proxy, by name


def test_auth0_gets_an_api_per_app_identified_by_its_resource_url(auth0):
    [tenant] = inputs(auth0, "auth0:index/tenant:Tenant")
    assert tenant["resourceParameterProfile"] == "compatibility"
    assert tenant["flags"]["enableDynamicClientRegistration"] is True
    apis = {a["identifier"]: a for a in inputs(auth0, "auth0:index/resourceServer:ResourceServer")}
    scopes = {
        s["resourceServerIdentifier"]: s for s in inputs(auth0, "auth0:index/resourceServerScopes:ResourceServerScopes")
    }
    for app, (url, app_scopes) in declared_scopes(auth0).items():
        assert apis[url]["name"] == app and apis[url]["signingAlg"] == "RS256"
        assert sorted(s["name"] for s in scopes[url]["scopes"]) == sorted(app_scopes)
        env = env_of(auth0, app)
        assert env["MCP_JWKS_URL"] == "https://mcpfleet.eu.auth0.com/.well-known/jwks.json"
        assert env["MCP_TOKEN_PROFILE"] == "auth0"


def test_an_external_issuer_names_its_token_profile_and_an_apps_extra_audience():
    stack = declared(
        {
            "mcpfleet:identity": {
                "provider": "external",
                "tokenProfile": "entra",
                "acceptedAudiences": {"mcp-db": ["api://mcp-db"]},
            },
            "mcpfleet:issuer": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
            "mcpfleet:jwksUrl": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/discovery/v2.0/keys",
        }
    )
    env = env_of(stack, "mcp-db")
    assert env["MCP_TOKEN_PROFILE"] == "entra" and env["MCP_ACCEPTED_AUDIENCES"] == "api://mcp-db"
    assert "MCP_ACCEPTED_AUDIENCES" not in env_of(stack, "mcp-files")  # only the app it was named for


def test_the_policy_pack_refuses_a_provider_missing_a_declared_scope(keycloak, auth0):
    for stack in (keycloak, auth0):
        objects = [(r["type"], r["inputs"]) for r in stack.resources]
        assert (
            provider_problems(objects) == []
            and check_stack([o for o in objects if o[0].startswith("kubernetes:")]) == []
        )
    objects = [
        (r["type"], r["inputs"])
        for r in keycloak.resources
        if not (r["type"].endswith("ClientScope") and r["inputs"]["name"] == "db:write")
    ]
    assert provider_problems(objects) == [
        "Deployment mcp-db: Keycloak has no client scope 'db:write', which its tools declare"
    ]
    broken = []
    for kind, props in ((r["type"], copy.deepcopy(r["inputs"])) for r in auth0.resources):
        if kind.endswith("ResourceServerScopes") and props["resourceServerIdentifier"].startswith("https://mcp-files"):
            props["scopes"] = [s for s in props["scopes"] if s["name"] != "files:read"]
        broken.append((kind, props))
    assert [p for p in provider_problems(broken) if "mcp-files" in p] == [
        "Deployment mcp-files: Auth0's API https://mcp-files.example.com/mcp has no scope 'files:read', which its "
        "tools declare"
    ]


@pytest.mark.parametrize(
    ("identity", "extra", "message"),
    [
        ({"provider": "keycloak"}, {}, "identity.keycloak is the settings of provider keycloak"),
        (
            {"provider": "keycloak", "keycloak": {"url": "https://sso.example.com"}},
            {"issuer": "https://sso.example.com"},
            r"issuer must be https://sso.example.com/realms/mcpfleet",
        ),
        (
            {"provider": "auth0", "auth0": {"domain": "t.auth0.com"}},
            {"issuer": "https://t.auth0.com/", "jwksUrl": "https://t.auth0.com/keys"},
            "remove jwksUrl",
        ),
        ({"provider": "external", "acceptedAudiences": {"nope": ["x"]}}, {}, "names apps the stack has not"),
    ],
)
def test_an_identity_setting_that_cannot_work_is_refused(identity, extra, message):
    app = {"module": "apps.db", "resourceUrl": "http://mcp-db.mcp-apps.svc/mcp"}
    values = {"issuer": "https://issuer.test", "jwksUrl": "https://issuer.test/jwks"} | extra
    values = {k: v for k, v in values.items() if not (k == "jwksUrl" and identity["provider"] in ("keycloak",))}
    with pytest.raises(StackConfigError, match=message):
        parse({**values, "identity": identity, "apps": {"mcp-db": app}})
