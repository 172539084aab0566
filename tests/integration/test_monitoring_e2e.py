"""The whole alerting chain on real Prometheus and Alertmanager, loading the project's own files.

Prometheus scrapes two db-server containers and evaluates `alerts/` rules (rendered with short
`for:` durations and a 1 s evaluation interval, through `AlertParams` only); Alertmanager routes with
the project's config to a webhook receiver container. Faults are real: forged tokens, failing
calls (a held lock against a short statement timeout), a stopped replica.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from alerts.params import AlertParams
from alerts.rules import render_rules
from dashboards.build import DASHBOARDS
from infra.images import image
from tests.integration.conftest import measured
from tests.monitoring.promql import grafana_to_promql
from tests.support import stack
from tests.support.mcp_client import mcp_client
from tests.support.monitoring import FAST, Monitoring, start_monitoring
from tests.support.stack import wait_until

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def monitoring(apps_image, network, postgres, redis) -> Iterator[Monitoring]:
    started = time.monotonic()
    replica_set = stack.start_replicas(
        apps_image,
        network,
        2,
        DB_STATEMENT_TIMEOUT_MS="300",
        RATE_LIMIT_PER_MINUTE="100000",
        limits={"nano_cpus": 1_000_000_000, "mem_limit": "512m"},
    )
    targets = [f"{r.name}:{stack.APP_PORT}" for r in replica_set.replicas]
    mon = start_monitoring(network, [{"targets": targets, "labels": {"app": "mcp-db"}}], FAST)
    mon.replicas = replica_set
    wait_until(
        lambda: len([r for r in mon.query('up{job="mcp-apps"}') if r["value"][1] == "1"]) == 2,
        60,
        0.5,
        "prometheus scraping both replicas",
    )
    measured(
        f"monitoring stack ({image('prometheus')}, {image('alertmanager')}) up and scraping: "
        f"{time.monotonic() - started:.1f}s"
    )
    yield mon
    mon.stop()
    replica_set.stop()


def test_rules_loaded_are_the_projects_own(monitoring):
    groups = httpx.get(monitoring.prometheus_url + "/api/v1/rules", timeout=10).json()["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"] if rule["type"] == "alerting"}
    assert loaded == {rule["alert"] for rule in render_rules(FAST)["groups"][-1]["rules"]}


def test_auth_failure_burst_notifies_with_a_resolving_runbook_link(monitoring, token):
    replica = monitoring.replicas.replicas[0]
    fault = time.time()
    forged = token("db:read").rsplit(".", 1)[0] + ".forged-signature"
    headers = {
        "Authorization": f"Bearer {forged}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    for _ in range(60):
        assert (
            httpx.post(
                replica.base + "/mcp", headers=headers, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
            ).status_code
            == 401
        )
    alert, delay = monitoring.wait_for_alert("McpAuthFailureBurst", fault, app="mcp-db")
    assert alert["labels"]["severity"] == "warning"
    url = alert["annotations"]["runbook_url"]
    page = ROOT / url.removeprefix(AlertParams().source_url + "/")
    assert page.is_file() and page.read_text().startswith("# McpAuthFailureBurst")
    assert "authentication failures per minute" in alert["annotations"]["summary"]
    measured(
        f"McpAuthFailureBurst: 60 forged tokens -> webhook notification in {delay:.1f}s; "
        f"runbook {page.relative_to(ROOT)} exists"
    )


async def test_failing_calls_fire_high_error_rate(monitoring, postgres, token):
    replica = monitoring.replicas.replicas[1]
    async with mcp_client(replica.base + "/mcp", token("db:read")) as client:
        for _ in range(30):  # healthy traffic first
            assert not (await client.call_tool("query", {"table": "customers", "limit": 1})).is_error
        lock = await postgres.connect()
        transaction = lock.transaction()
        await transaction.start()
        await lock.execute("LOCK TABLE sales.products IN ACCESS EXCLUSIVE MODE")
        fault = time.time()
        try:
            failed = await asyncio.gather(*(client.call_tool("query", {"table": "products"}) for _ in range(20)))
        finally:
            await transaction.rollback()
            await lock.close()
    assert all(r.is_error and "statement timed out" in r.content[0].text for r in failed)
    alert, delay = monitoring.wait_for_alert("McpHighErrorRate", fault, app="mcp-db")
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"].endswith("/McpHighErrorRate.md")
    measured(f"McpHighErrorRate: 20 failing of 50 calls -> webhook notification in {delay:.1f}s")


def test_every_dashboard_query_runs_and_main_panels_have_data(monitoring):
    main_panels = {
        "Tool calls per second by tool",
        "Tool calls per second by outcome",
        "Error ratio (server faults)",
        "p99 by tool",
        "Authentication failures per minute by reason",
        "In-flight calls by replica",
        "Pool connections in use against the maximum",
        "CPU against limit",
        "Memory against limit",
        "Replicas up and ready",
        "SLO error budget remaining (30d, 99.9%)",
    }
    queried = 0
    with_data = set()
    for name in DASHBOARDS:
        board = json.loads((ROOT / "dashboards" / name).read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                expr = grafana_to_promql(target["expr"]).replace("[5m]", "[1m]")
                if panel["title"] in main_panels:  # recording rules may need a few evaluations
                    wait_until(lambda e=expr: monitoring.query(e), 20, 1, f"data for {panel['title']}")
                    with_data.add(panel["title"])
                else:
                    monitoring.query(expr)  # must run without error; may be empty
                queried += 1
    assert with_data == main_panels
    measured(
        f"dashboards: {queried} panel queries ran against live Prometheus; all {len(main_panels)} main panels "
        "returned data"
    )


def test_a_critical_alert_inhibits_the_same_apps_warnings(monitoring):
    """The shipped inhibition rule, on the real Alertmanager: the cause pages, its echoes stay quiet."""
    port = monitoring.alertmanager.get_exposed_port(9093)
    api = f"http://127.0.0.1:{port}/api/v2/alerts"
    sent = time.time()
    alerts = [
        {"labels": {"alertname": "InhibitTestCause", "severity": "critical", "app": "app-a"}},
        {"labels": {"alertname": "InhibitTestEcho", "severity": "warning", "app": "app-a"}},
        {"labels": {"alertname": "InhibitTestOther", "severity": "warning", "app": "app-b"}},
        # who is calling stays visible: a security warning of the same app (McpAuthFailureBurst's label) is not
        # inhibited. Before, a budget burn on mcp-db hid its forged-token page (the one-machine test found it).
        {"labels": {"alertname": "InhibitTestProbe", "severity": "warning", "app": "app-a", "category": "security"}},
    ]
    assert httpx.post(api, json=alerts, timeout=10).status_code == 200
    monitoring.wait_for_alert("InhibitTestCause", sent, app="app-a")
    monitoring.wait_for_alert("InhibitTestOther", sent, app="app-b")  # another app's warning is not inhibited
    monitoring.wait_for_alert("InhibitTestProbe", sent, app="app-a")
    states = {a["labels"]["alertname"]: a["status"] for a in httpx.get(api, timeout=10).json()}
    assert states["InhibitTestEcho"]["state"] == "suppressed"
    assert states["InhibitTestEcho"]["inhibitedBy"]
    assert states["InhibitTestOther"]["state"] == "active"
    assert states["InhibitTestProbe"]["state"] == "active" and not states["InhibitTestProbe"]["inhibitedBy"]
    notified = {
        alert["labels"]["alertname"]
        for entry in monitoring.notifications()
        if entry["received_at"] >= sent
        for alert in entry["notification"]["alerts"]
    }
    assert "InhibitTestEcho" not in notified
    measured("inhibition: a critical alert for app-a suppressed app-a's warning; app-b's warning was notified")


def test_stopped_replica_fires_server_down(monitoring):
    victim = monitoring.replicas.replicas[1]
    instance = f"{victim.name}:{stack.APP_PORT}"
    fault = time.time()
    victim.container.stop()
    alert, delay = monitoring.wait_for_alert("McpServerDown", fault, instance=instance)
    assert alert["labels"]["severity"] == "critical" and alert["labels"]["app"] == "mcp-db"
    measured(
        f"McpServerDown: replica stopped -> webhook notification in {delay:.1f}s "
        f"(scrape 1s, for {FAST.down_for}, group_wait {FAST.group_wait})"
    )


def test_fast_params_change_only_durations_and_intervals():
    """The end-to-end rules differ from the shipped ones only where AlertParams allows."""
    shipped = replace(
        FAST,
        **{
            f: getattr(AlertParams(), f)
            for f in (
                "error_for",
                "latency_for",
                "auth_for",
                "rate_limit_for",
                "saturation_for",
                "down_for",
                "not_ready_for",
                "slo_rules_interval",
                "webhook_url",
                "group_wait",
                "group_interval",
            )
        },
    )
    assert shipped == AlertParams()
