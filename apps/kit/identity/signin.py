"""Who opened a page: the person signs in at the MCP authorization server in their browser (OpenID Connect's code
flow, PKCE S256, a nonce), and the page learns the `sub` the issuer gives them, the same subject their MCP tokens
carry.

A URL a server hands to a client (URL-mode elicitation) can be forwarded to somebody else; MCP 2025-11-25 asks the
server to check that whoever opens it is the person it was made for, through the MCP authorization server. This
is that check. The server is a public client of the issuer (`MCP_SIGNIN_CLIENT_ID`, registered with the page's
redirect URI); the ID token is verified with the issuer's published keys (issuer, audience, expiry, nonce).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from urllib.parse import urlencode

import jwt

from apps.kit.declare.config import KitSettings
from apps.kit.declare.tools import ServerError
from apps.kit.identity.tokens import AuthFailure, JwksKeys
from apps.kit.upstream import Upstream

DISCOVERY = "/.well-known/openid-configuration"
MAX_ANSWER_BYTES = 256 * 1024


def pkce_pair() -> tuple[str, str]:
    """A PKCE verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


class SignInFailed(Exception):
    """The sign-in did not prove who the person is (refused code, bad ID token): the page says so, and nothing
    is linked."""


class BrowserSignIn:
    def __init__(self, settings: KitSettings, redirect_uri: str):
        if not settings.mcp_signin_client_id or settings.mcp_jwks_url is None:
            raise ValueError("signing the person in needs MCP_SIGNIN_CLIENT_ID and MCP_JWKS_URL (the issuer's keys)")
        self.client_id, self.issuer, self.redirect_uri = (
            settings.mcp_signin_client_id,
            settings.mcp_issuer,
            redirect_uri,
        )
        self.algorithms, self.leeway = settings.mcp_jwt_algorithms, settings.mcp_jwt_leeway_seconds
        self.internal = str(settings.mcp_issuer_internal_url or settings.mcp_issuer).rstrip("/")
        proxy = str(settings.mcp_egress_proxy) if settings.mcp_egress_proxy else None
        self.http = Upstream(
            "issuer",
            self.internal,
            headers={"Accept": "application/json"},
            timeout=10,
            max_bytes=MAX_ANSWER_BYTES,
            read_retries=1,
            proxy=proxy,
        )
        self.keys = JwksKeys(str(settings.mcp_jwks_url), settings.mcp_jwks_min_refresh_seconds, proxy=proxy)
        self._endpoints: tuple[str, str] | None = None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def endpoints(self) -> tuple[str, str]:
        """The authorization endpoint (for the browser, as published) and the token endpoint (reached from here:
        the internal address when one is set)."""
        if self._endpoints is None:
            answer = await self.http.request("GET", self.internal + DISCOVERY, idempotent=True)
            body = answer.body if isinstance(answer.body, dict) else {}
            authorize, token = body.get("authorization_endpoint"), body.get("token_endpoint")
            if answer.status != 200 or not isinstance(authorize, str) or not isinstance(token, str):
                raise ServerError(f"the issuer's discovery document did not answer (HTTP {answer.status})")
            public = self.issuer.rstrip("/")
            self._endpoints = (
                authorize,
                self.internal + token.removeprefix(public) if token.startswith(public) else token,
            )
        return self._endpoints

    async def start(self, state: str, nonce: str, challenge: str) -> str:
        """Where to send the browser: the issuer's sign-in, for the `openid` scope alone (no access to anything)."""
        authorize, _ = await self.endpoints()
        query = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": "openid",
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        return f"{authorize}?{urlencode(query)}"

    async def subject(self, code: str, verifier: str, nonce: str) -> str:
        """The signed-in person's subject, from the ID token the code is exchanged for; `SignInFailed` otherwise."""
        _, token_endpoint = await self.endpoints()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "client_id": self.client_id,
            "code_verifier": verifier,
        }
        answer = await self.http.request("POST", token_endpoint, idempotent=False, data=form)
        body = answer.body if isinstance(answer.body, dict) else {}
        id_token = body.get("id_token")
        if answer.status != 200 or not isinstance(id_token, str):
            raise SignInFailed(f"the issuer refused the sign-in ({str(body.get('error', answer.status))[:100]})")
        try:
            header = jwt.get_unverified_header(id_token)
            key = await self.keys.get(str(header.get("kid", "")))
            claims = jwt.decode(
                id_token,
                key=key.key,
                algorithms=self.algorithms,
                audience=self.client_id,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "sub", "aud", "iss", "nonce"]},
            )
        except (jwt.PyJWTError, AuthFailure) as error:  # any flaw in the ID token: no one is signed in
            raise SignInFailed(f"the ID token did not verify ({type(error).__name__})") from None
        if not hmac.compare_digest(str(claims["nonce"]), nonce):
            raise SignInFailed("the ID token was not issued for this sign-in (nonce)")
        return str(claims["sub"])
