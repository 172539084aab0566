"""Per-principal rate limit on tool calls: a sliding 60-second window.

In memory for one replica (here); in Redis when `REDIS_URL` is set (`apps.kit.call.ratelimit.redis`, imported only
then, so a server without Redis does not pay for the client at start). Only `tools/call` messages count:
session set-up and listing are cheap and must not eat the budget a user sees.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after: float = 0.0


class Limiter(Protocol):
    async def hit(self, key: str) -> Decision: ...

    async def close(self) -> None: ...


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

    async def close(self) -> None:
        """Nothing is held outside this process."""


# One round trip decides every hit waiting for it, over any number of keys, and may lend slots ahead.
# KEYS are the principals; ARGV = limit, window (us), a tag unique to this call, lease lifetime (us), lease
# share, then for each key the hits waiting and the slots asked for ahead. For each key it admits as many
# waiting hits as the window has room for, in order, then lends at most `extra` more, and never more than
# 1/share of the room left. A lent slot is scored at the end of its lease, the latest time it can be used,
# so it leaves the window no earlier than one window after its use: the ceiling stays exact.
