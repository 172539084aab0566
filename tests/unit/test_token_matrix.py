"""The platform's resource-server matrix, on every server of the fleet (modelled on the conformance suite's
token-audience scenario, which checks clients and authorization servers but not a server's own token checks).

Each server is built as its dev stack entry configures it, verifying RS256 tokens through a JWKS served over real
HTTP. Every bad token gets 401 with `WWW-Authenticate: Bearer error="invalid_token", ..., resource_metadata=...`
(RFC 6750 §3.1, RFC 9728 §5.1); no token gets the challenge without an error code; the right token is served.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from apps import fleet as apps_fleet
from apps.kit import create_app, resource_metadata_path
from infra.config import load_stack
from infra.fleet import app_settings
from tests.support.jwks import JwksServer
from tests.support.raw import BASE_HEADERS, rpc

ISSUER = "https://auth.mcpfleet.test"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = "matrix-key"
STACK = load_stack("dev")
ENTRIES = {app.module: (name, app) for name, app in STACK.apps.items()}
SERVERS = {module: server for module, server in apps_fleet.servers().items() if module in ENTRIES}


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(KEY, KID, "RS256")
    yield server
    server.httpd.shutdown()


def app_for(module: str, jwks: JwksServer) -> tuple[Any, str]:
    """The server's ASGI app as its dev stack entry configures it, verifying through the test JWKS."""
    name, entry = ENTRIES[module]
    settings = app_settings(name, entry, SERVERS[module])
    settings = settings.model_copy(
        update={"mcp_issuer": ISSUER, "mcp_jwks_url": jwks.url, "mcp_jwt_algorithms": ["RS256"], "mcp_jwt_secret": None}
        | {"redis_url": None},  # the gate is checked here, not the limiter: its window in memory
    )
    return create_app(SERVERS[module], settings), settings.resource_url


def signed(claims: dict[str, Any], key: Any = KEY, kid: str = KID, alg: str = "RS256") -> str:
    return jwt.encode(claims, key, alg, {"kid": kid, "typ": "at+jwt"})


def base_claims(audience: str, scopes: list[str]) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": ISSUER, "aud": audience, "sub": "ada", "client_id": "matrix", "scope": " ".join(scopes),
            "iat": now, "nbf": now, "exp": now + 600}  # fmt: skip


def sibling_url(module: str) -> str:
    other = next(m for m in ENTRIES if m != module)
    return str(ENTRIES[other][1].resource_url).rstrip("/")


PUBLIC_PEM = KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def confusion(claims: dict[str, Any]) -> str:
    """HS256 with the server's public key as the HMAC secret: the classic algorithm confusion."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": KID}).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(PUBLIC_PEM, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def unsigned(claims: dict[str, Any]) -> str:
    return jwt.encode(claims, None, "none", {"kid": KID})


Case = Callable[[str, str, list[str]], str | None]
CASES: dict[str, Case] = {
    "missing aud": lambda m, url, s: signed({k: v for k, v in base_claims(url, s).items() if k != "aud"}),
    "wrong aud": lambda m, url, s: signed(base_claims("https://elsewhere.example/mcp", s)),
    "a sibling server's token": lambda m, url, s: signed(base_claims(sibling_url(m), s)),
    "another resource of the same host": lambda m, url, s: signed(base_claims(url.removesuffix("/mcp") + "/admin", s)),
    "expired": lambda m, url, s: signed(base_claims(url, s) | {"exp": int(time.time()) - 3600}),
    "not yet valid": lambda m, url, s: signed(base_claims(url, s) | {"nbf": int(time.time()) + 3600}),
    "unknown key": lambda m, url, s: signed(base_claims(url, s), OTHER_KEY, kid="not-published"),
    "a published kid, another key": lambda m, url, s: signed(base_claims(url, s), OTHER_KEY),
    "alg none": lambda m, url, s: unsigned(base_claims(url, s)),
    "RS/HS confusion": lambda m, url, s: confusion(base_claims(url, s)),
    "wrong iss": lambda m, url, s: signed(base_claims(url, s) | {"iss": "https://attacker.example"}),
}


async def ask(app: Any, token: str | None) -> httpx.Response:
    headers = dict(BASE_HEADERS) | ({"Authorization": f"Bearer {token}"} if token else {})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://matrix") as client:
        return await client.post("/mcp", json=rpc("tools/list", {}), headers=headers)


@pytest.mark.parametrize("module", sorted(SERVERS))
async def test_every_server_refuses_every_bad_token_with_the_challenge_the_spec_asks_for(module, jwks):
    app, url = app_for(module, jwks)
    scopes = SERVERS[module].scopes
    metadata = f'resource_metadata="{url.removesuffix("/mcp")}{resource_metadata_path(url)}"'
    served = await ask(app, signed(base_claims(url, scopes)))
    assert served.status_code == 200, served.text
    assert {tool["name"] for tool in served.json()["result"]["tools"]}  # it listed its tools
    anonymous = await ask(app, None)
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"] == f"Bearer {metadata}"
    for case, make in CASES.items():
        refused = await ask(app, make(module, url, scopes))
        assert refused.status_code == 401, (module, case, refused.status_code)
        challenge = refused.headers["www-authenticate"]
        assert challenge.startswith('Bearer error="invalid_token"') and metadata in challenge, (module, case)
        assert "result" not in refused.text, (module, case)
