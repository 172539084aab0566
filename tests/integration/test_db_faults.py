"""Postgres restarts under a stream of inserts: readiness follows, calls fail fast, nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import pytest

from tests.integration.conftest import measured
from tests.support.mcp_client import mcp_client

pytestmark = pytest.mark.integration

ACQUIRE_TIMEOUT = 2.0
CONNECT_TIMEOUT = 2.0
STATEMENT_TIMEOUT_MS = 3000
# The slowest a failing call may be: acquire + connect + statement timeout, plus transport slack.
FAIL_FAST_BOUND = ACQUIRE_TIMEOUT + CONNECT_TIMEOUT + STATEMENT_TIMEOUT_MS / 1000 + 1


async def test_postgres_restart_during_inserts(start_replicas, postgres, token):
    [replica] = start_replicas(
        1,
        DB_ACQUIRE_TIMEOUT_SECONDS=str(ACQUIRE_TIMEOUT),
        DB_CONNECT_TIMEOUT_SECONDS=str(CONNECT_TIMEOUT),
        DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
        RATE_LIMIT_PER_MINUTE="1000000",
    ).replicas
    acknowledged: list[str] = []
    successes: list[float] = []  # completion times
    failures: list[tuple[float, float, str]] = []  # (started, seconds, message)
    readiness: list[tuple[float, bool]] = []
    stop = asyncio.Event()

    async def insert_stream() -> None:
        async with mcp_client(replica.base + "/mcp", token(), timeout=30) as client:
            await client.list_tools()
            while not stop.is_set():
                reference = str(uuid.uuid4())
                started = time.monotonic()
                result = await client.call_tool(
                    "insert", {"table": "orders", "values": {"customer_id": 1, "reference": reference, "status": "new"}}
                )
                if result.is_error:
                    failures.append((started, time.monotonic() - started, result.content[0].text))
                    await asyncio.sleep(0.05)
                else:
                    acknowledged.append(reference)
                    successes.append(time.monotonic())

    async def watch_ready() -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while not stop.is_set():
                try:
                    ok = (await http.get(replica.base + "/ready")).status_code == 200
                except httpx.HTTPError:
                    ok = False
                readiness.append((time.monotonic(), ok))
                await asyncio.sleep(0.1)

    tasks = [asyncio.create_task(insert_stream()), asyncio.create_task(watch_ready())]
    await asyncio.sleep(1.5)
    restart_at = time.monotonic()
    await asyncio.to_thread(postgres.container.get_wrapped_container().restart, timeout=10)
    restarted_at = time.monotonic()
    # Run on until the server has been ready again for a while.
    while not (readiness and readiness[-1][1] and readiness[-1][0] - restarted_at > 3):
        await asyncio.sleep(0.1)
    stop.set()
    await asyncio.gather(*tasks)

    not_ready = [t for t, ok in readiness if not ok and t >= restart_at]
    assert not_ready, "readiness never reported the outage"
    went_down = not_ready[0] - restart_at
    back_up = next(t for t, ok in readiness if ok and t > not_ready[-1]) - restart_at
    assert went_down < 5
    assert failures, "no call saw the outage"
    assert max(seconds for _, seconds, _ in failures) < FAIL_FAST_BOUND
    unexplained = [m for _, _, m in failures if "database unavailable" not in m and "timed out" not in m]
    assert not unexplained, (unexplained, [line for line in replica.logs().splitlines() if "exc_type" in line])
    await asyncio.to_thread(postgres.wait_ready)
    conn = await postgres.connect()
    try:
        stored = {
            str(r)
            for r in await conn.fetchval(
                "SELECT array_agg(reference) FROM sales.orders WHERE reference = ANY($1::uuid[])", acknowledged
            )
        }
    finally:
        await conn.close()
    assert stored == set(acknowledged)
    last_failure_end = failures[-1][0] + failures[-1][1]
    outage = next(t for t in successes if t > last_failure_end) - failures[0][0]
    measured(
        f"postgres restart: {len(acknowledged)} inserts acknowledged, all {len(stored)} present afterwards; "
        f"{len(failures)} failed fast (max {max(s for _, s, _ in failures):.2f}s, bound {FAIL_FAST_BOUND:.0f}s); "
        f"/ready false {went_down:.2f}s after the restart began, true again at {back_up:.2f}s; "
        f"outage seen by clients {outage:.2f}s"
    )
