"""`pulumi up` on a real cluster through the Automation API, then `pulumi destroy`.

Runs only where the Pulumi CLI, kind and Docker exist (a developer laptop); skipped, saying
why, everywhere else. See README "Real-cluster test".
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from apps.kit.cli.token import mint
from tests.support.mcp_client import mcp_client

ROOT = Path(__file__).resolve().parents[2]
MISSING = [tool for tool in ("pulumi", "kind", "docker", "kubectl") if shutil.which(tool) is None]

pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"needs a real cluster toolchain; missing: {', '.join(MISSING)}")


def port_forward(namespace: str, service: str, local: int, remote: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(["kubectl", "-n", namespace, "port-forward", f"svc/{service}", f"{local}:{remote}"])
    time.sleep(3)
    return process


def test_pulumi_up_serves_and_destroys():
    from pulumi import automation as auto

    stack = auto.create_or_select_stack(stack_name="e2e", work_dir=str(ROOT))
    stack.set_all_config(
        {
            "mcpfleet:cluster": auto.ConfigValue('{"mode": "kind", "name": "mcpfleet-e2e"}'),
            "mcpfleet:issuer": auto.ConfigValue("https://auth.mcpfleet.dev"),
            "mcpfleet:apps": auto.ConfigValue(
                '{"mcp-db": {"module": "apps.db", "resourceUrl": "http://mcp-db.mcp-apps.svc/mcp", "maxReplicas": 2}}'
            ),
        }
    )
    try:
        outputs = stack.up(on_output=print, policy_packs=[str(ROOT / "infra" / "policy")]).outputs
        assert outputs["app_urls"].value == {"mcp-db": "http://mcp-db.mcp-apps.svc/mcp"}
        forwards = [
            port_forward("mcp-apps", "mcp-db", 18080, 80),
            port_forward("mcp-observability", "prometheus", 19090, 9090),
            port_forward("mcp-observability", "grafana", 13000, 3000),
        ]
        try:
            assert httpx.get("http://127.0.0.1:18080/ready", timeout=10).status_code == 200
            token = mint(
                outputs["jwt_secret"].value,
                issuer="https://auth.mcpfleet.dev",
                audience="http://mcp-db.mcp-apps.svc/mcp",
                subject="e2e",
                scopes="db:read",
            )

            async def call() -> dict:
                async with mcp_client("http://127.0.0.1:18080/mcp", token) as client:
                    return (await client.call_tool("list_tables", {})).structured_content

            assert "customers" in asyncio.run(call())["tables"]
            rules = httpx.get("http://127.0.0.1:19090/api/v1/rules", timeout=10).json()["data"]["groups"]
            assert any(g["name"] == "mcp.alerts" for g in rules)
            assert httpx.get("http://127.0.0.1:13000/api/health", timeout=10).status_code == 200
        finally:
            for process in forwards:
                process.terminate()
    finally:
        stack.destroy(on_output=print)
        stack.workspace.remove_stack("e2e")
