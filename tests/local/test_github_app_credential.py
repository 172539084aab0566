"""The GitHub server as a GitHub App installation, against the fake GitHub (which checks the App's JWT with the
App's public key and issues installation tokens) and a real Redis: one exchange serves every replica, the token
is refreshed before it expires by one replica at a time, Redis never holds it readable, and a revoked token is
replaced on the next call."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pydantic import ValidationError
from redis.asyncio import Redis

from apps.github.config import GithubSettings
from apps.github.credential import InstallationToken, Issued, token_scope
from apps.kit import ServerError
from apps.kit.upstream import Upstream
from tests.support.fake_github import ACCESS_TOKENS, FakeGitHub, issue
from tests.support.raw import post, tool_call

pytestmark = pytest.mark.redis
APP_ID, INSTALLATION = 4242, 7
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
EXCHANGE_PATH = f"/app/installations/{INSTALLATION}/access_tokens"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    if not FakeGitHub.spec_available():
        pytest.skip("GitHub's OpenAPI description is not installed (scripts/test installs tests/interop)")
    github = FakeGitHub(
        "",
        app_id=APP_ID,
        app_public_key=KEY.public_key(),
        installation_id=INSTALLATION,
        issues=[issue(1, "Steps to reproduce.", "MEMBER", "maintainer")],
    ).start()
    yield github
    github.stop()
    assert github.violations == [], github.violations  # the exchange too matched GitHub's description


def settings(fake: FakeGitHub, redis_url: str, **extra: Any) -> GithubSettings:
    values: dict[str, Any] = {
        "mcp_resource_url": "http://127.0.0.1:1/mcp",
        "mcp_issuer": "https://issuer.test",
        "mcp_jwt_secret": "s" * 32,
        "redis_url": redis_url,
        "github_api_url": fake.url,
        "github_credential": PEM,
        "github_app_id": APP_ID,
        "github_app_installation_id": INSTALLATION,
        "github_repositories": ["octo/hello", "octo/world"],
    }
    return GithubSettings(**(values | extra))


@pytest.fixture
async def replicas(fake, redis_server) -> AsyncIterator[list[InstallationToken]]:
    """Two replicas' credentials: each its own Redis connection and HTTP client, one Redis."""
    opened: list[tuple[Redis, Upstream]] = []
    tokens = []
    for _ in range(2):
        client = Redis.from_url(redis_server.url)
        upstream = Upstream("GitHub", fake.url, headers={}, timeout=5, max_bytes=1 << 20, read_retries=0)
        opened.append((client, upstream))
        tokens.append(InstallationToken(settings(fake, redis_server.url), client, upstream))
    yield tokens
    for client, upstream in opened:
        await upstream.aclose()
        await client.aclose()


async def test_one_exchange_serves_every_replica_and_redis_never_holds_the_token_readable(replicas, fake, redis_server):
    first, second = replicas
    headers = await asyncio.gather(*[replica.authorization() for replica in (first, second) for _ in range(10)])
    assert len(fake.exchanges) == 1  # twenty calls on two replicas, one exchange
    assert set(headers) == {f"Bearer {next(iter(fake.issued))}"}
    # Narrowed: the permissions the tools use, and the allowlist's two repositories of one owner.
    assert fake.exchanges == [
        {
            "permissions": {"metadata": "read", "contents": "read", "issues": "write", "pull_requests": "read"},
            "repositories": ["hello", "world"],
        }
    ]
    [seen] = fake.calls("POST", EXCHANGE_PATH)
    assert seen.status == 201 and not seen.authorization.startswith("Bearer ghs_")  # the App's JWT, not a token
    token = next(iter(fake.issued)).encode()
    plain = redis.Redis.from_url(redis_server.url)
    assert plain.keys(), "the token is shared through Redis"
    assert all(token not in (plain.dump(key) or b"") for key in plain.keys())


async def test_a_token_near_expiry_is_replaced_by_one_replica_while_the_other_keeps_using_it(replicas, fake):
    first, second = replicas
    await first.authorization()
    old = next(iter(fake.issued))
    # Age the shared token into the refresh window (5 minutes left: due, but still usable), as time would.
    await first._share(Issued(old, fake.issued[old] - 3300))
    first._held = second._held = None
    headers = await asyncio.gather(*[replica.authorization() for replica in (first, second) for _ in range(10)])
    assert len(fake.exchanges) == 2  # exactly one refresh for twenty calls on two replicas
    new = next(token for token in fake.issued if token != old)
    assert set(headers) <= {f"Bearer {old}", f"Bearer {new}"} and f"Bearer {new}" in headers
    assert {await first.authorization(), await second.authorization()} == {f"Bearer {new}"}


async def test_a_replica_waits_for_anothers_refresh_and_takes_over_when_it_dies(
    replicas, fake, redis_server, monkeypatch
):
    first, second = replicas
    await first.authorization()
    old = next(iter(fake.issued))
    await first._share(Issued(old, fake.issued[old] - 3590))  # 10 s left: too close to use while waiting
    second._held = None
    plain = redis.Redis.from_url(redis_server.url)
    plain.set(second._lock_key, "a replica that died", ex=30)  # another replica holds the refresh lock
    waiting = asyncio.create_task(second.authorization())
    await asyncio.sleep(0.5)
    assert not waiting.done() and len(fake.exchanges) == 1  # it waits; it does not exchange beside the holder
    plain.delete(second._lock_key)  # the holder's lock lapses
    assert await asyncio.wait_for(waiting, 5) != f"Bearer {old}"
    assert len(fake.exchanges) == 2

    # With the lock never released, the wait ends at the call's deadline with a clear error.
    await first._share(Issued(old, fake.issued[old] - 3590))
    second._held = None
    plain.set(second._lock_key, "stuck", ex=30)
    monkeypatch.setattr(second.upstream, "deadline", 0.5)
    with pytest.raises(ServerError, match="another replica's refresh did not finish in time"):
        await second.authorization()


async def test_a_key_github_does_not_know_is_a_server_fault_naming_what_to_check(fake, redis_server):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    client = Redis.from_url(redis_server.url)
    upstream = Upstream("GitHub", fake.url, headers={}, timeout=5, max_bytes=1 << 20, read_retries=0)
    try:
        wrong = InstallationToken(settings(fake, redis_server.url, github_credential=pem), client, upstream)
        with pytest.raises(ServerError, match="refused this server's App credential \\(HTTP 401"):
            await wrong.authorization()
    finally:
        await upstream.aclose()
        await client.aclose()
    assert fake.issued == {}


def test_app_settings_are_checked_without_echoing_the_key(fake):
    with pytest.raises(ValidationError, match="set both GITHUB_APP_ID and GITHUB_APP_INSTALLATION_ID"):
        settings(fake, "redis://127.0.0.1:1/0", github_app_installation_id=None)
    not_a_key = "ghp_" + "n" * 36
    with pytest.raises(ValidationError) as refused:
        settings(fake, "redis://127.0.0.1:1/0", github_credential=not_a_key)
    assert "the App's private key (PEM)" in str(refused.value)
    assert not_a_key not in str(refused.value)
    ec_key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ValidationError, match="is an RSA key"):
        settings(fake, "redis://127.0.0.1:1/0", github_credential=ec_key.decode())


def test_the_token_asks_for_what_the_tools_use(fake):
    read_only = settings(fake, "redis://127.0.0.1:1/0", github_read_only=True, github_toolsets=["issues"])
    assert token_scope(read_only) == {
        "permissions": {"metadata": "read", "issues": "read"},
        "repositories": ["hello", "world"],
    }
    wide = settings(fake, "redis://127.0.0.1:1/0", github_repositories=["octo/hello", "octo-labs/*"])
    assert "repositories" not in token_scope(wide)  # `owner/*` and two owners: the installation's own set


def app_server(start_server, redis_server, fake):
    """The GitHub server as the App's installation, against the fake and the test Redis."""
    from apps.github.server import server as github_server

    return start_server(
        github_server,
        REDIS_URL=redis_server.url,
        GITHUB_API_URL=fake.url,
        GITHUB_CREDENTIAL=PEM,
        GITHUB_APP_ID=str(APP_ID),
        GITHUB_APP_INSTALLATION_ID=str(INSTALLATION),
        GITHUB_REPOSITORIES="octo/hello",
        RATE_LIMIT_PER_MINUTE="10000",
    )


def test_the_server_calls_github_with_installation_tokens_and_replaces_a_revoked_one(start_server, redis_server, fake):
    running = app_server(start_server, redis_server, fake)

    def list_issues() -> dict[str, Any]:
        arguments = {"owner": "octo", "repo": "hello"}
        response = post(running.mcp_url, tool_call("list_issues", arguments), running.token("github:read"))
        assert response.status_code == 200, response.text
        return response.json()["result"]

    assert [i["number"] for i in list_issues()["structuredContent"]["issues"]] == [1]
    repository_calls = [s for s in fake.seen if s.path.startswith("/repos/")]
    assert repository_calls and {s.authorization for s in repository_calls} == {f"Bearer {next(iter(fake.issued))}"}
    fake.issued.clear()  # GitHub revokes the token
    revoked = list_issues()
    assert revoked["isError"] and "GitHub refused this server's credential (401)" in revoked["content"][0]["text"]
    backing_off = list_issues()  # within a second: no exchange, a clear error
    assert backing_off["isError"] and "the next try is in" in backing_off["content"][0]["text"]
    time.sleep(1.1)
    assert not list_issues().get("isError")  # then the next call exchanged afresh
    assert len(fake.calls("POST", ACCESS_TOKENS.split("{")[0])) == 2


def test_a_credential_github_keeps_refusing_is_not_exchanged_on_every_call(start_server, redis_server, fake):
    """The fourth pass: with the App's access withdrawn, 19 of 20 calls made a fresh token exchange."""
    running = app_server(start_server, redis_server, fake)
    fake.revoke_all = True
    started = time.monotonic()
    for _ in range(20):
        response = post(running.mcp_url, tool_call("list_commits", {"owner": "octo", "repo": "hello"}),
                        running.token("github:read"))  # fmt: skip
        assert response.json()["result"]["isError"]
    seconds = time.monotonic() - started
    exchanges = len(fake.calls("POST", ACCESS_TOKENS.split("{")[0]))
    assert exchanges <= 1 + int(seconds), (exchanges, seconds)  # one, then at most one per second of backoff


async def test_deployments_asking_for_less_never_share_a_wider_token(fake, redis_server):
    """The fourth pass: a read-only deployment of the same installation ran with another's write token."""
    opened = []
    try:
        tokens = []
        for read_only in (False, True):
            client = Redis.from_url(redis_server.url)
            upstream = Upstream("GitHub", fake.url, headers={}, timeout=5, max_bytes=1 << 20, read_retries=0)
            opened.append((client, upstream))
            tokens.append(
                InstallationToken(settings(fake, redis_server.url, github_read_only=read_only), client, upstream)
            )
        writer, reader = [await token.authorization() for token in tokens]
        assert writer != reader and len(fake.exchanges) == 2
        assert [e["permissions"]["issues"] for e in fake.exchanges] == ["write", "read"]
        assert await tokens[1].authorization() == reader  # each shares its own with its replicas
    finally:
        for client, upstream in opened:
            await upstream.aclose()
            await client.aclose()
