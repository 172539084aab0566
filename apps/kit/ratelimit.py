"""Per-principal rate limit on tool calls: a sliding 60-second window.

In memory for one replica; in Redis (one sorted set per principal, updated by
a Lua script that reads Redis's own clock) when `REDIS_URL` is set, so the
limit holds across replicas whatever their clocks say. Only `tools/call`
messages count: session set-up and listing are cheap and must not eat the
budget a user sees.
"""

from __future__ import annotations

import asyncio
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


# One round trip decides every hit waiting for it, over any number of keys: KEYS are the principals,
# ARGV = limit, window (us), a tag unique to this batch, then how many hits each key asks for. For each key
# it admits as many as the window still has room for, in order, and says when the oldest entry leaves.
_SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local want = tonumber(ARGV[3 + i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local admit = math.min(want, math.max(0, limit - redis.call('ZCARD', key)))
  if admit > 0 then
    local entries = {}
    for j = 1, admit do
      entries[#entries + 1] = now
      entries[#entries + 1] = ARGV[3] .. ':' .. i .. ':' .. j
    end
    redis.call('ZADD', key, unpack(entries))
    redis.call('PEXPIRE', key, math.ceil(window / 1000))
  end
  local retry = 0
  if admit < want then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    retry = tonumber(oldest[2]) + window - now
  end
  out[#out + 1] = admit
  out[#out + 1] = retry
end
return out
"""
MAX_BATCH = 512  # hits decided by one script call at most


class RedisLimiter:
    """Sliding window shared by every replica; on Redis failure, act per `failure_mode`.

    Hits are batched: while one script call is in flight, the hits that arrive wait and are all decided by
    the next call, in arrival order, whatever their principals. The decision is exactly the one-at-a-time
    decision; under concurrency the Redis round trip is paid once per batch instead of once per call.
    """

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
        self._waiting: list[tuple[str, asyncio.Future[Decision]]] = []
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0

    async def hit(self, key: str) -> Decision:
        decision: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, decision))
        if not self._flushing:
            self._flushing = True
            self._flusher = asyncio.get_running_loop().create_task(self._flush())
        return await decision

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._decide(batch)
        finally:
            self._flushing = False

    async def _decide(self, batch: list[tuple[str, asyncio.Future[Decision]]]) -> None:
        wanted: dict[str, list[asyncio.Future[Decision]]] = {}
        for key, decision in batch:
            wanted.setdefault(key, []).append(decision)
        self.batches += 1
        try:
            answer = await self._script(
                keys=[self._prefix + key for key in wanted],
                args=[self.limit, int(self.window * 1_000_000), uuid.uuid4().hex, *map(len, wanted.values())],
            )
        except (RedisError, OSError) as error:
            await self._without_redis(wanted, error)
            return
        for index, decisions in enumerate(wanted.values()):
            admitted, retry_us = int(answer[2 * index]), float(answer[2 * index + 1])
            for position, decision in enumerate(decisions):
                if not decision.done():
                    decision.set_result(Decision(True) if position < admitted else Decision(False, retry_us / 1e6))

    async def _without_redis(self, wanted: dict[str, list[asyncio.Future[Decision]]], error: Exception) -> None:
        hits = sum(map(len, wanted.values()))
        self._metrics.rate_limit_backend_errors.inc(hits)
        log_event(
            "rate_limit_backend_error",
            logging.WARNING,
            error=type(error).__name__,
            failure_mode=self.failure_mode.value,
            hits=hits,
        )
        for key, decisions in wanted.items():
            for decision in decisions:
                if self.failure_mode is RedisFailureMode.OPEN:
                    result = Decision(True)
                elif self.failure_mode is RedisFailureMode.CLOSED:
                    result = Decision(False, 1.0)
                else:
                    result = await self._fallback.hit(key)
                if not decision.done():
                    decision.set_result(result)
