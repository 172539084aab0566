"""The platform's local authorization server (`authz/server.mjs`, oidc-provider) as a process on loopback.

It needs Node 22 (the `node` package scripts/test installs under tests/interop; Debian's Node 18 is too old for
oidc-provider 9) and `authz/node_modules` (scripts/test runs `npm ci` there).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import requirement_missing
from tests.support.postgres import free_port

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
