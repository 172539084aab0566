"""Sign a dev person in at the local authorization server the way an MCP client does, for scripts and tests.

`scripts/token` and `scripts/up` use it; interactive clients (VS Code, Claude, Cursor, the MCP Inspector) do the
same themselves in a browser. In order: RFC 8414 discovery, dynamic registration as a public client (RFC 7591),
the authorization request with PKCE S256 and the resource (RFC 8707), the login and consent pages (the forms
`authz/server.mjs` serves), the redirect's `state` and `iss` checked (RFC 9207), then the code exchanged for a
token whose audience is that one resource.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

REDIRECT_URI = "http://127.0.0.1/callback"  # never contacted: the code is read from the redirect itself
FORM_ACTION = re.compile(r'<form method="post" action="(/interaction/[A-Za-z0-9_-]+/(login|confirm))">')
MAX_HOPS = 10


class SignInFailed(RuntimeError):
    """The authorization server refused (wrong password, nothing grantable, an error page)."""


def sign_in(
    issuer: str, resource: str, login: str, password: str, scopes: str, client_name: str = "mcpfleet scripts"
) -> dict[str, Any]:
    """The token response (`access_token`, `refresh_token`, `scope`, ...) for `login`, for `resource`."""
    with httpx.Client(timeout=10, follow_redirects=False, trust_env=False) as client:
        metadata = client.get(issuer.rstrip("/") + "/.well-known/oauth-authorization-server").raise_for_status().json()
        registered = client.post(
            metadata["registration_endpoint"],
            json={
                "client_name": client_name,
                "redirect_uris": [REDIRECT_URI],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            },
        )
        client_id = registered.raise_for_status().json()["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        query = {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": scopes,
            "resource": resource,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "state": state,
        }
        answer = _follow(client, client.get(f"{metadata['authorization_endpoint']}?{urlencode(query)}"))
        for form in ({"login": login, "password": password}, {}):  # the login page, then the consent page
            if _redirected_home(answer):
                break
            action = FORM_ACTION.search(answer.text)
            if action is None:
                raise SignInFailed(_page_text(answer))
            answer = _follow(client, client.post(urljoin(str(answer.url), action.group(1)), data=form))
        if not _redirected_home(answer):
            raise SignInFailed(_page_text(answer))
        returned = parse_qs(urlsplit(answer.headers["location"]).query)
        if "error" in returned:
            raise SignInFailed(f"{returned['error'][0]}: {returned.get('error_description', [''])[0]}")
        if returned.get("state") != [state] or returned.get("iss") != [metadata["issuer"]]:
            raise SignInFailed("the redirect's state or issuer is not the one this sign-in started with")
        token = client.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": returned["code"][0],
                "redirect_uri": REDIRECT_URI,
                "client_id": client_id,
                "code_verifier": verifier,
                "resource": resource,
            },
        )
        if token.status_code != 200:
            raise SignInFailed(f"token endpoint answered {token.status_code}: {token.text[:300]}")
        return {**token.json(), "client_id": client_id, "token_endpoint": metadata["token_endpoint"]}


def _redirected_home(answer: httpx.Response) -> bool:
    return answer.is_redirect and answer.headers["location"].startswith(REDIRECT_URI)


def _follow(client: httpx.Client, answer: httpx.Response) -> httpx.Response:
    """Follow the server's own redirects (to its pages), stopping at the one back to the client."""
    for _ in range(MAX_HOPS):
        if not answer.is_redirect or _redirected_home(answer):
            return answer
        answer = client.get(urljoin(str(answer.url), answer.headers["location"]))
    raise SignInFailed(f"more than {MAX_HOPS} redirects")


def _page_text(answer: httpx.Response) -> str:
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", answer.text)).strip()
    return f"HTTP {answer.status_code}: {text[:300]}"
