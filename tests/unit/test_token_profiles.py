"""Each identity provider's access token, shaped as that provider documents it and signed by a test key
served from a JWKS, read into a principal by its profile (`apps.kit.identity.profiles`).

The claims below follow each provider's published token reference (claim names, value shapes, what is a
list and what a string); identifiers are made up. For each: what the profile reads, what it refuses, and that
it never grants more than the token's own grant for this API.
"""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from apps.kit.identity.tokens import AuthFailure, JwtVerifier
from apps.kit.observe.metrics import KitMetrics
from tests.support.jwks import JwksServer

RESOURCE = "https://mcp-db.example.com/mcp"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "provider-key-1"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ENTRA_APP_ID = "6e74172b-be56-4843-9ff4-e66a39bb12e3"


@pytest.fixture(scope="module")
def jwks():
    server = JwksServer()
    server.publish(KEY, KID, "RS256")
    yield server
    server.httpd.shutdown()


def verifier(make_settings, jwks, issuer: str, profile: str, accepted: str = "") -> JwtVerifier:
    settings = make_settings(
        MCP_RESOURCE_URL=RESOURCE,
        MCP_ISSUER=issuer,
        MCP_JWT_SECRET=None,
        MCP_JWKS_URL=jwks.url,
        MCP_JWT_ALGORITHMS="RS256",
        MCP_TOKEN_PROFILE=profile,
        MCP_ACCEPTED_AUDIENCES=accepted,
    )
    return JwtVerifier(settings, KitMetrics("test"))


def signed(claims: dict[str, Any], typ: str = "JWT") -> str:
    now = int(time.time())
    return jwt.encode({"iat": now, "nbf": now, "exp": now + 3600, **claims}, KEY, "RS256", {"kid": KID, "typ": typ})


async def refusal(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthFailure) as failure:
        await verifier.verify(token)
    return failure.value.reason.value


# --- Microsoft Entra ID ----------------------------------------------------------------------------------

ENTRA_V2_ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"


def entra_v2(**claims: Any) -> dict[str, Any]:
    """A v2.0 delegated access token for the API whose application ID URI is `api://mcp-db`."""
    return {
        "aud": "api://mcp-db",
        "iss": ENTRA_V2_ISSUER,
        "aio": "AXQAi/8TAAAA",
        "azp": "1950a258-227b-4e31-a9cf-717495945fc2",
        "azpacr": "0",
        "name": "Ada Lovelace",
        "oid": "690222be-ff1a-4d56-abd1-7e4f7d38e474",
        "preferred_username": "ada@contoso.example",
        "rh": "0.AXQA",
        "scp": "db:read db:write",
        "sub": "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ",
        "tid": TENANT,
        "uti": "fqiBqXLPj0eQa82S-IYFAA",
        "ver": "2.0",
        "groups": ["sre-oncall"],
        **claims,
    }


async def test_entra_v2_reads_scp_azp_and_groups_with_the_id_uri_as_audience(make_settings, jwks):
    check = verifier(make_settings, jwks, ENTRA_V2_ISSUER, "entra", accepted="api://mcp-db")
    principal = await check.verify(signed(entra_v2()))
    assert principal.scopes == {"db:read", "db:write"}
    assert principal.client_id == "1950a258-227b-4e31-a9cf-717495945fc2"
    assert principal.groups == {"sre-oncall"}
    assert principal.subject == "AAAAAAAAAAAAAAAAAAAAAIkzqFVrSaSaFHy782bbtaQ"


async def test_entra_app_only_tokens_carry_roles_and_v1_tokens_appid(make_settings, jwks):
    """Client credentials give `roles` (application permissions) and no `scp`; v1.0 names the client `appid`
    and the audience by the app id."""
    check = verifier(make_settings, jwks, ENTRA_V2_ISSUER, "entra", accepted=f"api://mcp-db {ENTRA_APP_ID}")
    app_only = entra_v2(scp=None, roles=["db:read"], sub="app-object-id", idtyp="app")
    del app_only["scp"]
    assert (await check.verify(signed(app_only))).scopes == {"db:read"}
    v1 = entra_v2(aud=ENTRA_APP_ID, ver="1.0", appid="1950a258-227b-4e31-a9cf-717495945fc2")
    del v1["azp"]
    principal = await check.verify(signed(v1))
    assert principal.client_id == "1950a258-227b-4e31-a9cf-717495945fc2"


async def test_entra_token_for_another_api_of_the_tenant_is_refused(make_settings, jwks):
    check = verifier(make_settings, jwks, ENTRA_V2_ISSUER, "entra", accepted="api://mcp-db")
    assert await refusal(check, signed(entra_v2(aud="api://mcp-files"))) == "wrong_audience"
    # Graph's audience is never ours, however the scopes read
    assert await refusal(check, signed(entra_v2(aud="00000003-0000-0000-c000-000000000000"))) == "wrong_audience"


# --- Keycloak ---------------------------------------------------------------------------------------------

KEYCLOAK_ISSUER = "https://sso.example.com/realms/mcpfleet"


def keycloak(**claims: Any) -> dict[str, Any]:
    """An access token from a realm whose client scope carries an audience mapper for the resource URL."""
    return {
        "jti": "5b7b5b2a-0c5e-4c43-b1c3-0a7d1b1e3f19",
        "iss": KEYCLOAK_ISSUER,
        "aud": [RESOURCE, "account"],
        "sub": "f:3c8d:ada",
        "typ": "Bearer",
        "azp": "vscode",
        "session_state": "8a2f",
        "acr": "1",
        "realm_access": {"roles": ["offline_access", "oncall"]},
        "resource_access": {"account": {"roles": ["manage-account"]}},
        "scope": "openid profile email db:read",
        "sid": "8a2f",
        "email_verified": True,
        "preferred_username": "ada",
        "groups": ["/sre"],
        **claims,
    }


async def test_keycloak_reads_the_mapped_audience_azp_scope_groups_and_realm_roles(make_settings, jwks):
    check = verifier(make_settings, jwks, KEYCLOAK_ISSUER, "keycloak")
    principal = await check.verify(signed(keycloak()))
    assert principal.scopes == {"openid", "profile", "email", "db:read"}
    assert principal.client_id == "vscode"
    assert principal.groups == {"/sre", "offline_access", "oncall"}


async def test_keycloak_without_the_audience_mapper_is_refused(make_settings, jwks):
    """The complaint in every gateway's tracker: Keycloak's default `aud` is `account`, not the resource."""
    check = verifier(make_settings, jwks, KEYCLOAK_ISSUER, "keycloak")
    assert await refusal(check, signed(keycloak(aud="account"))) == "wrong_audience"


# --- Okta -------------------------------------------------------------------------------------------------

OKTA_ISSUER = "https://example.okta.com/oauth2/aus2ia4gqhLSakGxE5d7"


def okta(**claims: Any) -> dict[str, Any]:
    """An access token from a custom authorization server whose audience is `api://mcp-db`."""
    return {
        "ver": 1,
        "jti": "AT.0mP4JKAZX1iACIT4vbEDF7LpvDVjxypPMf0D7uX39RE",
        "iss": OKTA_ISSUER,
        "aud": "api://mcp-db",
        "cid": "0oa1ptkrgz5EmOTR91d7",
        "uid": "00ujmkLgOPXkwsz2s0h7",
        "scp": ["openid", "db:read"],
        "auth_time": int(time.time()) - 60,
        "sub": "ada@example.com",
        "groups": ["Everyone", "sre"],
        **claims,
    }


async def test_okta_reads_cid_and_the_scp_list(make_settings, jwks):
    check = verifier(make_settings, jwks, OKTA_ISSUER, "okta", accepted="api://mcp-db")
    principal = await check.verify(signed(okta()))
    assert (principal.client_id, principal.scopes, principal.groups) == (
        "0oa1ptkrgz5EmOTR91d7",
        {"openid", "db:read"},
        {"Everyone", "sre"},
    )
    # an org authorization server's token (audience the org URL) is not this API's
    assert await refusal(check, signed(okta(aud="https://example.okta.com"))) == "wrong_audience"


# --- Auth0 ------------------------------------------------------------------------------------------------

AUTH0_ISSUER = "https://tenant.eu.auth0.com/"


def auth0(**claims: Any) -> dict[str, Any]:
    """An access token for the API whose identifier is the resource URL, with RBAC's `permissions` added."""
    return {
        "iss": AUTH0_ISSUER,
        "sub": "auth0|6475f3d25a4cb4d2c4f0e3ab",
        "aud": [RESOURCE, "https://tenant.eu.auth0.com/userinfo"],
        "azp": "4Gq7RP2OzVUa6Xa9Z2bJ4nkcWfn6nbZn",
        "scope": "openid db:read",
        "permissions": ["db:read", "db:write"],
        **claims,
    }


async def test_auth0_grants_the_scope_it_issued_not_every_permission_the_person_has(make_settings, jwks):
    """`permissions` lists what the person may be granted; `scope` what this token was: a write permission the
    client did not ask for is no write scope."""
    check = verifier(make_settings, jwks, AUTH0_ISSUER, "auth0")
    principal = await check.verify(signed(auth0()))
    assert principal.scopes == {"openid", "db:read"}
    assert "db:write" not in principal.scopes
    assert principal.client_id == "4Gq7RP2OzVUa6Xa9Z2bJ4nkcWfn6nbZn"


# --- Amazon Cognito ---------------------------------------------------------------------------------------

COGNITO_ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Ab129faBb"
COGNITO_CLIENT = "6vrl4pg7qbkhm2n7pc4ahkslme"


def cognito(**claims: Any) -> dict[str, Any]:
    """An access token: no `aud`, the client in `client_id`, custom scopes under the resource server's
    identifier (here the resource URL), `token_use` access."""
    return {
        "sub": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "cognito:groups": ["oncall"],
        "iss": COGNITO_ISSUER,
        "version": 2,
        "client_id": COGNITO_CLIENT,
        "origin_jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "event_id": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "token_use": "access",
        "scope": f"openid {RESOURCE}/db:read https://mcp-files.example.com/mcp/files:write",
        "auth_time": int(time.time()) - 60,
        "jti": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "username": "ada",
        **claims,
    }


async def test_cognito_accepts_only_its_named_app_clients_and_this_resources_scopes(make_settings, jwks):
    check = verifier(make_settings, jwks, COGNITO_ISSUER, "cognito", accepted=COGNITO_CLIENT)
    principal = await check.verify(signed(cognito()))
    assert principal.scopes == {
        "db:read"
    }  # another resource server's scope is not this one's; `openid` is no API scope
    assert (principal.client_id, principal.groups) == (COGNITO_CLIENT, {"oncall"})
    assert await refusal(check, signed(cognito(client_id="someoneelsesclient"))) == "wrong_audience"
    assert await refusal(check, signed(cognito(token_use="id"))) == "wrong_token_type"


def test_cognito_without_named_app_clients_is_a_configuration_error(make_settings):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="MCP_ACCEPTED_AUDIENCES"):
        make_settings(
            MCP_RESOURCE_URL=RESOURCE,
            MCP_ISSUER=COGNITO_ISSUER,
            MCP_JWT_SECRET=None,
            MCP_JWKS_URL="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Ab129faBb/.well-known/jwks.json",
            MCP_JWT_ALGORITHMS="RS256",
            MCP_TOKEN_PROFILE="cognito",
        )


# --- every profile: the checks before the profile still hold ---------------------------------------------

CASES = [
    ("entra", ENTRA_V2_ISSUER, "api://mcp-db", entra_v2),
    ("keycloak", KEYCLOAK_ISSUER, "", keycloak),
    ("okta", OKTA_ISSUER, "api://mcp-db", okta),
    ("auth0", AUTH0_ISSUER, "", auth0),
    ("cognito", COGNITO_ISSUER, COGNITO_CLIENT, cognito),
]


@pytest.mark.parametrize(("profile", "issuer", "accepted", "shape"), CASES, ids=[c[0] for c in CASES])
async def test_no_profile_relaxes_issuer_expiry_or_signature(make_settings, jwks, profile, issuer, accepted, shape):
    check = verifier(make_settings, jwks, issuer, profile, accepted)
    assert await check.verify(signed(shape()))  # the shape itself is accepted
    assert await refusal(check, signed(shape(iss="https://attacker.example/"))) == "wrong_issuer"
    assert await refusal(check, signed(shape(exp=int(time.time()) - 3600))) == "expired"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(shape(exp=int(time.time()) + 60), other, "RS256", {"kid": KID})
    assert await refusal(check, forged) == "bad_signature"
    unsigned = jwt.encode(shape(exp=int(time.time()) + 60), None, "none")
    assert await refusal(check, unsigned) == "algorithm_not_allowed"
