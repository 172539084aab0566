"""OAuth 2.1 resource-server token checks, as the MCP SDK's `TokenVerifier`.

A token is accepted only if its signature verifies with a configured key, its
`alg` is in the pinned list (so `none` and HS/RS confusion fail before any key
is used), it is unexpired (`exp` required, `nbf`/`iat` honoured with a small
leeway), its `iss` is our issuer and its `aud` names this server. Every refusal
is counted and logged with a reason, never with the token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from mcp.server.auth.provider import AccessToken

from apps.kit.config import KitSettings
from apps.kit.logs import log_event
from apps.kit.metrics import KitMetrics


class AuthFailure(Exception):
    """A token was refused; `reason` is a short, log-safe label."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JwksKeys:
    """Public keys from a JWKS URL, cached by `kid`.

    An unknown `kid` triggers a refetch (key rotation), at most once per
    `min_refresh_seconds`, so a flood of forged kids cannot hammer the IdP.
    """

    def __init__(self, url: str, min_refresh_seconds: float = 60.0, timeout: float = 5.0):
        self._url = url
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout
        self._keys: dict[str, jwt.PyJWK] = {}
        self._last_fetch = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self, kid: str) -> jwt.PyJWK:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:
            if kid not in self._keys and time.monotonic() - self._last_fetch >= self._min_refresh:
                await self._fetch()
        if kid not in self._keys:
            raise AuthFailure("unknown_kid")
        return self._keys[kid]

    async def _fetch(self) -> None:
        self._last_fetch = time.monotonic()
        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(self._url)
                response.raise_for_status()
                jwk_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWTError) as error:
            log_event("jwks_fetch_failed", logging.WARNING, error=type(error).__name__)
            return
        self._keys = {key.key_id: key for key in jwk_set.keys if key.key_id}


_REASONS: list[tuple[type[Exception], str]] = [
    (jwt.ExpiredSignatureError, "expired"),
    (jwt.ImmatureSignatureError, "not_yet_valid"),
    (jwt.InvalidAudienceError, "wrong_audience"),
    (jwt.InvalidIssuerError, "wrong_issuer"),
    (jwt.MissingRequiredClaimError, "missing_claim"),
    (jwt.InvalidSignatureError, "bad_signature"),
    (jwt.InvalidAlgorithmError, "algorithm_not_allowed"),
    (jwt.DecodeError, "malformed"),
]


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    subject: str | None
    client_id: str
    scopes: frozenset[str]

    @property
    def rate_key(self) -> str:
        return f"sub:{self.subject}" if self.subject else f"client:{self.client_id}"


def principal_of(token: AccessToken) -> Principal:
    return Principal(subject=token.subject, client_id=token.client_id, scopes=frozenset(token.scopes))


def scopes_of(claims: dict[str, Any]) -> list[str]:
    """RFC 8693/9068 `scope` (space-separated) or the common `scp` list."""
    scope = claims.get("scope")
    if isinstance(scope, str):
        return scope.split()
    scp = claims.get("scp")
    if isinstance(scp, list):
        return [s for s in scp if isinstance(s, str)]
    return []


class JwtVerifier:
    """`TokenVerifier` for JWT access tokens issued for this resource server."""

    def __init__(self, settings: KitSettings, metrics: KitMetrics, jwks: JwksKeys | None = None):
        self._issuer = settings.mcp_issuer
        self._audiences = [settings.resource_url, settings.resource_url + "/"]
        self._algorithms = list(settings.mcp_jwt_algorithms)
        self._leeway = settings.mcp_jwt_leeway_seconds
        self._secret = settings.mcp_jwt_secret.get_secret_value() if settings.mcp_jwt_secret else None
        if jwks is None and settings.mcp_jwks_url is not None:
            jwks = JwksKeys(str(settings.mcp_jwks_url), settings.mcp_jwks_min_refresh_seconds)
        self._jwks = jwks
        self._metrics = metrics

    async def verify_token(self, token: str) -> AccessToken | None:
        try:
            return await self.verify(token)
        except AuthFailure as failure:
            self.record_failure(failure.reason)
            return None

    def record_failure(self, reason: str) -> None:
        self._metrics.auth_failures.labels(reason=reason).inc()
        log_event("auth_failure", logging.WARNING, reason=reason)

    async def verify(self, token: str) -> AccessToken:
        """Verify or raise `AuthFailure` with the reason."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailure("malformed") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthFailure("algorithm_not_allowed")
        key = await self._key_for(header)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self._audiences,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": ["exp", "iss", "aud"], "verify_iat": True},
            )
        except jwt.PyJWTError as error:
            raise AuthFailure(self._reason(error)) from None
        subject = claims.get("sub") if isinstance(claims.get("sub"), str) else None
        client_id = claims.get("client_id") or claims.get("azp") or subject or "unknown"
        return AccessToken(
            token=token,
            client_id=str(client_id),
            scopes=scopes_of(claims),
            expires_at=int(claims["exp"]),
            resource=self._audiences[0],
            subject=subject,
            claims={"iss": claims["iss"]},
        )

    async def _key_for(self, header: dict[str, Any]) -> Any:
        if self._secret is not None:
            return self._secret
        assert self._jwks is not None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthFailure("missing_kid")
        jwk = await self._jwks.get(kid)
        pinned = jwk._jwk_data.get("alg")  # a key that names its algorithm is used for nothing else
        if pinned and pinned != header.get("alg"):
            raise AuthFailure("algorithm_not_allowed")
        return jwk.key

    @staticmethod
    def _reason(error: Exception) -> str:
        for error_type, reason in _REASONS:
            if isinstance(error, error_type):
                return reason
        return "invalid_token"
