"""Untrusted content: labelled, withheld in lockdown, and never steering a write unseen.

Text in a public repository can be written by anyone; read by an assistant, it can carry instructions that
steer a later write (prompt injection). So:

- every item read says who wrote it and whether that author is trusted: GitHub's `author_association` is
  OWNER, MEMBER or COLLABORATOR (people the repository gave access; GitHub computes it on every item, so
  trust costs no extra call), and whether the repository is public;
- with lockdown, the body of an untrusted author's item in a public repository is withheld (the item is
  listed, its text replaced by a notice);
- a principal who read untrusted text is marked for `github_untrusted_window_seconds` (in Redis, for every
  replica). A write by a marked principal answers a preview and a confirm id first, and is done only when
  that id comes back with the same write (notify's two steps); in lockdown it is refused.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from redis.asyncio import Redis

from apps.kit import CallerError

TRUSTED = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
PREFIX = "mcpfleet:github:"
WITHHELD = "[withheld: written by an author without push access to this public repository (lockdown)]"


def trusted(item: dict[str, Any]) -> bool:
    return str(item.get("author_association", "")).upper() in TRUSTED


def label(item: dict[str, Any], public: bool) -> dict[str, Any]:
    """What a client may trust of one item: its author, whether that author is trusted, whether it is public."""
    user = item.get("user") or {}
    return {"author": user.get("login"), "author_trusted": trusted(item), "repository_public": public}


def withheld(item: dict[str, Any], public: bool, lockdown: bool) -> bool:
    return lockdown and public and not trusted(item)


class Taint:
    """Which principals read untrusted text recently, and the writes they previewed."""

    def __init__(self, redis: Redis, window_seconds: int, preview_seconds: int):
        self.redis, self.window, self.preview_seconds = redis, window_seconds, preview_seconds

    async def mark(self, principal: str) -> None:
        if self.window:
            await self.redis.set(f"{PREFIX}untrusted:{principal}", "1", ex=self.window)

    async def marked(self, principal: str) -> bool:
        return bool(await self.redis.exists(f"{PREFIX}untrusted:{principal}"))

    async def preview(self, principal: str, write: dict[str, Any]) -> str:
        """Store the exact write for this principal; its id confirms that write and no other, once."""
        confirm = uuid.uuid4().hex
        await self.redis.set(f"{PREFIX}preview:{confirm}", _digest(principal, write), ex=self.preview_seconds)
        return confirm

    async def confirmed(self, principal: str, write: dict[str, Any], confirm: str) -> None:
        stored = await self.redis.getdel(f"{PREFIX}preview:{confirm}")
        if stored is None or (stored.decode() if isinstance(stored, bytes) else stored) != _digest(principal, write):
            raise CallerError("unknown, expired or different confirm id: preview the write again (no confirm)")


def _digest(principal: str, write: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps([principal, write], sort_keys=True).encode()).hexdigest()
