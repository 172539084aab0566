"""What a request to `/mcp` may hold while it is being read: bounded in count, bytes and time.

A body is read before the tool it names is known, so what reading costs is bounded here, before any of
it is spent:

- at most `MCP_MAX_CONCURRENT_REQUESTS` requests in flight per process; one more gets a fast 503 with
  `Retry-After` (shedding, never queueing);
- body bytes in flight: a request reserves its declared `Content-Length` (or its chunks as they come)
  from the process's budget (`MCP_MAX_BODY_BYTES_IN_FLIGHT`, 503 when spent) and from its principal's
  (`MCP_MAX_BODY_BYTES_PER_PRINCIPAL`, 429), and gives it back when its answer has been sent;
- a body must arrive within `MCP_BODY_READ_SECONDS`, or the request gets 408 and its bytes go back.

So a caller holding bodies half-sent ties up at most its own share, for at most the read deadline.
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive

from apps.kit.outcomes import RefusalReason
from apps.kit.refusal import Refusal, refused


class BodyBudget:
    """Bytes reserved by bodies being read or served, per process and per principal."""

    def __init__(self, process_bytes: int, principal_bytes: int):
        self.process_bytes, self.principal_bytes = process_bytes, principal_bytes
        self.in_flight = 0
        self._by_principal: dict[str, int] = {}  # only principals holding bytes

    def reserve(self, principal: str, size: int) -> None:
        """Take `size` bytes for `principal`, or refuse: 429 over its own share, 503 over the process's."""
        held = self._by_principal.get(principal, 0)
        if held + size > self.principal_bytes:
            raise busy(429, RefusalReason.BODY_BUDGET_PRINCIPAL, "Too many request bodies in flight for this caller")
        if self.in_flight + size > self.process_bytes:
            raise busy(503, RefusalReason.BODY_BUDGET_PROCESS, "Server busy: too many request bodies in flight")
        self._by_principal[principal] = held + size
        self.in_flight += size

    def release(self, principal: str, size: int) -> None:
        if size <= 0:
            return
        self.in_flight -= size
        left = self._by_principal.pop(principal) - size
        if left > 0:
            self._by_principal[principal] = left


def busy(status: int, reason: RefusalReason, message: str) -> Refusal:
    """A refusal that asks the caller to come back in a second (429 or 503, with `Retry-After`)."""
    refusal = refused(status, reason, f"{message}; retry after 1 s")
    refusal.headers.append((b"retry-after", b"1"))
    return refusal


class BodyReader:
    """Reads one request's body within the budget and the deadline; `release()` gives its bytes back."""

    def __init__(self, budget: BodyBudget, principal: str, limit: int, seconds: float):
        self.budget, self.principal, self.limit, self.seconds = budget, principal, limit, seconds
        self.reserved = 0

    def _reserve(self, size: int) -> None:
        if size > self.reserved:
            self.budget.reserve(self.principal, size - self.reserved)
            self.reserved = size

    async def read(self, receive: Receive, declared: int | None) -> bytes:
        if declared is not None:
            self._reserve(declared)  # the whole declared body, before a byte of it is read
        try:
            async with asyncio.timeout(self.seconds):
                return await self._read(receive)
        except TimeoutError:
            text = f"Request Timeout: the body did not arrive within {self.seconds:g} s"
            raise refused(408, RefusalReason.BODY_TIMEOUT, text) from None

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise refused(400, RefusalReason.INVALID_REQUEST, "Bad Request: the client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                raise refused(413, RefusalReason.BODY_TOO_LARGE, f"Request body larger than {self.limit} bytes")
            self._reserve(size)  # a chunked body (or one longer than declared) reserves as it arrives
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def release(self) -> None:
        self.budget.release(self.principal, self.reserved)
        self.reserved = 0
