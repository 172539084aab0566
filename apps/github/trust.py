"""Untrusted content: labelled in the text the model reads, withheld in lockdown, never steering a write.

Text in a public repository can be written by anyone; read by an assistant, it can carry instructions that
steer a later write (prompt injection). So:

- every item read says who wrote it and whether that author is trusted: GitHub's `author_association` is
  OWNER, MEMBER or COLLABORATOR (people the repository gave access; GitHub computes it on every item, so
  trust costs no extra call), and whether the repository is public;
- every field an untrusted author controls (an issue's or pull request's title and body, a comment, a review
  comment's file path, the file names a pull request changes) and all content read at a ref that is not one of
  the repository's own branches or tags (`refs/pull/N/head`, a commit of a fork) reaches the model as
  `{"untrusted": "<text>"}`: the label stands in the text the model reads, beside the text, in a form the text
  itself cannot forge (it is a JSON string);
- with lockdown, such text in a public repository is withheld (the item is listed, its text replaced by a notice);
- every text is cleaned first: control, bidi and tag characters removed, cut at the server's limit;
- a principal who read untrusted text is marked for `github_untrusted_window_seconds` (in Redis, for every
  replica), and a write by a marked principal is confirmed by the person (MCP elicitation, `apps/kit/call/asking.py`)
  or refused: the model that read the text cannot be the one to confirm the write, so no id it could pass back
  is offered.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from redis.asyncio import Redis

TRUSTED = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
WITHHELD = "[withheld: written by an author without push access to this public repository (lockdown)]"
_KEPT_CONTROLS = frozenset("\n\t")


def trusted(item: dict[str, Any]) -> bool:
    return str(item.get("author_association", "")).upper() in TRUSTED


def label(item: dict[str, Any], public: bool) -> dict[str, Any]:
    """What a client may trust of one item: its author, whether that author is trusted, whether it is public."""
    user = item.get("user") or {}
    return {"author": user.get("login"), "author_trusted": trusted(item), "repository_public": public}


def clean(text: Any, limit: int) -> str | None:
    """A text as the model may read it: no control (but newline and tab), format (bidi, zero-width, tag)
    characters; cut at `limit`, saying how much was left out."""
    if text is None:
        return None
    value = str(text)
    if not value.isascii() or not value.isprintable():
        value = "".join(
            c for c in value if c in _KEPT_CONTROLS or unicodedata.category(c) not in ("Cc", "Cf", "Co", "Cs")
        )
    if len(value) <= limit:
        return value
    return value[:limit] + f"\n[cut: {len(value) - limit} more characters]"


def untrusted(text: str | None) -> dict[str, Any] | None:
    return None if text is None else {"untrusted": text}


class Taint:
    """Which principals read untrusted text recently."""

    def __init__(self, redis: Redis, window_seconds: int, prefix: str):
        self.redis, self.window, self.prefix = redis, window_seconds, f"{prefix}github:untrusted:"

    async def mark(self, principal: str) -> None:
        if self.window:
            await self.redis.set(f"{self.prefix}{principal}", "1", ex=self.window)

    async def seconds_left(self, principal: str) -> int:
        """How long the principal stays marked (0: not marked)."""
        return max(0, int(await self.redis.ttl(f"{self.prefix}{principal}")))
