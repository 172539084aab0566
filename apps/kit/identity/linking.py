"""Linking a person's upstream account (a GitHub App's user token; Slack, Jira), so the server acts as them there.

A tool call from a person with no link (or from an MCP client they have not approved) raises `ConnectRequired`
with the server's own connect page, which the client shows as URL-mode elicitation (MCP 2025-11-25). The page is
the rules for servers that act as OAuth clients of a third party, in order:

1. `GET /connect/<provider>?elicitation=ID`: the elicitation exists (made for one principal and one MCP client,
   ten minutes, at most one pending per pair). The browser gets a `__Host-` cookie (Secure, HttpOnly,
   SameSite=Lax) with a random value that binds every later step to it, and goes to sign in at the MCP
   authorization server (`apps.kit.identity.signin`).
2. `GET .../signed-in`: the sign-in's state is used once; the signed-in `sub` must be the principal the
   elicitation was made for (a forwarded URL links nothing: the phishing case of the specification).
   (On a loopback http page, the one-machine target, the cookie is `mcpfleet-link` without Secure: browsers
   refuse a `__Host-` cookie there.) The page
   asks the person to approve this MCP client, by its client id.
3. `POST .../consent`: the consent token is used once, from the same browser. Declined: nothing happens.
   Approved: the approval is recorded per client (`TokenVault.approve`), and only now is the upstream's `state`
   made (with a PKCE verifier) and the browser sent to the upstream's authorization page.
4. `GET .../callback`: the state is used once, from the same browser; the code is exchanged (client secret,
   exact redirect URI, PKCE verifier), the person's account named, the tokens sealed in the vault.

Nothing a client or a model holds can complete a step: the cookie and the sign-in are the browser's and the
person's. Everything in flight lives in Redis under the server's key prefix, one hash per elicitation.
"""

from __future__ import annotations

import hmac
import html
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from apps.kit.declare.tools import CallerError, ConnectRequired
from apps.kit.identity.signin import BrowserSignIn, SignInFailed, pkce_pair
from apps.kit.identity.tokens import Principal
from apps.kit.identity.vault import RefreshRefused, Tokens, TokenVault
from apps.kit.observe.logs import log_event
from apps.kit.upstream import Upstream

if TYPE_CHECKING:
    from redis.asyncio import Redis

FLOW_SECONDS = 600
# A replica keeps a person's tokens this long after reading them, so a tool call's several upstream calls cost one
# vault read; a link dropped on another replica is seen here within it (and GitHub refuses a revoked token anyway).
MEMO_SECONDS = 10.0
MEMO_ENTRIES = 4096
COOKIE = "__Host-mcpfleet-link"  # HTTPS: Secure, host-only, path / (what the prefix makes browsers enforce)
LOOPBACK_COOKIE = "mcpfleet-link"  # a loopback http page (the one-machine target): browsers refuse __Host- there
MAX_FORM_BYTES = 4096
# Take a field of the flow's hash when it holds the expected value: each state and token is used once.
TAKE = """
local value = redis.call('hget', KEYS[1], ARGV[1])
if value and value == ARGV[2] then redis.call('hdel', KEYS[1], ARGV[1]) return 1 end
return 0
"""

AccountOf = Callable[[str], Awaitable[str]]  # an access token -> the person's account name upstream


@dataclass(frozen=True)
class UpstreamClient:
    """This server as an OAuth client of the upstream (a GitHub App: its client id and secret, github.com's
    endpoints)."""

    provider: str  # names the pages and the vault rows: "github"
    title: str  # what the person reads: "GitHub"
    authorize_url: str
    token_url: str
    client_id: str
    client_secret: str
    scope: str | None = None


def tokens_from(body: Any, now: float | None = None) -> Tokens:
    """An RFC 6749 token response (GitHub's `refresh_token_expires_in` included); an `error` (which GitHub answers
    with HTTP 200) raises `RefreshRefused` naming it."""
    now = time.time() if now is None else now
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        error = body.get("error", "no access token") if isinstance(body, dict) else "not JSON"
        raise RefreshRefused(str(error)[:100])
    lifetime = body.get("expires_in")
    refresh_lifetime = body.get("refresh_token_expires_in")
    return Tokens(
        access=body["access_token"],
        expires_at=now + (float(lifetime) if isinstance(lifetime, int | float) else 8 * 3600),
        refresh=body.get("refresh_token") if isinstance(body.get("refresh_token"), str) else None,
        refresh_expires_at=now + float(refresh_lifetime) if isinstance(refresh_lifetime, int | float) else None,
    )


def _page(title: str, body: str, status: int = 200, form_action: str = "'self'") -> HTMLResponse:
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
        f"<body><main><h1>{html.escape(title)}</h1>{body}</main></body></html>"
    )
    headers = {
        "cache-control": "no-store",
        "x-frame-options": "DENY",
        "referrer-policy": "no-referrer",
        "content-security-policy": f"default-src 'none'; form-action {form_action}; frame-ancestors 'none'",
    }
    return HTMLResponse(document, status, headers=headers)


class AccountLink:
    """The connect pages of one upstream provider, and the tokens they link."""

    def __init__(
        self,
        *,
        server: str,
        upstream: UpstreamClient,
        vault: TokenVault,
        redis: Redis,
        key_prefix: str,
        page_base: str,
        signin: BrowserSignIn,
        http: Upstream,
        account_of: AccountOf,
    ):
        self.server, self.upstream, self.vault, self.redis = server, upstream, vault, redis
        self.signin, self.http, self.account_of = signin, http, account_of
        self.path = f"/connect/{upstream.provider}"
        self.url = page_base + self.path
        self.secure = page_base.startswith("https://")
        self.cookie = COOKIE if self.secure else LOOPBACK_COOKIE
        self._keys = f"{key_prefix}link:{upstream.provider}:"
        self._take = redis.register_script(TAKE)
        self._memo: OrderedDict[tuple[str, str], tuple[float, Tokens]] = OrderedDict()

    @staticmethod
    def paths(provider: str) -> list[str]:
        """The page paths, for the routes (the platform routes these and `/mcp` alone)."""
        base = f"/connect/{provider}"
        return [base, base + "/signed-in", base + "/consent", base + "/callback"]

    def pages(self) -> dict[str, Callable[[Request], Awaitable[Response]]]:
        base = self.path
        return {
            base: self.opened,
            base + "/signed-in": self.signed_in,
            base + "/consent": self.consented,
            base + "/callback": self.called_back,
        }

    # --- what a tool call uses -------------------------------------------------------------------------------
    async def tokens(self, principal: Principal) -> Tokens:
        """The person's upstream tokens (refreshed when due), or `ConnectRequired` sending them to link."""
        if principal.subject is None:
            raise CallerError(f"acting as a person at {self.upstream.title} needs a token issued to a person (sub)")
        client = principal.client_id or ""
        key, now = (principal.subject, client), time.monotonic()
        remembered = self._memo.get(key)
        if remembered is not None and remembered[0] > now and remembered[1].expires_at - time.time() > MEMO_SECONDS:
            return remembered[1]
        found = await self.vault.current(principal.subject, self.refresh, client=client)
        if found is not None:
            self._memo[key] = (now + MEMO_SECONDS, found)
            self._memo.move_to_end(key)
            if len(self._memo) > MEMO_ENTRIES:
                self._memo.popitem(last=False)
            return found
        elicitation = await self._pending(principal.subject, client)
        raise ConnectRequired(
            f"{self.url}?{urlencode({'elicitation': elicitation})}",
            f"{self.server} acts as you at {self.upstream.title}: link your {self.upstream.title} account to it "
            "(and approve this client) in your browser, then try again.",
            elicitation,
        )

    async def refresh(self, tokens: Tokens) -> Tokens:
        if tokens.refresh is None:
            raise RefreshRefused("no refresh token")
        answer = await self.http.request(
            "POST",
            self.upstream.token_url,
            idempotent=False,
            data={
                "grant_type": "refresh_token",
                "refresh_token": tokens.refresh,
                "client_id": self.upstream.client_id,
                "client_secret": self.upstream.client_secret,
            },
        )
        fresh = tokens_from(answer.body)
        return Tokens(fresh.access, fresh.expires_at, fresh.refresh, fresh.refresh_expires_at, tokens.account)

    async def forget(self, principal: Principal, why: str) -> None:
        """The upstream refused the person's token (401): the next call links again."""
        if principal.subject is not None:
            self._forget_here(principal.subject)
            await self.vault.drop(principal.subject, why)

    async def unlink(self, principal: Principal) -> Tokens | None:
        """The person disconnects: their tokens (to revoke upstream) and every client they approved are forgotten."""
        if principal.subject is None:
            raise CallerError(f"unlinking a {self.upstream.title} account needs a token issued to a person (sub)")
        tokens = await self.vault.current(principal.subject, self.refresh)
        self._forget_here(principal.subject)
        await self.vault.drop(principal.subject, "the person disconnected", forget_clients=True)
        return tokens

    def _forget_here(self, subject: str) -> None:
        for key in [key for key in self._memo if key[0] == subject]:
            del self._memo[key]

    async def _pending(self, subject: str, client: str) -> str:
        """The elicitation pending for this person and client, or a new one: at most one per pair at a time."""
        pending = f"{self._keys}pending:{subject}\0{client}"
        fresh = secrets.token_urlsafe(18)
        if await self.redis.set(pending, fresh, nx=True, ex=FLOW_SECONDS):
            await self.redis.hset(self._flow(fresh), mapping={"principal": subject, "client": client})
            await self.redis.expire(self._flow(fresh), FLOW_SECONDS)
            return fresh
        existing = await self.redis.get(pending)
        return existing.decode() if isinstance(existing, bytes) else str(existing or fresh)

    def _flow(self, elicitation: str) -> str:
        return f"{self._keys}flow:{elicitation}"

    # --- the pages ---------------------------------------------------------------------------------------------
    async def opened(self, request: Request) -> Response:
        elicitation = request.query_params.get("elicitation", "")
        flow = self._flow(elicitation)
        if len(elicitation) > 64 or not await self.redis.hexists(flow, "principal"):
            return self._expired()
        browser, nonce, state = secrets.token_urlsafe(24), secrets.token_urlsafe(24), self._state(elicitation)
        verifier, challenge = pkce_pair()
        await self.redis.hset(flow, mapping={"browser": browser, "signin": state, "verifier": verifier, "nonce": nonce})
        response = RedirectResponse(await self.signin.start(state, nonce, challenge), 303)
        response.set_cookie(
            self.cookie, browser, max_age=FLOW_SECONDS, path="/", secure=self.secure, httponly=True, samesite="lax"
        )
        return response

    async def signed_in(self, request: Request) -> Response:
        found = await self._step(request, request.query_params.get("state", ""), "signin")
        if isinstance(found, Response):
            return found
        elicitation, flow = found
        code = request.query_params.get("code")
        if not code:
            return _page("Not signed in", "<p>The sign-in was cancelled or refused. Nothing was linked.</p>", 400)
        try:
            subject = await self.signin.subject(code, flow["verifier"], flow["nonce"])
        except SignInFailed as failed:
            return _page("Not signed in", f"<p>{html.escape(str(failed))}. Nothing was linked.</p>", 400)
        if not hmac.compare_digest(subject, flow["principal"]):
            log_event("link_refused", provider=self.upstream.provider, principal=flow["principal"], signed_in=subject,
                      why="the person who opened the link is not the one it was made for")  # fmt: skip
            await self.redis.delete(self._flow(elicitation))
            return _page(
                "This link is not yours",
                "<p>It was made for another person's request. Nothing was linked. If somebody sent you this link, "
                "do not follow links like it from them.</p>",
                403,
            )
        consent = secrets.token_urlsafe(24)
        await self.redis.hset(self._flow(elicitation), "consent", consent)
        client = flow["client"] or "(a client with no client id)"
        title = self.upstream.title
        return _page(
            f"Let this client act as you at {title}?",
            f"<p>Signed in as <strong>{html.escape(subject)}</strong>.</p>"
            f"<p>The MCP client <code>{html.escape(client)}</code> asks to use <strong>{html.escape(self.server)}"
            f"</strong>, which will act as you at {html.escape(title)}: what it does there is done in your name, "
            f"within what you and the {html.escape(title)} app may do.</p>"
            f'<form method="post" action="{html.escape(self.path)}/consent">'
            f'<input type="hidden" name="elicitation" value="{html.escape(elicitation)}">'
            f'<input type="hidden" name="consent" value="{html.escape(consent)}">'
            '<button type="submit" name="decision" value="allow">Allow</button> '
            '<button type="submit" name="decision" value="deny">Deny</button></form>',
            # the form's answer redirects to the upstream's authorization page: browsers hold that to form-action
            form_action=f"'self' {_origin(self.upstream.authorize_url)}",
        )

    async def consented(self, request: Request) -> Response:
        if request.method != "POST":
            return _page("Not here", "<p>This page answers the consent form only.</p>", 405)
        form = await _form(request)
        if form is None:
            return _page("Too large", "<p>The form was larger than this page accepts.</p>", 413)
        elicitation = form.get("elicitation", "")
        found = await self._step(request, form.get("consent", ""), "consent", elicitation)
        if isinstance(found, Response):
            return found
        _, flow = found
        if form.get("decision") != "allow":
            await self.redis.delete(self._flow(elicitation))
            return _page("Nothing was linked", "<p>You declined. You can close this page.</p>")
        await self.vault.approve(flow["principal"], flow["client"])
        if await self.vault.current(flow["principal"], self.refresh) is not None:  # linked before: approved only
            await self._finished(elicitation, flow)
            return _page("Done", f"<p>This client may now use your linked {html.escape(self.upstream.title)} "
                         "account. Go back to it and try again.</p>")  # fmt: skip
        state, (verifier, challenge) = self._state(elicitation), pkce_pair()  # only now, after consent
        await self.redis.hset(self._flow(elicitation), mapping={"upstream": state, "upstream_verifier": verifier})
        query = {
            "client_id": self.upstream.client_id,
            "redirect_uri": self.url + "/callback",
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        } | ({"scope": self.upstream.scope} if self.upstream.scope else {})
        return RedirectResponse(f"{self.upstream.authorize_url}?{urlencode(query)}", 303)

    async def called_back(self, request: Request) -> Response:
        found = await self._step(request, request.query_params.get("state", ""), "upstream")
        if isinstance(found, Response):
            return found
        elicitation, flow = found
        code = request.query_params.get("code")
        title = html.escape(self.upstream.title)
        if not code:
            await self.redis.delete(self._flow(elicitation))
            return _page("Nothing was linked", f"<p>{title} did not authorize the app. You can close this page.</p>")
        answer = await self.http.request(
            "POST",
            self.upstream.token_url,
            idempotent=False,
            data={
                "client_id": self.upstream.client_id,
                "client_secret": self.upstream.client_secret,
                "code": code,
                "redirect_uri": self.url + "/callback",
                "code_verifier": flow["upstream_verifier"],
            },
        )
        try:
            tokens = tokens_from(answer.body)
        except RefreshRefused as refused:
            await self.redis.delete(self._flow(elicitation))
            return _page(
                "Nothing was linked", f"<p>{title} refused the exchange ({html.escape(str(refused))}).</p>", 502
            )
        account = await self.account_of(tokens.access)
        linked = Tokens(tokens.access, tokens.expires_at, tokens.refresh, tokens.refresh_expires_at, account)
        await self.vault.link(flow["principal"], linked)
        await self._finished(elicitation, flow)
        return _page(
            "Linked",
            f"<p>{html.escape(self.server)} now acts as <strong>{html.escape(account)}</strong> at {title} for you. "
            "Go back to your client and try again. To undo it, ask your client to call the <code>disconnect</code> "
            f"tool, or revoke the app in your {title} settings.</p>",
        )

    # --- the steps' shared checks ------------------------------------------------------------------------------
    @staticmethod
    def _state(elicitation: str) -> str:
        return f"{elicitation}.{secrets.token_urlsafe(24)}"

    async def _step(
        self, request: Request, value: str, field: str, elicitation: str | None = None
    ) -> tuple[str, dict[str, str]] | Response:
        """The flow a step belongs to, when `value` is its `field` (used here, once) and the browser is the one
        that opened the link; else the page saying why not."""
        elicitation = elicitation if elicitation is not None else value.split(".", 1)[0]
        if not value or len(value) > 200 or len(elicitation) > 64:
            return self._expired()
        flow_key = self._flow(elicitation)
        if not await self._take(keys=[flow_key], args=[field, value]):
            return self._expired()
        raw = await self.redis.hgetall(flow_key)
        flow = {_text(k): _text(v) for k, v in raw.items()}
        cookie = request.cookies.get(self.cookie, "")
        if not cookie or not hmac.compare_digest(cookie, flow.get("browser", "")):
            await self.redis.delete(flow_key)
            return _page("Another browser", "<p>This step was not made in the browser that opened the link. "
                         "Nothing was linked; ask your client again.</p>", 403)  # fmt: skip
        return elicitation, flow

    async def _finished(self, elicitation: str, flow: dict[str, str]) -> None:
        await self.redis.delete(self._flow(elicitation), f"{self._keys}pending:{flow['principal']}\0{flow['client']}")

    def _expired(self) -> Response:
        return _page(
            "This link has expired",
            "<p>It was used already, or is older than ten minutes. Ask your client again for a new one.</p>",
            410,
        )


async def _form(request: Request) -> dict[str, str] | None:
    """A urlencoded form of at most MAX_FORM_BYTES, or None."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    return dict(parse_qsl(body.decode("utf-8", "replace")))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
