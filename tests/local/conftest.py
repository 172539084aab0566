"""A real PostgreSQL (Debian binaries) with the project's SQL applied, and the db server as a real process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.db.server import server as db_server
from apps.kit import apply_schema, schema_files
from tests.conftest import ISSUER, SECRET, requirement_missing
from tests.support import postgres
from tests.support.otlp import OtlpReceiver
from tests.support.postgres import LocalPostgres, free_port
from tests.support.receivers import SmtpReceiver, WebhookReceiver, make_certificates

READER_PASSWORD = "reader-pw-for-tests"
NOTIFY_SIGNING_KEY = "notify-signing-key-for-tests-0123456789abcdef"
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
        apply_schema(
            server.admin_url,
            schema_files("apps.db", db_server),
            {"mcp_db_reader": READER_PASSWORD, "mcp_db_writer": WRITER_PASSWORD},
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


# The notification server and its receivers (tests/local/test_notify_*.py).
@dataclass
class Receivers:
    webhook: WebhookReceiver
    smtp: SmtpReceiver
    ca_file: Path


@pytest.fixture
def receivers(tmp_path) -> Iterator[Receivers]:
    certificates = make_certificates(tmp_path)
    webhook = WebhookReceiver(certificates, NOTIFY_SIGNING_KEY.encode()).start()
    smtp = SmtpReceiver(certificates).start()
    yield Receivers(webhook, smtp, certificates.ca_file)
    webhook.stop()
    smtp.stop()


def targets(receivers: Receivers) -> dict[str, Any]:
    hook = receivers.webhook.url("/hook")
    return {
        "sre-oncall": {"kind": "webhook", "url": hook, "internal": True, "per_minute": 3},
        "loud": {"kind": "webhook", "url": hook, "internal": True, "allow_mass_mentions": True},
        "team-chat": {"kind": "slack", "internal": True},
        "release-email": {
            "kind": "email",
            "smtp_host": "localhost",
            "smtp_port": receivers.smtp.port,
            "sender": "mcp-notify@mcpfleet.test",
            "recipients": ["release@mcpfleet.test", "qa@mcpfleet.test"],
        },
        "public-hook": {"kind": "webhook", "url": hook},  # not internal: a loopback address is refused
    }


@pytest.fixture
def start_notify(start_server, redis_server, receivers):
    def start(**overrides: str):
        settings = {
            "REDIS_URL": redis_server.url,
            "NOTIFY_TARGETS": json.dumps(targets(receivers)),
            "NOTIFY_SIGNING_KEY": NOTIFY_SIGNING_KEY,
            "NOTIFY_TARGET_SECRETS": json.dumps(
                {"team-chat": {"url": receivers.webhook.url("/services/T0/B0/slacksecret")}}
            ),
            "NOTIFY_CA_FILE": str(receivers.ca_file),
            "RATE_LIMIT_PER_MINUTE": "10000",
            **overrides,
        }
        from apps.notify.server import server as notify_server

        return start_server(notify_server, **settings)

    return start


@pytest.fixture
def notify(start_notify):
    return start_notify()
