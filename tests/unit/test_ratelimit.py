"""Per-principal sliding-window limits: in memory, and shared through a real Redis."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from redis.asyncio import Redis

from apps.kit.call.ratelimit.memory import MemoryLimiter
from apps.kit.call.ratelimit.redis import MAX_LEASE, RedisLimiter
from apps.kit.declare.config import RedisFailureMode
from apps.kit.observe.metrics import KitMetrics
from tests.support.mcp_client import mcp_client
from tests.support.raw import post, tool_call


def call(n: int, tool: str = "echo") -> dict:
    return {"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {"name": tool, "arguments": {"text": "x"}}}


async def test_memory_window_admits_exactly_the_limit_then_gives_retry_after():
    limiter = MemoryLimiter(limit=5, window=60)
    decisions = [await limiter.hit("alice") for _ in range(8)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False] * 3
    assert 59 < decisions[-1].retry_after <= 60
    assert (await limiter.hit("bob")).allowed


async def test_memory_window_slides():
    limiter = MemoryLimiter(limit=2, window=0.2)
    assert (await limiter.hit("a")).allowed and (await limiter.hit("a")).allowed
    assert not (await limiter.hit("a")).allowed
    await asyncio.sleep(0.25)
    assert (await limiter.hit("a")).allowed


def _redis_limiter(
    redis_server, limit: int, mode: RedisFailureMode = RedisFailureMode.LOCAL, **options: float
) -> RedisLimiter:
    """A limiter on its own connection to the test's Redis: one per replica."""
    redis = Redis.from_url(redis_server.url, socket_connect_timeout=0.5)
    return RedisLimiter(redis, limit, mode, KitMetrics("t"), **options)


async def test_redis_limit_holds_across_replicas(redis_server):
    """Three limiter instances (three replicas) share one budget of 30 per minute."""
    replicas = [_redis_limiter(redis_server, 30) for _ in range(3)]
    accepted = 0
    for i in range(45):
        accepted += (await replicas[i % 3].hit("sub:alice")).allowed
    assert accepted == 30
    assert (await replicas[0].hit("sub:bob")).allowed  # another principal is unaffected
    refused = await replicas[1].hit("sub:alice")
    assert not refused.allowed and 0 < refused.retry_after <= 60
    for replica in replicas:
        await replica.redis.aclose()


async def test_concurrent_hits_are_decided_in_batches_exactly_as_one_at_a_time(redis_server):
    """Under concurrency one script call decides many hits, of many principals, with the same result."""
    limiter = _redis_limiter(redis_server, 30)
    keys = ["sub:alice"] * 50 + ["sub:bob"] * 10 + ["sub:carol"] * 40
    decisions = await asyncio.gather(*(limiter.hit(key) for key in keys))
    admitted = {key: sum(d.allowed for k, d in zip(keys, decisions, strict=True) if k == key) for key in set(keys)}
    assert admitted == {"sub:alice": 30, "sub:bob": 10, "sub:carol": 30}
    alice = [d.allowed for k, d in zip(keys, decisions, strict=True) if k == "sub:alice"]
    assert alice == [True] * 30 + [False] * 20  # in arrival order: the first thirty, no overtaking
    assert limiter.batches < len(keys) / 10  # one round trip for many hits
    assert (await limiter.hit("sub:bob")).allowed and not (await limiter.hit("sub:alice")).allowed
    await limiter.redis.aclose()


async def test_a_concurrent_caller_is_lent_slots_and_most_hits_skip_the_round_trip(redis_server):
    limiter = _redis_limiter(redis_server, 10_000)
    for _ in range(20):  # twenty waves of eight concurrent calls: without leases, one round trip per wave
        decisions = await asyncio.gather(*(limiter.hit("sub:alice") for _ in range(8)))
        assert all(d.allowed for d in decisions)
    assert limiter.batches <= 6, limiter.batches
    await limiter.close()
    assert await limiter.redis.zcard("mcpfleet:ratelimit:sub:alice") == 160  # what was lent and unused is back
    await limiter.redis.aclose()


async def test_a_caller_one_call_at_a_time_is_lent_slots_too_and_the_ceiling_stays_exact(redis_server):
    limiter = _redis_limiter(redis_server, 30)
    decisions = [(await limiter.hit("sub:alice")).allowed for _ in range(40)]  # back to back, never concurrent
    assert decisions == [True] * 30 + [False] * 10
    busy = _redis_limiter(redis_server, 10_000)
    assert all([(await busy.hit("sub:carol")).allowed for _ in range(40)])
    assert busy.batches <= 10, busy.batches  # without a lease, forty round trips
    quiet = _redis_limiter(redis_server, 30)
    await quiet.hit("sub:bob")
    assert not quiet._leases.get("sub:bob") or not quiet._leases["sub:bob"].members  # a lone first hit asks none
    for each in (limiter, busy, quiet):
        await each.close()
        await each.redis.aclose()


async def test_a_steady_callers_leases_double_up_to_a_cap_and_the_ceiling_stays_exact(redis_server):
    busy = _redis_limiter(redis_server, 100_000)
    sizes = []
    for _ in range(1000):  # back to back: the leases grow 4, 8, 16, ... up to MAX_LEASE
        assert (await busy.hit("sub:dave")).allowed
        sizes.append(busy._leases["sub:dave"].size if "sub:dave" in busy._leases else 0)
    assert max(sizes) == MAX_LEASE
    assert busy.batches <= 15, busy.batches  # with leases of four, two hundred round trips
    exact, other = _redis_limiter(redis_server, 300), _redis_limiter(redis_server, 300)
    assert [(await exact.hit("sub:erin")).allowed for _ in range(320)] == [True] * 300 + [False] * 20
    assert not (await other.hit("sub:erin")).allowed  # every slot, lent or used, counted once in Redis
    for each in (busy, exact, other):
        await each.close()
        await each.redis.aclose()


async def test_lent_slots_keep_the_ceiling_exact_across_replicas_and_go_back_when_the_lease_ends(redis_server):
    lender, other = _redis_limiter(redis_server, 40, lease_seconds=0.3), _redis_limiter(redis_server, 40)
    assert all(d.allowed for d in await asyncio.gather(*(lender.hit("sub:alice") for _ in range(8))))
    # 8 admitted and 8 lent (a quarter of the 32 left): the other replica can have only what remains
    assert [(await other.hit("sub:alice")).allowed for _ in range(25)] == [True] * 24 + [False]
    await asyncio.sleep(0.45)  # the lease ends unused: its 8 slots go back
    assert [(await other.hit("sub:alice")).allowed for _ in range(9)] == [True] * 8 + [False]
    assert not (await lender.hit("sub:alice")).allowed  # the lender cannot use slots it gave back
    for limiter in (lender, other):
        await limiter.redis.aclose()


async def test_a_lease_is_not_used_past_its_end_even_when_the_event_loop_is_late(redis_server):
    lender, other = _redis_limiter(redis_server, 40, lease_seconds=0.2), _redis_limiter(redis_server, 40)
    await asyncio.gather(*(lender.hit("sub:alice") for _ in range(8)))  # 8 admitted, 8 lent
    assert sum([(await other.hit("sub:alice")).allowed for _ in range(30)]) == 24
    time.sleep(0.3)  # the loop is blocked past the lease's end: the timer that ends it has not run yet
    assert not (await lender.hit("sub:alice")).allowed  # decided by Redis, where the window is full
    for limiter in (lender, other):
        await limiter.redis.aclose()


async def test_a_lent_slot_stays_in_the_window_until_a_window_after_its_lease_ends(redis_server):
    """A slot lent at t=0 and used at t=0.2 must still count at t=1.1, past the window of its lending."""
    lender = _redis_limiter(redis_server, 40, window=1.0, lease_seconds=0.3)
    other = _redis_limiter(redis_server, 40, window=1.0)
    assert all(d.allowed for d in await asyncio.gather(*(lender.hit("sub:alice") for _ in range(8))))
    await asyncio.sleep(0.2)
    batches = lender.batches
    assert all([(await lender.hit("sub:alice")).allowed for _ in range(8)])
    assert lender.batches == batches  # all eight came from the lease
    await asyncio.sleep(0.9)
    later = await asyncio.gather(*(other.hit("sub:alice") for _ in range(40)))
    assert sum(d.allowed for d in later) == 32  # the first eight have left the window; the lent eight have not
    for limiter in (lender, other):
        await limiter.redis.aclose()


async def test_a_lease_outlives_a_redis_outage_only_until_it_ends(redis_server, logs):
    limiter = _redis_limiter(redis_server, 1000, mode=RedisFailureMode.CLOSED, lease_seconds=0.3)
    assert all(d.allowed for d in await asyncio.gather(*(limiter.hit("sub:alice") for _ in range(4))))
    redis_server.stop()
    # the 16 lent slots were counted before Redis went away: they are used; then the closed mode refuses
    assert [(await limiter.hit("sub:alice")).allowed for _ in range(17)] == [True] * 16 + [False]
    await asyncio.sleep(0.4)
    assert not (await limiter.hit("sub:alice")).allowed
    assert logs.events("rate_limit_backend_error")
    await limiter.redis.aclose()


async def test_a_lease_that_cannot_be_returned_is_logged(redis_server, logs):
    limiter = _redis_limiter(redis_server, 1000, lease_seconds=0.2)
    await asyncio.gather(*(limiter.hit("sub:alice") for _ in range(4)))
    redis_server.stop()
    await asyncio.sleep(0.3)
    await limiter.close()
    assert logs.events("rate_limit_lease_not_returned")[0]["slots"] == 16
    await limiter.redis.aclose()


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (RedisFailureMode.OPEN, [True] * 4),
        (RedisFailureMode.CLOSED, [False] * 4),
        (RedisFailureMode.LOCAL, [True, True, False, False]),
    ],
)
async def test_redis_down_follows_the_configured_mode(redis_server, mode, expected):
    metrics = KitMetrics("t")
    limiter = RedisLimiter(Redis.from_url(redis_server.url, socket_connect_timeout=0.5), 2, mode, metrics)
    redis_server.stop()
    assert [(await limiter.hit("sub:alice")).allowed for _ in range(4)] == expected
    assert metrics.registry.get_sample_value("mcp_rate_limit_backend_errors_total") == 4
    await limiter.redis.aclose()


def test_over_the_limit_gets_429_with_retry_after(start_demo, token_for, logs):
    demo = start_demo(RATE_LIMIT_PER_MINUTE=3)
    headers = {
        "Authorization": f"Bearer {token_for('demo:read', demo.mcp_url)}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    statuses = [httpx.post(demo.mcp_url, json=call(i), headers=headers).status_code for i in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    refused = httpx.post(demo.mcp_url, json=call(9), headers=headers)
    assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
    # tools/list is not a tool call and stays available
    listing = {"jsonrpc": "2.0", "id": 20, "method": "tools/list", "params": {}}
    assert httpx.post(demo.mcp_url, json=listing, headers=headers).status_code == 200
    # another principal has its own budget
    bob = {**headers, "Authorization": f"Bearer {token_for('demo:read', demo.mcp_url, subject='bob')}"}
    assert httpx.post(demo.mcp_url, json=call(30), headers=bob).status_code == 200
    assert demo.app.state.metrics.registry.get_sample_value("mcp_rate_limited_total") == 3
    assert {e["subject"] for e in logs.events("rate_limited")} == {"alice"}


async def test_shared_limit_through_two_servers_and_redis(start_demo, token_for, redis_server):
    first = start_demo(RATE_LIMIT_PER_MINUTE=4, REDIS_URL=redis_server.url)
    second = start_demo(RATE_LIMIT_PER_MINUTE=4, REDIS_URL=redis_server.url)
    statuses = []
    for i in range(6):
        target = (first, second)[i % 2]
        response = post(target.mcp_url, tool_call("echo", {"text": "x"}), token_for("demo:read", target.mcp_url))
        statuses.append(response.status_code)
        if response.status_code == 429:
            assert 1 <= int(response.headers["retry-after"]) <= 60
            assert response.json()["error"]["data"]["retryAfter"] == int(response.headers["retry-after"])
    assert statuses == [200] * 4 + [429] * 2  # four across both replicas, then the shared budget is spent
    async with mcp_client(first.mcp_url, token_for("demo:read", first.mcp_url)) as client:
        with pytest.raises(MCPError, match="Too many tool calls"):  # the SDK client surfaces the 429's JSON-RPC error
            await client.call_tool("echo", {"text": "x"})
    assert httpx.get(first.base + "/ready").json()["checks"]["redis"] == "ok"


def test_servers_sharing_a_redis_keep_separate_windows_per_principal(start_server, redis_server):
    """One person's calls to one server do not spend their limit on another (the key names the server)."""
    from tests.support import demo_server
    from tests.support.notes_app import server as notes_app

    demo = start_server(demo_server.server, REDIS_URL=redis_server.url, RATE_LIMIT_PER_MINUTE="3")
    notes = start_server(notes_app.server, REDIS_URL=redis_server.url, RATE_LIMIT_PER_MINUTE="3", NOTES_PATH="/tmp")
    demo_token = demo.token("demo:read", subject="alice")
    statuses = [post(demo.mcp_url, tool_call("echo", {"text": "x"}), demo_token).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    answer = post(notes.mcp_url, tool_call("read_note", {"title": "nothing"}), notes.token("notes:read"))
    assert answer.status_code == 200  # alice's window on the notes server is her own
