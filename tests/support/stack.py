"""The integration stack on Docker: a network, Postgres, Redis, the apps image and db-server replicas.

Images come from `infra.images` (official pinned images unless overridden, e.g. by the offline
stand-ins). The apps image is built from the project's own Dockerfile, tagged by a hash of what
goes into it, so a warm run reuses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
from testcontainers.core.container import DockerContainer
from testcontainers.core.network import Network

from infra.images import image
from tests.conftest import ISSUER, SECRET

ROOT = Path(__file__).resolve().parents[2]
APP_PORT = 8080
RESOURCE_URL = "http://mcp-db.mcpfleet.test/mcp"  # the Service URL every replica answers for
ADMIN_PASSWORD = "admin-" + uuid.uuid4().hex
READER_PASSWORD = "reader-" + uuid.uuid4().hex
WRITER_PASSWORD = "writer-" + uuid.uuid4().hex
DATABASE = "mcpfleet"


def wait_until(check, timeout: float, interval: float = 0.1, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as error:
            last = error
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout}s (last error: {last!r})")


@dataclass
class Postgres:
    container: DockerContainer

    @property
    def host_port(self) -> int:
        return int(self.container.get_exposed_port(5432))

    def admin_url(self) -> str:
        return f"postgresql://postgres:{ADMIN_PASSWORD}@127.0.0.1:{self.host_port}/{DATABASE}"

    async def connect(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.admin_url(), timeout=3)

    def wait_ready(self, timeout: float = 60) -> None:
        async def ping() -> bool:
            conn = await self.connect()
            await conn.close()
            return True

        wait_until(lambda: asyncio.run(ping()), timeout, 0.25, "postgres accepting connections")


def start_postgres(network: Network) -> Postgres:
    container = (
        DockerContainer(image("postgres"))
        .with_env("POSTGRES_PASSWORD", ADMIN_PASSWORD)
        .with_env("POSTGRES_DB", DATABASE)
        .with_network(network)
        .with_network_aliases("postgres")
        .with_exposed_ports(5432)
    )
    container.start()
    pg = Postgres(container)
    pg.wait_ready()
    return pg


def apply_roles(apps_image: str, network: Network) -> str:
    """Run the platform's own roles command (the Kubernetes Job's command) in the apps image."""
    job = (
        DockerContainer(apps_image)
        .with_command(["apps.kit.cli.schema", "apps.db"])
        .with_env("DATABASE_ADMIN_URL", f"postgresql://postgres:{ADMIN_PASSWORD}@postgres:5432/{DATABASE}")
        .with_env("MCP_DB_READER_PASSWORD", READER_PASSWORD)
        .with_env("MCP_DB_WRITER_PASSWORD", WRITER_PASSWORD)
        .with_network(network)
    )
    job.start()
    try:
        code = job.get_wrapped_container().wait(timeout=60)["StatusCode"]
        out, err = job.get_logs()
        if code != 0:
            raise RuntimeError(f"roles job failed ({code}): {err.decode()}")
        return out.decode().strip()
    finally:
        job.stop()


def start_redis(network: Network) -> DockerContainer:
    container = DockerContainer(image("redis")).with_network(network).with_network_aliases("redis")
    container.with_exposed_ports(6379).start()
    return container


@dataclass
class Replica:
    container: DockerContainer
    name: str

    @property
    def port(self) -> int:
        return int(self.container.get_exposed_port(APP_PORT))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        return httpx.get(self.base + "/metrics", timeout=5).text

    def tool_calls(self) -> float:
        """Tool calls this replica handled (any tool, any outcome)."""
        total = 0.0
        for line in self.metrics().splitlines():
            if line.startswith("mcp_server_operation_duration_seconds_count{"):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def logs(self) -> str:
        out, err = self.container.get_logs()
        return out.decode() + err.decode()


@dataclass
class ReplicaSet:
    replicas: list[Replica] = field(default_factory=list)

    def stop(self) -> None:
        for replica in self.replicas:
            with contextlib.suppress(Exception):  # already gone: killed or stopped by a test
                replica.container.stop()


def start_replicas(
    apps_image: str, network: Network, count: int, limits: dict[str, object] | None = None, **env: str
) -> ReplicaSet:
    """`count` db-server containers; `limits` are docker resource limits (nano_cpus, mem_limit)."""
    replica_set = ReplicaSet()
    settings = {
        "MCP_RESOURCE_URL": RESOURCE_URL,
        "MCP_ISSUER": ISSUER,
        "MCP_JWT_SECRET": SECRET,
        "DB_READ_URL": f"postgresql://mcp_db_reader:{READER_PASSWORD}@postgres:5432/{DATABASE}",
        "DB_WRITE_URL": f"postgresql://mcp_db_writer:{WRITER_PASSWORD}@postgres:5432/{DATABASE}",
        "REDIS_URL": "redis://redis:6379/0",
        "SHUTDOWN_GRACE_SECONDS": "20",
        **env,
    }
    for _ in range(count):
        name = "db-" + uuid.uuid4().hex[:6]
        container = DockerContainer(apps_image).with_command("apps.db").with_network(network)
        container.with_network_aliases(name).with_exposed_ports(APP_PORT).with_name(name)
        if limits:
            container.with_kwargs(**limits)
        for key, value in settings.items():
            container.with_env(key, value)
        container.start()
        replica_set.replicas.append(Replica(container, name))
    for replica in replica_set.replicas:
        wait_until(
            lambda r=replica: httpx.get(r.base + "/ready", timeout=2).status_code == 200,
            60,
            0.2,
            f"{replica.name} ready",
        )
    return replica_set
