"""The per-message policy every tool call passes: scopes, validation, metrics, one log line.

Runs as an MCP SDK `ServerMiddleware`, inside the SDK's OpenTelemetry span, so
the log line carries the span's trace id and a refused call never reaches the
handler.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, ListToolsResult, TextContent

from apps.kit.auth import Principal, principal_of
from apps.kit.logs import log_event
from apps.kit.metrics import KitMetrics
from apps.kit.tools import CALLER_ERROR_META, ToolSpec

FORBIDDEN = -32003  # implementation-defined JSON-RPC server error: caller lacks a scope


def input_digest(arguments: Any) -> str:
    """SHA-256 of the canonical JSON arguments: lets two log lines be matched without logging data."""
    canonical = json.dumps(arguments, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def current_principal() -> Principal:
    token = get_access_token()
    if token is None:  # the transport requires auth; this is defence in depth
        raise MCPError(FORBIDDEN, "Forbidden: no authenticated principal")
    return principal_of(token)


class ToolGuard:
    """`ServerMiddleware` enforcing per-tool scopes and strict arguments, and observing every call."""

    def __init__(self, specs: Mapping[str, ToolSpec[Any]], metrics: KitMetrics):
        self.specs = specs
        self.metrics = metrics
        metrics.declare_tools(list(specs))

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/list":
            return self._visible_tools(await call_next(ctx), current_principal())
        if ctx.method == "tools/call":
            return await self._call_tool(ctx, call_next)
        return await call_next(ctx)

    def _visible_tools(self, result: HandlerResult, principal: Principal) -> HandlerResult:
        """Show a caller only the tools its scopes allow."""

        def allowed(name: str | None) -> bool:
            spec = self.specs.get(name or "")
            return spec is not None and not spec.missing_scopes(principal.scopes)

        if isinstance(result, ListToolsResult):
            return result.model_copy(update={"tools": [t for t in result.tools if allowed(t.name)]})
        if isinstance(result, dict) and isinstance(result.get("tools"), list):
            return {**result, "tools": [t for t in result["tools"] if allowed(t.get("name"))]}
        return result

    async def _call_tool(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        params = ctx.params or {}
        name = params.get("name") if isinstance(params.get("name"), str) else None
        arguments = params.get("arguments") or {}
        principal = current_principal()
        spec = self.specs.get(name or "")
        started = time.perf_counter()
        outcome = "internal_error"
        self.metrics.inflight.inc()
        try:
            if spec is None:
                outcome = "unknown_tool"
                return await call_next(ctx)
            missing = spec.missing_scopes(principal.scopes)
            if missing:
                outcome = "forbidden"
                self.metrics.authz_denials.labels(gen_ai_tool_name=spec.name).inc()
                raise MCPError(FORBIDDEN, f"Forbidden: tool '{spec.name}' requires scope {' '.join(missing)}")
            problem = spec.validation_error(arguments) if isinstance(arguments, dict) else "arguments must be an object"
            if problem is not None:
                outcome = "invalid_params"
                return CallToolResult(content=[TextContent(type="text", text=problem)], is_error=True)
            result = await call_next(ctx)
            outcome = _outcome(result)
            return result
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.inflight.dec()
            tool_label = spec.name if spec else "_unknown"
            self.metrics.operation_duration.labels(
                mcp_method_name="tools/call", gen_ai_tool_name=tool_label, outcome=outcome
            ).observe(elapsed)
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


def _outcome(result: HandlerResult) -> str:
    """ok, rejected (the caller's mistake, see `CallerError`) or error (ours)."""
    if isinstance(result, CallToolResult):
        is_error, meta = bool(result.is_error), result.meta or {}
    elif isinstance(result, dict):
        is_error, meta = result.get("isError") is True, result.get("_meta") or {}
    else:
        return "ok"
    if not is_error:
        return "ok"
    return "rejected" if meta.get(CALLER_ERROR_META) else "error"
