from __future__ import annotations

import subprocess
import sys

from apps.kit.identity.tokens import JwtVerifier
from apps.kit.observe.metrics import KitMetrics
from tests.conftest import ISSUER, SECRET

AUD = "http://127.0.0.1:9/mcp"


async def test_cli_prints_a_token_the_server_accepts(make_settings):
    settings = make_settings(MCP_RESOURCE_URL=AUD)
    out = subprocess.run(
        [sys.executable, "-m", "apps.kit.cli.token", "--sub", "alice", "--scopes", "db:read db:write", "--aud", AUD],
        capture_output=True,
        text=True,
        check=True,
        env={"MCP_JWT_SECRET": SECRET, "MCP_ISSUER": ISSUER},
    )
    access = await JwtVerifier(settings, KitMetrics("t")).verify(out.stdout.strip())
    assert access.subject == "alice" and set(access.scopes) == {"db:read", "db:write"}


def test_cli_refuses_without_secret():
    out = subprocess.run(
        [sys.executable, "-m", "apps.kit.cli.token", "--sub", "a", "--aud", AUD, "--iss", ISSUER],
        capture_output=True,
        text=True,
        env={},
    )
    assert out.returncode == 2 and "MCP_JWT_SECRET" in out.stderr


async def test_cli_grants_every_scope_a_server_declares(make_settings):
    """One source: the scopes come from the server's tool declarations."""
    from apps.db.server import server

    settings = make_settings(MCP_RESOURCE_URL=AUD)
    out = subprocess.run(
        [sys.executable, "-m", "apps.kit.cli.token", "--sub", "alice", "--server", "apps.db", "--aud", AUD],
        capture_output=True,
        text=True,
        check=True,
        env={"MCP_JWT_SECRET": SECRET, "MCP_ISSUER": ISSUER},
    )
    principal = await JwtVerifier(settings, KitMetrics("t")).verify(out.stdout.strip())
    assert principal.scopes == {"db:read", "db:write"} == set(server.scopes)
