"""A burst bigger than the pool: callers queue in arrival order and none fails; callers who cannot be served
in time are refused early with a retryable answer, HTTP 503 with `Retry-After` (before, ~1 % failed as
"database unavailable" after 5 s)."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from tests.local.conftest import READER_PASSWORD, WRITER_PASSWORD
from tests.support.raw import BASE_HEADERS, tool_call
from tests.support.running import start_process

pytestmark = pytest.mark.postgres


@pytest.fixture
def small_pool_server(pg):
    server = start_process(
        "apps.db",
        DB_READ_URL=pg.url("mcp_db_reader", READER_PASSWORD),
        DB_WRITE_URL=pg.url("mcp_db_writer", WRITER_PASSWORD),
        DB_POOL_MAX="2",
        DB_ACQUIRE_TIMEOUT_SECONDS="0.5",
        DB_STATEMENT_TIMEOUT_MS="4000",
        RATE_LIMIT_PER_MINUTE="100000",
    )
    yield server
    server.process.kill()
    server.process.wait()


async def calls(server, count: int, table: str) -> list[httpx.Response]:
    headers = {**BASE_HEADERS, "Authorization": f"Bearer {server.token('db:read')}"}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=count)) as client:
        return await asyncio.gather(
            *(
                client.post(server.url, json=tool_call("query", {"table": table, "limit": 1}, n), headers=headers)
                for n in range(count)
            )
        )


async def test_a_burst_forty_times_the_pool_queues_and_every_call_succeeds(small_pool_server):
    responses = await calls(small_pool_server, 80, "customers")
    assert [r.status_code for r in responses] == [200] * 80
    assert [r.json()["result"]["isError"] for r in responses] == [False] * 80


async def test_callers_who_cannot_be_served_in_time_are_refused_early_and_retryably(small_pool_server, pg):
    lock = await asyncpg.connect(pg.admin_url)
    transaction = lock.transaction()
    await transaction.start()
    await lock.execute("LOCK TABLE sales.products IN ACCESS EXCLUSIVE MODE")  # both pooled connections will hang
    try:
        responses = await calls(small_pool_server, 8, "products")
    finally:
        await transaction.rollback()
        await lock.close()
    busy = [r for r in responses if r.status_code == 503]
    assert len(busy) >= 5  # refused within ~0.5 s, not left to time out
    for response in busy:
        retry_after = int(response.headers["retry-after"])
        error = response.json()["error"]
        assert error["code"] == -32030 and "busy; retry after" in error["message"]
        assert error["data"] == {"retryAfter": retry_after} and retry_after >= 1
    assert all(r.status_code == 200 for r in responses if r not in busy)
    metrics = httpx.get(small_pool_server.url.removesuffix("/mcp") + "/metrics").text
    overloaded = (
        "mcp_server_operation_duration_seconds_count"
        '{gen_ai_tool_name="query",mcp_method_name="tools/call",outcome="overloaded"}'
    )
    [line] = [line for line in metrics.splitlines() if line.startswith(overloaded)]
    assert float(line.rsplit(" ", 1)[1]) == len(busy)  # counted as the server's fault: it could not serve in time
    shed = sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith("mcp_db_pool_shed_total")
    )
    assert shed == len(busy)
