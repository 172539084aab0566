"""The Cloud Run contract on the real image, with the environment the platform derives for a `cloudrun` app
(`infra.components.serverless`): `/health` answers well within the startup probe's budget, SIGTERM with calls in
flight drains them and exits within Cloud Run's 10 s with the spans flushed, and the rate limit holds across two
instances through a real Redis."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from infra.components.serverless import serverless_wiring
from infra.config import parse, stack_config
from infra.fleet import load_server
from tests.integration.conftest import measured
from tests.support.mcp_client import mcp_client
from tests.support.otlp import OtlpReceiver
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration
STARTUP_PROBE_SECONDS = 30  # infra/components/cloud_run.py: 30 probes, 1 s apart
CLOUD_RUN_NOTICE_SECONDS = 10


def cloud_run_env() -> dict[str, str]:
    """What the platform starts a Cloud Run instance of the db server with (kit settings only)."""
    values = {k.removeprefix("mcpfleet:"): v for k, v in stack_config("serverless").items()}
    values["apps"] = {"mcp-db": {**values["apps"]["mcp-db"], "target": "cloudrun", "concurrency": 20}}
    config = parse(values)
    wired = serverless_wiring("mcp-db", config.apps["mcp-db"], load_server("apps.db"), config)
    kept = ("MCP_SERVERLESS", "SHUTDOWN_GRACE_SECONDS", "MCP_MAX_CONCURRENT_REQUESTS")
    return {key: wired.env[key] for key in kept}


@pytest.fixture
def receiver(network) -> Iterator[OtlpReceiver]:
    gateway = network._network.attrs["IPAM"]["Config"][0]["Gateway"]
    otlp = OtlpReceiver(host=gateway)
    yield otlp
    otlp.server.shutdown()


def test_the_derived_environment_is_the_serverless_profile():
    env = cloud_run_env()
    assert env["MCP_SERVERLESS"] == "true" and int(env["SHUTDOWN_GRACE_SECONDS"]) < CLOUD_RUN_NOTICE_SECONDS


async def test_an_instance_starts_drains_within_the_notice_and_flushes_its_spans(
    start_replicas, postgres, receiver, token
):
    started = time.monotonic()
    [instance] = start_replicas(
        1,
        **cloud_run_env(),
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
        OTEL_TRACES_SAMPLER="always_on",
        OTEL_BSP_SCHEDULE_DELAY="60000",  # nothing leaves on the timer: only the shutdown flush sends spans
    ).replicas
    ready_after = time.monotonic() - started  # container start to /ready (includes the image's start)
    assert ready_after < STARTUP_PROBE_SECONDS
    assert httpx.get(instance.base + "/health", timeout=2).status_code == 200

    lock = await postgres.connect()
    transaction = lock.transaction()
    await transaction.start()
    await lock.execute("LOCK TABLE sales.products IN ACCESS EXCLUSIVE MODE")

    async def held_call() -> list:
        async with mcp_client(instance.base + "/mcp", token("db:read")) as client:
            await client.list_tools()
            result = await client.call_tool("query", {"table": "products", "columns": ["sku"], "limit": 1})
            assert not result.is_error, result.content
            return result.structured_content["rows"]

    in_flight = [asyncio.create_task(held_call()) for _ in range(2)]
    await asyncio.to_thread(
        wait_until, lambda: "mcp_inflight_calls 2.0" in instance.metrics(), 20, 0.1, "two calls in flight"
    )
    assert receiver.bodies == []
    container = instance.container.get_wrapped_container()
    container.kill(signal="SIGTERM")
    signalled = time.monotonic()
    await asyncio.sleep(2)  # the calls stay in flight a while after SIGTERM
    await transaction.rollback()
    await lock.close()
    assert await asyncio.gather(*in_flight) == [[{"sku": "KB-01"}]] * 2
    status = await asyncio.to_thread(container.wait, timeout=30)
    exited = time.monotonic() - signalled
    assert exited < CLOUD_RUN_NOTICE_SECONDS, exited
    assert status["StatusCode"] in (0, 143)
    assert any(path == "/v1/traces" for path, _ in receiver.bodies)  # flushed at shutdown
    counts = receiver.gauges()["mcp_server_operation_duration_seconds_count"]  # metrics pushed, not scraped
    assert any(labels.get("gen_ai_tool_name") == "query" and value >= 2 for labels, value in counts)
    assert any(b"tools/call" in body or b"query" in body for path, body in receiver.bodies if path == "/v1/traces")
    measured(
        f"cloud run contract: ready {ready_after:.1f}s after start; drained and exited {exited:.1f}s after SIGTERM"
    )


def test_the_rate_limit_holds_across_two_instances_through_redis(start_replicas, token):
    pair = start_replicas(2, **cloud_run_env(), RATE_LIMIT_PER_MINUTE="4").replicas
    bearer = token("db:read")  # one principal
    admitted = 0
    for index in range(8):
        instance = pair[index % 2]
        response = httpx.post(
            instance.base + "/mcp",
            json={"jsonrpc": "2.0", "id": index, "method": "tools/call",
                  "params": {"name": "list_tables", "arguments": {}}},
            headers={"Authorization": f"Bearer {bearer}", "Accept": "application/json, text/event-stream",
                     "MCP-Protocol-Version": "2025-11-25"},
            timeout=10,
        )  # fmt: skip
        admitted += response.status_code == 200 and "result" in response.json()
    assert admitted == 4  # four per minute for this caller, whichever instance answers
