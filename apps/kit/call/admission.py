"""Fair admission to a bounded resource (a database pool): first come, first served, or refused early.

asyncpg's pool hands a released connection to whoever asks next, so under load newcomers overtake
callers already waiting and some of those starve until their timeout: a burst becomes a stream of
"database unavailable" failures. `Admission` queues callers in arrival order and hands a freed slot to
the oldest one directly (no overtaking), lets none wait past its deadline, and refuses at once a caller
whose expected wait (its place in the queue times the recent hold time, over the capacity) is already
past the deadline: it gets a clear, retryable answer instead of a timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from apps.kit.declare.tools import Overloaded

__all__ = ["Admission", "Overloaded"]


class Admission:
    def __init__(self, what: str, capacity: int, deadline: float):
        self.what, self.capacity, self.deadline = what, capacity, deadline
        self._free = capacity
        self._waiters: deque[asyncio.Future[None]] = deque()
        self.queued = 0  # callers waiting for a slot right now
        self.hold_seconds = 0.01  # moving average of how long a slot is held
        self.shed = 0

    def expected_wait(self, position: int) -> float:
        return position * self.hold_seconds / self.capacity

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        await self._acquire()
        started = time.monotonic()
        try:
            yield
        finally:
            self.hold_seconds += 0.05 * (time.monotonic() - started - self.hold_seconds)
            self._release()

    async def _acquire(self) -> None:
        if self._free > 0 and not self.queued:
            self._free -= 1
            return
        wait = self.expected_wait(self.queued + 1)
        if wait > self.deadline:
            self.shed += 1
            raise Overloaded(self.what, wait - self.deadline)
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        expiry = loop.call_later(self.deadline, _expire, waiter)
        self._waiters.append(waiter)
        self.queued += 1
        try:
            await waiter
        except TimeoutError:
            self.shed += 1
            raise Overloaded(self.what, self.hold_seconds) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a slot as we were cancelled: pass it on
            raise
        finally:
            expiry.cancel()
            self.queued -= 1

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot goes to the oldest waiter, never to a newcomer
                return
        self._free += 1


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
