"""The GitHub server in user mode: each person acts at GitHub as themselves, through the connect page, a real
authorization server, a real PostgreSQL vault and Redis, and the fake GitHub's web flow for the App (validated as
GitHub documents it). Each security rule has its attack, which fails."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from apps.kit import Keyring, TokenVault, VaultError
from tests.conftest import requirement_missing
from tests.support.authz import NODE22
from tests.support.fake_github import FakeGitHub, issue
from tests.support.github_user_mode import (
    PASSWORDS,
    VAULT_PASSWORD,
    VAULT_ROLE,
    UserModeGitHub,
    connect_url,
    github_login,
    link_in_browser,
    user_mode_github,
)
from tests.support.raw import BASE_HEADERS, rpc, tool_call

pytestmark = pytest.mark.redis
INTEROP = Path(__file__).resolve().parents[1] / "interop"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
NEW_ISSUE = {"owner": "octo", "repo": "hello", "title": "Flaky test"}


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    if not FakeGitHub.spec_available():
        pytest.skip("GitHub's OpenAPI description is not installed (scripts/test installs tests/interop)")
    github = FakeGitHub("github_pat_" + "x" * 40, issues=[issue(1, "Steps: run make.", "MEMBER", "maintainer")])
    yield github.start()
    github.stop()
    assert github.violations == [], github.violations


@pytest.fixture
def github(pg, redis_server, fake) -> Iterator[UserModeGitHub]:
    with user_mode_github(pg, redis_server.url, fake, replicas=2) as running:
        yield running


def linked(github: UserModeGitHub, login: str) -> Any:
    """The person signs in through a client, is sent to link, links in their browser; their Person."""
    person = github.sign_in(login)
    page = link_in_browser(connect_url(github.call(person, "create_issue", NEW_ISSUE)), login)
    assert page.status_code == 200 and f"acts as <strong>{github_login(login)}</strong>" in page.text, page.text
    return person


def test_two_people_each_create_an_issue_and_github_records_each_as_its_author(github, fake):
    alice, bob = linked(github, "alice"), linked(github, "bob")
    for person in (alice, bob):
        result = github.call(person, "create_issue", NEW_ISSUE | {"title": f"Filed by {person.login}"})
        assert result["structuredContent"]["status"] == "created", result
    authors = {created["title"]: created["user"]["login"] for created in fake.created}
    assert authors == {"Filed by alice": "alice-gh", "Filed by bob": "bob-gh"}
    writes = fake.calls("POST", "/repos/octo/hello/issues")
    assert all(seen.authorization.startswith("Bearer ghu_") for seen in writes)  # the person's user token
    assert not {seen.authorization for seen in fake.seen} & {f"Bearer {alice.token}", f"Bearer {bob.token}"}


def test_a_person_with_no_link_gets_url_mode_elicitation_from_any_tool(github, fake):
    carol = github.sign_in("carol")
    result = github.call(carol, "list_issues", {"owner": "octo", "repo": "hello"})
    url = connect_url(result)
    assert url.startswith(github.page_base + "/connect/github?elicitation=")
    assert fake.calls("GET", "/repos/") == []  # GitHub was never asked for her
    # A client that declared URL elicitation (MCP 2025-11-25) gets the specification's error for it.
    headers = BASE_HEADERS | {"Authorization": f"Bearer {carol.token}", "MCP-Protocol-Version": "2025-11-25"}
    params = {"protocolVersion": "2025-11-25", "capabilities": {"elicitation": {"url": {}}},
              "clientInfo": {"name": "t", "version": "1"}}  # fmt: skip
    session = httpx.post(github.bases[0] + "/mcp", json=rpc("initialize", params), headers=headers)
    headers |= {"Mcp-Session-Id": session.headers["mcp-session-id"]}
    answer = httpx.post(
        github.bases[1] + "/mcp",
        json=tool_call("get_issue", {"owner": "octo", "repo": "hello", "number": 1}),
        headers=headers,
    )
    error = answer.json()["error"]
    assert error["code"] == -32042
    [elicitation] = error["data"]["elicitations"]
    assert elicitation["mode"] == "url" and elicitation["url"] == url  # one pending link per person and client


def test_a_link_opened_by_somebody_else_links_nothing(github, fake):
    """The specification's phishing case: Carol sends her link to Alice; Alice signs in and would authorize GitHub
    as herself, binding Alice's GitHub to Carol. The page sees Alice is not the person the link was made for."""
    carol = github.sign_in("carol")
    url = connect_url(github.call(carol, "create_issue", NEW_ISSUE))
    page = link_in_browser(url, "alice")
    assert page.status_code == 403 and "This link is not yours" in page.text
    assert not any(r["path"] == "/login/oauth/authorize" for r in fake.web.requests)  # never sent to GitHub
    again = github.call(carol, "create_issue", NEW_ISSUE)
    assert again["isError"] and fake.created == []
    assert link_in_browser(url, "carol").status_code == 410  # and the link is spent


def test_every_step_is_single_use_and_bound_to_the_browser_that_opened_the_link(github, fake):
    alice = github.sign_in("alice")
    url = connect_url(github.call(alice, "create_issue", NEW_ISSUE))
    with httpx.Client(timeout=15, follow_redirects=False, trust_env=False) as browser:
        opened = browser.get(url)
        assert opened.status_code == 303 and opened.headers["location"].startswith(github.authz.issuer + "/auth?")
        cookie = opened.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Max-Age=600" in cookie
        # Another browser (no cookie) that got hold of the sign-in's redirect cannot continue it.
        state = re.search(r"state=([^&]+)", opened.headers["location"]).group(1)
        stolen = httpx.get(f"{github.page_base}/connect/github/signed-in?code=x&state={state}")
        assert stolen.status_code == 403 and "Another browser" in stolen.text
    replayed = httpx.get(f"{github.page_base}/connect/github/signed-in?code=x&state={state}")
    assert replayed.status_code == 410  # the flow is gone
    forged = httpx.get(f"{github.page_base}/connect/github/callback?code=x&state=made-up.state")
    assert forged.status_code == 410
    for response in (opened, stolen, replayed):
        assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", "frame-ancestors 'none'")


def test_declining_links_nothing(github, fake):
    alice = github.sign_in("alice")
    page = link_in_browser(connect_url(github.call(alice, "create_issue", NEW_ISSUE)), "alice", decision="deny")
    assert "Nothing was linked" in page.text
    assert not any(r["path"] == "/login/oauth/authorize" for r in fake.web.requests)


def test_another_client_of_the_same_person_needs_their_approval_not_another_link(github, fake):
    linked(github, "alice")
    authorizations = len([r for r in fake.web.requests if r["path"] == "/login/oauth/access_token"])
    other_client = github.sign_in("alice")  # the same person, through another MCP client
    page = link_in_browser(connect_url(github.call(other_client, "create_issue", NEW_ISSUE)), "alice")
    assert "may now use your linked GitHub account" in page.text
    assert len([r for r in fake.web.requests if r["path"] == "/login/oauth/access_token"]) == authorizations
    result = github.call(other_client, "create_issue", NEW_ISSUE | {"title": "From the other client"})
    assert result["structuredContent"]["status"] == "created"
    assert fake.created[-1]["user"]["login"] == "alice-gh"


def test_an_expiring_token_is_refreshed_exactly_once_by_two_replicas(github, fake):
    fake.web.user_token_seconds = 120  # due for refresh (the vault refreshes 5 minutes before expiry)
    alice = linked(github, "alice")
    fake.web.user_token_seconds = 8 * 3600
    assert fake.web.refreshes() == 0
    results: list[dict[str, Any]] = []

    def call(replica: int) -> None:
        results.append(github.call(alice, "list_issues", {"owner": "octo", "repo": "hello"}, replica=replica))

    callers = [threading.Thread(target=call, args=(replica,)) for replica in (0, 1, 0, 1)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert len(results) == 4 and not any(r.get("isError") for r in results), results
    assert fake.web.refreshes() == 1  # one refresh for four calls on two replicas


def test_a_revoked_token_is_forgotten_and_the_next_call_elicits_again(github, fake):
    alice = linked(github, "alice")
    fake.web.revoke_person("alice-gh")  # she revokes the App in her GitHub settings
    refused = github.call(alice, "create_issue", NEW_ISSUE)
    assert refused["isError"] and "revoked" in refused["content"][0]["text"], refused
    assert connect_url(github.call(alice, "create_issue", NEW_ISSUE))  # asked to link again
    assert fake.created == []


def test_disconnect_revokes_at_github_and_forgets_every_approval(github, fake):
    alice = linked(github, "alice")
    result = github.call(alice, "disconnect", {})
    assert result["structuredContent"] == {"status": "disconnected", "account": "alice-gh", "revoked_at_github": True}
    revocations = [r for r in fake.web.requests if r["path"].startswith("/applications/")]
    assert len(revocations) == 1 and "refused" not in revocations[0]
    assert connect_url(github.call(alice, "create_issue", NEW_ISSUE))
    assert github.call(alice, "disconnect", {})["structuredContent"] == {"status": "not linked"}


def test_vault_rows_hold_no_token_in_the_clear_and_open_only_with_the_key(github, fake, pg):
    linked(github, "alice")
    tokens = set(fake.web._access) | set(fake.web._refresh)
    assert tokens

    async def check() -> None:
        conn = await asyncpg.connect(pg.admin_url)
        try:
            rows = await conn.fetch("SELECT * FROM github_vault.vault_tokens")
            dump = repr([dict(row) for row in rows]) + repr([bytes(row["sealed"]) for row in rows])
            assert rows and not any(token in dump or token.encode() in bytes(row["sealed"])
                                    for token in tokens for row in rows)  # fmt: skip
        finally:
            await conn.close()
        pool = await asyncpg.create_pool(pg.admin_url, min_size=1, max_size=1)
        try:
            wrong = TokenVault(pool, "github_vault", "github", Keyring(Keyring.new_key("k1")))
            with pytest.raises(VaultError):
                await wrong.current("alice", refresh=_never)
            right = TokenVault(pool, "github_vault", "github", Keyring(github.keyring))
            opened = await right.current("alice", refresh=_never)
            assert opened is not None and opened.access in tokens
        finally:
            await pool.close()

    asyncio.run(check())


def test_no_token_reaches_an_answer_or_a_log_line(github, fake, logs):
    alice, bob = linked(github, "alice"), linked(github, "bob")
    github.call(alice, "create_issue", NEW_ISSUE)
    github.call(bob, "get_issue", {"owner": "octo", "repo": "hello", "number": 1})
    github.call(alice, "disconnect", {})
    secrets_seen = set(fake.web._access) | set(fake.web._refresh) | {fake.web.client_secret, alice.token, bob.token}
    revoked = {r.get("token") for r in fake.web.requests} - {None}
    text = "\n".join(github.answers + logs.lines)
    assert logs.events("vault_linked") and logs.events("vault_dropped")  # the audit trail is there...
    for secret in secrets_seen | revoked:
        assert secret not in text  # ...and no token, refresh token or client secret in it
    assert not re.search(r"gh[ur]_[0-9a-f]{20,}", text)


async def _never(tokens: Any) -> Any:
    raise AssertionError("no refresh expected")


def test_the_typescript_sdk_client_and_chromium_link_two_people_and_a_third_is_asked(github, fake):
    """Clients we did not write: the TypeScript SDK client gets the elicitation (UrlElicitationRequiredError), and
    Debian's Chromium completes the connect page, the sign-in, the consent and GitHub's page for each person."""
    if not NODE22.exists() or not Path(CHROMIUM).exists():
        requirement_missing("Node 22 (tests/interop) and Debian's chromium are needed (scripts/test installs them)")
    people = [
        {"login": login, "password": PASSWORDS[login], "token": github.sign_in(login).token,
         "github": github_login(login), "link": login != "carol"}
        for login in ("alice", "bob", "carol")
    ]  # fmt: skip
    ran = subprocess.run(
        [str(NODE22), "ts_github_user_mode.mjs", github.resource, json.dumps(people)],
        cwd=INTEROP, capture_output=True, text=True, timeout=180, env={**os.environ, "CHROMIUM": CHROMIUM},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    alice, bob, carol = json.loads(ran.stdout.strip().splitlines()[-1])
    for report, person in ((alice, "alice"), (bob, "bob")):
        assert report["first"] == "UrlElicitationRequiredError", report
        assert report["elicitation"]["mode"] == "url"
        assert report["elicitation"]["url"].startswith(github.page_base + "/connect/github?elicitation=")
        assert report["browser"]["pages"] == [
            "Sign in to mcpfleet",
            "Allow mcpfleet-github (its own pages)?",
            "Let this client act as you at GitHub?",
            "Authorize mcpfleet",
            "Linked",
        ], report
        assert f"acts as {person}-gh at GitHub" in report["browser"]["text"]
        assert report["retried"]["isError"] is False and report["retried"]["content"]["status"] == "created"
    assert carol["first"] == "UrlElicitationRequiredError" and "browser" not in carol
    authors = {created["title"]: created["user"]["login"] for created in fake.created}
    assert authors == {
        "Filed by alice through the TypeScript SDK": "alice-gh",
        "Filed by bob through the TypeScript SDK": "bob-gh",
    }


def test_the_vault_key_rotates_with_the_kits_command(github, fake, pg):
    """New key first, old after it; the command seals every row again; then the new key alone opens them."""
    linked(github, "alice")
    new = Keyring.new_key("k2")
    env = {
        **os.environ,
        "GITHUB_VAULT_URL": pg.url(VAULT_ROLE, VAULT_PASSWORD),
        "GITHUB_VAULT_KEYS": f"{new} {github.keyring}",
    }
    command = [sys.executable, "-m", "apps.kit.cli.vault", "rotate", "--schema", "github_vault", "--provider", "github",
               "--dsn-from", "GITHUB_VAULT_URL", "--keys-from", "GITHUB_VAULT_KEYS"]  # fmt: skip
    ran = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.strip() == "1 rows sealed again under the primary key", ran.stderr
    assert github.keyring.split(":")[1] not in ran.stdout + ran.stderr

    async def opens_with(keys: str) -> bool:
        pool = await asyncpg.create_pool(pg.admin_url, min_size=1, max_size=1)
        try:
            return await TokenVault(pool, "github_vault", "github", Keyring(keys)).current("alice", _never) is not None
        except VaultError:
            return False
        finally:
            await pool.close()

    assert asyncio.run(opens_with(new)) and not asyncio.run(opens_with(github.keyring))
