"""GitHub's REST API as this server uses it: its own credential, the allowlist before any call, one shared
budget, conditional reads, and GitHub's answers mapped to the caller's or the server's fault.

- **Allowlist first.** Every path names its owner and repository; `call` refuses one the settings do not list
  before anything is sent.
- **The budget is shared.** `X-RateLimit-Remaining/Reset` of every answer is kept in Redis per credential, so
  every replica sees what the others spent. Under `github_budget_reserve` an unconditional call is refused with
  the reset time; a secondary limit (403/429 with `Retry-After`) blocks every replica until it passes. Reads are
  retried (and wait a `Retry-After` that fits the deadline); writes never are.
- **Conditional reads.** A read's `ETag` and answer are cached in Redis under the credential and the request;
  the next read sends `If-None-Match`, and a 304 (which GitHub does not count against the primary budget) is
  answered from the cache. The key names the credential (by digest, never the token): the answer is what that
  credential may see, and every caller of this server acts through the same credential and allowlist.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, cast

from redis.asyncio import Redis

from apps.github.config import GithubSettings
from apps.github.credential import Credential, FineGrainedToken, InstallationToken
from apps.github.telemetry import GithubMetrics
from apps.kit import CallerError, ServerError
from apps.kit.upstream import Answer, Upstream, UpstreamUnavailable, retry_after_seconds

PREFIX = "mcpfleet:github:"
API_VERSION = "2022-11-28"
CACHE_MAX_BYTES = 512 * 1024  # a larger answer is not cached
WIDENING = re.compile(r"(?i)(^|[\s(-])(repo|org|user|owner):")


class BudgetLow(CallerError):
    """GitHub's budget for this server's credential is (nearly) spent: not the caller's mistake, nor a fault
    of the server; the message says when to retry."""


@dataclass(frozen=True)
class Page:
    body: Any
    more: bool  # GitHub has a next page (`Link: rel="next"`) that was not fetched


def _at(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")


class GitHubApi:
    def __init__(
        self,
        settings: GithubSettings,
        redis: Redis,
        proxy: str | None,
        metrics: GithubMetrics,
        upstream: Upstream | None = None,
    ):
        self.settings, self.redis, self.metrics = settings, redis, metrics
        self.upstream = upstream or Upstream(
            "GitHub",
            str(settings.github_api_url),
            headers={  # Authorization is the credential's, per call
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
                "User-Agent": "mcpfleet-github",
            },
            timeout=settings.github_timeout_seconds,
            max_bytes=settings.github_max_upstream_bytes,
            read_retries=2,
            proxy=proxy,
            too_large_hint="ask for fewer items or a smaller file",
        )
        self.credential: Credential = (
            FineGrainedToken(settings.github_credential.get_secret_value())
            if settings.github_app_id is None
            else InstallationToken(settings, redis, self.upstream)
        )

    async def aclose(self) -> None:
        await self.upstream.aclose()

    def check_allowed(self, owner: str, repo: str) -> None:
        if not self.settings.allows(owner, repo):
            raise CallerError(
                f"{owner}/{repo} is not a repository this server may use "
                f"(allowed: {', '.join(self.settings.github_repositories)})"
            )

    async def read(self, owner: str, repo: str, path: str, params: dict[str, Any] | None = None) -> Page:
        return await self._read(owner, repo, f"/repos/{owner}/{repo}{path}", params, "core")

    async def search(self, owner: str, repo: str, kind: Literal["code", "issues"], query: str, per_page: int) -> Page:
        """GitHub's search, always narrowed to one allowed repository: a qualifier that names another scope
        (`repo:`, `org:`, `user:`) is refused, since GitHub would widen the search to it."""
        if WIDENING.search(query):
            raise CallerError("the query may not name a repository, organization or user: give owner and repo")
        params = {"q": f"{query} repo:{owner}/{repo}", "per_page": per_page}
        return await self._read(owner, repo, f"/search/{kind}", params, "code_search" if kind == "code" else "search")

    async def _read(self, owner: str, repo: str, url: str, params: dict[str, Any] | None, resource: str) -> Page:
        self.check_allowed(owner, repo)
        key = self._cache_key(url, params)
        cached = await self._check_budget(resource, cache_key=key)
        entry = json.loads(cached) if cached else None
        headers = {"If-None-Match": entry["etag"]} if entry else None
        answer = await self._call("GET", url, idempotent=True, params=params, headers=headers)
        if answer.status == 304 and entry is not None:
            return Page(entry["body"], entry["more"])
        self._raise_for(answer, owner, repo)
        more = 'rel="next"' in answer.headers.get("link", "")
        etag = answer.headers.get("etag")
        raw = json.dumps({"etag": etag, "body": answer.body, "more": more})
        if etag and len(raw) <= CACHE_MAX_BYTES and self.settings.github_cache_seconds:
            await self.redis.set(key, raw, ex=self.settings.github_cache_seconds)
        return Page(answer.body, more)

    async def write(self, owner: str, repo: str, path: str, body: dict[str, Any]) -> Any:
        self.check_allowed(owner, repo)
        await self._check_budget("core")
        answer = await self._call("POST", f"/repos/{owner}/{repo}{path}", idempotent=False, json_body=body)
        self._raise_for(answer, owner, repo)
        return answer.body

    async def _call(self, method: str, url: str, **request: Any) -> Answer:
        """One upstream call, counted by outcome, its budget headers kept for every replica."""
        headers = {"Authorization": await self.credential.authorization(), **(request.pop("headers", None) or {})}
        try:
            answer = await self.upstream.request(method, url, headers=headers, **request)
        except UpstreamUnavailable:
            self.metrics.calls.labels(method, "failed").inc()
            raise
        self.metrics.calls.labels(method, _outcome(answer)).inc()
        if answer.status == 401:
            await self.credential.refused()
        await self._record(answer)
        return answer

    def _cache_key(self, url: str, params: dict[str, Any] | None) -> str:
        request = json.dumps([url, sorted((params or {}).items())], default=str)
        return f"{PREFIX}etag:{self.credential.identity}:{hashlib.sha256(request.encode()).hexdigest()}"

    async def _check_budget(self, resource: str, cache_key: str | None = None) -> bytes | None:
        """Refuse while a secondary limit blocks the credential, or (unless the read is conditional, which a
        304 makes free) while the budget of the call's resource (GitHub's `core`, `search`, `code_search`: each
        counted apart) is under the reserve, or spent for the small search budgets. A read's cached answer (its
        ETag) comes in the same round trip, and is returned."""
        now, base = time.time(), self._budget_key()
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(f"{base}:{resource}")
            pipe.get(f"{base}:secondary")
            if cache_key is not None:
                pipe.get(cache_key)
            state, secondary, *rest = await pipe.execute()
        cached: bytes | None = rest[0] if rest else None
        conditional = cached is not None
        blocked_until = max(float(state.get(b"blocked_until", 0)), float(secondary or 0))
        if blocked_until > now:
            raise BudgetLow(f"GitHub asked this server to slow down; retry after {_at(blocked_until)}")
        remaining, reset = state.get(b"remaining"), float(state.get(b"reset", 0))
        if not conditional and remaining is not None and reset > now:
            if int(remaining) < (self.settings.github_budget_reserve if resource == "core" else 1):
                raise BudgetLow(
                    f"GitHub budget low ({int(remaining)} calls left for this server); retry after {_at(reset)}"
                )
        return cached

    async def _record(self, answer: Answer) -> None:
        """Keep what GitHub says of the credential's budget (per resource), for every replica; a secondary limit
        blocks the credential whatever the resource."""
        resource = answer.headers.get("x-ratelimit-resource", "core")
        key = f"{self._budget_key()}:{resource}"
        remaining, reset = answer.headers.get("x-ratelimit-remaining"), answer.headers.get("x-ratelimit-reset")
        update: dict[str, str] = {}
        if remaining is not None and remaining.isdigit() and reset is not None and reset.isdigit():
            update |= {"remaining": remaining, "reset": reset}
            if resource == "core":
                self.metrics.remaining.set(int(remaining))
        wait = retry_after_seconds(answer.headers.get("retry-after"))
        if answer.status in (403, 429) and wait is not None:  # a secondary limit: the whole credential waits
            await self.redis.set(f"{self._budget_key()}:secondary", str(time.time() + wait), ex=int(wait) + 1)
        elif answer.status in (403, 429) and remaining == "0":  # this resource's budget is spent until its reset
            update["blocked_until"] = reset if reset and reset.isdigit() else str(time.time() + 60)
        if update:
            async with self.redis.pipeline(transaction=False) as pipe:  # one round trip
                pipe.hset(key, mapping=cast(Any, update))  # redis-py types keys invariantly
                pipe.expire(key, 3600)
                await pipe.execute()

    def _budget_key(self) -> str:
        return f"{PREFIX}budget:{self.credential.identity}"

    def _raise_for(self, answer: Answer, owner: str, repo: str) -> None:
        status, message = answer.status, _message(answer.body)
        if status < 300:
            return
        if _throttled(answer):
            raise BudgetLow(f"GitHub's rate limit for this server: {message}")
        if status == 401:
            raise ServerError("GitHub refused this server's credential (401): it is invalid, expired or revoked")
        if status == 404:
            raise CallerError(f"not found in {owner}/{repo} (or not visible to this server's credential)")
        if status >= 500:
            raise ServerError(f"GitHub answered HTTP {status}")
        raise CallerError(f"GitHub answered HTTP {status}: {message}")


def _throttled(answer: Answer) -> bool:
    """GitHub's primary or secondary rate limit (403 or 429 saying so, or with Retry-After)."""
    return answer.status in (403, 429) and (
        "rate limit" in _message(answer.body).lower() or "retry-after" in answer.headers
    )


def _outcome(answer: Answer) -> str:
    if answer.status == 304:
        return "not_modified"
    if answer.status < 300:
        return "ok"
    if answer.status == 401:
        return "credential_refused"
    if _throttled(answer):
        return "throttled"
    return "failed" if answer.status >= 500 else "caller_error"


def _message(body: Any) -> str:
    return str(body.get("message", ""))[:300] if isinstance(body, dict) else ""
