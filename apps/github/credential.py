"""The server's own GitHub credential, never the caller's: a fine-grained token as configured, or a GitHub App's
installation token.

With an App (`GITHUB_APP_ID`, `GITHUB_APP_INSTALLATION_ID`, and the App's private key as `GITHUB_CREDENTIAL`):
- the key signs a short JWT (RS256; `iss` the App id, issued 60 s back for clock drift, 9 minutes long), which
  is exchanged at `POST /app/installations/{id}/access_tokens` for an installation token (GitHub: 1 hour),
  narrowed to the allowlist's repositories when it names them, and to the permissions the offered tools use;
- the token is shared by every replica through Redis, sealed (AES-GCM) with a key derived from the App's
  private key, so the platform's other Redis users cannot read it;
- it is replaced REFRESH_BEFORE_SECONDS before it expires, by one replica at a time (a Redis lock); the
  others keep using the current token meanwhile, or wait for the new one within the call's deadline;
- it is shared only by deployments asking for the same permissions and repositories (the key names a digest of
  what was asked), and a 401 drops it and backs off (1 s, doubling to 5 minutes) before the next exchange.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import jwt
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from redis.asyncio import Redis

from apps.github.config import GithubSettings, app_key
from apps.kit import AccountLink, ServerError, Upstream, current_principal

JWT_SECONDS = 540  # GitHub accepts at most 10 minutes
CLOCK_DRIFT_SECONDS = 60
REFRESH_BEFORE_SECONDS = 600
STILL_USABLE_SECONDS = 60  # while another replica refreshes, a token this far from expiry is still used
LOCK_SECONDS = 30  # longer than one exchange's deadline: a replica that dies holding it delays the others this long
WAIT_STEP_SECONDS = 0.1
REFUSED_BACKOFF_MAX_SECONDS = 300
RELEASE_IF_OURS = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class Credential(Protocol):
    @property
    def identity(self) -> str:
        """Names the credential in cache and budget keys (a digest, never the secret)."""

    async def authorization(self) -> str: ...

    async def refused(self) -> None:
        """GitHub answered 401 to it: forget what is cached, so the next call starts afresh (after a backoff)."""

    def accepted(self) -> None:
        """GitHub answered with it: a refusal before was passing."""


class PersonToken:
    """User mode: the calling person's own GitHub App user token, from the server's vault; a person with none (or
    calling from a client they have not approved) is sent to link it (`ConnectRequired`). GitHub counts a user
    token's budget per person, so the budget and the cache are the person's (`identity`)."""

    def __init__(self, link: AccountLink):
        self.link = link

    @property
    def identity(self) -> str:
        subject = current_principal().subject or ""
        return "person-" + hashlib.sha256(subject.encode()).hexdigest()[:16]

    async def authorization(self) -> str:
        return f"Bearer {(await self.link.tokens(current_principal())).access}"

    async def refused(self) -> None:
        await self.link.forget(current_principal(), "GitHub answered 401 (revoked or expired)")

    def accepted(self) -> None:
        return None


class FineGrainedToken:
    def __init__(self, token: str):
        self._header = f"Bearer {token}"
        self.identity = hashlib.sha256(token.encode()).hexdigest()[:16]

    async def authorization(self) -> str:
        return self._header

    async def refused(self) -> None:
        return None

    def accepted(self) -> None:
        return None


@dataclass(frozen=True)
class Issued:
    token: str
    expires: float  # epoch seconds

    def left(self) -> float:
        return self.expires - time.time()


def token_scope(settings: GithubSettings) -> dict[str, Any]:
    """What the installation token may do: the permissions of the offered tools, and the allowlist's repositories
    when every entry names one repository of one owner (an `owner/*` entry needs the installation's whole set)."""
    level = "read" if settings.github_read_only else "write"
    permissions = {"metadata": "read"}
    if "repos" in settings.github_toolsets:
        permissions["contents"] = "read"
    if "issues" in settings.github_toolsets:
        permissions["issues"] = level
    if "pulls" in settings.github_toolsets:
        permissions["pull_requests"] = "read"
        permissions["contents"] = "read"
        permissions["issues"] = permissions.get("issues", level)  # comments on a pull request are issue comments
    scope: dict[str, Any] = {"permissions": permissions}
    owners = {entry.split("/")[0] for entry in settings.github_repositories}
    names = [entry.split("/")[1] for entry in settings.github_repositories]
    if len(owners) == 1 and "*" not in names:
        scope["repositories"] = sorted(names)
    return scope


class InstallationToken:
    def __init__(self, settings: GithubSettings, redis: Redis, upstream: Upstream):
        assert settings.github_app_id is not None and settings.github_app_installation_id is not None
        pem = settings.github_credential.get_secret_value()
        self.app_id, self.installation = settings.github_app_id, settings.github_app_installation_id
        self.redis, self.upstream, self.scope = redis, upstream, token_scope(settings)
        self._key = app_key(pem)
        self.identity = f"app{self.app_id}-installation{self.installation}"  # GitHub counts the budget per installation
        # The token is shared by the deployments that ask for the same permissions and repositories, never by one
        # that asks for less (a read-only deployment must not run with another's write token).
        asked = hashlib.sha256(json.dumps(self.scope, sort_keys=True).encode()).hexdigest()[:16]
        self._shared_key = f"{settings.redis_key_prefix}github:installation-token:{self.identity}:{asked}"
        self._lock_key = f"{self._shared_key}:refresh"
        sealing = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"mcpfleet github installation token")
        self._aead = AESGCM(sealing.derive(pem.encode()))
        self._held: Issued | None = None
        self._refreshing = asyncio.Lock()  # one refresh at a time in this process
        self._refusals = 0  # 401s in a row
        self._not_before = 0.0  # monotonic: no exchange before this, after a refusal

    async def authorization(self) -> str:
        wait = self._not_before - time.monotonic()
        if wait > 0:
            raise ServerError(
                f"GitHub refused this server's App credential (401); the next try is in {wait:.0f} s (check the "
                "App's installation and its access to the allowed repositories)"
            )
        return f"Bearer {(await self._current()).token}"

    async def refused(self) -> None:
        """Drop the token, and back off before the next exchange (1 s, doubling to REFUSED_BACKOFF_MAX_SECONDS):
        a credential GitHub refuses must not cost an exchange per call."""
        self._refusals += 1
        self._not_before = time.monotonic() + min(2 ** (self._refusals - 1), REFUSED_BACKOFF_MAX_SECONDS)
        self._held = None
        await self.redis.delete(self._shared_key)

    def accepted(self) -> None:
        self._refusals = 0

    async def _current(self) -> Issued:
        if self._held is not None and self._held.left() > REFRESH_BEFORE_SECONDS:
            return self._held
        async with self._refreshing:
            deadline = time.monotonic() + self.upstream.deadline
            while True:
                if self._held is not None and self._held.left() > REFRESH_BEFORE_SECONDS:
                    return self._held
                shared = await self._shared()
                if shared is not None and shared.left() > REFRESH_BEFORE_SECONDS:
                    self._held = shared
                    return shared
                me = os.urandom(8).hex()
                if await self.redis.set(self._lock_key, me, nx=True, ex=LOCK_SECONDS):
                    try:
                        # Another replica may have refreshed between the read above and taking the lock.
                        shared = await self._shared()
                        if shared is not None and shared.left() > REFRESH_BEFORE_SECONDS:
                            self._held = shared
                        else:
                            self._held = await self._exchange()
                            await self._share(self._held)
                    finally:
                        await self.redis.eval(RELEASE_IF_OURS, 1, self._lock_key, me)
                    return self._held
                # Another replica is refreshing: a token still good for a while serves meanwhile.
                for usable in (shared, self._held):
                    if usable is not None and usable.left() > STILL_USABLE_SECONDS:
                        return usable
                if time.monotonic() > deadline:
                    raise ServerError("GitHub App token: another replica's refresh did not finish in time; retry")
                await asyncio.sleep(WAIT_STEP_SECONDS)

    async def _exchange(self) -> Issued:
        now = int(time.time())
        claims = {"iat": now - CLOCK_DRIFT_SECONDS, "exp": now + JWT_SECONDS, "iss": str(self.app_id)}
        signed = jwt.encode(claims, self._key, algorithm="RS256")
        answer = await self.upstream.request(
            "POST",
            f"/app/installations/{self.installation}/access_tokens",
            idempotent=True,  # a second exchange only issues another token
            json_body=self.scope,
            headers={"Authorization": f"Bearer {signed}"},
        )
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.status != 201 or not isinstance(body.get("token"), str):
            message = str(body.get("message", ""))[:200]
            raise ServerError(
                f"GitHub refused this server's App credential (HTTP {answer.status}: {message}); check the App id, "
                "the installation id, the private key, and that the App is installed on the allowed repositories"
            )
        expires = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00")).timestamp()
        return Issued(body["token"], expires)

    async def _share(self, issued: Issued) -> None:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(
            nonce, json.dumps([issued.token, issued.expires]).encode(), self._shared_key.encode()
        )
        await self.redis.set(self._shared_key, nonce + sealed, exat=int(issued.expires))

    async def _shared(self) -> Issued | None:
        raw = await self.redis.get(self._shared_key)
        if not isinstance(raw, bytes):
            return None
        try:
            token, expires = json.loads(self._aead.decrypt(raw[:12], raw[12:], self._shared_key.encode()))
        except (InvalidTag, ValueError, TypeError):  # sealed under a rotated key, or damaged: refresh instead
            return None
        return Issued(token, float(expires))
