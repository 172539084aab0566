"""Session fixtures for the container suite: network, Postgres, Redis, the apps image, replicas."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import docker
import pytest
from testcontainers.core.network import Network

from apps.kit.cli.token import mint
from infra.images import APPS, image, overridden
from tests.conftest import ISSUER, SECRET, requirement_missing
from tests.support import stack
from tests.support.proxy import RoundRobinProxy

MEASUREMENTS: list[str] = []


def measured(line: str) -> None:
    """Record a figure for the end-of-run summary (and print it now, for -s runs)."""
    MEASUREMENTS.append(line)
    print(line)


TIMES: dict[str, float] = {}


def pytest_runtest_logreport(report) -> None:  # type: ignore[no-untyped-def]
    """Per-test wall time (setup + call + teardown) of the container suite."""
    if "tests/integration/" in report.nodeid:
        TIMES[report.nodeid] = TIMES.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if MEASUREMENTS:
        terminalreporter.section("integration measurements")
        for line in MEASUREMENTS:
            terminalreporter.write_line(line)
    if TIMES:
        terminalreporter.section(f"integration per-test times (total {sum(TIMES.values()):.1f}s)")
        for nodeid, seconds in TIMES.items():
            terminalreporter.write_line(f"{seconds:7.2f}s  {nodeid.split('tests/integration/')[1]}")


@pytest.fixture(scope="session")
def docker_ready() -> None:
    try:
        docker.from_env().ping()
    except Exception as error:
        requirement_missing(f"no Docker engine answers ({type(error).__name__}); run scripts/docker-up")
    if overridden():
        measured(f"images overridden: {overridden()}")


@pytest.fixture(scope="session")
def network(docker_ready: None) -> Iterator[Network]:
    net = Network().create()
    yield net
    net.remove()


@pytest.fixture(scope="session")
def apps_image(docker_ready: None) -> str:
    tag, seconds = APPS.build()
    measured(f"apps image {tag} on {image('python')}: {seconds:.1f}s (0 when reused)")
    return tag


@pytest.fixture(scope="session")
def postgres(network: Network, apps_image: str) -> Iterator[stack.Postgres]:
    started = time.monotonic()
    pg = stack.start_postgres(network)
    output = stack.apply_roles(apps_image, network)
    measured(f"postgres {image('postgres')} up and roles applied ({output}): {time.monotonic() - started:.1f}s")
    yield pg
    pg.container.stop()


@pytest.fixture(scope="session")
def redis(network: Network) -> Iterator[object]:
    container = stack.start_redis(network)
    yield container
    container.stop()


RATE_LIMIT = 60


@pytest.fixture(scope="session")
def replicas(apps_image: str, network: Network, postgres: stack.Postgres, redis: object) -> Iterator[stack.ReplicaSet]:
    """Three db-server replicas sharing Postgres and Redis (rate limit RATE_LIMIT/min per principal)."""
    started = time.monotonic()
    replica_set = stack.start_replicas(apps_image, network, 3, RATE_LIMIT_PER_MINUTE=str(RATE_LIMIT))
    measured(f"3 db replicas ready: {time.monotonic() - started:.1f}s")
    yield replica_set
    replica_set.stop()


@pytest.fixture
def start_replicas(
    apps_image: str, network: Network, postgres: stack.Postgres, redis: object
) -> Iterator[Callable[..., stack.ReplicaSet]]:
    """Extra replicas for tests that kill or stop them; removed at teardown."""
    started: list[stack.ReplicaSet] = []

    def start(count: int, **env: str) -> stack.ReplicaSet:
        replica_set = stack.start_replicas(apps_image, network, count, **env)
        started.append(replica_set)
        return replica_set

    yield start
    for replica_set in started:
        replica_set.stop()


@pytest.fixture
def balancer() -> Iterator[Callable[[stack.ReplicaSet], RoundRobinProxy]]:
    proxies: list[RoundRobinProxy] = []

    def make(replica_set: stack.ReplicaSet) -> RoundRobinProxy:
        proxy = RoundRobinProxy([("127.0.0.1", r.port) for r in replica_set.replicas]).start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def token() -> Callable[..., str]:
    """A token for the db Service; each call is a new principal unless `subject` is given."""

    def make(scopes: str = "db:read db:write", subject: str | None = None, **kw: object) -> str:
        return mint(
            SECRET,
            issuer=ISSUER,
            audience=stack.RESOURCE_URL,
            subject=subject or uuid.uuid4().hex[:12],
            scopes=scopes,
            **kw,
        )  # type: ignore[arg-type]

    return make
