"""Per-principal rate limit on tool calls: a sliding 60-second window.

In memory for one replica; in Redis (one sorted set per principal, updated by
a Lua script that reads Redis's own clock) when `REDIS_URL` is set, so the
limit holds across replicas whatever their clocks say. Only `tools/call`
messages count: session set-up and listing are cheap and must not eat the
budget a user sees.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from apps.kit.config import RedisFailureMode
from apps.kit.logs import log_event
from apps.kit.metrics import KitMetrics

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0


class Limiter(Protocol):
    async def hit(self, key: str) -> Decision: ...


class MemoryLimiter:
    """Sliding window per key in this process; keys idle for a whole window are swept, so memory stays bounded
    by the principals active in the last window."""

    SWEEP_EVERY = 1024

    def __init__(self, limit: int, window: float = WINDOW_SECONDS):
        self.limit = limit
        self.window = window
        self._hits: dict[str, deque[float]] = {}
        self._calls = 0

    async def hit(self, key: str) -> Decision:
        now = time.monotonic()
        self._calls += 1
        if self._calls % self.SWEEP_EVERY == 0:
            self._hits = {k: v for k, v in self._hits.items() if v and v[-1] > now - self.window}
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
