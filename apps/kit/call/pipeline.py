"""One JSON-RPC request, served: a tool call reads top to bottom here.

Every request gets one server span. A `tools/call` then meets, in order: its tool
(looked up once), the per-principal rate limit (429), the tool's scopes (403 with a
step-up challenge), and the SDK's kernel, which checks the params for the client's
protocol era, runs the tool (validation once, the handler, the outcome classified
in `ToolSpec.call`) and frames the reply. `observed` owns what every call leaves
behind: the in-flight gauge, the duration histogram by outcome, the span's status
and the one log line. Anything else (initialize, ping, tools/list, discovery) is
the kernel's alone.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode

from apps.kit.call.asking import can_send_to_url
from apps.kit.call.policy import Decision, Policies
from apps.kit.call.ratelimit.memory import Limiter
from apps.kit.call.running import CallResult, run_tool
from apps.kit.call.sdk import MODERN_PROTOCOL_VERSIONS as MODERN_VERSIONS
from apps.kit.call.sdk import Protocol, Reply, Served, tool_error
from apps.kit.declare.tools import ToolSpec
from apps.kit.identity.tokens import Principal
from apps.kit.observe.audit import AuditTrail, Who
from apps.kit.observe.logs import bounded, log_event
from apps.kit.observe.metrics import KitMetrics
from apps.kit.wire.encoding import dumps
from apps.kit.wire.jsonrpc import FORBIDDEN, INTERNAL_ERROR, INVALID_PARAMS, OVERLOADED, RATE_LIMITED, error_message
from apps.kit.wire.outcomes import CallOutcome
from apps.kit.wire.refusal import Refusal

Headers = list[tuple[str, str]]
StepUp = Callable[[frozenset[str]], bytes]  # the `WWW-Authenticate` challenge for scopes a call lacks


@dataclass(frozen=True)
class Admitted:
    """A request that passed every HTTP check: who sent it, and the JSON-RPC request to answer
    (None for a notification or a response, which a stateless server acknowledges with 202)."""

    principal: Principal
    message: dict[str, Any] | None
    version: str | None
    headers: Headers
    answer: dict[str, Any] | None = None  # a client's answer to a question this server asked (apps.kit.call.asking)


_PRINCIPAL: ContextVar[Principal] = ContextVar("mcpfleet_principal")


def current_principal() -> Principal:
    """Who the tool call being served speaks for (for a server's own audit events and per-caller bounds)."""
    return _PRINCIPAL.get()


def input_digest(arguments: Any) -> str:
    """SHA-256 of the canonical JSON arguments: lets two log lines be matched without logging data."""
    return hashlib.sha256(dumps(arguments, sort_keys=True, default=str)).hexdigest()


@dataclass
class Observation:
    """What the call came to; `observed` records it however the call ends."""

    outcome: CallOutcome = CallOutcome.INTERNAL_ERROR
    reason: str | None = None  # what the caller was told, when it was not OK
    decision: Decision | None = None  # what the policies said (None: the call never reached them)


class CallPipeline:
    def __init__(
        self,
        protocol: Protocol,
        specs: Mapping[str, ToolSpec[Any]],
        step_up: StepUp,
        limiter: Limiter,
        metrics: KitMetrics,
        state: Callable[[], Any],
        policies: Policies,
        audit: AuditTrail,
    ):
        self.protocol, self.specs, self.step_up, self.limiter, self.metrics = protocol, specs, step_up, limiter, metrics
        self.state, self.policies, self.audit = state, policies, audit
        self._tracer = trace.get_tracer("mcpfleet.kit")
        metrics.declare_tools(list(specs))

    async def serve(self, request: Admitted, message: dict[str, Any]) -> Reply:
        """One JSON-RPC request in one server span."""
        method: str = message["method"]
        params = message.get("params") or {}
        name = params.get("name")
        spec = self.specs.get(name) if method == "tools/call" and isinstance(name, str) else None
        attributes: dict[str, Any] = {
            "mcp.method.name": bounded(method, 64),
            "jsonrpc.request.id": bounded(str(message["id"]), 64),
        }
        if request.version:
            attributes["mcp.protocol.version"] = request.version
        if method == "tools/call":
            attributes["gen_ai.operation.name"] = "execute_tool"
            attributes["gen_ai.tool.name"] = spec.name if spec else "_unknown"
        with self._tracer.start_as_current_span(
            f"tools/call {spec.name}" if spec else bounded(method, 64),
            kind=SpanKind.SERVER,
            attributes=attributes,
            context=_parent_context(params, request.headers),
            record_exception=False,  # refusals (403, 429) leave as responses, not as span errors
            set_status_on_exception=False,
        ) as span:
            served = Served(lambda: self._listed(request.principal))
            if method != "tools/call":
                return await self.protocol.answer(message, request.version, request.headers, served)
            return await self._tool_call(request, message, spec, span, served)

    async def _tool_call(
        self, request: Admitted, message: dict[str, Any], spec: ToolSpec[Any] | None, span: trace.Span, served: Served
    ) -> Reply:
        principal = request.principal
        await self._rate_limit(principal, message["id"], spec.name if spec else "_unknown")
        arguments = (message.get("params") or {}).get("arguments") or {}
        with self._observed(spec, principal, arguments, span) as observation:
            if spec is None:
                observation.outcome = CallOutcome.UNKNOWN_TOOL
                served.run = _unknown_tool(message)
                return await self.protocol.answer(message, request.version, request.headers, served)
            if missing := spec.missing_scopes(principal.scopes):
                observation.outcome = CallOutcome.FORBIDDEN
                self.metrics.authz_denials.labels(gen_ai_tool_name=spec.name).inc()
                text = f"Forbidden: tool '{spec.name}' requires scope {' '.join(missing)}"
                body = error_message(message["id"], FORBIDDEN, text)
                raise Refusal(403, body, None, [(b"www-authenticate", self.step_up(spec.scopes))])

            def decide(arguments: Any) -> Decision:  # once per call, after validation
                observation.decision = self.policies.decide(principal, spec, arguments)
                return observation.decision

            served.run = lambda args: run_tool(spec, args if args is not None else {}, self.state(), decide)
            served.url_elicitation = lambda: can_send_to_url(request.headers) and request.version not in MODERN_VERSIONS
            token = _PRINCIPAL.set(principal)
            try:
                reply = await self.protocol.answer(message, request.version, request.headers, served)
            finally:
                _PRINCIPAL.reset(token)
            if reply.tool_result is not None:
                observation.outcome = reply.tool_result.label
                if observation.decision is not None and not observation.decision.allowed:
                    self.metrics.authz_denials.labels(gen_ai_tool_name=spec.name).inc()
                if observation.outcome is not CallOutcome.OK:
                    observation.reason = _first_text(reply.tool_result.result)
                if reply.tool_result.retry_after is not None:
                    raise _overloaded(message["id"], reply.tool_result)
            elif reply.error_code != INTERNAL_ERROR:
                observation.outcome = CallOutcome.INVALID_PARAMS  # the kernel refused the request: the tool never ran
            return reply

    @contextmanager
    def _observed(
        self, spec: ToolSpec[Any] | None, principal: Principal, arguments: Any, span: trace.Span
    ) -> Iterator[Observation]:
        """In flight while it runs; then its duration by outcome, the span's status and one log line."""
        observation = Observation()
        started = time.perf_counter()
        self.metrics.inflight.inc()
        try:
            yield observation
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.inflight.dec()
            outcome, tool = observation.outcome, spec.name if spec else "_unknown"
            digest = input_digest(arguments)
            self.metrics.operation_duration.labels(
                mcp_method_name="tools/call", gen_ai_tool_name=tool, outcome=outcome.value
            ).observe(elapsed)
            if outcome is not CallOutcome.OK:
                span.set_attribute("error.type", outcome.value)
                if outcome.server_fault:
                    span.set_status(StatusCode.ERROR)
            # A server fault (a dependency down, a crash, overload) or a refused scope is worth a look: warning, with
            # what the caller was told; a caller's own mistake stays at info.
            decision = observation.decision
            self.audit.record(
                who=Who(principal.subject, principal.client_id, tuple(sorted(principal.groups))),
                allowed=decision.allowed if decision is not None else outcome is not CallOutcome.FORBIDDEN,
                decided_by="policy" if decision is not None else _decided_by(outcome),
                outcome=outcome.value,
                tool=tool,
                resource=decision.resource if decision is not None else None,
                activity=("read" if spec.hints.read_only else "update") if spec else "other",
                arguments_sha256=digest,
                policies=decision.policies if decision is not None else (),
            )
            log_event(
                "tool_call",
                logging.WARNING if outcome.server_fault or outcome is CallOutcome.FORBIDDEN else logging.INFO,
                tool=tool,
                subject=principal.subject,
                client_id=principal.client_id,
                status=outcome.value,
                duration_ms=round(elapsed * 1000, 2),
                input_sha256=digest,
                **({"reason": observation.reason} if observation.reason else {}),
            )

    async def _rate_limit(self, principal: Principal, request_id: Any, tool: str) -> None:
        decision = await self.limiter.hit(principal.rate_key)
        if decision.allowed:
            return
        retry_after = max(1, math.ceil(decision.retry_after))
        self.metrics.rate_limited.inc()
        self.audit.record(
            who=Who(principal.subject, principal.client_id, tuple(sorted(principal.groups))),
            allowed=False,
            decided_by="rate_limit",
            outcome="rate_limited",
            tool=tool,
            status_code=429,
        )
        log_event(
            "rate_limited",
            logging.WARNING,
            subject=principal.subject,
            client_id=principal.client_id,
            retry_after_s=retry_after,
        )
        text = f"Too many tool calls; retry after {retry_after} s"
        body = error_message(request_id, RATE_LIMITED, text, {"retryAfter": retry_after})
        raise Refusal(429, body, None, [(b"retry-after", str(retry_after).encode())])

    def _listed(self, principal: Principal) -> list[dict[str, Any]]:
        """Only the tools the caller's scopes allow and some policy could permit it."""
        return [
            spec.definition
            for spec in self.specs.values()
            if spec.scopes <= principal.scopes and self.policies.may_list(principal, spec)
        ]


def _decided_by(outcome: CallOutcome) -> str:
    """Which layer decided a call the policies never saw: its scopes (403), its arguments, or the server."""
    if outcome is CallOutcome.FORBIDDEN:
        return "scope"
    if outcome in (CallOutcome.INVALID_PARAMS, CallOutcome.UNKNOWN_TOOL):
        return "validation"
    return "server"


def _first_text(result: dict[str, Any]) -> str | None:
    content = result.get("content") or [{}]
    text = content[0].get("text") if isinstance(content[0], dict) else None
    return bounded(text, 300) if isinstance(text, str) else None


def _overloaded(request_id: Any, outcome: CallResult) -> Refusal:
    """A call the server could not serve within its admission deadline leaves as HTTP 503 with `Retry-After`, as
    any HTTP client, proxy or ingress understands (one may retry it on another replica); still counted, in the
    duration histogram, as `overloaded`: the server's fault, not the caller's."""
    seconds = outcome.retry_after
    text = outcome.result["content"][0]["text"]
    body = error_message(request_id, OVERLOADED, text, {"retryAfter": seconds})
    return Refusal(503, body, None, [(b"retry-after", str(seconds).encode())])


def _unknown_tool(message: dict[str, Any]) -> Callable[[Any], Any]:
    async def refuse(arguments: Any) -> CallResult:
        name = (message.get("params") or {}).get("name")
        raise tool_error(INVALID_PARAMS, f"Unknown tool: {bounded(str(name), 64)}")

    return refuse


def _parent_context(params: dict[str, Any], headers: list[tuple[str, str]]) -> Any:
    """W3C trace context from the MCP `_meta` (the MCP convention), else from the HTTP headers."""
    meta = params.get("_meta")
    if isinstance(meta, dict) and "traceparent" in meta:
        return propagate.extract({k: v for k, v in meta.items() if isinstance(v, str)})
    if any(k == "traceparent" for k, _ in headers):
        return propagate.extract(dict(headers))
    return None
