"""Running one declared tool: its arguments validated once, its handler run, and what happened classified.

What a call came to is a `CallResult`: the `outcome` label its metrics and log line carry, and the MCP
`CallToolResult` for the wire. Whose fault a failure was decides the label: `CallerError` is the caller's
(`rejected`), `ServerError` and `Overloaded` the server's, anything else a crash whose text stays in our logs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from apps.kit.call.policy import Decision
from apps.kit.declare.tools import CallerError, ConnectRequired, Overloaded, ServerError, ToolSpec, WithMeta
from apps.kit.observe.logs import bounded, log_event
from apps.kit.wire.encoding import dumps
from apps.kit.wire.outcomes import CallOutcome

StateT = TypeVar("StateT")
MAX_KEY_CHARS = 64  # argument keys are the caller's text: bounded before they reach an error message


@dataclass(frozen=True)
class CallResult:
    """What a call came to: the `outcome` label, and the MCP `CallToolResult` for the wire."""

    label: CallOutcome
    result: dict[str, Any]
    retry_after: int | None = None  # seconds, when the server was too busy to serve it (`Overloaded`)
    connect: ConnectRequired | None = None  # where the person must go first (URL-mode elicitation)


def validation_error(spec: ToolSpec[Any], error: ValidationError) -> str:
    """A message naming each bad field (never its value)."""
    problems = [
        f"{'.'.join(bounded(str(p), MAX_KEY_CHARS) for p in err['loc']) or '(arguments)'}: {err['msg']}"
        for err in error.errors(include_input=False, include_url=False)[:20]
    ]
    return f"Invalid arguments for tool '{spec.name}': " + "; ".join(problems)


async def run_tool(
    spec: ToolSpec[StateT], arguments: Any, state: StateT, decide: Callable[[Any], Decision] | None = None
) -> CallResult:
    """Validate once, ask the policies once (`decide`), run the handler, and classify what happened."""
    if not isinstance(arguments, dict):
        return CallResult(
            CallOutcome.INVALID_PARAMS, error_result(f"Invalid arguments for tool '{spec.name}': not an object")
        )
    try:
        args = spec.args.model_validate(arguments)
    except ValidationError as error:
        return CallResult(CallOutcome.INVALID_PARAMS, error_result(validation_error(spec, error)))
    decision = decide(args) if decide is not None else None
    if decision is not None and not decision.allowed:  # which policy is not said: that is the organisation's
        text = f"Forbidden: no policy permits '{spec.name}' here for you"
        return CallResult(CallOutcome.FORBIDDEN, error_result(text))
    try:
        value = await spec.handler(args, state)
    except CallerError as error:
        return CallResult(CallOutcome.REJECTED, error_result(str(error)))
    except ConnectRequired as needed:  # for a client without URL elicitation: the text says where to go
        text = f"{needed.message} Open {needed.url} in your browser, then try again."
        return CallResult(CallOutcome.CONNECT_REQUIRED, error_result(text), connect=needed)
    except Overloaded as error:
        return CallResult(CallOutcome.OVERLOADED, error_result(str(error)), error.retry_after)
    except ServerError as error:
        return CallResult(CallOutcome.ERROR, error_result(str(error)))  # says what failed: "database unavailable (...)"
    except Exception as error:  # noqa: BLE001 - a crash: its text stays in our logs, never on the wire
        log_event("tool_crashed", logging.ERROR, tool=spec.name, exc_type=type(error).__name__, error=str(error))
        return CallResult(CallOutcome.INTERNAL_ERROR, error_result(f"Error executing tool {spec.name}"))
    return CallResult(CallOutcome.OK, to_result(value))


def to_result(value: Any) -> dict[str, Any]:
    """JSON-safe handler output as both text and structured content (and `_meta`, when the tool gives one)."""
    meta = value.meta if isinstance(value, WithMeta) else None
    value = value.value if isinstance(value, WithMeta) else value
    structured = value if isinstance(value, dict) else {"result": value}
    text = dumps(structured).decode("utf-8", "surrogatepass")
    result = {"content": [{"type": "text", "text": text}], "structuredContent": structured, "isError": False}
    return result | ({"_meta": meta} if meta is not None else {})


def error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}
