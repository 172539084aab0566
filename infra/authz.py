"""The local authorization server's view of the fleet (`authz/server.mjs`), derived from the declarations.

Each server it issues tokens for is a resource: the app's resource URL (the audience its tokens must carry) and
the scopes its tools declare (`FocusedServer.scopes`); nothing is listed twice. The people are the stack's dev
logins (`identity.people`), each with the scopes they may grant a client; a scope no server declares is refused
here, naming it. Passwords and cookie keys are secrets: the config names the variables that hold them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from apps import fleet as apps_fleet
from apps.kit import FocusedServer
from infra import fleet
from infra.config import AUTHZ_PORT, NAMESPACE, StackConfig, StackConfigError

ACCESS_TOKEN_SECONDS = 3600
# Each client address's share of the server's in-memory store and of password guesses, per sliding minute.
REGISTRATIONS_PER_MINUTE = 60
SIGN_INS_PER_MINUTE = 60
COOKIE_KEYS_VARIABLE = "AUTHZ_COOKIE_KEYS"
ROUTE_COMPONENT = "authorization-server"  # the label of its route, which the policy pack holds to ROUTED below
# What a client of the authorization server reaches through the edge (oidc-provider's routes): discovery,
# registration, the authorization endpoint and its resumption, the login and consent pages, the token,
# revocation and the key set. Nothing else is routed.
ROUTED = {
    "/.well-known/oauth-authorization-server": "Exact",
    "/.well-known/openid-configuration": "Exact",
    "/auth": "Exact",
    "/auth/": "Prefix",
    "/interaction/": "Prefix",
    "/token": "Exact",
    "/token/revocation": "Exact",
    "/reg": "Exact",
    "/jwks": "Exact",
}


def signin_client_id(app: str) -> str:
    """The client an app's pages sign the person in as (`apps.kit.identity.signin`): `mcp-github-pages`."""
    return f"{app}-pages"


def signin_clients(
    servers: Mapping[str, FocusedServer[Any, Any]], resource_urls: Mapping[str, str]
) -> list[dict[str, Any]]:
    """A public client (PKCE, no secret) per app with pages that sign the person in, redirecting to those pages
    alone: the only clients registered by configuration; every MCP client registers itself."""
    clients = []
    for name, server in sorted(servers.items()):
        base = resource_urls[name].removesuffix("/mcp")
        redirects = [base + path for path in server.pages if path.endswith("/signed-in")]
        if redirects:
            clients.append(
                {
                    "client_id": signin_client_id(name),
                    "client_name": f"{server.name} (its own pages)",
                    "redirect_uris": redirects,
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                    "token_endpoint_auth_method": "none",
                }
            )
    return clients


def password_variable(login: str) -> str:
    """The variable holding a dev person's password (`reader` -> AUTHZ_PASSWORD_READER)."""
    return "AUTHZ_PASSWORD_" + login.upper().replace("-", "_")


def stack_scopes(stack: StackConfig) -> set[str]:
    """Every scope a dev login may be given: those the stack's servers declare and those of every server of this
    repository's fleet (a server a target leaves out, or a stack of a few apps, leaves the logins valid), so a
    typo is caught and nothing else."""
    scopes = {scope for app in stack.apps.values() for scope in fleet.load_server(app.module).scopes}
    return scopes | {scope for server in apps_fleet.servers().values() for scope in server.scopes}


def check_people(stack: StackConfig, declared: Collection[str]) -> None:
    """Every scope a person may grant is one some server declares."""
    problems = [
        f"  {NAMESPACE}:identity.people.{login}.scopes: {scope!r} is no scope of this stack's servers"
        for login, person in stack.identity.people.items()
        for scope in person.scopes
        if scope not in declared
    ]
    if problems:
        raise StackConfigError(
            f"invalid stack configuration (declared scopes: {' '.join(sorted(declared))}):\n" + "\n".join(problems)
        )


def resources(
    servers: Mapping[str, FocusedServer[Any, Any]], resource_urls: Mapping[str, str]
) -> dict[str, tuple[str, list[str]]]:
    """Each app's resource (the audience its tokens carry) and the scopes its tools declare: what any provider,
    the platform's own or one it configures, must know of the fleet, derived here once."""
    return {name: (resource_urls[name], server.scopes) for name, server in servers.items()}


def config(
    stack: StackConfig,
    servers: Mapping[str, FocusedServer[Any, Any]],
    resource_urls: Mapping[str, str],
    issuer: str,
    *,
    every_scope: Collection[str] | None = None,
    behind_proxy: bool = False,
) -> dict[str, Any]:
    """The server's configuration: `servers` and `resource_urls` by app name (the URL clients call, which the
    one-machine target gives with its published port), and the issuer clients discover. The people's scopes are
    checked against `every_scope` (the whole stack's; by default these servers')."""
    check_people(stack, every_scope if every_scope is not None else {s for v in servers.values() for s in v.scopes})
    return {
        "issuer": issuer,
        "host": "0.0.0.0",
        "port": AUTHZ_PORT,
        "behindProxy": behind_proxy,
        "accessTokenSeconds": ACCESS_TOKEN_SECONDS,
        "limits": {"registrationsPerMinute": REGISTRATIONS_PER_MINUTE, "signInsPerMinute": SIGN_INS_PER_MINUTE},
        "resources": {
            url: {"name": name, "scopes": scopes} for name, (url, scopes) in resources(servers, resource_urls).items()
        },
        "clients": signin_clients(servers, resource_urls),
        "people": {
            login: {"scopes": sorted(person.scopes), "passwordVariable": password_variable(login)}
            for login, person in stack.identity.people.items()
        },
    }


def secret_variables(stack: StackConfig) -> list[str]:
    """The secrets the local authorization server starts with: its cookie keys and a password per person."""
    return [COOKIE_KEYS_VARIABLE, *(password_variable(login) for login in stack.identity.people)]
