"""The db server on AWS Lambda's own runtime client (`awslambdaric`, the one the container image runs), driven by
a loopback Runtime API with API Gateway HTTP API events (checked against AWS Lambda Powertools' event model):
warm invocations answer a tool call, a refused token and readiness on one sandbox whose lifespan (and so its
database pools) was entered once, and SIGTERM closes the pools. With SnapStart, nothing is connected when the
snapshot is taken: the pools open after the restore."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from apps.kit.cli.token import mint
from tests.conftest import ISSUER, SECRET
from tests.local.conftest import READER_PASSWORD, WRITER_PASSWORD
from tests.support.lambda_runtime import RESOURCE, RuntimeApi, http_api_event, start_sandbox
from tests.support.otlp import OtlpReceiver
from tests.support.raw import BASE_HEADERS, tool_call

pytestmark = pytest.mark.postgres


@pytest.fixture
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.server.shutdown()


@contextmanager
def running_sandbox(pg, otlp, log: Path, **extra: str) -> Iterator[tuple[RuntimeApi, subprocess.Popen[bytes]]]:
    """The db server's container command under a loopback Runtime API, `extra` added to its environment."""
    api = RuntimeApi()
    env = {
        "DB_READ_URL": pg.url("mcp_db_reader", READER_PASSWORD),
        "DB_WRITE_URL": pg.url("mcp_db_writer", WRITER_PASSWORD),
        "MCP_ISSUER": ISSUER,
        "MCP_JWT_SECRET": SECRET,
        "RATE_LIMIT_PER_MINUTE": "1000",
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,  # nothing scrapes a sandbox: its metrics are pushed
        **extra,
    }
    with log.open("wb") as out:
        process = start_sandbox(api, env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield api, process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            api.stop()


@pytest.fixture
def sandbox(pg, otlp, tmp_path) -> Iterator[tuple[RuntimeApi, subprocess.Popen[bytes], Path]]:
    log = tmp_path / "sandbox.log"
    with running_sandbox(pg, otlp, log) as (api, process):
        yield api, process, log


def app_backends(pg) -> set[int]:
    async def query() -> set[int]:
        connection = await asyncpg.connect(pg.admin_url)
        try:
            rows = await connection.fetch(
                "SELECT pid FROM pg_stat_activity WHERE usename IN ('mcp_db_reader', 'mcp_db_writer')"
            )
        finally:
            await connection.close()
        return {row["pid"] for row in rows}

    return asyncio.run(query())


def invoke(api: RuntimeApi, method: str, path: str, body: Any = None, token: str | None = None) -> dict[str, Any]:
    headers = dict(BASE_HEADERS) | ({"Authorization": f"Bearer {token}"} if token else {})
    kind, answer = api.invoke(http_api_event(method, path, headers, None if body is None else json.dumps(body)))
    assert kind == "response", answer
    return answer


def test_warm_invocations_share_one_lifespan_and_sigterm_closes_it(sandbox, pg, otlp):
    api, process, log = sandbox
    token = mint(SECRET, issuer=ISSUER, audience=RESOURCE, subject="alice", scopes="db:read")
    others = app_backends(pg)  # other tests' servers log in as the same roles; the sandbox's pools start empty

    listed = invoke(api, "POST", "/mcp", tool_call("list_tables"), token)
    assert listed["statusCode"] == 200, listed
    result = json.loads(listed["body"])["result"]
    assert result["structuredContent"]["tables"] == ["customers", "order_items", "orders", "products"]
    pools = app_backends(pg) - others
    assert pools, "the pools are open"
    # Pushed before the invocation returned: the kit's own series, as Prometheus would have scraped them.
    counts = otlp.gauges()["mcp_server_operation_duration_seconds_count"]
    assert any(labels.get("gen_ai_tool_name") == "list_tables" and value == 1 for labels, value in counts)

    forged = invoke(api, "POST", "/mcp", tool_call("list_tables"), token[:-4] + "AAAA")
    assert forged["statusCode"] == 401
    assert "resource_metadata" in {k.lower(): v for k, v in forged["headers"].items()}["www-authenticate"]

    ready = invoke(api, "GET", "/ready")
    assert ready["statusCode"] == 200 and json.loads(ready["body"])["status"] == "ready"

    again = invoke(api, "POST", "/mcp", tool_call("describe_table", {"table": "orders"}, 2), token)
    assert again["statusCode"] == 200 and json.loads(again["body"])["result"]["structuredContent"]["primary_key"] == [
        "id"
    ]
    assert app_backends(pg) - others == pools  # the same connections: the pools were opened once, not per invocation
    assert api.init_errors == []

    process.send_signal(signal.SIGTERM)
    assert process.wait(10) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    events = [line.get("event") for line in lines]
    assert events.count("server_started") == 1 and events.count("server_stopped") == 1
    assert next(line for line in lines if line.get("event") == "sandbox_stopped")["invocations"] == 4
    # The pools were closed: PostgreSQL ends each backend once it sees its connection close.
    deadline = time.monotonic() + 5
    while app_backends(pg) & pools and time.monotonic() < deadline:
        time.sleep(0.1)
    assert app_backends(pg) & pools == set()


def test_with_snapstart_nothing_is_connected_in_the_snapshot_and_the_pools_open_after_restore(pg, otlp, tmp_path):
    token = mint(SECRET, issuer=ISSUER, audience=RESOURCE, subject="alice", scopes="db:read")
    others = app_backends(pg)
    log = tmp_path / "sandbox.log"
    with running_sandbox(pg, otlp, log, AWS_LAMBDA_INITIALIZATION_TYPE="snap-start") as (api, process):
        assert api.snapshot_taken.wait(60), log.read_text()[-2000:]
        time.sleep(0.5)  # anything init left running would connect now, before the snapshot
        assert app_backends(pg) - others == set()  # a connection in the snapshot would be dead in every restore
        events = [json.loads(line).get("event") for line in log.read_text().splitlines() if line.startswith("{")]
        assert "server_started" not in events  # the lifespan (pools, keys, readiness) waits for the restore

        api.restore.set()
        listed = invoke(api, "POST", "/mcp", tool_call("list_tables"), token)
        assert listed["statusCode"] == 200, listed
        assert json.loads(listed["body"])["result"]["structuredContent"]["tables"][0] == "customers"
        pools = app_backends(pg) - others
        assert pools, "the pools opened after the restore"
        described = invoke(api, "POST", "/mcp", tool_call("describe_table", {"table": "orders"}, 2), token)
        assert described["statusCode"] == 200
        assert app_backends(pg) - others == pools and api.init_errors == api.restore_errors == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    events = [json.loads(line).get("event") for line in log.read_text().splitlines() if line.startswith("{")]
    assert events.count("server_started") == 1 and events.count("server_stopped") == 1


def test_a_restored_sandbox_draws_its_own_random_numbers(monkeypatch):
    """Every sandbox restored from one snapshot starts with the snapshot's `random` state; OpenTelemetry draws
    trace and span ids from it, so without a reseed they would repeat across sandboxes."""
    from apps.kit.run.serverless import LambdaApp
    from tests.support import demo_server

    monkeypatch.setenv("MCP_ISSUER", ISSUER)
    monkeypatch.setenv("MCP_JWT_SECRET", SECRET)
    monkeypatch.setenv("MCP_RESOURCE_URL", RESOURCE)
    sandbox = LambdaApp(demo_server.server)
    monkeypatch.setattr(sandbox, "open", lambda: None)  # the app itself is the test above's
    random.seed(22)
    from_the_snapshot = random.getrandbits(128)
    random.seed(22)
    sandbox.restored()
    assert random.getrandbits(128) != from_the_snapshot
