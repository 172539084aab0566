"""Per-principal rate limit on tool calls: a sliding 60-second window.

In memory for one replica; in Redis (one sorted set per principal, updated by
a Lua script that reads Redis's own clock) when `REDIS_URL` is set, so the
limit holds across replicas whatever their clocks say. Only `tools/call`
messages count: session set-up and listing are cheap and must not eat the
budget a user sees.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps.kit.auth import principal_of
from apps.kit.config import RedisFailureMode
from apps.kit.logs import log_event
from apps.kit.metrics import KitMetrics

WINDOW_SECONDS = 60.0
MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0


class Limiter(Protocol):
    async def hit(self, key: str) -> Decision: ...


class MemoryLimiter:
    """Sliding window per key in this process."""

    def __init__(self, limit: int, window: float = WINDOW_SECONDS):
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}

    async def hit(self, key: str) -> Decision:
        now = time.monotonic()
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) < self.limit:
            hits.append(now)
            return Decision(True)
        return Decision(False, hits[0] + self.window - now)


_SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, 0}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tonumber(oldest[2]) + window - now}
"""


class RedisLimiter:
    """Sliding window shared by every replica; on Redis failure, act per `failure_mode`."""

    def __init__(
        self,
        redis: Redis,
        limit: int,
        failure_mode: RedisFailureMode,
        metrics: KitMetrics,
        window: float = WINDOW_SECONDS,
        prefix: str = "mcpfleet:ratelimit:",
    ):
        self.redis = redis
        self.limit = limit
        self.window = window
        self.failure_mode = failure_mode
        self._prefix = prefix
        self._script = redis.register_script(_SLIDING_WINDOW_LUA)
        self._fallback = MemoryLimiter(limit, window)
        self._metrics = metrics

    async def hit(self, key: str) -> Decision:
        try:
            allowed, retry_us = await self._script(
                keys=[self._prefix + key], args=[self.limit, int(self.window * 1_000_000), uuid.uuid4().hex]
            )
        except (RedisError, OSError) as error:
            self._metrics.rate_limit_backend_errors.inc()
            log_event(
                "rate_limit_backend_error",
                logging.WARNING,
                error=type(error).__name__,
                failure_mode=self.failure_mode.value,
            )
            if self.failure_mode is RedisFailureMode.OPEN:
                return Decision(True)
            if self.failure_mode is RedisFailureMode.CLOSED:
                return Decision(False, 1.0)
            return await self._fallback.hit(key)
        return Decision(bool(allowed), float(retry_us) / 1_000_000)


def count_tool_calls(body: bytes) -> int:
    """How many JSON-RPC `tools/call` requests a POST body carries (0 if it is not JSON)."""
    try:
        message: Any = json.loads(body)
    except ValueError:
        return 0
    messages = message if isinstance(message, list) else [message]
    return sum(1 for m in messages if isinstance(m, dict) and m.get("method") == "tools/call")


class RateLimitGate:
    """ASGI wrapper for the MCP endpoint; runs after authentication, before the transport."""

    def __init__(self, app: ASGIApp, limiter: Limiter, metrics: KitMetrics):
        self.app = app
        self.limiter = limiter
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        user = scope.get("user")
        if scope["type"] != "http" or scope.get("method") != "POST" or not isinstance(user, AuthenticatedUser):
            await self.app(scope, receive, send)
            return
        body, more = await _read_body(receive)
        if more:
            await _send_json(send, 413, {"error": "request_too_large"})
            return
        principal = principal_of(user.access_token)
        for _ in range(count_tool_calls(body)):
            decision = await self.limiter.hit(principal.rate_key)
            if not decision.allowed:
                retry_after = max(1, math.ceil(decision.retry_after))
                self.metrics.rate_limited.inc()
                log_event(
                    "rate_limited",
                    logging.WARNING,
                    subject=principal.subject,
                    client_id=principal.client_id,
                    retry_after_s=retry_after,
                )
                await _send_json(
                    send,
                    429,
                    {"error": "rate_limited", "retry_after": retry_after},
                    [(b"retry-after", str(retry_after).encode())],
                )
                return
        await self.app(scope, _replay(body, receive), send)


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks), False


def _replay(body: bytes, downstream: Receive) -> Receive:
    """Hand the buffered body on once, then pass through (so a real disconnect is still seen)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await downstream()

    return receive


async def _send_json(
    send: Send, status: int, payload: dict[str, Any], headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
