"""With MCP_METRICS_PORT (as the platform sets it), /metrics is served on that port alone: a route that
reaches the MCP port can never expose the metrics, and Prometheus is admitted to the other port only."""

from __future__ import annotations

import httpx

from tests.support.demo_process import start_demo_process
from tests.support.demo_server import server as demo_server
from tests.support.postgres import free_port


def test_metrics_move_to_their_own_port_and_leave_the_mcp_port():
    metrics_port = free_port()
    demo = start_demo_process(MCP_METRICS_PORT=str(metrics_port))
    try:
        base = f"http://127.0.0.1:{demo.port}"
        assert httpx.get(f"{base}/metrics", timeout=5).status_code == 404
        assert httpx.get(f"{base}/ready", timeout=5).status_code == 200  # the kubelet's probes stay here
        scraped = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)
        assert scraped.status_code == 200
        assert "mcp_ready" in scraped.text and "mcp_server_operation_duration_seconds" in scraped.text
    finally:
        demo.process.terminate()
        demo.process.wait(timeout=30)


def test_without_a_metrics_port_they_are_served_beside_mcp(start_server):
    running = start_server(demo_server)
    scraped = httpx.get(f"{running.base}/metrics", timeout=5)
    assert scraped.status_code == 200 and "mcp_ready" in scraped.text
