"""`/mcp`: the stateless Streamable HTTP endpoint every focused server shares.

One POST carries one JSON-RPC message and gets one JSON answer. The process's cap on
requests in flight comes first (a fast 503, `apps.kit.http.shedding`; usually sent by the protocol before the app
is reached), then CORS, then the HTTP checks
(`apps.kit.http.gate`) and the request itself (`apps.kit.call.pipeline`). Whatever is refused on
the way leaves as its `Refusal`: a status, a JSON body and, for refusals before
dispatch, a counted reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from starlette.types import Receive, Scope, Send

from apps.kit.call.asking import Answers, Asker, asking, can_ask, session_for
from apps.kit.call.pipeline import CallPipeline
from apps.kit.call.policy import Policies
from apps.kit.call.ratelimit.memory import Limiter
from apps.kit.call.sdk import Protocol
from apps.kit.declare.config import KitSettings
from apps.kit.declare.tools import ToolSpec
from apps.kit.http.gate import HttpGate
from apps.kit.http.shedding import Shedder
from apps.kit.identity.tokens import JwtVerifier
from apps.kit.observe.audit import AuditTrail
from apps.kit.observe.metrics import KitMetrics
from apps.kit.wire.encoding import dumps
from apps.kit.wire.outcomes import RefusalReason
from apps.kit.wire.refusal import Refusal, refused


class McpEndpoint:
    """The ASGI app mounted at `/mcp`."""

    def __init__(
        self,
        *,
        name: str,
        version: str,
        instructions: str | None,
        settings: KitSettings,
        specs: Mapping[str, ToolSpec[Any]],
        verifier: JwtVerifier,
        limiter: Limiter,
        metrics: KitMetrics,
        state: Callable[[], Any],
        resource_metadata_url: str,
        answers: Answers,
        policies: Policies,
        audit: AuditTrail,
    ):
        self.metrics, self.answers = metrics, answers
        self.shedder = Shedder(
            settings.mcp_max_concurrent_requests,
            metrics.rejected_requests.labels(reason=RefusalReason.BUSY.value).inc,
        )
        server_scopes = frozenset(scope for spec in specs.values() for scope in spec.scopes)
        self.gate = HttpGate(settings, verifier, server_scopes, resource_metadata_url, lambda: self.shedder.crowded)
        self.calls = CallPipeline(
            Protocol(name, version, instructions), specs, self.gate.step_up, limiter, metrics, state, policies, audit
        )
        self.audit = audit

    @property
    def bodies(self) -> Any:
        """The request bodies in flight (their budgets), for tests and diagnostics."""
        return self.gate.bodies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        origin = next((v for k, v in headers if k == "origin"), None)
        cors = self.gate.cors_headers(origin)
        try:
            with self.shedder.slot():
                await self._serve(scope, receive, send, headers, origin, cors)
        except Refusal as refusal:
            if refusal.reason:
                self.metrics.rejected_requests.labels(reason=refusal.reason.value).inc()
            if refusal.audit is not None:  # the HTTP gate's (the pipeline records its own, with who asked)
                self.audit.record(
                    who=None, allowed=False, decided_by="gate", outcome=refusal.audit, status_code=refusal.status
                )
            body = dumps(refusal.body) if refusal.body is not None else None
            await _respond(send, refusal.status, body, [*refusal.headers, *(cors or [])])

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: list[tuple[str, str]],
        origin: str | None,
        cors: list[tuple[bytes, bytes]] | None,
    ) -> None:
        if origin is not None and cors is None:
            raise refused(403, RefusalReason.ORIGIN_NOT_ALLOWED, "Forbidden: origin not allowed")
        if scope.get("method") == "OPTIONS" and cors is not None:
            await _respond(send, 204, None, [*cors, (b"access-control-max-age", b"600")])
            return
        extra: list[tuple[bytes, bytes]] = []
        async with self.gate.admit(scope.get("method"), headers, receive) as request:
            if request.answer is not None:  # the person's answer to a question: to the call waiting for it
                answer = request.answer
                await self.answers.deliver(answer["id"], request.principal.rate_key, answer["result"])
                status, body = 202, None
            elif request.message is None:  # a notification or another response: nothing to answer
                status, body = 202, None
            else:
                message = request.message
                asker = None
                if message["method"] == "tools/call" and can_ask(headers):
                    asker = Asker(send, self.answers, request.principal.rate_key, cors or [])
                try:
                    with asking(asker):
                        reply = await self.calls.serve(request, message)
                except Refusal as refusal:
                    if asker is None or not asker.started:
                        raise
                    reply_message = refusal.body if isinstance(refusal.body, dict) else {"jsonrpc": "2.0"}
                    await asker.event(reply_message)  # the stream is open: the refusal travels on it
                    await send({"type": "http.response.body", "body": b""})
                    return
                if asker is not None and asker.started:  # the answer is the stream's last event
                    await asker.event(reply.message)
                    await send({"type": "http.response.body", "body": b""})
                    return
                if message["method"] == "initialize":
                    session = session_for((message.get("params") or {}).get("capabilities"))
                    extra = [(b"mcp-session-id", session.encode())] if session else []
                status, body = reply.status, dumps(reply.message)
        await _respond(send, status, body, [*(cors or []), *extra])


async def _respond(send: Send, status: int, body: bytes | None, headers: list[tuple[bytes, bytes]]) -> None:
    response_headers = [(b"content-length", str(len(body or b"")).encode()), *headers]
    if body:
        response_headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body or b""})
