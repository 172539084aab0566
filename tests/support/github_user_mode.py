"""The GitHub server in user mode, as a stack runs it: the platform's authorization server (people sign in there,
and so do the server's own pages), a real PostgreSQL with the server's declared schema and role (its vault), a
real Redis, and the fake GitHub with its web flow for the App. Replicas share everything but their process.

`link_in_browser` is a person's browser, headless (cookies kept, forms posted as the pages serve them); the
interop tests drive Debian's Chromium through the same pages instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import unescape
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest

from apps.github.server import server as github_server
from apps.kit import Keyring, apply_schema, create_app, schema_files
from infra import authz
from infra.config import IdentityConfig, PersonConfig, load_stack
from onebox.login import sign_in
from tests.support.authz import LocalAuthz
from tests.support.fake_github import FakeGitHub
from tests.support.postgres import LocalPostgres, free_port
from tests.support.raw import BASE_HEADERS, tool_call
from tests.support.running import serve_app

VAULT_ROLE, VAULT_PASSWORD = "mcp_github_vault", "vault-pw-for-tests"
PEOPLE = ("alice", "bob", "carol")  # their GitHub logins: alice-gh, bob-gh, carol-gh
PASSWORDS = {login: f"{login}-{secrets.token_urlsafe(8)}" for login in PEOPLE}
WRITE = "github:read github:write"
AUTHZ_FORM = re.compile(r'<form method="post" action="(/interaction/[A-Za-z0-9_-]+/(login|confirm))">')
HIDDEN = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')
MAX_HOPS = 15


def github_login(person: str) -> str:
    return f"{person}-gh"


@dataclass
class Person:
    login: str
    token: str  # their MCP access token for the GitHub server (from the authorization server)
    client_id: str  # the MCP client it was issued to


@dataclass
class UserModeGitHub:
    authz: LocalAuthz
    fake: FakeGitHub
    resource: str
    bases: list[str]  # one per replica
    keyring: str
    answers: list[str] = field(default_factory=list)  # every answer's text, for the scan for tokens

    @property
    def page_base(self) -> str:
        return self.resource.removesuffix("/mcp")

    def sign_in(self, login: str) -> Person:
        """The person signs in at the authorization server through a new MCP client (registered for it)."""
        answer = sign_in(self.authz.issuer, self.resource, login, PASSWORDS[login], WRITE, client_name="a client")
        return Person(login, answer["access_token"], answer["client_id"])

    def call(self, person: Person, tool: str, arguments: dict[str, Any], replica: int = 0) -> dict[str, Any]:
        headers = BASE_HEADERS | {"Authorization": f"Bearer {person.token}"}
        answer = httpx.post(self.bases[replica] + "/mcp", json=tool_call(tool, arguments), headers=headers, timeout=30)
        self.answers.append(answer.text)
        assert answer.status_code == 200, answer.text
        return answer.json()["result"]  # type: ignore[no-any-return]


def connect_url(result: dict[str, Any]) -> str:
    """The connect page a tool result sends the person to (a client without URL elicitation reads it there)."""
    assert result.get("isError"), result
    found = re.search(
        r"Open (\S+/connect/github\?elicitation=[A-Za-z0-9_-]+) in your browser", result["content"][0]["text"]
    )
    assert found, result
    return found.group(1)


def _follow(browser: httpx.Client, answer: httpx.Response) -> httpx.Response:
    for _ in range(MAX_HOPS):
        if not answer.is_redirect:
            return answer
        answer = browser.get(urljoin(str(answer.url), answer.headers["location"]))
    raise AssertionError("too many redirects")


def link_in_browser(
    url: str, login: str, github_as: str | None = None, browser: httpx.Client | None = None, decision: str = "allow"
) -> httpx.Response:
    """A person opens the connect page: signs in at the authorization server as `login`, approves the MCP client,
    and authorizes the App at GitHub as `github_as` (their own GitHub login unless told). The last page."""
    own = browser is None
    browser = browser or httpx.Client(timeout=15, follow_redirects=False, trust_env=False)
    try:
        page = _follow(browser, browser.get(url))
        for form in ({"login": login, "password": PASSWORDS[login]}, {}):  # the sign-in, then its consent
            action = AUTHZ_FORM.search(page.text)
            if action is None:
                break
            page = _follow(browser, browser.post(urljoin(str(page.url), action.group(1)), data=form))
        fields = dict(HIDDEN.findall(page.text))
        if "consent" not in fields:
            return page  # refused before the consent (another person's link, an expired one)
        consent = {name: unescape(value) for name, value in fields.items()} | {"decision": decision}
        page = _follow(browser, browser.post(urljoin(str(page.url), "/connect/github/consent"), data=consent))
        if "Authorize the GitHub App" not in page.text:
            return page  # approved only (linked before), or declined
        form = {name: unescape(value) for name, value in HIDDEN.findall(page.text)}
        form["login"] = github_as or github_login(login)
        return _follow(browser, browser.post(urljoin(str(page.url), "/login/oauth/authorize"), data=form))
    finally:
        if own:
            browser.close()


@contextlib.contextmanager
def user_mode_github(
    pg: LocalPostgres, redis_url: str, fake: FakeGitHub, replicas: int = 1, **overrides: str
) -> Iterator[UserModeGitHub]:
    """The server in user mode (`replicas` processes' worth of apps, in this process), its issuer, its vault."""
    asyncio.run(apply_schema(pg.admin_url, schema_files("apps.github", github_server), {VAULT_ROLE: VAULT_PASSWORD}))
    asyncio.run(_empty_vault(pg))
    ports = [free_port() for _ in range(replicas)]
    resource = f"http://127.0.0.1:{ports[0]}/mcp"
    people = {login: PersonConfig(scopes=["github:read", "github:write"]) for login in PEOPLE}
    stack = load_stack("dev").model_copy(update={"identity": IdentityConfig(provider="local", people=people)})
    rendered = authz.config(stack, {"mcp-github": github_server}, {"mcp-github": resource}, "filled-in")
    local = LocalAuthz(rendered, PASSWORDS).start()
    fake.web.people |= {github_login(login) for login in PEOPLE}
    fake.web.callback_urls.append(resource.removesuffix("/mcp") + "/connect/github/callback")
    keyring = Keyring.new_key("k1")
    settings = {
        "MCP_RESOURCE_URL": resource,
        "MCP_ISSUER": local.issuer,
        "MCP_JWKS_URL": local.jwks_url,
        "MCP_JWT_ALGORITHMS": "RS256",
        "MCP_JWT_REQUIRE_AT_TYP": "true",
        "MCP_SIGNIN_CLIENT_ID": authz.signin_client_id("mcp-github"),
        "REDIS_URL": redis_url,
        "RATE_LIMIT_PER_MINUTE": "10000",
        "GITHUB_IDENTITY": "user",
        "GITHUB_API_URL": fake.url,
        "GITHUB_WEB_URL": fake.url,
        "GITHUB_APP_CLIENT_ID": fake.web.client_id,
        "GITHUB_CREDENTIAL": fake.web.client_secret,
        "GITHUB_REPOSITORIES": "octo/hello",
        "GITHUB_VAULT_URL": pg.url(VAULT_ROLE, VAULT_PASSWORD),
        "GITHUB_VAULT_KEYS": keyring,
        **overrides,
    }
    apps = []
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in __import__("os").environ if n.startswith(("MCP_", "GITHUB_", "REDIS_"))]:
            patch.delenv(name)
        for name, value in settings.items():
            patch.setenv(name, value)
        apps = [create_app(github_server) for _ in ports]
    try:
        with contextlib.ExitStack() as serving:
            bases = [serving.enter_context(serve_app(app, port)) for app, port in zip(apps, ports, strict=True)]
            yield UserModeGitHub(local, fake, resource, bases, keyring)
    finally:
        local.stop()


async def _empty_vault(pg: LocalPostgres) -> None:
    import asyncpg

    conn = await asyncpg.connect(pg.admin_url)
    try:
        await conn.execute("TRUNCATE github_vault.vault_tokens, github_vault.vault_consents")
    finally:
        await conn.close()
