"""The conditional-read cache: each read's `ETag` and answer, in this process, bounded in bytes.

It lives in the replica, not in the Redis every app shares: a cache there filled the platform's Redis for
everyone (512 KiB per read for an hour, one key per ref and per spelling of a name), and a cache must never share
an eviction policy with durable state (rate-limit windows, notify's "sent once" ledger). Here it is a
least-recently-used map of at most `GITHUB_CACHE_MAX_BYTES` (the answer's size as read), each entry kept at
most `GITHUB_CACHE_SECONDS`. One caller's entries hold at most a quarter of it: past that its own oldest go, so
one reader cannot push everyone else's answers out. A replica that has not seen a read yet asks GitHub
unconditionally once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

PRINCIPAL_SHARE = 4  # one caller's entries hold at most 1/4 of the cache


@dataclass(frozen=True)
class Cached:
    etag: str
    body: Any
    more: bool
    size: int
    expires: float  # monotonic seconds
    owner: str  # the caller whose read stored it


class ResponseCache:
    def __init__(self, max_bytes: int, seconds: float):
        self.max_bytes, self.seconds = max_bytes, seconds
        self.size = 0
        self._entries: OrderedDict[str, Cached] = OrderedDict()
        self._by_owner: dict[str, OrderedDict[str, None]] = {}  # owner -> its keys, oldest first
        self._held: dict[str, int] = {}  # owner -> bytes its entries hold

    def get(self, key: str) -> Cached | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, etag: str, body: Any, more: bool, size: int, owner: str) -> None:
        """Keep an answer of `size` bytes read by `owner`; one larger than an eighth of the cache is not kept."""
        if not self.seconds or size > self.max_bytes // 8:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = Cached(etag, body, more, size, time.monotonic() + self.seconds, owner)
        owned = self._by_owner.setdefault(owner, OrderedDict())
        owned[key] = None
        self._held[owner] = self._held.get(owner, 0) + size
        self.size += size
        while self._held[owner] > self.max_bytes // PRINCIPAL_SHARE:
            self._drop(next(iter(owned)))
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def held_by(self, owner: str) -> int:
        return self._held.get(owner, 0)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key)
        self.size -= entry.size
        owned = self._by_owner[entry.owner]
        del owned[key]
        self._held[entry.owner] -= entry.size
        if not owned:
            del self._by_owner[entry.owner], self._held[entry.owner]
