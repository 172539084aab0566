"""Attacks on the token check; each must fail with the right reason."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from apps.kit.cli.token import mint
from apps.kit.identity.tokens import AuthFailure, JwksUnavailable, JwtVerifier
from apps.kit.observe.metrics import KitMetrics
from tests.conftest import ISSUER, SECRET
from tests.support.jwks import JwksServer

AUD = "http://127.0.0.1:9/mcp"


@pytest.fixture
def hs_verifier(make_settings) -> JwtVerifier:
    return JwtVerifier(make_settings(MCP_RESOURCE_URL=AUD), KitMetrics("test"))


def hs_token(**kw) -> str:
    defaults = {"issuer": ISSUER, "audience": AUD, "subject": "alice", "scopes": "db:read"}
    return mint(SECRET, **{**defaults, **kw})


async def refused(verifier: JwtVerifier, token: str) -> str:
    with pytest.raises(AuthFailure) as failure:
        await verifier.verify(token)
    return failure.value.reason


async def test_good_token_gives_principal_and_scopes(hs_verifier):
    access = await hs_verifier.verify(hs_token(scopes="db:read db:write", client_id="cli-1"))
    assert access.subject == "alice"
    assert access.client_id == "cli-1"
    assert set(access.scopes) == {"db:read", "db:write"}


async def test_expired(hs_verifier):
    assert await refused(hs_verifier, hs_token(expires_in=-120)) == "expired"


async def test_expiry_within_leeway_is_accepted(hs_verifier):
    assert (await hs_verifier.verify(hs_token(expires_in=-5))).subject == "alice"


async def test_not_yet_valid(hs_verifier):
    assert await refused(hs_verifier, hs_token(now=time.time() + 600)) == "not_yet_valid"


async def test_wrong_issuer(hs_verifier):
    assert await refused(hs_verifier, hs_token(issuer="https://evil.test")) == "wrong_issuer"


async def test_token_for_another_server_is_refused(hs_verifier):
    assert await refused(hs_verifier, hs_token(audience="http://127.0.0.1:9/other-mcp")) == "wrong_audience"


async def test_audience_list_containing_this_server_is_accepted(hs_verifier):
    token = jwt.encode(
        {"iss": ISSUER, "aud": ["https://other", AUD], "sub": "bob", "exp": time.time() + 60}, SECRET, algorithm="HS256"
    )
    assert (await hs_verifier.verify(token)).subject == "bob"


async def test_missing_exp_is_refused(hs_verifier):
    token = jwt.encode({"iss": ISSUER, "aud": AUD, "sub": "bob"}, SECRET, algorithm="HS256")
    assert await refused(hs_verifier, token) == "missing_claim"


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_a_date_claim_given_as_a_string_is_refused(hs_verifier, claim):
    """RFC 7519 NumericDate is a JSON number; PyJWT alone accepts `"exp": "9999999999"`."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUD, "sub": "bob", "exp": now + 600, "nbf": now - 10, "iat": now - 10}
    claims[claim] = str(claims[claim])
    assert await refused(hs_verifier, jwt.encode(claims, SECRET, algorithm="HS256")) == "malformed"
    claims[claim] = True  # PyJWT reads it as 1: an exp in 1970, a nbf and iat it would accept
    assert await refused(hs_verifier, jwt.encode(claims, SECRET, algorithm="HS256")) in ("malformed", "expired")


async def test_alg_none_is_refused(hs_verifier):
    claims = {"iss": ISSUER, "aud": AUD, "sub": "mallory", "exp": time.time() + 60, "scope": "db:write"}
    token = jwt.encode(claims, None, algorithm="none")
    assert await refused(hs_verifier, token) == "algorithm_not_allowed"


async def test_hs512_is_refused_when_only_hs256_is_pinned(hs_verifier):
    token = jwt.encode({"iss": ISSUER, "aud": AUD, "exp": time.time() + 60}, SECRET * 2, algorithm="HS512")
    assert await refused(hs_verifier, token) == "algorithm_not_allowed"


async def test_tampered_payload_fails_signature(hs_verifier):
    header, payload, signature = hs_token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "db:read db:write"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert await refused(hs_verifier, f"{header}.{forged}.{signature}") == "bad_signature"


async def test_wrong_secret_fails_signature(hs_verifier):
    token = mint("another-secret-that-is-32-bytes-long!!", issuer=ISSUER, audience=AUD, subject="x", scopes="")
    assert await refused(hs_verifier, token) == "bad_signature"


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30"])
async def test_garbage_is_malformed(hs_verifier, garbage):
    assert await refused(hs_verifier, garbage) == "malformed"


def test_every_reason_is_exported_from_the_start(hs_verifier):
    from apps.kit.identity.tokens import _REASONS
    from apps.kit.wire.outcomes import AuthFailureReason

    assert {reason for _, reason in _REASONS} <= set(AuthFailureReason)
    registry = hs_verifier._metrics.registry
    assert all(registry.get_sample_value("mcp_auth_failures_total", {"reason": r}) == 0 for r in AuthFailureReason)


async def test_failures_are_counted_by_reason(hs_verifier):
    for token in (hs_token(expires_in=-3600), "garbage"):
        with pytest.raises(AuthFailure):
            await hs_verifier.authenticate(token)
    registry = hs_verifier._metrics.registry
    assert registry.get_sample_value("mcp_auth_failures_total", {"reason": "expired"}) == 1
    assert registry.get_sample_value("mcp_auth_failures_total", {"reason": "malformed"}) == 1


# --- RS256/ES256 through a JWKS served over real HTTP --------------------------------------------


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.httpd.shutdown()


@pytest.fixture
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwks_verifier(make_settings, url: str, algorithms: str = "RS256 ES256", refresh: float = 60) -> JwtVerifier:
    settings = make_settings(
        MCP_RESOURCE_URL=AUD,
        MCP_JWT_SECRET=None,
        MCP_JWKS_URL=url,
        MCP_JWT_ALGORITHMS=algorithms,
        MCP_JWKS_MIN_REFRESH_SECONDS=refresh,
    )
    return JwtVerifier(settings, KitMetrics("test"))


def signed(key, kid: str, alg: str = "RS256", **claims) -> str:
    body = {"iss": ISSUER, "aud": AUD, "sub": "carol", "exp": time.time() + 300, "scope": "db:read", **claims}
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid})


async def test_rs256_and_es256_via_jwks(make_settings, jwks_server, rsa_key):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    jwks_server.publish(rsa_key, "rsa-1", "RS256")
    jwks_server.publish(ec_key, "ec-1", "ES256")
    verifier = jwks_verifier(make_settings, jwks_server.url)
    assert (await verifier.verify(signed(rsa_key, "rsa-1"))).subject == "carol"
    assert (await verifier.verify(signed(ec_key, "ec-1", alg="ES256"))).subject == "carol"
    assert jwks_server.hits == 1  # keys cached by kid


async def test_hs_rs_confusion_is_refused(make_settings, jwks_server, rsa_key):
    """The classic attack: HMAC-sign with the server's public key as the secret."""
    jwks_server.publish(rsa_key, "rsa-1", "RS256")
    verifier = jwks_verifier(make_settings, jwks_server.url)
    public_pem = rsa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "rsa-1"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(
        json.dumps({"iss": ISSUER, "aud": AUD, "sub": "mallory", "exp": int(time.time()) + 60}).encode()
    ).rstrip(b"=")
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, header + b"." + payload, hashlib.sha256).digest()).rstrip(
        b"="
    )
    forged = b".".join([header, payload, signature]).decode()
    assert await refused(verifier, forged) == "algorithm_not_allowed"


async def test_key_pinned_to_one_algorithm_is_not_used_for_another(make_settings, jwks_server, rsa_key):
    jwks_server.publish(rsa_key, "rsa-1", "RS384")
    verifier = jwks_verifier(make_settings, jwks_server.url, algorithms="RS256 RS384")
    assert await refused(verifier, signed(rsa_key, "rsa-1", alg="RS256")) == "algorithm_not_allowed"
    assert (await verifier.verify(signed(rsa_key, "rsa-1", alg="RS384"))).subject == "carol"


async def test_unknown_kid_refetches_once_then_is_rate_limited(make_settings, jwks_server, rsa_key):
    jwks_server.publish(rsa_key, "rsa-1", "RS256")
    verifier = jwks_verifier(make_settings, jwks_server.url)
    assert (await verifier.verify(signed(rsa_key, "rsa-1"))).subject == "carol"
    for _ in range(20):  # a flood of forged kids
        assert await refused(verifier, signed(rsa_key, "forged-kid")) == "unknown_kid"
    assert jwks_server.hits == 1  # the first fetch was < 60 s ago: no refetch at all


async def test_rotated_key_is_picked_up_on_unknown_kid(make_settings, jwks_server, rsa_key):
    jwks_server.publish(rsa_key, "rsa-1", "RS256")
    verifier = jwks_verifier(make_settings, jwks_server.url, refresh=1)
    await verifier.verify(signed(rsa_key, "rsa-1"))
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_server.publish(new_key, "rsa-2", "RS256")
    assert await refused(verifier, signed(new_key, "rsa-2")) == "unknown_kid"  # within the refresh floor
    time.sleep(1.05)
    assert (await verifier.verify(signed(new_key, "rsa-2"))).subject == "carol"
    assert jwks_server.hits == 2


async def test_token_signed_by_unpublished_key_fails_signature(make_settings, jwks_server, rsa_key):
    jwks_server.publish(rsa_key, "rsa-1", "RS256")
    verifier = jwks_verifier(make_settings, jwks_server.url)
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert await refused(verifier, signed(impostor, "rsa-1")) == "bad_signature"


async def test_jwks_endpoint_down_refuses_tokens(make_settings, rsa_key):
    verifier = jwks_verifier(make_settings, "http://127.0.0.1:9/jwks.json")
    assert await refused(verifier, signed(rsa_key, "rsa-1")) == "unknown_kid"


async def test_a_failed_first_fetch_is_retried_after_a_short_backoff(make_settings, jwks_server, rsa_key):
    """Before, one failed fetch at start refused every token on the replica for the 60 s refresh floor."""
    jwks_server.publish(rsa_key, "rsa-1", "RS256")
    jwks_server.down = True
    verifier = jwks_verifier(make_settings, jwks_server.url, refresh=60)
    assert await refused(verifier, signed(rsa_key, "rsa-1")) == "unknown_kid"
    with pytest.raises(JwksUnavailable):
        await verifier.jwks.check()  # /ready says so: no key, no token can pass
    jwks_server.down = False
    assert await refused(verifier, signed(rsa_key, "rsa-1")) == "unknown_kid"  # inside the 1 s backoff: no fetch
    await asyncio.sleep(1.05)
    assert (await verifier.verify(signed(rsa_key, "rsa-1"))).subject == "carol"
    await verifier.jwks.check()
    assert jwks_server.hits == 2


async def test_known_keys_survive_an_identity_provider_outage(make_settings, jwks_server, rsa_key):
    jwks_server.publish(rsa_key, "rsa-1", "RS256")
    verifier = jwks_verifier(make_settings, jwks_server.url, refresh=1)
    assert (await verifier.verify(signed(rsa_key, "rsa-1"))).subject == "carol"
    jwks_server.down = True
    await asyncio.sleep(1.05)
    assert await refused(verifier, signed(rsa_key, "rotated-kid")) == "unknown_kid"  # the refetch fails
    assert jwks_server.hits == 2
    assert (await verifier.verify(signed(rsa_key, "rsa-1"))).subject == "carol"  # the last good keys are kept
    await verifier.jwks.check()
    assert verifier.jwks.key_ids == ["rsa-1"]


async def test_ready_reports_the_jwks_key_set(start_demo, jwks_server, rsa_key):
    jwks_server.publish(rsa_key, "rsa-1", "RS256")
    jwks_server.down = True
    demo = start_demo(MCP_JWT_SECRET=None, MCP_JWKS_URL=jwks_server.url, MCP_JWT_ALGORITHMS="RS256")
    not_ready = httpx.get(demo.base + "/ready")
    assert not_ready.status_code == 503 and not_ready.json()["checks"]["jwks"] == "failed: JwksUnavailable"
    jwks_server.down = False
    await asyncio.sleep(1.1)
    assert httpx.get(demo.base + "/ready").json()["checks"]["jwks"] == "ok"


# --- claims: scp, principals, audiences, token type -----------------------------------------------


@pytest.mark.parametrize("scp", ["db:read db:write", ["db:read", "db:write"]])
async def test_scp_is_read_as_a_list_or_a_space_separated_string(hs_verifier, scp):
    claims = {"iss": ISSUER, "aud": AUD, "sub": "a", "exp": time.time() + 60, "scp": scp}
    principal = await hs_verifier.verify(jwt.encode(claims, SECRET, algorithm="HS256"))
    assert principal.scopes == {"db:read", "db:write"}


async def test_a_token_naming_no_principal_is_refused(hs_verifier):
    claims = {"iss": ISSUER, "aud": AUD, "exp": time.time() + 60, "scope": "db:read"}
    assert await refused(hs_verifier, jwt.encode(claims, SECRET, algorithm="HS256")) == "missing_principal"
    with_client = jwt.encode({**claims, "azp": "svc-1"}, SECRET, algorithm="HS256")
    principal = await hs_verifier.verify(with_client)
    assert (principal.subject, principal.client_id, principal.rate_key) == (None, "svc-1", "client:svc-1")


@pytest.mark.parametrize(
    ("audience", "accepted"),
    [
        ("https://mcp-db.example.com/mcp", True),
        ("HTTPS://MCP-DB.Example.COM/mcp", True),  # scheme and host are case-insensitive
        ("https://mcp-db.example.com:443/mcp/", True),  # default port, trailing slash
        ("https://mcp-db.example.com/MCP", False),  # the path is not
        ("http://mcp-db.example.com/mcp", False),
        ("https://mcp-db.example.com.evil/mcp", False),
    ],
)
async def test_audience_compares_scheme_and_host_case_insensitively(make_settings, audience, accepted):
    verifier = JwtVerifier(make_settings(MCP_RESOURCE_URL="https://mcp-db.example.com/mcp"), KitMetrics("t"))
    token = mint(SECRET, issuer=ISSUER, audience=audience, subject="a", scopes="")
    if accepted:
        assert (await verifier.verify(token)).subject == "a"
    else:
        assert await refused(verifier, token) == "wrong_audience"


async def test_typ_at_jwt_is_required_when_configured(make_settings):
    verifier = JwtVerifier(make_settings(MCP_RESOURCE_URL=AUD, MCP_JWT_REQUIRE_AT_TYP="true"), KitMetrics("t"))
    claims = {"iss": ISSUER, "aud": AUD, "sub": "a", "exp": time.time() + 60}
    plain = jwt.encode(claims, SECRET, algorithm="HS256")  # typ JWT
    assert await refused(verifier, plain) == "wrong_token_type"
    access = jwt.encode(claims, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})
    assert (await verifier.verify(access)).subject == "a"


# --- verified tokens are remembered until they expire, and forgotten when the keys change ----------


async def test_a_remembered_token_still_expires(make_settings):
    verifier = JwtVerifier(make_settings(MCP_RESOURCE_URL=AUD, MCP_JWT_LEEWAY_SECONDS="0"), KitMetrics("t"))
    token = mint(SECRET, issuer=ISSUER, audience=AUD, subject="a", scopes="", expires_in=1)
    assert (await verifier.verify(token)).subject == "a"
    assert (await verifier.verify(token)).subject == "a"  # from memory
    await asyncio.sleep(2.1)
    assert await refused(verifier, token) == "expired"


async def test_a_token_signed_by_a_rotated_out_key_is_checked_again(make_settings, jwks_server, rsa_key):
    jwks_server.publish(rsa_key, "rsa-1", "RS256")
    verifier = jwks_verifier(make_settings, jwks_server.url, refresh=1)
    old = signed(rsa_key, "rsa-1")
    assert (await verifier.verify(old)).subject == "carol"  # remembered
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks_server.keys = []
    jwks_server.publish(new_key, "rsa-2", "RS256")  # the issuer rotates rsa-1 out
    await asyncio.sleep(1.05)
    assert (await verifier.verify(signed(new_key, "rsa-2"))).subject == "carol"  # refetch: the key set changed
    assert await refused(verifier, old) == "unknown_kid"  # no longer accepted from memory
