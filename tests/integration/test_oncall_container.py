"""The on-call server's image against the real Prometheus and Alertmanager, through the MCP SDK client.

The stack watches the on-call container itself (job mcp-apps, app mcp-oncall). A real fault (forged
tokens) fires McpAuthFailureBurst; the assistant lists it with its runbook, runs the runbook's queries,
and silences it. A silence made through the tool before an outage suppresses that outage's page while
an unsilenced twin pages; expiring it lets the page through.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from testcontainers.core.container import DockerContainer

from apps.kit.cli.token import mint
from apps.kit.wire.encoding import dumps
from tests.conftest import ISSUER, SECRET
from tests.integration.conftest import measured
from tests.support.mcp_client import mcp_client
from tests.support.monitoring import Monitoring, start_monitoring
from tests.support.stack import APP_PORT, wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
RESOURCE_URL = "http://mcp-oncall.mcpfleet.test/mcp"
BUDGET = 24 * 1024


@dataclass
class OncallStack:
    container: DockerContainer
    monitoring: Monitoring

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.container.get_exposed_port(APP_PORT)}"

    def token(self, scopes: str = "oncall:read oncall:write", subject: str = "alice-oncall") -> str:
        return mint(SECRET, issuer=ISSUER, audience=RESOURCE_URL, subject=subject, scopes=scopes)

    def silences(self) -> list[dict]:
        return httpx.get(self.monitoring.alertmanager_url + "/api/v2/silences", timeout=5).json()

    def alerts(self) -> list[dict]:
        return httpx.get(self.monitoring.alertmanager_url + "/api/v2/alerts", timeout=5).json()


@pytest.fixture(scope="module")
def oncall(apps_image, network) -> Iterator[OncallStack]:
    started = time.monotonic()
    name = "oncall-" + uuid.uuid4().hex[:6]
    container = DockerContainer(apps_image).with_command("apps.oncall").with_network(network)
    container.with_network_aliases(name).with_name(name).with_exposed_ports(APP_PORT)
    container.with_kwargs(read_only=True).with_tmpfs_mount("/tmp", "size=16m")
    env = {
        "MCP_RESOURCE_URL": RESOURCE_URL,
        "MCP_ISSUER": ISSUER,
        "MCP_JWT_SECRET": SECRET,
        "PROMETHEUS_URL": "http://prometheus:9090",
        "ALERTMANAGER_URL": "http://alertmanager:9093",
        "RATE_LIMIT_PER_MINUTE": "100000",
    }
    for key, value in env.items():
        container.with_env(key, value)
    container.start()
    monitoring = start_monitoring(network, [{"targets": [f"{name}:{APP_PORT}"], "labels": {"app": "mcp-oncall"}}])
    running = OncallStack(container, monitoring)
    try:
        wait_until(lambda: httpx.get(running.base + "/ready", timeout=2).status_code == 200, 60, 0.2, "oncall ready")
        wait_until(
            lambda: [r for r in monitoring.query('up{app="mcp-oncall"}') if r["value"][1] == "1"],
            60,
            0.5,
            "prometheus scraping the on-call server",
        )
        measured(f"on-call stack (server, Prometheus, Alertmanager, receiver) up: {time.monotonic() - started:.1f}s")
        yield running
    finally:
        monitoring.stop()
        container.stop()


def forge(oncall: OncallStack, count: int) -> None:
    forged = oncall.token("oncall:read").rsplit(".", 1)[0] + ".forged-signature"
    headers = {"Authorization": f"Bearer {forged}", "Accept": "application/json", "MCP-Protocol-Version": "2025-11-25"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for _ in range(count):
        assert httpx.post(oncall.base + "/mcp", headers=headers, json=body).status_code == 401


async def test_an_alert_fires_and_the_assistant_follows_its_runbook_then_silences_it(oncall):
    transcript: list[str] = []
    fault = time.time()
    forge(oncall, 60)
    oncall.monitoring.wait_for_alert("McpAuthFailureBurst", fault, app="mcp-oncall")
    async with mcp_client(oncall.base + "/mcp", oncall.token()) as client:
        firing = (await client.call_tool("list_firing_alerts", {})).structured_content
        [alert] = [a for a in firing["alerts"] if a["alertname"] == "McpAuthFailureBurst"]
        transcript.append(f"list_firing_alerts -> {alert['alertname']} {alert['severity']} app={alert['app']}")
        shipped = (ROOT / "runbooks" / "McpAuthFailureBurst.md").read_text().replace("APP", "mcp-oncall")
        assert firing["runbooks"][alert["runbook"]] == shipped  # the page in the image, APP filled in
        assert len(dumps(firing)) <= BUDGET
        runbook = await client.call_tool("get_runbook", {"alert": "McpAuthFailureBurst", "app": "mcp-oncall"})
        queries = runbook.structured_content["queries"]
        transcript.append(f"get_runbook -> {len(runbook.structured_content['text'])} chars, {len(queries)} queries")
        assert queries
        for query in queries:
            answer = await client.call_tool("query_metrics", {"query": query})
            assert not answer.is_error, (query, answer.content)
            transcript.append(
                f"query_metrics {query[:70]!r} -> {len(answer.structured_content.get('series', []))} series"
            )
        silence = await client.call_tool(
            "create_silence",
            {
                "alertname": "McpAuthFailureBurst",
                "matchers": {"app": "mcp-oncall"},
                "duration_minutes": 30,
                "comment": "forged-token test traffic, handled by alice",
            },
        )
        silence_id = silence.structured_content["silence_id"]
        transcript.append(f"create_silence -> {silence_id} by {silence.structured_content['created_by']}")
        wait_until(
            lambda: (
                not [
                    a
                    for a in oncall.alerts()
                    if a["labels"]["alertname"] == "McpAuthFailureBurst" and a["status"]["state"] == "active"
                ]
            ),
            30,
            0.5,
            "the alert suppressed",
        )
        after = (await client.call_tool("list_firing_alerts", {})).structured_content
        assert "McpAuthFailureBurst" not in [a["alertname"] for a in after["alerts"]]
        await client.call_tool("expire_silence", {"silence_id": silence_id})
    [made] = [s for s in oncall.silences() if s["id"] == silence_id]
    assert made["createdBy"] == "alice-oncall via mcp-oncall" and made["status"]["state"] == "expired"
    assert {(m["name"], m["value"], m["isRegex"]) for m in made["matchers"]} == {
        ("alertname", "McpAuthFailureBurst", False),
        ("app", "mcp-oncall", False),
    }
    for line in transcript:
        measured(f"on-call story: {line}")


async def test_a_silence_made_through_the_tool_suppresses_the_page_and_expiring_it_lets_it_through(oncall):
    async with mcp_client(oncall.base + "/mcp", oncall.token()) as client:
        made = await client.call_tool(
            "create_silence",
            {
                "alertname": "McpServerDown",
                "matchers": {"app": "mcp-ghost"},
                "duration_minutes": 30,
                "comment": "planned maintenance of ghost, CHG-7",
            },
        )
        silence_id = made.structured_content["silence_id"]
        [silence] = [s for s in oncall.silences() if s["id"] == silence_id]
        assert silence["status"]["state"] == "active" and silence["createdBy"] == "alice-oncall via mcp-oncall"
        outage = time.time()
        oncall.monitoring.set_targets("ghost", ["ghost-a:8080"], {"app": "mcp-ghost"})
        oncall.monitoring.set_targets("twin", ["ghost-b:8080"], {"app": "mcp-ghost-twin"})
        oncall.monitoring.wait_for_alert("McpServerDown", outage, app="mcp-ghost-twin")  # the twin pages
        [ghost] = wait_until(
            lambda: [a for a in oncall.alerts() if a["labels"].get("app") == "mcp-ghost"], 30, 0.5, "ghost alert"
        )
        assert ghost["status"]["state"] == "suppressed" and ghost["status"]["silencedBy"] == [silence_id]
        time.sleep(3)  # group_wait and group_interval are 1 s: a page would have gone out by now
        assert oncall.monitoring.notified("McpServerDown", outage, app="mcp-ghost") == []
        expired = time.time()
        await client.call_tool("expire_silence", {"silence_id": silence_id})
    oncall.monitoring.wait_for_alert("McpServerDown", expired, app="mcp-ghost")
    measured(
        "silence via create_silence: the silenced outage did not page, its twin did; after expire_silence it paged"
    )


async def test_an_over_wide_query_is_truncated_with_counts_and_an_over_long_range_refused(oncall):
    async with mcp_client(oncall.base + "/mcp", oncall.token("oncall:read")) as client:
        wide = (await client.call_tool("query_metrics", {"query": '{__name__=~".+"}'})).structured_content
        summary = (await client.call_tool("query_range", {"query": "up", "range": "5m"})).structured_content
        too_long = await client.call_tool("query_range", {"query": "up", "range": "25h"})
    assert wide["truncated"] and len(wide["series"]) <= 50 < wide["total_series"]
    assert len(dumps(wide)) <= BUDGET
    assert {"min", "max", "avg", "last"} <= set(summary["series"][0]) and summary["step_seconds"] == 2
    assert too_long.is_error and "range 25h is over the 24 h cap" in too_long.content[0].text
    measured(
        f'on-call guards: {{__name__=~".+"}} -> {len(wide["series"])} of {wide["total_series"]} series, '
        f"{len(dumps(wide))} bytes (budget {BUDGET}); a 25h range refused"
    )
