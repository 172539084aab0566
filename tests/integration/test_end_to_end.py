"""The built image, real Postgres and Redis: the production layer seen from outside the container."""

from __future__ import annotations

import httpx
import pytest
from mcp.shared.exceptions import MCPError

from apps.kit.cli.token import mint
from tests.conftest import ISSUER, SECRET
from tests.support.mcp_client import mcp_client
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration


async def test_valid_call_through_the_container(replicas, token):
    replica = replicas.replicas[0]
    async with mcp_client(replica.base + "/mcp", token()) as client:
        result = await client.call_tool(
            "query", {"table": "products", "columns": ["sku", "price"], "filters": {"active": True}, "limit": 2}
        )
    assert not result.is_error, result.content
    assert result.structured_content["rows"] == [
        {"sku": "KB-01", "price": "129.00"},
        {"sku": "MS-02", "price": "59.50"},
    ]


@pytest.mark.parametrize("case", ["missing", "wrong_audience", "expired"])
def test_unauthenticated_requests_get_401(replicas, token, case):
    replica = replicas.replicas[0]
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}
    if case == "wrong_audience":
        headers["Authorization"] = "Bearer " + mint(
            SECRET, issuer=ISSUER, audience="http://mcp-files.test/mcp", subject="x", scopes="db:read"
        )
    elif case == "expired":
        headers["Authorization"] = "Bearer " + token(expires_in=-600)
    response = httpx.post(
        replica.base + "/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    )
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]


async def test_scopes_hide_tools_and_forbid_calls(replicas, token):
    replica = replicas.replicas[1]
    async with mcp_client(replica.base + "/mcp", token("db:read")) as client:
        names = {t.name for t in (await client.list_tools()).tools}
        with pytest.raises(MCPError, match=r"^Forbidden: tool 'update' requires scope db:write"):
            await client.call_tool("update", {"table": "orders", "key": {"id": 1}, "values": {"status": "x"}})
    assert names == {"list_tables", "describe_table", "query"}


async def test_validation_error_names_the_field(replicas, token):
    async with mcp_client(replicas.replicas[2].base + "/mcp", token()) as client:
        result = await client.call_tool("query", {"table": "orders", "limit": 0})
    assert result.is_error and "limit:" in result.content[0].text


def test_probes_and_metrics_answer(replicas):
    for replica in replicas.replicas:
        assert httpx.get(replica.base + "/health").json() == {"status": "ok"}
        ready = httpx.get(replica.base + "/ready").json()
        assert ready == {"status": "ready", "checks": {"db_read": "ok", "db_write": "ok", "redis": "ok"}}
        metrics = replica.metrics()
        assert "mcp_server_operation_duration_seconds_bucket" in metrics and "process_resident_memory_bytes" in metrics


def test_container_runs_as_non_root_and_reports_healthy(replicas):
    container = replicas.replicas[0].container.get_wrapped_container()
    container.reload()
    assert container.attrs["Config"]["User"] == "10001:10001"
    wait_until(
        lambda: (container.reload() or container.attrs["State"]["Health"]["Status"]) == "healthy",
        40,
        1,
        "docker HEALTHCHECK healthy",
    )
