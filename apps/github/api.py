"""GitHub's REST API as this server uses it: its own credential, the allowlist before any call, one shared
budget with a share per caller, conditional reads, and GitHub's answers mapped to the caller's or the server's fault.

- **Allowlist first.** Every path names its owner and repository; `call` refuses one the settings do not list
  before anything is sent. Names are compared and cached in lower case (GitHub's are case-insensitive).
- **The budget is shared, and so is each caller's share of it.** `X-RateLimit-Remaining/Reset/Limit` of every
  answer is kept in Redis per credential, so every replica sees what the others spent. Each unconditional call
  reserves one unit atomically (a Redis script) before it is sent: under `github_budget_reserve` it is refused
  with the reset time, and so is a caller who spent `github_budget_share_percent` of the window's limit; a
  secondary limit (403/429 with `Retry-After`, at most an hour believed) blocks every replica until it passes.
  Reads are retried (and wait a `Retry-After` that fits the deadline); writes never are.
- **Conditional reads.** A read's `ETag` and answer are kept in this process (`apps/github/cache.py`); the next
  read sends `If-None-Match`, and a 304 (which GitHub does not count against the primary budget) is answered
  from the cache. The credential is the process's own, and every caller acts through it and the allowlist.
- **GitHub's words stay with GitHub.** An error's `message` is GitHub's text about our request: the caller is
  told the status and what it means, never the text. A redirect (a renamed or moved repository) is the
  caller's: it named something that is not there any more.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from redis.asyncio import Redis

from apps.github.cache import ResponseCache
from apps.github.config import GithubSettings
from apps.github.credential import Credential, FineGrainedToken, InstallationToken
from apps.github.telemetry import GithubMetrics
from apps.kit import (
    Answer,
    CallerError,
    ServerError,
    Upstream,
    UpstreamRedirected,
    UpstreamUnavailable,
    current_principal,
    retry_after_seconds,
)

API_VERSION = "2022-11-28"
MAX_RECORDED = 10_000  # budget keys whose last record this replica remembers
RECORD_AT_LEAST_EVERY = 10.0  # seconds: an unchanged budget is written to Redis again at least this often
MAX_BLOCK_SECONDS = 3600  # the longest wait believed from GitHub (Retry-After, a reset): its windows are an hour
# A search term: words, numbers, paths and names; no qualifier (`:`), operator, quote or parenthesis of the caller's.
SEARCH_TERM = re.compile(r"[\w.@#/+*-]{1,100}")
SEARCH_OPERATORS = frozenset({"AND", "OR", "NOT"})
STATUS_MEANING = {
    400: "the request was malformed",
    403: "forbidden for this server's credential",
    409: "a conflict with the repository's state",
    410: "gone (disabled or deleted)",
    422: "the request was not valid for this repository",
}

# Atomically: refuse while blocked; unless the read is conditional, refuse under the reserve or past the caller's
# share of the window, else reserve one unit of the remaining budget and count it to the caller. ARGV: now,
# reserve, caller, share percent, conditional (1/0). Returns {verdict, number, when}.
RESERVE = """
local blocked = math.max(tonumber(redis.call('hget', KEYS[1], 'blocked_until') or '0'),
                         tonumber(redis.call('get', KEYS[2]) or '0'))
local now = tonumber(ARGV[1])
if blocked > now then return {'blocked', 0, tostring(blocked)} end
if ARGV[5] == '1' then return {'ok', 0, '0'} end
local remaining = tonumber(redis.call('hget', KEYS[1], 'remaining') or '-1')
local reset = tonumber(redis.call('hget', KEYS[1], 'reset') or '0')
local known = remaining >= 0 and reset > now
if known and remaining < tonumber(ARGV[2]) then return {'low', remaining, tostring(reset)} end
local limit = tonumber(redis.call('hget', KEYS[1], 'limit') or '0')
local share = math.max(1, math.floor(limit * tonumber(ARGV[4]) / 100))
local spent = tonumber(redis.call('hget', KEYS[1], 'spent:' .. ARGV[3]) or '0')
if known and limit > 0 and spent >= share then return {'share', spent, tostring(reset)} end
if known then redis.call('hincrby', KEYS[1], 'remaining', -1) end
redis.call('hincrby', KEYS[1], 'spent:' .. ARGV[3], 1)
if redis.call('ttl', KEYS[1]) < 0 then redis.call('expire', KEYS[1], 3660) end
return {'ok', 0, '0'}
"""
# What GitHub said of the budget: a new window (another reset) starts afresh, callers' counts included (the first
# answer's window keeps what was counted before it); within a window the smaller remaining wins (answers overtake
# reservations). ARGV: remaining, reset, limit.
RECORD = """
local stored = redis.call('hget', KEYS[1], 'reset')
if stored and stored ~= ARGV[2] then redis.call('del', KEYS[1]) end
local known = tonumber(redis.call('hget', KEYS[1], 'remaining') or ARGV[1])
redis.call('hset', KEYS[1], 'remaining', math.min(known, tonumber(ARGV[1])), 'reset', ARGV[2], 'limit', ARGV[3])
redis.call('expireat', KEYS[1], tonumber(ARGV[2]) + 60)
return 1
"""


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
        credential: Credential | None = None,
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
        self.credential: Credential = credential or (
            FineGrainedToken(settings.github_credential.get_secret_value())
            if settings.github_app_id is None
            else InstallationToken(settings, redis, self.upstream)
        )
        self.cache = ResponseCache(settings.github_cache_max_bytes, settings.github_cache_seconds)
        self._reserve = redis.register_script(RESERVE)
        self._record_budget = redis.register_script(RECORD)
        self._recorded: dict[str, tuple[str, int, float]] = {}  # budget key -> (reset, remaining, when) last recorded

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

    async def search(
        self,
        owner: str,
        repo: str,
        kind: Literal["code", "issues"],
        query: str,
        per_page: int,
        qualifiers: tuple[str, ...] = (),
    ) -> Page:
        """GitHub's search, narrowed to one allowed repository: the query is built from the caller's terms (words,
        names, paths: no qualifier, operator, quote or parenthesis), so nothing can widen it or detach the
        `repo:` qualifier; and whatever GitHub answers from another repository is dropped. `qualifiers` are the
        server's own (`is:issue`)."""
        self.check_allowed(owner, repo)
        params = {"q": " ".join([*search_terms(query), *qualifiers, f"repo:{owner}/{repo}"]), "per_page": per_page}
        page = await self._read(owner, repo, f"/search/{kind}", params, "code_search" if kind == "code" else "search")
        body = page.body if isinstance(page.body, dict) else {}
        items = [item for item in body.get("items") or [] if _repository_of(item) == f"{owner}/{repo}".lower()]
        return Page({**body, "items": items}, page.more)

    async def _read(self, owner: str, repo: str, url: str, params: dict[str, Any] | None, resource: str) -> Page:
        self.check_allowed(owner, repo)
        key = f"{self.credential.identity}|{_cache_key(url, params)}"  # a person's reads are theirs alone
        entry = self.cache.get(key)
        await self._check_budget(resource, conditional=entry is not None)
        headers = {"If-None-Match": entry.etag} if entry else None
        try:
            answer = await self._call("GET", url, idempotent=True, params=params, headers=headers)
        except UpstreamRedirected as moved:
            raise CallerError(
                f"{owner}/{repo} answered a redirect (HTTP {moved.status}): it was renamed or moved; "
                "ask for it by its new name (the server follows no redirect)"
            ) from None
        if answer.status == 304 and entry is not None:
            return Page(entry.body, entry.more)
        self._raise_for(answer, owner, repo)
        more = 'rel="next"' in answer.headers.get("link", "")
        etag = answer.headers.get("etag")
        if etag:
            self.cache.put(key, etag, answer.body, more, answer.size, current_principal().rate_key)
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
        except UpstreamRedirected:
            self.metrics.calls.labels(method, "caller_error").inc()
            raise
        except UpstreamUnavailable:
            self.metrics.calls.labels(method, "failed").inc()
            raise
        self.metrics.calls.labels(method, _outcome(answer)).inc()
        if answer.status == 401:
            await self.credential.refused()
        else:
            self.credential.accepted()
        await self._record(answer)
        return answer

    async def _check_budget(self, resource: str, conditional: bool = False) -> None:
        """Refuse while a secondary limit blocks the credential; unless the read is conditional (a 304 is free),
        refuse under the reserve of the call's resource (GitHub's `core`, `search`, `code_search`: each counted
        apart; the small search budgets are refused only when spent) or past this caller's share of it, or reserve
        one unit of it. One atomic round trip, shared by every replica."""
        reserve = self.settings.github_budget_reserve if resource == "core" else 1
        verdict, number, when = await self._reserve(
            keys=[f"{self._budget_key()}:{resource}", f"{self._budget_key()}:secondary"],
            args=[
                f"{time.time():.3f}",
                reserve,
                current_principal().rate_key,
                # a person's own token has a budget of its own (GitHub counts it per user): all of it is theirs
                100 if self.settings.github_identity == "user" else self.settings.github_budget_share_percent,
                int(conditional),
            ],
        )
        verdict = verdict.decode() if isinstance(verdict, bytes) else verdict
        until = float(when)
        if verdict == "blocked":
            raise BudgetLow(f"GitHub asked this server to slow down; retry after {_at(until)}")
        if verdict == "low":
            raise BudgetLow(f"GitHub budget low ({int(number)} calls left for this server); retry after {_at(until)}")
        if verdict == "share":
            raise BudgetLow(
                f"you have spent your share of this server's GitHub budget ({int(number)} calls, "
                f"{self.settings.github_budget_share_percent} % of it); retry after {_at(until)}"
            )

    async def _record(self, answer: Answer) -> None:
        """Keep what GitHub says of the credential's budget (per resource), for every replica; a secondary limit
        blocks the credential whatever the resource, for at most MAX_BLOCK_SECONDS."""
        resource = answer.headers.get("x-ratelimit-resource", "core")
        key = f"{self._budget_key()}:{resource}"
        remaining, reset = answer.headers.get("x-ratelimit-remaining"), answer.headers.get("x-ratelimit-reset")
        limit = answer.headers.get("x-ratelimit-limit", "0")
        now = time.time()
        if remaining is not None and remaining.isdigit() and reset is not None and reset.isdigit():
            reset = str(min(int(reset), int(now) + MAX_BLOCK_SECONDS))
            if self._changes_budget(key, int(remaining), reset, now):
                await self._record_budget(keys=[key], args=[remaining, reset, limit if limit.isdigit() else "0"])
                if len(self._recorded) >= MAX_RECORDED:  # one per person and resource: bounded, and forgetting is safe
                    self._recorded.clear()
                self._recorded[key] = (reset, int(remaining), now)
            if resource == "core":
                self.metrics.remaining.set(int(remaining))
        wait = retry_after_seconds(answer.headers.get("retry-after"))
        if answer.status in (403, 429) and wait is not None:  # a secondary limit: the whole credential waits
            wait = min(wait, MAX_BLOCK_SECONDS)
            await self.redis.set(f"{self._budget_key()}:secondary", f"{now + wait:.3f}", ex=int(wait) + 1)
        elif answer.status in (403, 429) and remaining == "0":  # this resource's budget is spent until its reset
            until = float(reset) if reset and reset.isdigit() else now + 60
            await self.redis.hset(key, "blocked_until", f"{min(until, now + MAX_BLOCK_SECONDS):.3f}")

    def _changes_budget(self, key: str, remaining: int, reset: str, now: float) -> bool:
        """Whether recording this answer's budget can change what Redis holds. Within a window the smaller remaining
        wins, and Redis's is at most what this replica last recorded, so an answer of the same window saying as
        much or more (a 304, which GitHub does not count) changes nothing: its round trip is skipped. Each key is
        recorded again at least every `RECORD_AT_LEAST_EVERY` seconds, in case Redis lost it."""
        last = self._recorded.get(key)
        return last is None or last[0] != reset or remaining < last[1] or now - last[2] >= RECORD_AT_LEAST_EVERY

    def _budget_key(self) -> str:
        return f"{self.settings.redis_key_prefix}github:budget:{self.credential.identity}"

    def _raise_for(self, answer: Answer, owner: str, repo: str) -> None:
        status = answer.status
        if status < 300:
            return
        if _throttled(answer):
            wait = retry_after_seconds(answer.headers.get("retry-after"))
            when = f"; retry after {_at(time.time() + min(wait, MAX_BLOCK_SECONDS))}" if wait is not None else ""
            raise BudgetLow(f"GitHub's rate limit for this server was reached{when}")
        if status == 401 and self.settings.github_identity == "user":
            raise CallerError(
                "GitHub refused the token of your linked account (revoked, or expired): it is forgotten; call again "
                "to link your account"
            )
        if status == 401:
            raise ServerError("GitHub refused this server's credential (401): it is invalid, expired or revoked")
        if status == 404:
            raise CallerError(f"not found in {owner}/{repo} (or not visible to this server's credential)")
        if status >= 500:
            raise ServerError(f"GitHub answered HTTP {status}")
        # GitHub's message is not passed on: it is GitHub's text, and it may quote what was sent.
        raise CallerError(f"GitHub answered HTTP {status}: {STATUS_MEANING.get(status, 'refused')}")


def search_terms(query: str) -> list[str]:
    """The caller's query as plain terms, or the caller's error naming what may not be in it."""
    text = "".join(c for c in unicodedata.normalize("NFKC", query) if unicodedata.category(c) != "Cf")
    terms = text.split()
    for term in terms:
        if term.upper() in SEARCH_OPERATORS or not SEARCH_TERM.fullmatch(term) or term.startswith("-"):
            raise CallerError(
                f"search terms are words, names and paths: {term[:40]!r} is not one (no qualifiers such as repo:, "
                "no AND, OR or NOT, no quotes or parentheses, no leading -); give owner and repo for the scope"
            )
    if not terms:
        raise CallerError("the query has no search terms")
    return terms


def _repository_of(item: dict[str, Any]) -> str:
    """`owner/repo` of a search result, lower case: issues name it by URL, code results by object."""
    if isinstance(item.get("repository"), dict):
        return str(item["repository"].get("full_name", "")).lower()
    url = str(item.get("repository_url", ""))
    return "/".join(url.rstrip("/").split("/")[-2:]).lower() if "/repos/" in url else ""


def _cache_key(url: str, params: dict[str, Any] | None) -> str:
    """One key per request as GitHub reads it: names are case-insensitive, parameters unordered."""
    parts = url.split("/")
    if len(parts) > 3 and parts[1] == "repos":
        parts[2], parts[3] = parts[2].lower(), parts[3].lower()
    request = json.dumps(["/".join(parts), sorted((params or {}).items())], default=str)
    return hashlib.sha256(request.encode()).hexdigest()


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
