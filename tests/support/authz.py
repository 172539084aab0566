"""The platform's local authorization server (`authz/server.mjs`, oidc-provider) as a process on loopback.

It needs Node 22 (the `node` package scripts/test installs under tests/interop; Debian's Node 18 is too old for
oidc-provider 9) and `authz/node_modules` (scripts/test runs `npm ci` there).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.files.server import server as files_server
from apps.kit import create_app
from infra import authz
from infra.config import IdentityConfig, PersonConfig, load_stack
from onebox.login import sign_in
from tests.conftest import requirement_missing
from tests.support import demo_server
from tests.support.postgres import free_port
from tests.support.running import serve_app

ROOT = Path(__file__).resolve().parents[2]
NODE22 = ROOT / "tests" / "interop" / "node_modules" / "node" / "bin" / "node"
SERVER = ROOT / "authz" / "server.mjs"


class LocalAuthz:
    """`config` as `infra.authz.config` renders it (issuer and port are filled in here); `passwords` by login."""

    def __init__(self, config: dict[str, Any], passwords: dict[str, str]):
        if not NODE22.exists() or not (ROOT / "authz" / "node_modules" / "oidc-provider").is_dir():
            requirement_missing(
                "Node 22 (tests/interop) and authz/node_modules are needed (scripts/test installs them)"
            )
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.config = {**config, "issuer": self.issuer, "host": "127.0.0.1", "port": self.port}
        self.passwords = passwords
        self.folder = Path(tempfile.mkdtemp(prefix="mcpfleet-authz-"))
        self.process: subprocess.Popen[str] | None = None

    @property
    def jwks_url(self) -> str:
        return self.issuer + "/jwks"

    def start(self) -> LocalAuthz:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "AUTHZ_CONFIG": json.dumps(self.config),
            "AUTHZ_KEYS_FILE": str(self.folder / "jwks.json"),
            "AUTHZ_COOKIE_KEYS": secrets.token_urlsafe(32),
            **{person["passwordVariable"]: self.passwords[login] for login, person in self.config["people"].items()},
        }
        log = (self.folder / "authz.log").open("w")
        self.process = subprocess.Popen([str(NODE22), str(SERVER)], env=env, stdout=log, stderr=log, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"authz exited: {(self.folder / 'authz.log').read_text()[-2000:]}")
            try:
                if httpx.get(self.issuer + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("authz did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def log(self) -> str:
        return (self.folder / "authz.log").read_text()


PASSWORDS = {"reader": "reader-" + secrets.token_urlsafe(8), "writer": "writer-" + secrets.token_urlsafe(8)}


class Fleet:
    def __init__(self, authz_server: LocalAuthz, demo_url: str, files_url: str):
        self.authz, self.demo_url, self.files_url = authz_server, demo_url, files_url

    def sign_in(self, login: str, resource: str, scopes: str) -> dict[str, Any]:
        return sign_in(self.authz.issuer, resource, login, PASSWORDS[login], scopes)


@contextlib.contextmanager
def authorized_fleet(volume: Path) -> Iterator[Fleet]:
    """Two real focused servers (the demo server and the files server) serving on loopback, verifying the tokens
    of a local authorization server configured, as every stack configures it, from their declarations."""
    demo_port, files_port = free_port(), free_port()
    demo_url, files_url = f"http://127.0.0.1:{demo_port}/mcp", f"http://127.0.0.1:{files_port}/mcp"
    people = {
        "reader": PersonConfig(scopes=["demo:read", "files:read"]),
        "writer": PersonConfig(scopes=["demo:read", "demo:write", "files:read", "files:write"]),
    }
    stack = load_stack("dev").model_copy(update={"identity": IdentityConfig(provider="local", people=people)})
    servers = {"mcp-demo": demo_server.server, "mcp-files": files_server}
    rendered = authz.config(stack, servers, {"mcp-demo": demo_url, "mcp-files": files_url}, "filled-in")
    local = LocalAuthz(rendered, PASSWORDS).start()
    (volume / "data").mkdir()
    (volume / "data" / "hello.txt").write_text("hello from the files server")
    common = {
        "MCP_ISSUER": local.issuer,
        "MCP_JWKS_URL": local.jwks_url,
        "MCP_JWT_ALGORITHMS": "RS256",
        "MCP_JWT_REQUIRE_AT_TYP": "true",
    }
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**common, "MCP_RESOURCE_URL": demo_url}.items():
            patch.setenv(name, value)
        patch.delenv("MCP_JWT_SECRET", raising=False)
        demo_app = create_app(demo_server.server)
        patch.setenv("MCP_RESOURCE_URL", files_url)
        patch.setenv("FILES_PATH", str(volume))
        patch.setenv("FILES_ROOTS", '{"data": "rw"}')
        files_app = create_app(files_server)
    try:
        with serve_app(demo_app, demo_port), serve_app(files_app, files_port):
            yield Fleet(local, demo_url, files_url)
    finally:
        local.stop()
