"""The per-principal limit holds across three replicas sharing Redis."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError

from tests.integration.conftest import RATE_LIMIT, measured
from tests.support.mcp_client import mcp_client

pytestmark = pytest.mark.integration


async def test_limit_holds_across_replicas_and_spares_other_principals(replicas, balancer, token):
    proxy = balancer(replicas)
    before = [r.tool_calls() for r in replicas.replicas]
    limited_before = sum(_rate_limited(r.metrics()) for r in replicas.replicas)
    sent = int(RATE_LIMIT * 1.5)
    accepted = refused = 0
    async with mcp_client(
        proxy.url + "/mcp", token("db:read", subject="greedy"), new_connection_per_request=True
    ) as client:
        await client.list_tools()
        for _ in range(sent):
            try:
                await client.call_tool("list_tables", {})
                accepted += 1
            except MCPError:  # the SDK surfaces HTTP 429 as an error response
                refused += 1
    spread = [r.tool_calls() - b for r, b in zip(replicas.replicas, before, strict=True)]
    limited = sum(_rate_limited(r.metrics()) for r in replicas.replicas) - limited_before
    assert abs(accepted - RATE_LIMIT) <= RATE_LIMIT * 0.05, (accepted, RATE_LIMIT)
    assert refused == limited == sent - accepted
    assert all(s > 0 for s in spread), spread  # the accepted calls really were spread out
    async with mcp_client(
        proxy.url + "/mcp", token("db:read", subject="modest"), new_connection_per_request=True
    ) as client:
        for _ in range(10):
            await client.call_tool("list_tables", {})  # raises if limited
    measured(
        f"rate limit across 3 replicas: L={RATE_LIMIT}/min, sent {sent} from one principal: accepted {accepted} "
        f"({accepted / RATE_LIMIT:.1%} of L; spread {[int(s) for s in spread]}), refused {refused} with 429; "
        "a second principal: 10/10 accepted"
    )


def _rate_limited(metrics: str) -> float:
    for line in metrics.splitlines():
        if line.startswith("mcp_rate_limited_total "):
            return float(line.split()[1])
    return 0.0
