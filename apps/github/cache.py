"""The conditional-read cache: each read's `ETag` and answer, in this process, bounded in bytes.

It lives in the replica, not in the Redis every app shares: a cache there filled the platform's Redis for
everyone (512 KiB per read for an hour, one key per ref and per spelling of a name), and a cache must never share
an eviction policy with durable state (rate-limit windows, notify's "sent once" ledger). Here it is a
least-recently-used map of at most `GITHUB_CACHE_MAX_BYTES` (the answer's JSON size counted), each entry kept at
most `GITHUB_CACHE_SECONDS`. A replica that has not seen a read yet asks GitHub unconditionally once.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cached:
    etag: str
    body: Any
    more: bool
    size: int
    expires: float  # monotonic seconds


class ResponseCache:
    def __init__(self, max_bytes: int, seconds: float):
        self.max_bytes, self.seconds = max_bytes, seconds
        self.size = 0
        self._entries: OrderedDict[str, Cached] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Cached | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: str, etag: str, body: Any, more: bool, size: int) -> None:
        """Keep an answer of `size` bytes; one larger than an eighth of the cache is not kept."""
        if not self.seconds or size > self.max_bytes // 8:
            return
        if key in self._entries:
            self._drop(key)
        self._entries[key] = Cached(etag, body, more, size, time.monotonic() + self.seconds)
        self.size += size
        while self.size > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        self.size -= self._entries.pop(key).size
