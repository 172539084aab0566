"""The rate limit shared by every replica, in Redis: one sorted set per principal, updated by a Lua script that
reads Redis's own clock, so the limit holds across replicas whatever their clocks say. A principal calling
concurrently is lent a few slots for half a second, so most of its hits skip the round trip, and twice as many
each time a lease runs out early; the ceiling stays exact. On Redis failure it acts per `RATE_LIMIT_REDIS_FAILURE`.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from redis.asyncio import Redis
from redis.exceptions import RedisError

from apps.kit.call.ratelimit.memory import WINDOW_SECONDS, Decision, MemoryLimiter
from apps.kit.declare.config import RedisFailureMode
from apps.kit.observe.logs import log_event
from apps.kit.observe.metrics import KitMetrics

_SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local lease = tonumber(ARGV[4])
local share = tonumber(ARGV[5])
local out = {}
for i, key in ipairs(KEYS) do
  local want = tonumber(ARGV[4 + 2 * i])
  local extra = tonumber(ARGV[5 + 2 * i])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  local room = math.max(0, limit - redis.call('ZCARD', key))
  local admit = math.min(want, room)
  local lent = math.min(extra, math.floor((room - admit) / share))
  if admit + lent > 0 then
    local entries = {}
    for j = 1, admit + lent do
      entries[#entries + 1] = (j <= admit) and now or (now + lease)
      entries[#entries + 1] = ARGV[3] .. ':' .. i .. ':' .. j
    end
    redis.call('ZADD', key, unpack(entries))
    redis.call('PEXPIRE', key, math.ceil((window + lease) / 1000))
  end
  local retry = 0
  if admit < want then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    retry = tonumber(oldest[2]) + window - now
  end
  out[#out + 1] = admit
  out[#out + 1] = retry
  out[#out + 1] = lent
end
return out
"""
MAX_BATCH = 512  # hits decided by one script call at most
LEASE_SECONDS = 0.5  # how long a replica may hand out slots it was lent; then the unused ones go back
LEASE_PER_WAITING_HIT = 4  # slots asked for ahead, per hit that had to wait for the round trip
MAX_LEASE = 128  # slots lent to one replica for one principal at most (about 0.1 s of one core's calls)
LEASE_SHARE = 4  # a lease takes at most a quarter of the room a principal has left
MAX_RECENT = 10_000  # principals remembered as recently seen, at most (then all are forgotten)


@dataclass
class _Lease:
    """Slots lent to this replica for one principal: already counted in Redis, handed out here without a
    round trip until the deadline (monotonic, measured from before the request that got them)."""

    key: str
    members: list[str]
    deadline: float
    size: int = field(init=False)  # slots lent (members shrinks as they are handed out)

    def __post_init__(self) -> None:
        self.size = len(self.members)


class RedisLimiter:
    """Sliding window shared by every replica; on Redis failure, act per `failure_mode`.

    Hits are batched: while one script call is in flight, the hits that arrive wait and are all decided by
    the next call, in arrival order, whatever their principals. A principal whose hits had to queue (so it
    is calling concurrently) is also lent a few slots ahead, which this replica hands out locally for
    `LEASE_SECONDS`; when the lease ends, the unused slots are returned to Redis. The ceiling is exact: a
    lent slot counts in Redis from the moment it is lent until a window after the lease's end. The cost is
    bounded under-admission: slots lent to one replica cannot be used by another for at most
    `LEASE_SECONDS`, and a lease never takes more than 1/`LEASE_SHARE` of what the principal has left.
    A caller calling one request at a time is never lent anything: its hits are decided one by one.
    """

    def __init__(
        self,
        redis: Redis,
        limit: int,
        failure_mode: RedisFailureMode,
        metrics: KitMetrics,
        window: float = WINDOW_SECONDS,
        prefix: str = "mcpfleet:ratelimit:",
        lease_seconds: float = LEASE_SECONDS,
    ):
        self.redis = redis
        self.limit = limit
        self.window = window
        self.failure_mode = failure_mode
        self.lease_seconds = lease_seconds
        self._prefix = prefix
        self._script = redis.register_script(_SLIDING_WINDOW_LUA)
        self._fallback = MemoryLimiter(limit, window)
        self._metrics = metrics
        self._waiting: list[tuple[str, asyncio.Future[Decision]]] = []
        self._flushing = False
        self._flusher: asyncio.Task[None] | None = None
        self._leases: dict[str, _Lease] = {}
        self._recent: dict[str, float] = {}  # principal -> when its last hit was decided
        self._returns: set[asyncio.Task[None]] = set()
        self.batches = 0

    async def hit(self, key: str) -> Decision:
        lease = self._leases.get(key)
        if lease is not None and lease.members and time.monotonic() < lease.deadline:
            lease.members.pop()
            return Decision(True)
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
        asked = time.monotonic()
        ahead = [
            self._ahead(
                len(decisions),
                asked - self._recent.get(key, float("-inf")) < self.lease_seconds,
                self._ran_out(key, asked),
            )
            for key, decisions in wanted.items()
        ]
        tag = uuid.uuid4().hex
        self.batches += 1
        try:
            answer = await self._script(
                keys=[self._prefix + key for key in wanted],
                args=[
                    self.limit,
                    int(self.window * 1_000_000),
                    tag,
                    int(self.lease_seconds * 1_000_000),
                    LEASE_SHARE,
                    *(
                        n
                        for decisions, extra in zip(wanted.values(), ahead, strict=True)
                        for n in (len(decisions), extra)
                    ),
                ],
            )
        except (RedisError, OSError) as error:
            await self._without_redis(wanted, error)
            return
        if len(self._recent) > MAX_RECENT:  # bounded: forgetting costs a lone hit its round trip, nothing more
            self._recent.clear()
        now = time.monotonic()
        for key in wanted:
            self._recent[key] = now
        for index, (key, decisions) in enumerate(wanted.items()):
            admitted, retry_us, lent = (
                int(answer[3 * index]),
                float(answer[3 * index + 1]),
                int(answer[3 * index + 2]),
            )
            for position, decision in enumerate(decisions):
                if not decision.done():
                    decision.set_result(Decision(True) if position < admitted else Decision(False, retry_us / 1e6))
            if lent:
                members = [f"{tag}:{index + 1}:{j}" for j in range(admitted + 1, admitted + lent + 1)]
                self._lend(_Lease(key, members, asked + self.lease_seconds))

    def _ran_out(self, key: str, now: float) -> int:
        """The size of this principal's lease if it was used up before its end (0 if none was): its demand
        outran the lease, so the next one is larger."""
        lease = self._leases.get(key)
        return lease.size if lease is not None and not lease.members and now < lease.deadline else 0

    @staticmethod
    def _ahead(waiting: int, recent: bool, ran_out: int) -> int:
        """Slots to ask for ahead: none for a lone hit of a principal quiet for a lease's length, more the more
        hits queued behind the round trip; a principal calling back to back (one call at a time, each right
        after the last) is lent a few, or every one of its calls would wait for its own round trip. A lease
        used up before its end is followed by one twice its size (up to `MAX_LEASE`), so a steady caller
        pays a round trip per hundred hits or so, not per five; Redis still caps each lease at a share of the
        room left."""
        if waiting < 2 and not recent:
            return 0
        return min(MAX_LEASE, max(LEASE_PER_WAITING_HIT * max(waiting, 1), 2 * ran_out))

    def _lend(self, lease: _Lease) -> None:
        """Hold the lease; first serve this principal's hits that queued meanwhile, in order, from it."""
        still_waiting = []
        for key, decision in self._waiting:
            if key == lease.key and lease.members and not decision.done():
                lease.members.pop()
                decision.set_result(Decision(True))
            else:
                still_waiting.append((key, decision))
        self._waiting = still_waiting
        previous = self._leases.get(lease.key)
        if previous is not None:
            self._end(previous)
        self._leases[lease.key] = lease
        asyncio.get_running_loop().call_later(max(0.0, lease.deadline - time.monotonic()), self._end, lease)

    def _end(self, lease: _Lease) -> None:
        if self._leases.get(lease.key) is lease:
            del self._leases[lease.key]
        if lease.members:
            unused, lease.members = lease.members, []
            task = asyncio.get_running_loop().create_task(self._give_back(lease.key, unused))
            self._returns.add(task)
            task.add_done_callback(self._returns.discard)

    async def _give_back(self, key: str, members: list[str]) -> None:
        """Return unused lent slots; if Redis cannot be reached they leave the window on their own, late."""
        try:
            await self.redis.zrem(self._prefix + key, *members)
        except (RedisError, OSError) as error:
            log_event("rate_limit_lease_not_returned", logging.WARNING, error=type(error).__name__, slots=len(members))

    async def close(self) -> None:
        """Give back every lease before the connection closes (a replica leaving hands its slots on)."""
        for lease in list(self._leases.values()):
            self._end(lease)
        if self._returns:
            await asyncio.gather(*self._returns, return_exceptions=True)

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
