"""The whole OAuth flow against the platform's own authorization server (`authz/`, oidc-provider), with two real
focused servers verifying its tokens through its JWKS, as every stack now does (no shared secret anywhere).

The authorization server's view of the fleet is rendered by `infra.authz.config` from the servers'
declarations, exactly as the one-machine and kind stacks render it; the dev logins come from the dev stack file.
The client here is `onebox.login` (what `scripts/token` runs); clients we did not write run the same flow in
tests/interop.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest

from apps.db.server import server as db_server
from infra import authz
from infra.config import IdentityConfig, PersonConfig, StackConfigError, load_stack
from onebox.login import REDIRECT_URI, SignInFailed, sign_in
from tests.support import demo_server
from tests.support.authz import Fleet, LocalAuthz, authorized_fleet
from tests.support.raw import post, tool_call


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with authorized_fleet(tmp_path_factory.mktemp("files")) as running:
        yield running


def call(url: str, token: str, tool: str, arguments: dict[str, Any]) -> httpx.Response:
    return post(url, tool_call(tool, arguments), token)


def test_discovery_points_from_each_server_to_the_issuer_and_says_s256(fleet):
    """401 -> the server's RFC 9728 metadata -> the authorization server's RFC 8414 metadata, as clients walk it."""
    refused = post(fleet.demo_url, tool_call("echo", {"text": "hi"}))
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    metadata_url = challenge.split('resource_metadata="')[1].split('"')[0]
    protected = httpx.get(metadata_url).json()
    assert protected["resource"] == fleet.demo_url and protected["authorization_servers"] == [fleet.authz.issuer]
    server = httpx.get(fleet.authz.issuer + "/.well-known/oauth-authorization-server").json()
    assert server["issuer"] == fleet.authz.issuer
    assert server["code_challenge_methods_supported"] == ["S256"]
    assert server["response_types_supported"] == ["code"]
    assert {"registration_endpoint", "token_endpoint", "jwks_uri"} <= set(server)
    assert {"demo:read", "demo:write", "files:read", "files:write"} <= set(server["scopes_supported"])
    keys = httpx.get(server["jwks_uri"]).json()["keys"]
    assert keys and all(key["kty"] == "RSA" and "d" not in key for key in keys)  # public halves only


def test_a_reader_signs_in_gets_an_audience_bound_token_and_calls_a_tool(fleet):
    answer = fleet.sign_in("reader", fleet.demo_url, "demo:read")
    token = answer["access_token"]
    header, claims = jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "RS256" and header["typ"] == "at+jwt"
    assert claims["aud"] == fleet.demo_url and claims["iss"] == fleet.authz.issuer
    assert claims["sub"] == "reader" and claims["scope"] == "demo:read"
    called = call(fleet.demo_url, token, "echo", {"text": "hi"})
    assert called.status_code == 200 and called.json()["result"]["isError"] is False


def test_a_token_for_one_server_is_refused_by_another(fleet):
    token = fleet.sign_in("writer", fleet.demo_url, "demo:read")["access_token"]
    refused = call(fleet.files_url, token, "read_file", {"path": "hello.txt"})
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    files_token = fleet.sign_in("writer", fleet.files_url, "files:read")["access_token"]
    read = call(fleet.files_url, files_token, "read_file", {"path": "hello.txt"})
    assert read.status_code == 200 and "hello from the files server" in read.text


def test_a_person_gets_only_the_scopes_they_may_grant_then_steps_up(fleet):
    """The reader asks for read and write and gets read; the write is refused with insufficient_scope; the
    client signs the writer in again for the wider scope and the write succeeds."""
    reader = fleet.sign_in("reader", fleet.demo_url, "demo:read demo:write")
    assert reader["scope"] == "demo:read"
    refused = call(fleet.demo_url, reader["access_token"], "write", {"key": "k"})
    assert refused.status_code == 403
    challenge = refused.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="demo:write"' in challenge
    wider = fleet.sign_in("writer", fleet.demo_url, "demo:read demo:write")
    assert set(wider["scope"].split()) == {"demo:read", "demo:write"}
    written = call(fleet.demo_url, wider["access_token"], "write", {"key": "k"})
    assert written.status_code == 200 and written.json()["result"]["isError"] is False


def test_refresh_tokens_rotate_and_a_used_one_is_refused(fleet):
    answer = fleet.sign_in("reader", fleet.demo_url, "demo:read")
    form = {"grant_type": "refresh_token", "client_id": answer["client_id"], "resource": fleet.demo_url}
    first = httpx.post(answer["token_endpoint"], data={**form, "refresh_token": answer["refresh_token"]})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != answer["refresh_token"]
    assert call(fleet.demo_url, rotated["access_token"], "echo", {"text": "again"}).status_code == 200
    replayed = httpx.post(answer["token_endpoint"], data={**form, "refresh_token": answer["refresh_token"]})
    assert replayed.status_code == 400 and replayed.json()["error"] == "invalid_grant"


def test_a_wrong_password_an_unknown_resource_and_no_grantable_scope_get_no_token(fleet):
    with pytest.raises(SignInFailed, match="Wrong login or password"):
        sign_in(fleet.authz.issuer, fleet.demo_url, "reader", "not-the-password", "demo:read")
    with pytest.raises(SignInFailed, match="invalid_target"):
        fleet.sign_in("reader", "http://127.0.0.1:1/mcp", "demo:read")
    with pytest.raises(SignInFailed, match="access_denied"):
        fleet.sign_in("reader", fleet.files_url, "files:write")


def test_the_code_flow_without_pkce_is_refused(fleet):
    client = httpx.post(
        fleet.authz.issuer + "/reg",
        json={"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "response_types": ["code"]},
    ).json()
    query = {"client_id": client["client_id"], "response_type": "code", "redirect_uri": REDIRECT_URI,
             "scope": "demo:read", "resource": fleet.demo_url, "state": "s"}  # fmt: skip
    plain = dict(query, code_challenge=base64.urlsafe_b64encode(hashlib.sha256(b"x" * 43).digest()).decode()[:43])
    for asked in (query, {**plain, "code_challenge_method": "plain"}):
        answer = httpx.get(fleet.authz.issuer + "/auth?" + urlencode(asked))
        assert answer.status_code in (302, 303, 400)
        where = answer.headers.get("location", "") + answer.text
        assert "error=invalid_request" in where or "invalid_request" in where


def test_the_authorization_servers_view_is_the_declarations_and_holds_no_secret():
    stack = load_stack("dev")
    every = authz.stack_scopes(stack)
    rendered = authz.config(stack, {"mcp-db": db_server}, {"mcp-db": "http://x/mcp"}, "http://i", every_scope=every)
    assert rendered["resources"] == {"http://x/mcp": {"name": "mcp-db", "scopes": db_server.scopes}}
    assert set(rendered["people"]) == set(stack.identity.people)
    assert {key for person in rendered["people"].values() for key in person} == {"scopes", "passwordVariable"}
    people = {"intern": PersonConfig(scopes=["db:drop"])}
    typo = stack.model_copy(update={"identity": IdentityConfig(provider="local", people=people)})
    with pytest.raises(StackConfigError, match=r"identity.people.intern.scopes: 'db:drop' is no scope"):
        authz.config(typo, {"mcp-db": db_server}, {"mcp-db": "http://x/mcp"}, "http://i", every_scope=every)


def test_a_request_naming_no_scope_gets_what_the_person_may_grant_of_that_resource(fleet):
    """OAuth 2.1 §3.2.2.1: no scope is served with a default, every scope of the resource asked for; the person
    grants their own."""
    assert fleet.sign_in("reader", fleet.demo_url, "")["scope"] == "demo:read"
    assert set(fleet.sign_in("writer", fleet.demo_url, "")["scope"].split()) == {"demo:read", "demo:write"}


@pytest.mark.parametrize(
    "client_id",
    ["https://localhost/client.json", "https://127.0.0.1/client.json", "https://authz.mcp-auth.svc/client.json",
     "http://clients.example.com/client.json"],
)  # fmt: skip
def test_a_client_id_metadata_document_is_never_fetched_from_inside(fleet, client_id):
    """A client id that is a URL makes the server fetch it: only an https URL on a public DNS name is fetched, so a
    client id cannot make the authorization server call the platform's own services."""
    pkce = {"code_challenge": "x" * 43, "code_challenge_method": "S256"}
    query = {"client_id": client_id, "response_type": "code", "redirect_uri": REDIRECT_URI, "scope": "demo:read",
             "resource": fleet.demo_url, "state": "s", **pkce}  # fmt: skip
    answer = httpx.get(fleet.authz.issuer + "/auth?" + urlencode(query))
    assert answer.status_code == 400 and "invalid_client" in answer.text
    if client_id.startswith("https://"):  # a well-formed document URL: refused by the fetch rule, before any fetch
        assert "client_id metadata document fetch not allowed" in answer.text


def test_one_address_gets_its_share_of_registrations_and_sign_ins_not_everyones():
    """The store is shared and bounded, and sign-ins guess passwords: past its share a client address gets 429."""
    stack = load_stack("dev")
    every = authz.stack_scopes(stack)
    servers, urls = {"mcp-demo": demo_server.server}, {"mcp-demo": "http://127.0.0.1:1/mcp"}
    rendered = authz.config(stack, servers, urls, "x", every_scope=every)
    rendered["limits"] = {"registrationsPerMinute": 3, "signInsPerMinute": 2}
    local = LocalAuthz(rendered, {login: "pw-" + login for login in stack.identity.people}).start()
    try:
        client = {"redirect_uris": [REDIRECT_URI], "token_endpoint_auth_method": "none", "response_types": ["code"]}
        codes = [httpx.post(local.issuer + "/reg", json=client).status_code for _ in range(4)]
        assert codes == [201, 201, 201, 429]
        login = local.issuer + "/interaction/abcdef/login"
        guesses = [httpx.post(login, data={"login": "reader", "password": "guess"}).status_code for _ in range(3)]
        assert guesses[-1] == 429 and 429 not in guesses[:2]  # the first two are answered (as unknown interactions)
    finally:
        local.stop()
