"""What every replica must agree on, in Redis: previews, who is sending one, what was sent, dedupe
windows, send rates and upstream back-offs.

`begin` decides a send atomically (one Lua script on Redis's own clock): already sent, unknown or
expired, an upstream still asking us to wait, another replica sending it right now, over a target's
or the global rate, or a duplicate within the window; else it claims the preview and counts the send.
`finish` records the result; `abandon` releases the claim (and the dedupe key) so a failed send can be
retried.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

CLAIM_SECONDS = 120
SENT_SECONDS = 86_400
WINDOW_MS = 60_000

_BEGIN = """
local preview, claim, sent, dedupe = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rate_target, rate_global, backoff = KEYS[5], KEYS[6], KEYS[7]
local id, target_limit, global_limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local dedupe_seconds, claim_seconds, deduped = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6] == '1'
local done = redis.call('GET', sent)
if done then return {'sent', done} end
if redis.call('EXISTS', preview) == 0 then return {'missing', ''} end
local wait = redis.call('PTTL', backoff)
if wait > 0 then return {'backoff', tostring(wait)} end
if not redis.call('SET', claim, '1', 'NX', 'EX', claim_seconds) then return {'busy', ''} end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for _, key in ipairs({rate_target, rate_global}) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - 60000)
end
for i, key in ipairs({rate_target, rate_global}) do
  local limit = (i == 1) and target_limit or global_limit
  if redis.call('ZCARD', key) >= limit then
    redis.call('DEL', claim)
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    return {(i == 1) and 'rate_target' or 'rate_global', tostring(tonumber(oldest[2]) + 60000 - now)}
  end
end
if deduped then
  local holder = redis.call('GET', dedupe)
  if holder and holder ~= id then
    redis.call('DEL', claim)
    return {'duplicate', tostring(redis.call('PTTL', dedupe))}
  end
  redis.call('SET', dedupe, id, 'EX', dedupe_seconds)
end
for _, key in ipairs({rate_target, rate_global}) do
  redis.call('ZADD', key, now, id .. ':' .. now)
  redis.call('PEXPIRE', key, 60000)
end
return {'ok', ''}
"""


@dataclass(frozen=True)
class Verdict:
    status: str  # ok, sent, missing, backoff, busy, rate_target, rate_global, duplicate
    detail: str

    @property
    def wait_seconds(self) -> int:
        return max(1, -(-int(self.detail or "0") // 1000))


class Ledger:
    def __init__(self, redis: Redis, prefix: str):
        self.redis, self.prefix = redis, f"{prefix}notify:"
        self._begin = redis.register_script(_BEGIN)

    def _keys(self, preview_id: str, target: str, dedupe: str | None) -> list[str]:
        """Every key the send script may touch, all under the app's prefix (an ACL user may name no other)."""
        return [
            f"{self.prefix}preview:{preview_id}",
            f"{self.prefix}claim:{preview_id}",
            f"{self.prefix}sent:{preview_id}",
            f"{self.prefix}dedupe:{target}:{dedupe or ''}",
            f"{self.prefix}rate:{target}",
            f"{self.prefix}rate:*",
            f"{self.prefix}backoff:{target}",
        ]

    async def save_preview(self, preview_id: str, preview: dict[str, Any], seconds: int) -> None:
        await self.redis.set(f"{self.prefix}preview:{preview_id}", json.dumps(preview), ex=seconds)

    async def preview(self, preview_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"{self.prefix}preview:{preview_id}")
        return json.loads(raw) if raw else None

    async def sent(self, preview_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(f"{self.prefix}sent:{preview_id}")
        return json.loads(raw) if raw else None

    async def begin(
        self, preview_id: str, target: str, dedupe: str | None, target_limit: int, global_limit: int, dedupe_s: int
    ) -> Verdict:
        keys = self._keys(preview_id, target, dedupe)
        args: list[str | int] = [preview_id, target_limit, global_limit, dedupe_s, CLAIM_SECONDS, int(bool(dedupe))]
        status, detail = await self._begin(keys=keys, args=args)
        return Verdict(status.decode() if isinstance(status, bytes) else status, _text(detail))

    async def finish(self, preview_id: str, result: dict[str, Any]) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(f"{self.prefix}sent:{preview_id}", json.dumps(result), ex=SENT_SECONDS)
            pipe.delete(f"{self.prefix}preview:{preview_id}", f"{self.prefix}claim:{preview_id}")
            await pipe.execute()

    async def abandon(self, preview_id: str, target: str, dedupe: str | None, backoff_seconds: int = 0) -> None:
        """A failed send: release the claim and the dedupe window; remember an upstream's Retry-After."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{self.prefix}claim:{preview_id}")
            if dedupe:
                pipe.delete(f"{self.prefix}dedupe:{target}:{dedupe}")
            if backoff_seconds > 0:
                pipe.set(f"{self.prefix}backoff:{target}", "1", ex=backoff_seconds)
            await pipe.execute()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
