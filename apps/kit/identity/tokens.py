"""OAuth 2.1 resource-server token checks: who a bearer token speaks for, or why it is refused.

A token is accepted only if its signature verifies with a configured key, its
`alg` is in the pinned list (so `none` and HS/RS confusion fail before any key
is used), it is unexpired (`exp` required, `nbf`/`iat` honoured with the
configured leeway, the one expiry check in the request path), its `iss` is our
issuer, its `aud` names this server (scheme and host compared
case-insensitively, RFC 3986), and it names a principal (`sub`, or a client
id). Where a provider puts the audience, client, scopes and groups is its token
profile (`apps.kit.identity.profiles`). Every refusal is counted and logged with
a reason, never with the token.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from apps.kit.declare.config import KitSettings
from apps.kit.identity.profiles import PROFILES
from apps.kit.observe.logs import log_event
from apps.kit.observe.metrics import KitMetrics
from apps.kit.upstream import read_capped
from apps.kit.wire.outcomes import AuthFailureReason

MAX_JWKS_BYTES = 256 * 1024
NUMERIC_DATE_CLAIMS = ("exp", "nbf", "iat")
VERIFIED_CACHE_SIZE = 1024  # tokens whose verification is remembered until they expire
MAX_CACHED_TOKEN_CHARS = 4096
JWKS_RETRY_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0)  # seconds between retries of a failed fetch
ACCESS_TOKEN_TYPES = frozenset({"at+jwt", "application/at+jwt"})  # RFC 9068 `typ`


class AuthFailure(Exception):
    """A token was refused; `reason` is a short, log-safe label."""

    def __init__(self, reason: AuthFailureReason):
        super().__init__(reason.value)
        self.reason = reason


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    subject: str | None
    client_id: str | None
    scopes: frozenset[str]
    expires_at: int
    groups: frozenset[str] = frozenset()  # as the provider's token profile names them

    @property
    def rate_key(self) -> str:
        return f"sub:{self.subject}" if self.subject else f"client:{self.client_id}"


class JwksKeys:
    """Public keys from a JWKS URL, cached by `kid`.

    An unknown `kid` triggers a refetch (key rotation), at most once per
    `min_refresh_seconds`, so a flood of forged kids cannot hammer the IdP. A
    failed fetch keeps the last good keys and is retried after a short backoff
    (not the refresh floor), so a replica that started while the IdP was briefly
    unreachable recovers within seconds.
    """

    def __init__(
        self,
        url: str,
        min_refresh_seconds: float = 60.0,
        timeout: float = 5.0,
        backoff: tuple[float, ...] = JWKS_RETRY_BACKOFF,
        proxy: str | None = None,
    ):
        self._url = url
        self._proxy = proxy  # the platform's egress proxy, from configuration; the environment's is ignored
        self._min_refresh = min_refresh_seconds
        self._timeout = timeout
        self._backoff = backoff
        self._keys: dict[str, jwt.PyJWK] = {}
        self.version = 0  # bumped whenever the key set changes
        self._next_fetch_at = float("-inf")
        self._failures = 0
        self._last_error: str | None = None
        self._lock = asyncio.Lock()

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    async def get(self, kid: str) -> jwt.PyJWK:
        if kid in self._keys:
            return self._keys[kid]
        await self.refresh_if_due(lambda: kid not in self._keys)
        if kid not in self._keys:
            raise AuthFailure(AuthFailureReason.UNKNOWN_KID)
        return self._keys[kid]

    async def refresh_if_due(self, still_needed: Any = lambda: True) -> None:
        """Fetch unless one ran too recently; concurrent callers share one fetch."""
        async with self._lock:
            if still_needed() and time.monotonic() >= self._next_fetch_at:
                await self._fetch()

    async def check(self) -> None:
        """Readiness: a replica with no usable key refuses every token, so it is not ready."""
        if not self._keys:
            await self.refresh_if_due()
        if not self._keys:
            raise JwksUnavailable(f"no signing keys ({self._last_error or 'not fetched yet'})")

    async def _fetch(self) -> None:
        try:
            async with (
                asyncio.timeout(self._timeout * 2),  # the whole fetch, however the key set trickles in
                httpx.AsyncClient(timeout=self._timeout, proxy=self._proxy, trust_env=False) as client,
                client.stream("GET", self._url) as response,
            ):
                response.raise_for_status()
                body = await read_capped(response, MAX_JWKS_BYTES)  # AnswerTooLarge is a ValueError
            jwk_set = jwt.PyJWKSet.from_json(body.decode())
            keys = {key.key_id: key for key in jwk_set.keys if key.key_id}
            if not keys:
                raise ValueError("JWKS has no key with a kid")
        except (httpx.HTTPError, ValueError, jwt.PyJWTError, TimeoutError) as error:
            self._failures += 1
            self._last_error = type(error).__name__
            delay = min(self._backoff[min(self._failures, len(self._backoff)) - 1], self._min_refresh)
            self._next_fetch_at = time.monotonic() + delay
            log_event(
                "jwks_fetch_failed",
                logging.WARNING,
                error=self._last_error,
                kept_keys=len(self._keys),
                retry_in_s=delay,
            )
            return
        if set(keys) != set(self._keys) or any(keys[k]._jwk_data != self._keys[k]._jwk_data for k in keys):
            self.version += 1
        self._keys, self._failures, self._last_error = keys, 0, None
        self._next_fetch_at = time.monotonic() + self._min_refresh


class JwksUnavailable(RuntimeError):
    """No signing key could be loaded from the issuer's JWKS."""


_REASONS: list[tuple[type[Exception], AuthFailureReason]] = [
    (jwt.ExpiredSignatureError, AuthFailureReason.EXPIRED),
    (jwt.ImmatureSignatureError, AuthFailureReason.NOT_YET_VALID),
    (jwt.InvalidIssuerError, AuthFailureReason.WRONG_ISSUER),
    (jwt.MissingRequiredClaimError, AuthFailureReason.MISSING_CLAIM),
    (jwt.InvalidSignatureError, AuthFailureReason.BAD_SIGNATURE),
    (jwt.InvalidAlgorithmError, AuthFailureReason.ALGORITHM_NOT_ALLOWED),
    (jwt.DecodeError, AuthFailureReason.MALFORMED),
]


def normalized_uri(uri: str) -> str:
    """RFC 3986 §6.2.2-6.2.3: scheme and host are case-insensitive, default ports and a trailing slash drop."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return uri
    if not parts.scheme or not parts.hostname:
        return uri
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0]
    authority = f"{userinfo}@{host}" if userinfo else host
    path = parts.path.rstrip("/")
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{authority}{path}{query}"


class JwtVerifier:
    """Verifies JWT access tokens issued for this resource server."""

    def __init__(self, settings: KitSettings, metrics: KitMetrics, jwks: JwksKeys | None = None):
        self._issuer = settings.mcp_issuer
        self._resource = settings.resource_url
        self._audience = normalized_uri(settings.resource_url)
        self._profile = PROFILES[settings.mcp_token_profile]
        self._accepted = {self._audience} | {normalized_uri(a) for a in settings.mcp_accepted_audiences}
        self._required = ["exp", "iss", *(["aud"] if self._profile.audience_claim else [])]
        self._algorithms = list(settings.mcp_jwt_algorithms)
        self._leeway = settings.mcp_jwt_leeway_seconds
        self._require_typ = settings.mcp_jwt_require_at_typ
        self._secret = settings.mcp_jwt_secret.get_secret_value() if settings.mcp_jwt_secret else None
        if jwks is None and settings.mcp_jwks_url is not None:
            proxy = str(settings.mcp_egress_proxy) if settings.mcp_egress_proxy else None
            jwks = JwksKeys(str(settings.mcp_jwks_url), settings.mcp_jwks_min_refresh_seconds, proxy=proxy)
        self.jwks = jwks
        self._metrics = metrics
        # A verified token stays valid until it expires, unless the keys change: remembering the result
        # saves re-parsing and re-checking the signature on every request (bounded; invalid tokens never kept).
        self._verified: OrderedDict[str, Principal] = OrderedDict()
        self._verified_for = jwks.version if jwks else 0

    def record_failure(self, reason: AuthFailureReason) -> None:
        self._metrics.auth_failures.labels(reason=reason.value).inc()
        log_event("auth_failure", logging.WARNING, reason=reason.value)

    async def authenticate(self, token: str) -> Principal:
        """Verify, or count and log the refusal and raise `AuthFailure`."""
        try:
            return await self.verify(token)
        except AuthFailure as failure:
            self.record_failure(failure.reason)
            raise

    async def verify(self, token: str) -> Principal:
        """Verify or raise `AuthFailure` with the reason."""
        if self.jwks is not None and self.jwks.version != self._verified_for:
            self._verified.clear()  # a key was rotated out: what it signed must be checked again
            self._verified_for = self.jwks.version
        known = self._verified.get(token)
        if known is not None:
            if time.time() <= known.expires_at + self._leeway:
                self._verified.move_to_end(token)
                return known
            del self._verified[token]
            raise AuthFailure(AuthFailureReason.EXPIRED)
        principal = await self._verify(token)
        if len(token) <= MAX_CACHED_TOKEN_CHARS:
            self._verified[token] = principal
            if len(self._verified) > VERIFIED_CACHE_SIZE:
                self._verified.popitem(last=False)
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthFailure(AuthFailureReason.MALFORMED) from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self._algorithms:
            raise AuthFailure(AuthFailureReason.ALGORITHM_NOT_ALLOWED)
        if self._require_typ and str(header.get("typ", "")).lower() not in ACCESS_TOKEN_TYPES:
            raise AuthFailure(AuthFailureReason.WRONG_TOKEN_TYPE)
        key = await self._key_for(header)
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": self._required, "verify_iat": True, "verify_aud": False},
            )
        except jwt.PyJWTError as error:
            raise AuthFailure(self._reason(error)) from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        for name in NUMERIC_DATE_CLAIMS:  # RFC 7519 §2: a NumericDate is a JSON number, never a string
            value = claims.get(name)
            if name in claims and (isinstance(value, bool) or not isinstance(value, int | float)):
                raise AuthFailure(AuthFailureReason.MALFORMED)
        profile = self._profile
        if not profile.holds_required(claims):
            raise AuthFailure(AuthFailureReason.WRONG_TOKEN_TYPE)  # e.g. a Cognito ID token
        if not any(normalized_uri(a) in self._accepted for a in profile.audiences(claims)):
            raise AuthFailure(AuthFailureReason.WRONG_AUDIENCE)
        subject = claims.get("sub")
        subject = subject if isinstance(subject, str) and subject else None
        client_id = profile.client(claims)
        if subject is None and client_id is None:
            raise AuthFailure(
                AuthFailureReason.MISSING_PRINCIPAL
            )  # else every such token would share one rate-limit bucket
        scopes, groups = profile.scopes(claims, self._resource), profile.groups(claims)
        return Principal(subject, client_id, scopes, int(claims["exp"]), groups)

    async def _key_for(self, header: dict[str, Any]) -> Any:
        if self._secret is not None:
            return self._secret
        assert self.jwks is not None
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthFailure(AuthFailureReason.MISSING_KID)
        jwk = await self.jwks.get(kid)
        pinned = jwk._jwk_data.get("alg")  # a key that names its algorithm is used for nothing else
        if pinned and pinned != header.get("alg"):
            raise AuthFailure(AuthFailureReason.ALGORITHM_NOT_ALLOWED)
        return jwk.key

    @staticmethod
    def _reason(error: Exception) -> AuthFailureReason:
        for error_type, reason in _REASONS:
            if isinstance(error, error_type):
                return reason
        return AuthFailureReason.INVALID_TOKEN
