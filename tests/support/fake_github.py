"""A fake GitHub built from GitHub's own OpenAPI description (npm `@octokit/openapi`, installed by
`scripts/test` in tests/interop): on loopback, it answers the operations the GitHub server uses with GitHub's
own example responses (curated per test: authors, bodies, visibility), and validates every request it
receives and every response it sends against the description (openapi-core), recording each violation.

It scripts what tests need of the real API: `X-RateLimit-*` headers counting down per credential (a 304 does
not count, as on GitHub), `ETag`/`If-None-Match` where the description declares a 304, a secondary limit
(403 with `Retry-After`), and pagination (`Link: rel="next"` when more items exist than a page holds).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import jwt
from openapi_core import Config, OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from tests.support.fake_github_web_flow import WebFlow

SPEC = Path(__file__).resolve().parents[1] / "interop/node_modules/@octokit/openapi/generated/api.github.com.json"
HOST = "https://api.github.com"
ACCESS_TOKENS = "/app/installations/{installation_id}/access_tokens"


@cache
def description() -> dict[str, Any]:
    return json.loads(SPEC.read_text())  # type: ignore[no-any-return]


@cache
def validator() -> OpenAPI:
    """GitHub's description as published (not re-validated: 15 s for a document we did not write)."""
    return OpenAPI.from_dict(description(), config=Config(spec_validator_cls=None))


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = description()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def example(method: str, template: str, status: str = "", name: str = "") -> Any:
    """GitHub's own example answer for an operation (its first success status, its first example)."""
    responses = description()["paths"][template][method]["responses"]
    status = status or next(code for code in responses if code.startswith("2"))
    examples = _resolve(responses[status])["content"]["application/json"]["examples"]
    chosen = _resolve(examples[name] if name else next(iter(examples.values())))["value"]
    if isinstance(chosen, dict) and "$ref" in chosen:  # an example whose value is another example
        chosen = _resolve(chosen)["value"]
    return copy.deepcopy(chosen)


def declares(method: str, template: str, status: int) -> bool:
    return str(status) in description()["paths"][template][method]["responses"]


ROUTES = [  # (method, description template, our regex)
    ("get", "/repos/{owner}/{repo}", r"/repos/([^/]+)/([^/]+)"),
    ("get", "/repos/{owner}/{repo}/issues", r"/repos/([^/]+)/([^/]+)/issues"),
    ("post", "/repos/{owner}/{repo}/issues", r"/repos/([^/]+)/([^/]+)/issues"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}", r"/repos/([^/]+)/([^/]+)/issues/(\d+)"),
    ("get", "/repos/{owner}/{repo}/issues/{issue_number}/comments", r"/repos/([^/]+)/([^/]+)/issues/(\d+)/comments"),
    ("post", "/repos/{owner}/{repo}/issues/{issue_number}/comments", r"/repos/([^/]+)/([^/]+)/issues/(\d+)/comments"),
    ("get", "/repos/{owner}/{repo}/pulls", r"/repos/([^/]+)/([^/]+)/pulls"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}", r"/repos/([^/]+)/([^/]+)/pulls/(\d+)"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/files", r"/repos/([^/]+)/([^/]+)/pulls/(\d+)/files"),
    ("get", "/repos/{owner}/{repo}/contents/{path}", r"/repos/([^/]+)/([^/]+)/contents/(.+)"),
    ("get", "/repos/{owner}/{repo}/commits", r"/repos/([^/]+)/([^/]+)/commits"),
    ("post", ACCESS_TOKENS, r"/app/installations/(\d+)/access_tokens"),
    ("get", "/search/code", r"/search/code"),
    ("get", "/search/issues", r"/search/issues"),
    ("get", "/repos/{owner}/{repo}/pulls/{pull_number}/comments", r"/repos/([^/]+)/([^/]+)/pulls/(\d+)/comments"),
    ("get", "/repos/{owner}/{repo}/branches/{branch}", r"/repos/([^/]+)/([^/]+)/branches/(.+)"),
    ("get", "/repos/{owner}/{repo}/git/ref/{ref}", r"/repos/([^/]+)/([^/]+)/git/ref/(.+)"),
    ("get", "/user", r"/user"),
]


def issue(number: int, body: str, association: str, login: str = "someone") -> dict[str, Any]:
    """GitHub's example issue, with this number, body and author."""
    item = example("get", "/repos/{owner}/{repo}/issues/{issue_number}")
    item.update(number=number, body=body, author_association=association, title=f"Issue {number}")
    item.pop("pull_request", None)  # GitHub's example is an issue of a pull request; these are plain issues
    item["user"]["login"] = login
    return item


@dataclass
class Seen:
    method: str
    path: str
    authorization: str
    status: int


@dataclass
class FakeGitHub:
    token: str
    public: bool = True
    issues: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    budget: int = 5000  # X-RateLimit-Remaining before the first call
    search_budget: int = 10  # the search resources' (GitHub: 10 or 30 a minute)
    searches: list[str] = field(default_factory=list)  # the `q` of each search received
    secondary_limit: int = 0  # answer this many calls with a 403 and Retry-After
    # A test may break a response on purpose: applied to the answer body before it is sent and validated.
    drift: Callable[[str, Any], Any] | None = None
    branches: set[str] = field(default_factory=lambda: {"main", "dev"})
    tags: set[str] = field(default_factory=lambda: {"v1.0"})
    # Search results GitHub answers from another repository (a query that widened), added to every search.
    foreign_results: int = 0
    moved: set[str] = field(default_factory=set)  # `owner/repo` renamed: every read of it answers 301
    secondary_retry_after: str = "60"  # what a secondary limit's Retry-After says
    ignore_per_page: bool = False  # answer whole lists, as some of GitHub's operations do past `per_page`
    write_refusal: tuple[int, Any] | None = None  # answer every write with this status and body
    revoke_all: bool = False  # as an App installation whose access was withdrawn: every token it issues gets 401
    files: dict[str, str] = field(default_factory=lambda: {"README.md": "# hello\nRun make.\n"})  # path: text
    # Pull requests, their files and review comments as written by this author (GitHub's examples by default).
    pull_author: tuple[str, str] | None = None  # (login, author_association)
    seen: list[Seen] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    created: list[dict[str, Any]] = field(default_factory=list)
    reset: int = field(default_factory=lambda: int(time.time()) + 3600)
    # As a GitHub App's installation: the App's id and public key check the JWT an exchange is signed with; the
    # tokens it issues live `token_seconds` and are then accepted like `token`.
    app_id: int | None = None
    app_public_key: Any = None
    installation_id: int = 1
    token_seconds: int = 3600
    issued: dict[str, float] = field(default_factory=dict)  # installation token -> when it expires
    exchanges: list[dict[str, Any]] = field(default_factory=list)  # what each exchange asked for
    # GitHub's web flow for the App's user access tokens (`tests.support.fake_github_web_flow`): a call with a
    # user token acts as its person, and what the person creates is recorded with them as its author.
    web: WebFlow = field(default_factory=WebFlow)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @staticmethod
    def spec_available() -> bool:
        return SPEC.is_file()

    def start(self, host: str = "127.0.0.1") -> FakeGitHub:
        """Serve on `host` (loopback; or a test network's gateway, for containers to reach it)."""
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._serve(self, "get")

            def do_POST(self) -> None:
                fake._serve(self, "post")

            def do_DELETE(self) -> None:
                fake._serve(self, "delete")

            def log_message(self, *args: Any) -> None:
                pass

        validator()
        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.httpd.shutdown()

    def calls(self, method: str = "", contains: str = "") -> list[Seen]:
        return [s for s in self.seen if s.method.startswith(method.upper()) and contains in s.path]

    def _serve(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        split = urlsplit(handler.path)
        raw = handler.rfile.read(int(handler.headers.get("content-length") or 0))
        headers = {k.lower(): v for k, v in handler.headers.items()}
        if split.path == "/favicon.ico":  # a browser on the consent page asks for it; not the API's
            handler.send_response(404)
            handler.send_header("content-length", "0")
            handler.end_headers()
            return
        if WebFlow.serves(split.path):  # github.com's pages and the App's token endpoints, not the REST API
            status, extra, body = self.web.handle(method.upper(), split.path, split.query, headers, raw)
            self.seen.append(Seen(method.upper(), split.path, headers.get("authorization", ""), status))
            handler.send_response(status)
            for name, value in {"content-length": str(len(body)), **extra}.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)
            return
        route = next(
            (
                (m, t, re.fullmatch(rx, split.path))
                for m, t, rx in ROUTES
                if m == method and re.fullmatch(rx, split.path)
            ),
            None,
        )
        # GitHub's `{ref}` holds a slash (`tags/v1.0`), which an OpenAPI path parameter cannot: validated escaped.
        validated_path = re.sub(r"(/git/ref/)(.+)", lambda m: m[1] + quote(m[2], safe=""), split.path)
        request = MockRequest(
            HOST, method, validated_path, args=dict(parse_qsl(split.query)), headers=headers, data=raw or None,
            content_type=headers.get("content-type", "application/json") if raw else None,
        )  # fmt: skip
        if route is None:
            self.violations.append(f"{method.upper()} {split.path}: no operation of the description is served here")
            return self._send(handler, request, 404, {"message": "Not Found"}, {})
        _, template, match = route
        try:
            validator().validate_request(request)
        except Exception as error:
            self.violations.append(f"request {method.upper()} {split.path}: {_why(error)}")
        if method == "get" and split.path.startswith("/repos/") and "/".join(split.path.split("/")[2:4]) in self.moved:
            moved = {"message": "Moved Permanently", "url": f"{HOST}/repositories/1", "documentation_url": HOST}
            return self._send(handler, request, 301, moved, {"location": f"{HOST}/repositories/1"}, template)
        if template == ACCESS_TOKENS:
            status, body = self._exchange(headers.get("authorization", ""), int(match.group(1)), raw)
            return self._send(handler, request, status, body, {}, template)
        if not self._authorized(headers.get("authorization", "")):
            # GitHub answers 401 to any operation; its description lists it for few, so this one is not validated
            return self._send(handler, request, 401, {"message": "Bad credentials"}, {})
        with self._lock:
            if self.secondary_limit > 0:
                self.secondary_limit -= 1
                body = {"message": "You have exceeded a secondary rate limit. Please wait a few minutes."}
                return self._send(handler, request, 403, body, {"retry-after": self.secondary_retry_after}, template)
            if method == "post" and self.write_refusal is not None:
                return self._send(handler, request, *self.write_refusal, {}, template)
            author = self.web.author_of(headers.get("authorization", "").removeprefix("Bearer "))
            if template == "/user":  # who a user access token acts for (GitHub's example, named as them)
                if author is None:
                    return self._send(handler, request, 401, {"message": "Bad credentials"}, {})
                status, body = 200, example("get", "/user", name="response-with-public-profile-information")
                body |= {"login": author, "user_view_type": "public"}  # the discriminator its example omits
            else:
                status, body = self._answer(method, template, match, split.query, raw)
            if author is not None and method == "post" and isinstance(body, dict) and "user" in body:
                body["user"]["login"] = author  # created by the person whose token it was
            etag = '"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:20] + '"'
            conditional = method == "get" and headers.get("if-none-match") == etag
            if conditional and declares(method, template, 304):
                return self._send(handler, request, 304, None, {"etag": etag, **self._limits(template)}, template)
            if template.startswith("/search/"):
                self.search_budget -= 1
            else:
                self.budget -= 1
            extra = {"etag": etag} if method == "get" else {}
            if isinstance(body, list) and not self.ignore_per_page:
                per_page = int(dict(parse_qsl(split.query)).get("per_page", 30))
                if len(body) > per_page:
                    body = body[:per_page]
                    extra["link"] = f'<{HOST}{split.path}?page=2>; rel="next"'
            self._send(handler, request, status, body, {**extra, **self._limits(template)}, template)

    def _authorized(self, authorization: str) -> bool:
        bearer = authorization.removeprefix("Bearer ")
        if self.web.author_of(bearer) is not None:  # a person's user access token, alive
            return True
        if self.app_id is None:
            return authorization == f"Bearer {self.token}"
        if self.revoke_all:
            return False
        return self.issued.get(bearer, 0) > time.time()  # as an App installation: only the tokens it issued

    def _exchange(self, authorization: str, installation: int, raw: bytes) -> tuple[int, Any]:
        """An App's JWT (RS256, its id as `iss`, at most 10 minutes long) for an installation token."""
        try:
            claims = jwt.decode(
                authorization.removeprefix("Bearer "),
                self.app_public_key,
                algorithms=["RS256"],
                issuer=str(self.app_id),
                options={"require": ["iat", "exp", "iss"]},
            )
            if claims["exp"] - claims["iat"] > 600 or installation != self.installation_id:
                raise jwt.InvalidTokenError("too long, or another installation")
        except (jwt.InvalidTokenError, TypeError, ValueError):
            return 401, {"message": "A JSON web token could not be decoded", "documentation_url": HOST}
        with self._lock:
            token, expires = "ghs_" + secrets.token_hex(18), time.time() + self.token_seconds
            self.issued[token] = expires
            self.exchanges.append(json.loads(raw) if raw else {})
        answer = example("post", ACCESS_TOKENS)
        answer.update(token=token, expires_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)))
        return 201, answer

    def _limits(self, template: str) -> dict[str, str]:
        """The budget of the operation's resource: search has its own, small one (as on GitHub)."""
        resource, limit, left = "core", 5000, self.budget
        if template.startswith("/search/"):
            resource, limit, left = ("code_search" if template == "/search/code" else "search"), 10, self.search_budget
        return {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(left, 0)),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-used": str(limit - max(left, 0)),
            "x-ratelimit-resource": resource,
        }

    def _answer(self, method: str, template: str, match: re.Match[str], query: str, raw: bytes) -> tuple[int, Any]:
        if template == "/repos/{owner}/{repo}":
            repo = example("get", template)
            for curated in (repo, repo.get("parent") or {}, repo.get("source") or {}):
                curated.setdefault("language", None)  # GitHub's example omits a field its schema requires
            repo.update(private=not self.public, visibility="public" if self.public else "private")
            repo["owner"]["login"], repo["name"] = match.group(1), match.group(2)
            return 200, repo
        if method == "post":  # an issue or a comment: GitHub's example of one, with what was sent
            created = example("post", template)
            created.update(json.loads(raw))
            self.created.append(created)
            return 201, created
        if template == "/search/issues":
            q = dict(parse_qsl(query))["q"]
            self.searches.append(q)
            scope = _searched_repository(q)
            items = [
                issue_item | {"score": 1.0, "repository_url": f"{HOST}/repos/{scope}", "body": issue_item["body"] or ""}
                for issue_item in self.issues
            ]
            items += [
                {**self.issues[0], "score": 1.0, "number": 900 + n, "repository_url": f"{HOST}/repos/evil/elsewhere"}
                for n in range(self.foreign_results)
            ]
            return 200, {
                "total_count": len(items),
                "incomplete_results": False,
                "items": items,
                "search_type": "lexical",
            }
        if template == "/search/code":
            q = dict(parse_qsl(query))["q"]
            self.searches.append(q)
            found = example("get", template)
            for item in found["items"]:
                item["repository"]["full_name"] = _searched_repository(q)
            foreign = [copy.deepcopy(found["items"][0]) for _ in range(self.foreign_results)]
            for item in foreign:
                item["repository"]["full_name"] = "evil/elsewhere"
            found["items"] += foreign
            return 200, found
        if template.endswith("/contents/{path}") and match.group(3) in self.files:
            found_file = example("get", template)
            text = self.files[match.group(3)].encode()
            found_file.update(content=base64.b64encode(text).decode(), size=len(text), path=match.group(3))
            return 200, found_file
        if template.endswith("/branches/{branch}"):
            if match.group(3) not in self.branches:
                return 404, {"message": "Branch not found", "documentation_url": HOST}
            branch = example("get", template)
            branch["name"] = match.group(3)
            return 200, branch
        if template.endswith("/git/ref/{ref}"):
            kind, _, name = match.group(3).partition("/")
            if kind != "tags" or name not in self.tags:
                return 404, {"message": "Not Found", "documentation_url": HOST}
            found_ref = example("get", template)
            found_ref["ref"] = f"refs/tags/{name}"
            return 200, found_ref
        if template.endswith("/issues"):
            return 200, self.issues
        if template.endswith("{issue_number}"):
            number = int(match.group(3))
            found = [i for i in self.issues if i["number"] == number]
            return (200, found[0]) if found else (404, {"message": "Not Found"})
        if template.endswith("/issues/{issue_number}/comments"):
            return 200, self.comments
        answer = example("get", template)
        if template.startswith("/repos/{owner}/{repo}/pulls") and not template.endswith("/files"):
            for pull in answer if isinstance(answer, list) else [answer]:
                for team in pull.get("requested_teams") or []:
                    team.setdefault("type", "organization")  # GitHub's example omits a required field
            if self.pull_author is not None:
                for written in answer if isinstance(answer, list) else [answer]:
                    written["user"]["login"], written["author_association"] = self.pull_author
        return 200, answer

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        request: MockRequest,
        status: int,
        body: Any,
        headers: dict[str, str],
        template: str | None = None,
    ) -> None:
        if self.drift is not None and body is not None and template is not None:
            body = self.drift(template, body)
        data = b"" if body is None else json.dumps(body).encode()
        if template is not None:
            response = MockResponse(data, status_code=status, headers=headers, content_type="application/json")
            try:
                validator().validate_response(request, response)
            except Exception as error:
                self.violations.append(f"response {status} to {request.method.upper()} {request.path}: {_why(error)}")
        self.seen.append(Seen(request.method.upper(), request.path, handler.headers.get("authorization", ""), status))
        handler.send_response(status)
        for name, value in {"content-type": "application/json", "content-length": str(len(data)), **headers}.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


def _searched_repository(q: str) -> str:
    """The `owner/repo` a search query is narrowed to (its `repo:` qualifier)."""
    scope = next((term.removeprefix("repo:") for term in q.split() if term.startswith("repo:")), "")
    return scope or "octocat/Hello-World"


def _why(error: Exception) -> str:
    """The schema errors behind an openapi-core failure, with their paths (not the whole value)."""
    cause = error.__cause__ or error
    details = [f"{'/'.join(map(str, e.path))}: {e.message[:200]}" for e in getattr(cause, "schema_errors", [])[:5]]
    return f"{type(cause).__name__}: " + ("; ".join(details) if details else str(cause)[:300])
