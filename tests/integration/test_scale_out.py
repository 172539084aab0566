"""Stateless scale-out: no sticky sessions, a killed replica does not break the others, SIGTERM drains."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.conftest import measured
from tests.support.mcp_client import mcp_client
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


async def test_calls_spread_round_robin_and_survive_a_killed_replica(start_replicas, balancer, token):
    replica_set = start_replicas(3)
    proxy = balancer(replica_set)
    replicas = replica_set.replicas
    async with mcp_client(proxy.url + "/mcp", token("db:read"), new_connection_per_request=True) as client:
        for _ in range(30):
            result = await client.call_tool("query", {"table": "customers", "limit": 1})
            assert not result.is_error
        spread = [r.tool_calls() for r in replicas]
        assert sum(spread) == 30 and min(spread) >= 8, spread  # every replica served its share

        replicas[1].container.get_wrapped_container().kill()  # SIGKILL: no drain at all
        killed_at = time.monotonic()
        failures = 0
        for _ in range(30):
            try:
                result = await client.call_tool("query", {"table": "customers", "limit": 1})
                assert not result.is_error
            except Exception:
                failures += 1
        elapsed = time.monotonic() - killed_at
    after = [replicas[0].tool_calls(), replicas[2].tool_calls()]
    assert failures == 0
    assert after[0] - spread[0] + after[1] - spread[2] == 30
    measured(
        f"scale-out: 30 calls over 3 replicas spread {[int(s) for s in spread]}; after SIGKILL of one, "
        f"30/30 calls succeeded on the other two in {elapsed:.2f}s"
    )


async def test_sigterm_drains_in_flight_calls_and_new_calls_go_elsewhere(start_replicas, balancer, postgres, token):
    replica_set = start_replicas(2)
    draining, other = replica_set.replicas
    proxy = balancer(replica_set)
    # Hold a lock so queries on `products` stay in flight until we let go.
    lock = await postgres.connect()
    transaction = lock.transaction()
    await transaction.start()
    await lock.execute("LOCK TABLE sales.products IN ACCESS EXCLUSIVE MODE")

    async def blocked_call() -> list:
        async with mcp_client(draining.base + "/mcp", token("db:read")) as client:
            # The SDK client lists tools before a tool's first call (to learn its output schema);
            # do it now, so the only request left in flight at SIGTERM is the call itself.
            await client.list_tools()
            result = await client.call_tool("query", {"table": "products", "columns": ["sku"], "limit": 1})
            assert not result.is_error, result.content
            return result.structured_content["rows"]

    in_flight = [asyncio.create_task(blocked_call()) for _ in range(3)]
    await asyncio.to_thread(
        wait_until, lambda: "mcp_inflight_calls 3.0" in draining.metrics(), 20, 0.1, "three calls in flight"
    )
    draining.container.get_wrapped_container().kill(signal="SIGTERM")
    signalled = time.monotonic()
    await asyncio.to_thread(
        wait_until,
        lambda: proxy.ready == {("127.0.0.1", other.port)},
        10,
        0.1,
        "balancer routes only to the other replica",
    )
    # New calls while the old ones are still held: all served by the other replica.
    before = other.tool_calls()
    async with mcp_client(proxy.url + "/mcp", token("db:read"), new_connection_per_request=True) as client:
        for _ in range(5):
            assert not (await client.call_tool("query", {"table": "customers", "limit": 1})).is_error
    assert other.tool_calls() - before == 5
    assert not any(task.done() for task in in_flight)
    await transaction.rollback()  # release the lock
    await lock.close()
    results = await asyncio.gather(*in_flight)
    drained = time.monotonic() - signalled
    assert results == [[{"sku": "KB-01"}]] * 3
    container = draining.container.get_wrapped_container()
    status = await asyncio.to_thread(container.wait, timeout=30)
    logs = draining.logs()
    assert logs.count('"event":"tool_call"') == 3
    assert '"server_stopped"' in logs
    measured(
        f"graceful shutdown: 3 in-flight calls completed {drained:.2f}s after SIGTERM; 5 new calls served by "
        f"the other replica meanwhile; exit status {status['StatusCode']}"
    )
