"""GitHub's web flow for a GitHub App's user access tokens, as GitHub documents it ("Generating a user access token
for a GitHub App"), for the fake GitHub (`tests.support.fake_github`) to serve beside the REST API.

- `GET /login/oauth/authorize`: the person's consent page, for the App's `client_id`, one of its registered
  callback URLs (exact match), a `state`, and a PKCE `code_challenge` with `code_challenge_method=S256`.
- `POST /login/oauth/authorize`: the person signs in (a known login) and authorizes: a code, single use, valid 10
  minutes, bound to the client, the redirect URI and the challenge; then a redirect to the callback.
- `POST /login/oauth/access_token`: the code (with the client secret, the same redirect URI and the PKCE verifier)
  or a refresh token for a user access token (`ghu_`, 8 hours) and a refresh token (`ghr_`, 6 months). A refresh
  token is used once: the refresh answers a new pair. Errors come as GitHub sends them: HTTP 200 with an `error`.
- `DELETE /applications/{client_id}/token`: the App (basic auth with its client id and secret) revokes a token.
- `revoke_person(login)`: the person revokes the App in their settings: every token of theirs stops working.

A user access token authorizes REST calls as its person: `author_of(token)` names them, for the fake to record as
the author of what they create. Every request the flow receives is kept (`requests`) with what was wrong with it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

CODE_SECONDS = 600


@dataclass
class WebFlow:
    client_id: str = "Iv23li0mcpfleet0fake"
    client_secret: str = field(default_factory=lambda: secrets.token_hex(20))
    callback_urls: list[str] = field(default_factory=list)
    people: set[str] = field(default_factory=set)  # the logins that may sign in and authorize the App
    user_token_seconds: int = 8 * 3600
    refresh_token_seconds: int = 15897600  # about 6 months, GitHub's figure
    requests: list[dict[str, Any]] = field(default_factory=list)  # each request: its path and what was refused
    _codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    _access: dict[str, tuple[str, float]] = field(default_factory=dict)  # token -> (login, expires)
    _refresh: dict[str, tuple[str, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def author_of(self, bearer: str) -> str | None:
        """The person a live user access token acts for."""
        with self._lock:
            login, expires = self._access.get(bearer, ("", 0.0))
        return login if login and expires > time.time() else None

    def revoke_person(self, login: str) -> None:
        with self._lock:
            for tokens in (self._access, self._refresh):
                for token in [t for t, (owner, _) in tokens.items() if owner == login]:
                    del tokens[token]

    def refreshes(self) -> int:
        return sum(1 for r in self.requests if r.get("grant") == "refresh_token" and not r.get("refused"))

    # --- the endpoints ------------------------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) for a web-flow path; `path` is one `serves()` said yes to."""
        seen: dict[str, Any] = {"method": method, "path": path}
        self.requests.append(seen)
        if path == "/login/oauth/authorize" and method == "GET":
            return self._consent_page(dict(parse_qsl(query)), seen)
        if path == "/login/oauth/authorize" and method == "POST":
            return self._authorize(dict(parse_qsl(raw.decode())), seen)
        if path == "/login/oauth/access_token" and method == "POST":
            return self._token(_form(raw, headers), seen)
        if path == f"/applications/{self.client_id}/token" and method == "DELETE":
            return self._revoke(headers, raw, seen)
        seen["refused"] = "no such endpoint"
        return 404, {"content-type": "application/json"}, b'{"message": "Not Found"}'

    @staticmethod
    def serves(path: str) -> bool:
        return path.startswith(("/login/oauth/", "/applications/"))

    def _consent_page(self, params: dict[str, str], seen: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        problem = self._authorization_problem(params)
        if problem:
            seen["refused"] = problem
            return 400, {"content-type": "text/plain"}, problem.encode()
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(params.get(name, ""))}">'
            for name in ("client_id", "redirect_uri", "state", "code_challenge", "code_challenge_method")
        )
        page = (
            "<!doctype html><html><head><title>Authorize mcpfleet</title></head><body><main>"
            "<h1>Authorize the GitHub App</h1><p>It will act on your behalf, within what the App may do.</p>"
            f'<form method="post" action="/login/oauth/authorize">{hidden}'
            '<label>Username <input name="login" required></label>'
            '<button type="submit">Authorize</button></form></main></body></html>'
        )
        return 200, {"content-type": "text/html; charset=utf-8"}, page.encode()

    def _authorization_problem(self, params: dict[str, str]) -> str | None:
        if params.get("client_id") != self.client_id:
            return "unknown client_id"
        if params.get("redirect_uri") not in self.callback_urls:
            return "redirect_uri is not one of the App's callback URLs"
        if not params.get("state"):
            return "no state"
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return "PKCE with S256 is required"
        return None

    def _authorize(self, form: dict[str, str], seen: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        problem = self._authorization_problem(form) or (None if form.get("login") in self.people else "unknown login")
        if problem:
            seen["refused"] = problem
            return 400, {"content-type": "text/plain"}, problem.encode()
        code = secrets.token_hex(10)
        with self._lock:
            self._codes[code] = {
                "login": form["login"],
                "redirect_uri": form["redirect_uri"],
                "challenge": form["code_challenge"],
                "expires": time.time() + CODE_SECONDS,
            }
        location = f"{form['redirect_uri']}?{urlencode({'code': code, 'state': form['state']})}"
        return 302, {"location": location}, b""

    def _token(self, form: dict[str, str], seen: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        seen["grant"] = form.get("grant_type", "authorization_code")
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return self._error(
                seen, "incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect."
            )
        with self._lock:
            if seen["grant"] == "refresh_token":
                login, expires = self._refresh.pop(form.get("refresh_token", ""), ("", 0.0))
                if not login or expires < time.time():
                    return self._error(seen, "bad_refresh_token", "The refresh token passed is incorrect or expired.")
            else:
                granted = self._codes.pop(form.get("code", ""), None)  # single use: gone whatever happens next
                if granted is None or granted["expires"] < time.time():
                    return self._error(seen, "bad_verification_code", "The code passed is incorrect or expired.")
                if form.get("redirect_uri") not in (None, granted["redirect_uri"]):
                    return self._error(
                        seen, "redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL."
                    )
                verifier = form.get("code_verifier", "")
                digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
                if digest != granted["challenge"]:
                    return self._error(seen, "bad_verification_code", "The code_verifier does not match the challenge.")
                login = granted["login"]
            access, refresh = "ghu_" + secrets.token_hex(18), "ghr_" + secrets.token_hex(38)
            now = time.time()
            self._access[access] = (login, now + self.user_token_seconds)
            self._refresh[refresh] = (login, now + self.refresh_token_seconds)
        body = {
            "access_token": access,
            "expires_in": self.user_token_seconds,
            "refresh_token": refresh,
            "refresh_token_expires_in": self.refresh_token_seconds,
            "scope": "",
            "token_type": "bearer",
        }
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()

    def _revoke(self, headers: dict[str, str], raw: bytes, seen: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if headers.get("authorization") != expected:
            seen["refused"] = "not the App's credentials"
            return 401, {"content-type": "application/json"}, b'{"message": "Requires authentication"}'
        token = (json.loads(raw or b"{}") or {}).get("access_token", "")
        with self._lock:
            login, _ = self._access.pop(token, ("", 0.0))
        if login:
            self.revoke_person(login)  # the grant goes with it: its refresh tokens too
        return 204, {}, b""

    def _error(self, seen: dict[str, Any], error: str, description: str) -> tuple[int, dict[str, str], bytes]:
        seen["refused"] = error
        body = {"error": error, "error_description": description, "error_uri": "https://docs.github.com"}
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()  # GitHub answers errors with 200


def _form(raw: bytes, headers: dict[str, str]) -> dict[str, str]:
    """The token endpoint takes a form or JSON (GitHub accepts both)."""
    if headers.get("content-type", "").startswith("application/json"):
        return {k: str(v) for k, v in (json.loads(raw or b"{}") or {}).items()}
    return dict(parse_qsl(raw.decode()))
