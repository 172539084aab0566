"""The GitHub server's image, two replicas sharing Redis, against the fake GitHub built from GitHub's own
OpenAPI description (served on the test network's gateway, the host side of the containers' network): the
MCP SDK client lists labelled issues, every request and response matches GitHub's description, GitHub sees the
server's token only, and a budget one replica spent under the reserve is refused by the other."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from testcontainers.core.container import DockerContainer

from apps.kit.cli.token import mint
from tests.conftest import ISSUER, SECRET
from tests.integration.conftest import measured
from tests.support.fake_github import FakeGitHub, issue
from tests.support.mcp_client import mcp_client
from tests.support.stack import APP_PORT, wait_until

pytestmark = pytest.mark.integration
TOKEN = "github_pat_container_" + "y" * 30
RESOURCE_URL = "http://mcp-github.mcpfleet.test/mcp"


@pytest.fixture(scope="module")
def fake(network) -> Iterator[FakeGitHub]:
    if not FakeGitHub.spec_available():
        pytest.skip("GitHub's OpenAPI description is not installed (scripts/test installs tests/interop)")
    network._network.reload()
    gateway = network._network.attrs["IPAM"]["Config"][0]["Gateway"]
    github = FakeGitHub(
        TOKEN, issues=[issue(1, "Please add retries.", "COLLABORATOR", "maint"), issue(2, "hi", "NONE", "anon")]
    ).start(host=gateway)
    yield github
    github.stop()
    assert github.violations == [], github.violations


@pytest.fixture(scope="module")
def replicas(apps_image, network, redis, fake) -> Iterator[list[str]]:
    started, bases, containers = time.monotonic(), [], []
    try:
        for n in range(2):
            name = f"github-{n}-{uuid.uuid4().hex[:6]}"
            container = DockerContainer(apps_image).with_command("apps.github").with_network(network)
            container.with_name(name).with_exposed_ports(APP_PORT).with_kwargs(read_only=True)
            container.with_tmpfs_mount("/tmp", "size=16m")
            env = {
                "MCP_RESOURCE_URL": RESOURCE_URL,
                "MCP_ISSUER": ISSUER,
                "MCP_JWT_SECRET": SECRET,
                "REDIS_URL": "redis://redis:6379/0",
                "GITHUB_API_URL": fake.url,
                "GITHUB_CREDENTIAL": TOKEN,
                "GITHUB_REPOSITORIES": "octo/hello",
                "GITHUB_BUDGET_RESERVE": "100",
            }
            for key, value in env.items():
                container.with_env(key, value)
            container.start()
            containers.append(container)
            bases.append(f"http://127.0.0.1:{container.get_exposed_port(APP_PORT)}")
        for base in bases:
            wait_until(lambda b=base: httpx.get(b + "/ready", timeout=2).status_code == 200, 60, 0.2, "github ready")
        measured(f"two GitHub server replicas up against the fake: {time.monotonic() - started:.1f}s")
        yield bases
    finally:
        for container in containers:
            container.stop()


def token(subject: str = "erin") -> str:
    return mint(SECRET, issuer=ISSUER, audience=RESOURCE_URL, subject=subject, scopes="github:read")


async def test_the_image_lists_labelled_issues_with_its_own_token(replicas, fake):
    async with mcp_client(replicas[0] + "/mcp", token()) as client:
        result = await client.call_tool("list_issues", {"owner": "octo", "repo": "hello"})
    assert not result.is_error
    assert [i["number"] for i in result.structured_content["issues"]] == [1, 2]
    assert [t["author_trusted"] for t in result.meta["mcpfleet/trust"]] == [True, False]
    assert fake.seen and {s.authorization for s in fake.seen} == {f"Bearer {TOKEN}"}


async def test_a_budget_spent_on_one_replica_is_refused_on_the_other(replicas, fake):
    fake.budget = 100  # the next answer leaves 99, under the reserve of 100
    async with mcp_client(replicas[0] + "/mcp", token()) as client:
        assert not (await client.call_tool("list_commits", {"owner": "octo", "repo": "hello"})).is_error
    seen = len(fake.seen)
    async with mcp_client(replicas[1] + "/mcp", token()) as client:
        refused = await client.call_tool("list_commits", {"owner": "octo", "repo": "hello", "ref": "dev"})
    assert refused.is_error and "GitHub budget low (99 calls left" in refused.content[0].text
    assert len(fake.seen) == seen
