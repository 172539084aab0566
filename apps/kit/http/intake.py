"""What a request to `/mcp` may hold while it is read: bounded in count, bytes and time, per principal.

A body is read before the tool it names is known, so what reading costs is bounded here, before any of
it is spent. A caller that declares a body and never sends it must hold no more than its own share, for
no longer than its own bytes justify:

- at most `MCP_MAX_CONCURRENT_REQUESTS` requests in flight per process; one more gets a fast 503 with
  `Retry-After` (shedding, never queueing);
- once half the request slots are taken, at most `MCP_MAX_BODIES_READING_PER_PRINCIPAL` bodies still arriving
  per principal (429): a caller holding bodies half-sent can take half the slots and then its own share, never
  everyone's, while a burst of one caller's calls on a quiet server is not refused;
- body bytes in flight: a request reserves a window of its declared `Content-Length` (`BODY_WINDOW_BYTES`),
  then its bytes as they come, from the process's budget (`MCP_MAX_BODY_BYTES_IN_FLIGHT`, 503 when spent)
  and from its principal's (`MCP_MAX_BODY_BYTES_PER_PRINCIPAL`, 429), and gives them back when its answer has
  been sent: a declaration reserves what is being proven, not the whole cap;
- a body must keep a minimum rate: by any moment, `BODY_GRACE_SECONDS` plus its received bytes over
  `MCP_BODY_MIN_BYTES_PER_SECOND`, and all of it within `MCP_BODY_READ_SECONDS`, or the request gets 408
  and its bytes go back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.types import Receive

from apps.kit.wire.outcomes import RefusalReason
from apps.kit.wire.refusal import overloaded, refused

BODY_WINDOW_BYTES = 64 * 1024  # what a declared body reserves ahead of the bytes that arrived
BODY_GRACE_SECONDS = 1.0  # before the minimum rate applies (a connection's first round trips)


class BodyBudget:
    """Bytes reserved by bodies being read or served, and bodies still arriving, per process and per principal."""

    def __init__(self, process_bytes: int, principal_bytes: int, principal_reading: int, crowded: Callable[[], bool]):
        self.process_bytes, self.principal_bytes, self.principal_reading = (
            process_bytes,
            principal_bytes,
            principal_reading,
        )
        self.crowded = crowded  # whether half the request slots are taken
        self.in_flight = 0
        self._by_principal: dict[str, int] = {}  # only principals holding bytes
        self._reading: dict[str, int] = {}  # only principals with a body still arriving

    def start_reading(self, principal: str) -> None:
        """One more body of `principal` is arriving, or 429 when it already has its share arriving and the
        request slots are crowded."""
        reading = self._reading.get(principal, 0)
        if reading >= self.principal_reading and self.crowded():
            raise overloaded(
                429, RefusalReason.BODIES_READING_PRINCIPAL, "Too many request bodies arriving for this caller"
            )
        self._reading[principal] = reading + 1

    def done_reading(self, principal: str) -> None:
        left = self._reading.pop(principal) - 1
        if left > 0:
            self._reading[principal] = left

    def reserve(self, principal: str, size: int) -> None:
        """Take `size` bytes for `principal`, or refuse: 429 over its own share, 503 over the process's."""
        held = self._by_principal.get(principal, 0)
        if held + size > self.principal_bytes:
            raise overloaded(
                429, RefusalReason.BODY_BUDGET_PRINCIPAL, "Too many request bodies in flight for this caller"
            )
        if self.in_flight + size > self.process_bytes:
            raise overloaded(503, RefusalReason.BODY_BUDGET_PROCESS, "Server busy: too many request bodies in flight")
        self._by_principal[principal] = held + size
        self.in_flight += size

    def release(self, principal: str, size: int) -> None:
        if size <= 0:
            return
        self.in_flight -= size
        left = self._by_principal.pop(principal) - size
        if left > 0:
            self._by_principal[principal] = left


class BodyReader:
    """Reads one request's body within the budget, the minimum rate and the deadline; `release()` gives its
    bytes back."""

    def __init__(self, budget: BodyBudget, principal: str, limit: int, seconds: float, min_rate: int):
        self.budget, self.principal, self.limit, self.seconds, self.min_rate = (
            budget,
            principal,
            limit,
            seconds,
            min_rate,
        )
        self.reserved = 0

    def _reserve(self, size: int) -> None:
        if size > self.reserved:
            self.budget.reserve(self.principal, size - self.reserved)
            self.reserved = size

    async def read(self, receive: Receive, declared: int | None) -> bytes:
        self.budget.start_reading(self.principal)
        try:
            if declared is not None:
                self._reserve(min(declared, BODY_WINDOW_BYTES))  # a window, before a byte of it is read
            loop = asyncio.get_running_loop()
            started = loop.time()
            try:
                async with asyncio.timeout_at(started + min(BODY_GRACE_SECONDS, self.seconds)) as deadline:
                    return await self._read(receive, declared, deadline, started)
            except TimeoutError:
                text = (
                    f"Request Timeout: the body did not arrive at {self.min_rate} bytes/s or within {self.seconds:g} s"
                )
                raise refused(408, RefusalReason.BODY_TIMEOUT, text) from None
        finally:
            self.budget.done_reading(self.principal)

    async def _read(self, receive: Receive, declared: int | None, deadline: asyncio.Timeout, started: float) -> bytes:
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
            ahead = min(BODY_WINDOW_BYTES, declared - size) if declared is not None and declared > size else 0
            self._reserve(size + ahead)  # what arrived, and the window ahead of it
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            # The bytes so far buy time at the minimum rate, never past the read deadline.
            deadline.reschedule(started + min(BODY_GRACE_SECONDS + size / self.min_rate, self.seconds))

    def release(self) -> None:
        self.budget.release(self.principal, self.reserved)
        self.reserved = 0
