"""Fair admission to a pool: arrival order, no overtaking, a deadline, early refusal, nothing leaked."""

from __future__ import annotations

import asyncio

import pytest

from apps.kit.call.admission import Admission, Overloaded


async def test_waiters_are_served_in_arrival_order_and_newcomers_never_overtake():
    gate = Admission("the pool", capacity=1, deadline=5)
    order: list[str] = []
    release = asyncio.Event()

    async def holder() -> None:
        async with gate.slot():
            await release.wait()

    async def caller(name: str) -> None:
        async with gate.slot():
            order.append(name)
            await asyncio.sleep(0)

    first = asyncio.create_task(holder())
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(caller(f"w{i}")) for i in range(5)]
    await asyncio.sleep(0)
    release.set()
    late = asyncio.create_task(caller("newcomer"))  # arrives as the slot frees: it must queue behind w0..w4
    await asyncio.gather(first, *waiters, late)
    assert order == ["w0", "w1", "w2", "w3", "w4", "newcomer"]
    assert gate.queued == 0


async def test_a_caller_waits_no_longer_than_the_deadline():
    gate = Admission("the pool", capacity=1, deadline=0.1)
    async with gate.slot():
        with pytest.raises(Overloaded) as busy:
            async with gate.slot():
                pass
    assert "the pool is busy; retry after" in str(busy.value) and busy.value.retry_after >= 1
    async with gate.slot():  # the slot came back: nothing leaked
        assert gate.queued == 0


async def test_a_caller_who_cannot_be_served_in_time_is_refused_at_once():
    gate = Admission("the pool", capacity=2, deadline=1.0)
    gate.hold_seconds = 0.5  # each use holds a slot half a second: four ahead of you is a second's wait
    held = asyncio.Event()

    async def hold() -> None:
        async with gate.slot():
            await held.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    queued = [asyncio.create_task(hold()) for _ in range(4)]
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    with pytest.raises(Overloaded):
        async with gate.slot():
            pass
    assert asyncio.get_running_loop().time() - started < 0.05  # refused early, not after the deadline
    assert gate.shed == 1
    held.set()
    await asyncio.gather(*holders, *queued)


async def test_a_cancelled_waiter_passes_on_a_slot_it_was_handed():
    gate = Admission("the pool", capacity=1, deadline=5)
    async with gate.slot():
        doomed = asyncio.create_task(gate.slot().__aenter__())
        await asyncio.sleep(0)  # it waits for our slot
    doomed.cancel()  # handed the slot as we left, cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await doomed
    async with asyncio.timeout(1), gate.slot():  # the slot was passed on, not lost
        assert gate.queued == 0
