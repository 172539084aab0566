"""The official MCP conformance suite (npm @modelcontextprotocol/conformance 0.1.16) against every server.

The suite has no option for a bearer token, so a layer in front of each server adds one and passes
everything else as sent (Host and Origin included: the DNS-rebinding scenario depends on them).
Scenarios that do not apply to a tools-only server are the kit's baseline (apps/kit/conformance.yml,
each with its reason) plus a server's own (apps/<name>/conformance.yml); the suite fails the run on an
unexpected failure and on a stale baseline entry (a listed scenario that passes).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps import fleet
from apps.kit import create_app
from apps.kit.cli.token import mint
from tests.conftest import ISSUER, SECRET, requirement_missing
from tests.support.postgres import free_port
from tests.support.running import serve_app

REPO = Path(__file__).resolve().parents[2]
MODULES = REPO / "tests" / "interop" / "node_modules"
NODE22 = MODULES / "node" / "bin" / "node"
SUITE = MODULES / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
PASSING = {"server-initialize", "ping", "tools-list", "dns-rebinding-protection"}  # what applies, and passes


class WithToken:
    """The server's app behind a layer that adds `Authorization: Bearer <token>` to every request, on the
    server's own port (its resource URL), so Host and Origin reach it exactly as the suite sent them."""

    def __init__(self, app: Any, token: str):
        self.app, self.runtime, self.token = app, app.runtime, token

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not any(k == b"authorization" for k, _ in scope["headers"]):
            scope = {**scope, "headers": [*scope["headers"], (b"authorization", f"Bearer {self.token}".encode())]}
        await self.app(scope, receive, send)


def baseline(module: str, directory: Path) -> Path:
    kit = yaml.safe_load((REPO / "apps/kit/conformance.yml").read_text())["server"]
    own_file = REPO / module.replace(".", "/") / "conformance.yml"
    own = yaml.safe_load(own_file.read_text())["server"] if own_file.exists() else []
    path = directory / "baseline.yml"
    path.write_text(yaml.safe_dump({"server": sorted({*kit, *own})}))
    return path


def run_suite(server: Any, scopes: str, directory: Path, make_settings: Any, **settings: str) -> str:
    if not (NODE22.exists() and SUITE.exists()):
        requirement_missing("the conformance suite and Node 22 in tests/interop (scripts/test installs them)")
    port = free_port()
    url = f"http://127.0.0.1:{port}/mcp"
    app = create_app(server, make_settings(server.settings_cls, MCP_RESOURCE_URL=url, **settings))
    token = mint(SECRET, issuer=ISSUER, audience=url, subject="conformance", scopes=scopes)
    module = server_module(server)
    with serve_app(WithToken(app, token), port):
        command = [str(NODE22), str(SUITE), "server", "--url", url, "--suite", "all"]
        command += ["--expected-failures", str(baseline(module, directory)), "-o", str(directory / "results")]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    summary = result.stdout[result.stdout.find("=== SUMMARY ===") :]
    print(f"\n{module}: {summary.strip()}")
    assert result.returncode == 0, summary + result.stdout[-3000:]
    for scenario in PASSING:
        assert f"✓ {scenario}: 1 passed" in summary or f"✓ {scenario}: 2 passed" in summary, scenario
    return summary


def server_module(server: Any) -> str:
    return next(module for module, known in fleet.servers().items() if known is server)


def test_the_file_server(make_settings, tmp_path):
    from apps.files.server import server

    run_suite(
        server,
        "files:read files:write",
        tmp_path,
        make_settings,
        FILES_PATH=str(tmp_path),
        FILES_ROOTS='{"data": "rw"}',
    )


@pytest.mark.redis
def test_the_notification_server(make_settings, redis_server, tmp_path):
    from apps.notify.server import server

    hook = {"hook": {"kind": "webhook", "url": "https://localhost:9/hook", "internal": True}}
    settings = {"REDIS_URL": redis_server.url, "NOTIFY_TARGETS": json.dumps(hook), "NOTIFY_SIGNING_KEY": "k" * 40}
    run_suite(server, "notify:read notify:send", tmp_path, make_settings, **settings)


def test_the_on_call_server(make_settings, tmp_path):
    from apps.oncall.server import server

    unreachable = {"PROMETHEUS_URL": "http://127.0.0.1:9", "ALERTMANAGER_URL": "http://127.0.0.1:9"}
    run_suite(server, "oncall:read oncall:write", tmp_path, make_settings, **unreachable)


@pytest.mark.postgres
def test_the_database_server(make_settings, db_stack, tmp_path):
    from apps.db.server import server

    roles = {"DB_READ_URL": db_stack.role_url("mcp_db_reader"), "DB_WRITE_URL": db_stack.role_url("mcp_db_writer")}
    run_suite(server, "db:read db:write", tmp_path, make_settings, **roles)


@pytest.mark.redis
def test_the_github_server(make_settings, redis_server, tmp_path):
    from apps.github.server import server

    settings = {
        "REDIS_URL": redis_server.url,
        "GITHUB_API_URL": "http://127.0.0.1:9",  # the suite's scenarios list tools; none calls GitHub
        "GITHUB_CREDENTIAL": "github_pat_conformance",
        "GITHUB_REPOSITORIES": "octo/hello",
    }
    run_suite(server, "github:read github:write", tmp_path, make_settings, **settings)
