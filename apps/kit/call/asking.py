"""Asking the person mid-call (MCP elicitation, form mode), from a stateless server behind several replicas.

A consequential action after untrusted text is confirmed by the person, never by anything the model could pass
back. The model only ever sees tool results; the person answers a form the client shows them. So:

- **Who can be asked.** A stateless server keeps nothing between requests, yet the client declares elicitation
  only in `initialize`. The answer to an `initialize` that declares form elicitation carries an `Mcp-Session-Id`
  ending in `.form`; the client sends it with every later request. It is no credential: a client that claims it
  falsely is asked and never answers, and the action is refused when the wait ends.
- **Asking.** A tool calls `ask_person(message, schema)`. The call's answer turns into a stream
  (`text/event-stream`): first the `elicitation/create` request, with an id of 128 random bits that only that
  stream carries, then, once the person answered, the tool's result.
- **The answer, on any replica.** The client POSTs its answer as a JSON-RPC response, which a load balancer may
  send to another replica. That replica checks the token as for any request and hands the answer over through
  Redis (`<prefix>ask:<id>`, under the app's own ACL prefix), and only while that call waits for an answer from
  the same principal (anything else is dropped, so nobody can park data there). Without Redis (one process) the
  hand-over is in memory.
  (The newer revision's input-required results would let the client repeat the call with the answer instead;
  the clients people use today, the TypeScript SDK's among them, answer elicitation on the call's stream, so
  that is what is served.)
- **Bounded.** A principal may have MAX_PENDING asks waiting per process; each waits at most ASK_SECONDS.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from starlette.types import Send

from apps.kit.wire.encoding import dumps

ASK_ID = re.compile(r"mcpfleet-ask-[0-9a-f]{32}")
FORM_SESSION = ".form"  # the end of a session id handed to a client that declared form elicitation
URL_SESSION = ".url"  # ... that declared URL-mode elicitation (both: ".form.url")
ASK_SECONDS = 120.0
MAX_PENDING = 2
POLL_SECONDS = 0.5  # one blocking pop at a time: under the Redis client's socket timeout
MAX_ANSWER_BYTES = 8 * 1024
# The answer goes to the call only while it waits for that principal's answer (`<id>:open` holds the principal).
DELIVER = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('rpush', KEYS[2], ARGV[2])
redis.call('expire', KEYS[2], 60)
return 1
"""


def session_for(capabilities: Any) -> str | None:
    """The session id for a client's `initialize`: one that says how the client can be asked, or None."""
    elicitation = capabilities.get("elicitation") if isinstance(capabilities, dict) else None
    if not isinstance(elicitation, dict):
        return None
    # An empty elicitation capability means form mode (the 2025-11-25 specification's compatibility rule).
    modes = (FORM_SESSION if not elicitation or "form" in elicitation else "") + (
        URL_SESSION if "url" in elicitation else ""
    )
    return secrets.token_hex(16) + modes if modes else None


def can_send_to_url(headers: list[tuple[str, str]]) -> bool:
    """The client declared URL-mode elicitation: a call may answer that the person must visit a URL first."""
    return dict(headers).get("mcp-session-id", "").endswith(URL_SESSION)


def can_ask(headers: list[tuple[str, str]]) -> bool:
    """The client declared form elicitation and accepts a stream for this request's answer."""
    fields = dict(headers)
    session = fields.get("mcp-session-id", "").removesuffix(URL_SESSION)
    return session.endswith(FORM_SESSION) and "text/event-stream" in fields.get("accept", "")


class Answers:
    """Hands a person's answer from the replica that received it to the one whose call is waiting for it."""

    def __init__(self, redis: Any | None, prefix: str):
        self.redis, self.prefix = redis, f"{prefix}ask:"
        self._waiting: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}  # id -> (principal, its answer)
        self._pending: dict[str, int] = {}
        self.delivered = 0  # answers this process received and handed over
        self._deliver = redis.register_script(DELIVER) if redis is not None else None

    async def deliver(self, ask_id: str, principal: str, answer: dict[str, Any]) -> bool:
        """Hand an answer to the call waiting for it; dropped unless that call is waiting, asked this principal,
        and the answer is small (a form's few fields): nobody can park data here."""
        payload = json.dumps({"principal": principal, "answer": answer})
        if len(payload) > MAX_ANSWER_BYTES:
            return False
        if self.redis is None:
            waiting = self._waiting.get(ask_id)
            if waiting is None or waiting[0] != principal or waiting[1].done():
                return False
            waiting[1].set_result(json.loads(payload))
        else:
            assert self._deliver is not None
            keys = [self.prefix + ask_id + ":open", self.prefix + ask_id]
            if not await self._deliver(keys=keys, args=[principal, payload]):
                return False
        self.delivered += 1
        return True

    def begin(self, principal: str) -> bool:
        """Hold one of the principal's places to wait, or False when it has MAX_PENDING waiting."""
        if self._pending.get(principal, 0) >= MAX_PENDING:
            return False
        self._pending[principal] = self._pending.get(principal, 0) + 1
        return True

    def end(self, principal: str) -> None:
        left = self._pending.pop(principal) - 1
        if left:
            self._pending[principal] = left

    async def open(self, ask_id: str, principal: str, seconds: float) -> None:
        """Before the question is sent: from now on, that principal's answer to it is taken."""
        if self.redis is None:
            self._waiting[ask_id] = (principal, asyncio.get_running_loop().create_future())
        else:
            await self.redis.set(self.prefix + ask_id + ":open", principal, ex=int(seconds) + 1)

    async def wait(self, ask_id: str, seconds: float) -> dict[str, Any] | None:
        """The answer to an open question, or None when none came in time."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while (left := deadline - loop.time()) > 0:
            payload = await self._next(ask_id, min(left, POLL_SECONDS))
            if payload is not None:
                answer = payload.get("answer")
                return answer if isinstance(answer, dict) else None
        return None

    async def close(self, ask_id: str) -> None:
        """No answer to the question is taken any more (answered, timed out, or the client went away)."""
        self._waiting.pop(ask_id, None)
        if self.redis is not None:
            await self.redis.delete(self.prefix + ask_id + ":open", self.prefix + ask_id)

    async def _next(self, ask_id: str, seconds: float) -> dict[str, Any] | None:
        if self.redis is None:
            try:
                result: dict[str, Any] = await asyncio.wait_for(asyncio.shield(self._waiting[ask_id][1]), seconds)
                return result
            except TimeoutError:
                return None
        popped = await self.redis.blpop([self.prefix + ask_id], timeout=max(seconds, 0.01))
        return json.loads(popped[1]) if popped else None


@dataclass
class Asker:
    """One request's way to ask the person: it turns the request's answer into a stream when it first asks."""

    send: Send
    answers: Answers
    principal: str
    headers: list[tuple[bytes, bytes]]
    started: bool = False

    async def ask(self, message: str, schema: dict[str, Any]) -> dict[str, Any] | None:
        if not self.answers.begin(self.principal):
            return None
        try:
            ask_id = f"mcpfleet-ask-{secrets.token_hex(16)}"
            if not self.started:
                self.started = True
                start = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache"), *self.headers]
                await self.send({"type": "http.response.start", "status": 200, "headers": start})
            request = {
                "jsonrpc": "2.0",
                "id": ask_id,
                "method": "elicitation/create",
                "params": {"mode": "form", "message": message, "requestedSchema": schema},
            }
            await self.answers.open(ask_id, self.principal, ASK_SECONDS)  # before the client can see the question
            try:
                await self.event(request)
                return await self.answers.wait(ask_id, ASK_SECONDS)
            finally:
                await self.answers.close(ask_id)
        finally:
            self.answers.end(self.principal)

    async def event(self, message: dict[str, Any]) -> None:
        await self.send({"type": "http.response.body", "body": b"event: message\ndata: " + dumps(message) + b"\n\n",
                         "more_body": True})  # fmt: skip


_ASKER: ContextVar[Asker | None] = ContextVar("mcpfleet_asker", default=None)


@contextmanager
def asking(asker: Asker | None) -> Iterator[None]:
    """While a call is served: how its tools may ask the person (None: they cannot)."""
    token = _ASKER.set(asker)
    try:
        yield
    finally:
        _ASKER.reset(token)


def can_ask_person() -> bool:
    """Whether the current call's client can show the person a form."""
    return _ASKER.get() is not None


async def ask_person(message: str, schema: dict[str, Any]) -> dict[str, Any] | None:
    """Ask the person behind the current call (`message`, a form of `schema`); their answer (`action`: accept,
    decline or cancel, and `content`), or None when they cannot be asked or did not answer in time."""
    asker = _ASKER.get()
    return None if asker is None else await asker.ask(message, schema)
