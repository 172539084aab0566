"""`/mcp`: the stateless Streamable HTTP endpoint every focused server shares.

One POST carries one JSON-RPC message and gets one JSON answer. Before a message
reaches the SDK's protocol kernel it passes, in order: the process's cap on
requests in flight (503), the `Origin` check (403; the server's own origin and the
allowlist pass), the method (405: a stateless server opens no stream, so GET and
DELETE are refused), exactly one bearer token, verified here (400 for two, 401),
the `Content-Type` (415), `Accept` (406) and `MCP-Protocol-Version` (400) headers,
the body cap (413), a token with no scope of this server (403, before the body is
read), the body read within its budgets and deadline (`apps.kit.intake`: 429, 503,
408), a strict parse (400: no NaN, duplicate keys, deep nesting, lone surrogates)
and the JSON-RPC envelope (400). Each refusal is a 4xx with a JSON
body, counted by reason. A `tools/call` then meets the per-principal rate limit
(429) and its tool's scopes (403 with a step-up challenge), all inside one server
span, and is logged once.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, StatusCode
from starlette.types import Receive, Scope, Send

from apps.kit.auth import AuthFailure, JwtVerifier, Principal
from apps.kit.config import KitSettings
from apps.kit.encoding import dumps
from apps.kit.intake import BodyBudget, BodyReader, busy
from apps.kit.logs import bounded, log_event
from apps.kit.metrics import SERVER_FAULT_OUTCOMES, KitMetrics
from apps.kit.ratelimit import Limiter
from apps.kit.refusal import Refusal, refused
from apps.kit.sdk import (
    INVALID_PARAMS,
    MODERN_PROTOCOL_VERSIONS,
    PARSE_ERROR,
    SUPPORTED_VERSIONS,
    Protocol,
    Reply,
    error_message,
    tool_error,
)
from apps.kit.tools import ToolSpec

MAX_JSON_DEPTH = 64
FORBIDDEN = -32003  # implementation-defined JSON-RPC server error: the caller lacks a scope
RATE_LIMITED = -32029  # implementation-defined: too many calls; retry after `data.retryAfter` seconds
UNSUPPORTED_PROTOCOL_VERSION = -32022
CORS_HEADERS = "authorization, content-type, mcp-protocol-version, mcp-method, mcp-name, last-event-id"
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class CallRecord:
    """The call being served: who asked, and what it came to (set by the tool handler)."""

    principal: Principal
    outcome: str | None = None


_CALL: ContextVar[CallRecord] = ContextVar("mcpfleet_call")


def current_principal() -> Principal:
    """Who the tool call being served speaks for (for a server's own audit events)."""
    return _CALL.get().principal


def input_digest(arguments: Any) -> str:
    """SHA-256 of the canonical JSON arguments: lets two log lines be matched without logging data."""
    return hashlib.sha256(dumps(arguments, sort_keys=True, default=str)).hexdigest()


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError("number out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate key in an object")
    return result


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, finite numbers, unique keys, bounded depth, no lone surrogates."""
    try:
        value = json.loads(
            body.decode("utf-8"), parse_constant=_no_constants, parse_float=_finite, object_pairs_hook=_unique_keys
        )
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise refused(400, "parse_error", f"Parse error: {bounded(str(error), 200)}", PARSE_ERROR) from None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise refused(400, "parse_error", f"Parse error: nested deeper than {MAX_JSON_DEPTH}", PARSE_ERROR)
            children = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in children:
                if isinstance(key, str) and not key.isascii() and _SURROGATE.search(key):
                    raise refused(400, "parse_error", "Parse error: unpaired surrogate in a string", PARSE_ERROR)
                stack.append((child, depth + 1))
        elif isinstance(node, str) and not node.isascii() and _SURROGATE.search(node):
            raise refused(400, "parse_error", "Parse error: unpaired surrogate in a string", PARSE_ERROR)
    return value


def _is_request_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _json_body(message: dict[str, Any]) -> bytes:
    return dumps(message)


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
    ):
        self.specs = specs
        self.verifier = verifier
        self.limiter = limiter
        self.metrics = metrics
        self.state = state
        # The server's own origin (its resource URL's scheme://host[:port]) is always allowed: a page it serves
        # is same-origin, and a rebound name arrives with another origin. Others only when configured.
        self.own_origin = own_origin(settings.resource_url)
        self.allowed_origins = frozenset(settings.mcp_allowed_origins)
        self.max_body_bytes = settings.mcp_max_body_bytes
        self.body_read_seconds = settings.mcp_body_read_seconds
        self.bodies = BodyBudget(settings.body_bytes_in_flight, settings.body_bytes_per_principal)
        self.max_concurrent = settings.mcp_max_concurrent_requests
        self.in_flight = 0
        # A token with none of these scopes could never call a tool: refused before its body is read.
        self.server_scopes = frozenset(scope for spec in specs.values() for scope in spec.scopes)
        self.protocol = Protocol(name, version, instructions, self._list_tools, self._call_tool)
        self._tracer = trace.get_tracer("mcpfleet.kit")
        self._www_no_token = f'Bearer resource_metadata="{resource_metadata_url}"'.encode()
        self._www_invalid = (
            'Bearer error="invalid_token", error_description="The access token is invalid, expired or '
            f'not issued for this server", resource_metadata="{resource_metadata_url}"'
        ).encode()
        self._resource_metadata_url = resource_metadata_url
        metrics.declare_tools(list(specs))

    # --- the request ------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        origin = next((v for k, v in headers if k == "origin"), None)
        cors = self._cors_headers(origin)
        self.in_flight += 1
        try:
            if self.in_flight > self.max_concurrent:
                raise busy(503, "busy", f"Server busy: {self.max_concurrent} requests in flight")
            if origin is not None and cors is None:
                raise refused(403, "origin_not_allowed", "Forbidden: origin not allowed")
            if scope.get("method") == "OPTIONS" and cors is not None:
                await _respond(send, 204, None, [*cors, (b"access-control-max-age", b"600")])
                return
            reply, extra = await self._handle(scope, receive, headers)
        except Refusal as refusal:
            if refusal.reason:
                self.metrics.rejected_requests.labels(reason=refusal.reason).inc()
            body = _json_body(refusal.body) if refusal.body is not None else None
            await _respond(send, refusal.status, body, [*refusal.headers, *(cors or [])])
            return
        finally:
            self.in_flight -= 1
        body = _json_body(reply.message) if reply.message else None
        await _respond(send, reply.status, body, [*extra, *(cors or [])])

    async def _handle(
        self, scope: Scope, receive: Receive, headers: list[tuple[str, str]]
    ) -> tuple[Reply, list[tuple[bytes, bytes]]]:
        if scope.get("method") != "POST":
            refusal = refused(405, "method_not_allowed", "Method Not Allowed: this stateless server takes POST only")
            refusal.headers.append((b"allow", b"POST"))
            raise refusal
        principal = await self._authenticate(headers)
        fields = dict(headers)
        content_type = fields.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            text = "Unsupported Media Type: Content-Type must be application/json"
            raise refused(415, "unsupported_media_type", text)
        accepted = {part.split(";")[0].strip().lower() for part in fields.get("accept", "").split(",")}
        if not accepted & {"application/json", "application/*", "*/*"}:
            raise refused(406, "not_acceptable", "Not Acceptable: the client must accept application/json")
        version = fields.get("mcp-protocol-version")
        if version is not None and version not in SUPPORTED_VERSIONS:
            raise refused(
                400,
                "unsupported_protocol_version",
                f"Bad Request: unsupported MCP-Protocol-Version; supported: {', '.join(SUPPORTED_VERSIONS)}",
                UNSUPPORTED_PROTOCOL_VERSION,
                {"supported": list(SUPPORTED_VERSIONS), "requested": bounded(version, 64)},
            )
        declared = fields.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise refused(413, "body_too_large", f"Request body larger than {self.max_body_bytes} bytes")
        if not principal.scopes & self.server_scopes:
            raise Refusal(
                403,
                error_message(None, FORBIDDEN, "Forbidden: the token carries no scope of this server"),
                "no_scope",
                [(b"www-authenticate", self._step_up(self.server_scopes))],
            )
        reader = BodyReader(self.bodies, principal.rate_key, self.max_body_bytes, self.body_read_seconds)
        try:
            raw = await reader.read(receive, int(declared) if declared.isdigit() else None)
            message = self._envelope(parse_json(raw), version)
            del raw
            if message is None:  # a notification or a response: nothing to answer on a stateless server
                return Reply(202, {}), []
            return await self._dispatch(message, version, headers, principal)
        finally:
            reader.release()

    async def _authenticate(self, headers: list[tuple[str, str]]) -> Principal:
        values = [v for k, v in headers if k == "authorization"]
        if len(values) > 1:
            raise refused(400, "duplicate_authorization", "Bad Request: more than one Authorization header")
        scheme, _, token = (values[0] if values else "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.verifier.record_failure("missing_token")
            # RFC 6750 §3.1: a request with no credentials gets no error code, only the challenge.
            raise Refusal(401, {"error": "unauthorized"}, None, [(b"www-authenticate", self._www_no_token)])
        try:
            return await self.verifier.authenticate(token.strip())
        except AuthFailure:
            raise Refusal(
                401,
                {"error": "invalid_token", "error_description": "The access token is invalid"},
                None,
                [(b"www-authenticate", self._www_invalid)],
            ) from None

    @staticmethod
    def _envelope(message: Any, version: str | None) -> dict[str, Any] | None:
        """The JSON-RPC request to answer, None for a notification or a response, or a 400."""
        if isinstance(message, list):
            raise refused(400, "invalid_request", "Invalid Request: batches are not supported; send one message")
        if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
            raise refused(400, "invalid_request", "Invalid Request: expected one JSON-RPC 2.0 object")
        method = message.get("method")
        if method is None and "id" in message and ("result" in message or "error" in message):
            if version in MODERN_PROTOCOL_VERSIONS:
                raise refused(400, "invalid_request", "Invalid Request: clients do not send responses")
            return None  # a response to a server request this stateless server never sent
        if not isinstance(method, str) or not method:
            raise refused(400, "invalid_request", "Invalid Request: method must be a non-empty string")
        params = message.get("params")
        if params is not None and not isinstance(params, dict):
            raise refused(400, "invalid_request", "Invalid Request: params must be an object")
        if "id" not in message:
            return None  # a notification: acknowledged with 202
        if not _is_request_id(message["id"]):
            raise refused(400, "invalid_request", "Invalid Request: id must be a string or an integer")
        return message

    # --- one JSON-RPC request, in one span ----------------------------------------------------
    async def _dispatch(
        self, message: dict[str, Any], version: str | None, headers: list[tuple[str, str]], principal: Principal
    ) -> tuple[Reply, list[tuple[bytes, bytes]]]:
        method: str = message["method"]
        params = message.get("params") or {}
        name = params.get("name")
        spec = self.specs.get(name) if method == "tools/call" and isinstance(name, str) else None
        span_name = f"tools/call {spec.name}" if spec else bounded(method, 64)
        attributes: dict[str, Any] = {
            "mcp.method.name": bounded(method, 64),
            "jsonrpc.request.id": bounded(str(message["id"]), 64),
        }
        if version:
            attributes["mcp.protocol.version"] = version
        if method == "tools/call":
            attributes["gen_ai.operation.name"] = "execute_tool"
            attributes["gen_ai.tool.name"] = spec.name if spec else "_unknown"
        with self._tracer.start_as_current_span(
            span_name,
            kind=SpanKind.SERVER,
            attributes=attributes,
            context=_parent_context(params, headers),
            record_exception=False,  # refusals (403, 429) leave as responses, not as span errors
            set_status_on_exception=False,
        ) as span:
            if method != "tools/call":
                record = CallRecord(principal)
                token = _CALL.set(record)
                try:
                    return await self.protocol.answer(message, version, headers), []
                finally:
                    _CALL.reset(token)
            return await self._tool_call(message, version, headers, principal, spec, span)

    async def _tool_call(
        self,
        message: dict[str, Any],
        version: str | None,
        headers: list[tuple[str, str]],
        principal: Principal,
        spec: ToolSpec[Any] | None,
        span: trace.Span,
    ) -> tuple[Reply, list[tuple[bytes, bytes]]]:
        await self._rate_limit(principal, message["id"])
        arguments = (message.get("params") or {}).get("arguments") or {}
        started = time.perf_counter()
        record = CallRecord(principal, "internal_error")
        self.metrics.inflight.inc()
        extra: list[tuple[bytes, bytes]] = []
        try:
            if spec is None:
                record.outcome = "unknown_tool"
            elif missing := spec.missing_scopes(principal.scopes):
                record.outcome = "forbidden"
                self.metrics.authz_denials.labels(gen_ai_tool_name=spec.name).inc()
                text = f"Forbidden: tool '{spec.name}' requires scope {' '.join(missing)}"
                raise Refusal(
                    403,
                    error_message(message["id"], FORBIDDEN, text),
                    None,
                    [(b"www-authenticate", self._step_up(spec.scopes))],
                )
            token = _CALL.set(record)
            try:
                reply = await self.protocol.answer(message, version, headers)
            finally:
                _CALL.reset(token)
            if reply.error_code == INVALID_PARAMS and record.outcome == "internal_error":
                record.outcome = "invalid_params"  # the kernel refused the params before the handler ran
            return reply, extra
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.inflight.dec()
            outcome = record.outcome or "internal_error"
            tool_label = spec.name if spec else "_unknown"
            self.metrics.operation_duration.labels(
                mcp_method_name="tools/call", gen_ai_tool_name=tool_label, outcome=outcome
            ).observe(elapsed)
            if outcome != "ok":
                span.set_attribute("error.type", outcome)
                if outcome in SERVER_FAULT_OUTCOMES:
                    span.set_status(StatusCode.ERROR)
            log_event(
                "tool_call",
                logging.WARNING if outcome in ("forbidden", "internal_error") else logging.INFO,
                tool=tool_label,
                subject=principal.subject,
                client_id=principal.client_id,
                status=outcome,
                duration_ms=round(elapsed * 1000, 2),
                input_sha256=input_digest(arguments),
            )

    async def _rate_limit(self, principal: Principal, request_id: Any) -> None:
        decision = await self.limiter.hit(principal.rate_key)
        if decision.allowed:
            return
        retry_after = max(1, math.ceil(decision.retry_after))
        self.metrics.rate_limited.inc()
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

    def _step_up(self, scopes: frozenset[str]) -> bytes:
        """RFC 6750 §3.1 / MCP step-up: every scope this operation needs, and where to learn more."""
        return (
            f'Bearer error="insufficient_scope", scope="{" ".join(sorted(scopes))}", '
            f'resource_metadata="{self._resource_metadata_url}"'
        ).encode()

    # --- the SDK kernel's handlers --------------------------------------------------------------
    def _list_tools(self) -> list[dict[str, Any]]:
        """Only the tools the caller's scopes allow."""
        granted = _CALL.get().principal.scopes
        return [spec.definition for spec in self.specs.values() if spec.scopes <= granted]

    async def _call_tool(self, name: str, arguments: Any) -> dict[str, Any]:
        record = _CALL.get()
        spec = self.specs.get(name)
        if spec is None:
            record.outcome = "unknown_tool"
            raise tool_error(INVALID_PARAMS, f"Unknown tool: {bounded(name, 64)}")
        outcome = await spec.call(arguments if arguments is not None else {}, self.state())
        record.outcome = outcome.label
        return outcome.result

    def _cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]] | None:
        """The CORS headers for an allowed origin ([] for our own: same-origin needs none), None if refused."""
        if origin is not None and origin.lower() == self.own_origin:
            return []
        if origin is None or origin.lower() not in self.allowed_origins:
            return None
        return [
            (b"access-control-allow-origin", origin.encode("latin-1")),
            (b"access-control-allow-methods", b"POST, OPTIONS"),
            (b"access-control-allow-headers", CORS_HEADERS.encode()),
            (b"access-control-expose-headers", b"www-authenticate, retry-after"),
            (b"vary", b"origin"),
        ]


def own_origin(resource_url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-cased, with the default port left out (as browsers send it)."""
    parts = urlsplit(resource_url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname}{port}".lower()


def _parent_context(params: dict[str, Any], headers: list[tuple[str, str]]) -> Any:
    """W3C trace context from the MCP `_meta` (the MCP convention), else from the HTTP headers."""
    meta = params.get("_meta")
    if isinstance(meta, dict) and "traceparent" in meta:
        return propagate.extract({k: v for k, v in meta.items() if isinstance(v, str)})
    if any(k == "traceparent" for k, _ in headers):
        return propagate.extract(dict(headers))
    return None


async def _respond(send: Send, status: int, body: bytes | None, headers: list[tuple[bytes, bytes]]) -> None:
    response_headers = [(b"content-length", str(len(body or b"")).encode()), *headers]
    if body:
        response_headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": body or b""})
