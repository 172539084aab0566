"""A real PostgreSQL (Debian binaries) with the project's SQL applied, and the db server as a real process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from infra.postgres.apply import apply
from tests.conftest import ISSUER, SECRET, requirement_missing
from tests.support import postgres
from tests.support.otlp import OtlpReceiver
from tests.support.postgres import LocalPostgres, free_port

READER_PASSWORD = "reader-pw-for-tests"
WRITER_PASSWORD = "writer-pw-for-tests"


@dataclass
class DbStack:
    pg: LocalPostgres
    base: str
    process: subprocess.Popen[bytes]

    @property
    def mcp_url(self) -> str:
        return self.base + "/mcp"

    def role_url(self, role: str) -> str:
        password = READER_PASSWORD if role == "mcp_db_reader" else WRITER_PASSWORD
        return self.pg.url(role, password)


@pytest.fixture(scope="session")
def pg() -> Iterator[LocalPostgres]:
    if not postgres.available():
        requirement_missing("PostgreSQL 15 server binaries are not installed (apt-get install postgresql-15)")
    server = LocalPostgres().start()
    asyncio.run(
        apply(
            server.admin_url, {"mcpfleet.reader_password": READER_PASSWORD, "mcpfleet.writer_password": WRITER_PASSWORD}
        )
    )
    yield server
    server.stop()


@pytest.fixture(scope="session")
def otlp() -> Iterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    yield receiver
    receiver.server.shutdown()


@pytest.fixture(scope="session")
def db_stack(pg: LocalPostgres, otlp: OtlpReceiver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbStack]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path_factory.mktemp("db") / "server.log").open("wb")
    env = {
        **os.environ,
        "MCP_RESOURCE_URL": base + "/mcp",
        "MCP_ISSUER": ISSUER,
        "MCP_JWT_SECRET": SECRET,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "RATE_LIMIT_PER_MINUTE": "100000",
        "DB_READ_URL": pg.url("mcp_db_reader", READER_PASSWORD),
        "DB_WRITE_URL": pg.url("mcp_db_writer", WRITER_PASSWORD),
        "OTEL_EXPORTER_OTLP_ENDPOINT": otlp.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    process = subprocess.Popen([sys.executable, "-m", "apps.db"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/ready", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError("db server did not become ready")
    yield DbStack(pg, base, process)
    process.terminate()
    process.wait(timeout=30)
