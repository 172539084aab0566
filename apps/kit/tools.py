"""How a focused server declares a tool: a strict argument model, its scopes, a handler.

The kit turns each declaration into an MCP SDK tool whose input schema is the
model's schema, so what `tools/list` advertises is exactly what is enforced.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, get_type_hints

from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.tools.base import Tool
from mcp.server.mcpserver.utilities.func_metadata import ArgModelBase, FuncMetadata
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import ConfigDict, ValidationError

StateT = TypeVar("StateT")


class ToolArgs(ArgModelBase):
    """Base for tool argument models: strict types, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)


CALLER_ERROR_META = "io.mcpfleet/caller-error"


class CallerError(ToolError):
    """The request was well-formed but cannot be served (unknown table, bad key): the caller's
    mistake, reported as a tool error and not counted against the server's availability."""


Handler = Callable[[Any, StateT], Awaitable[Any]]


@dataclass(frozen=True)
class ToolSpec(Generic[StateT]):
    name: str
    description: str
    args: type[ToolArgs]
    scopes: frozenset[str]
    handler: Handler[StateT]
    read_only: bool

    def missing_scopes(self, granted: frozenset[str]) -> list[str]:
        return sorted(self.scopes - granted)

    def validation_error(self, arguments: dict[str, Any]) -> str | None:
        """A message naming each bad field (never its value), or None when the arguments are valid."""
        try:
            self.args.model_validate(arguments)
        except ValidationError as error:
            problems = [
                f"{'.'.join(str(p) for p in err['loc']) or '(arguments)'}: {err['msg']}"
                for err in error.errors(include_input=False, include_url=False)
            ]
            return f"Invalid arguments for tool '{self.name}': " + "; ".join(problems)
        return None


def spec_from_handler(handler: Handler[Any], scopes: set[str] | frozenset[str], read_only: bool) -> ToolSpec[Any]:
    """Read the argument model from the handler's first parameter annotation."""
    params = list(inspect.signature(handler).parameters)
    hints = get_type_hints(handler)
    args_model = hints.get(params[0]) if params else None
    if not (isinstance(args_model, type) and issubclass(args_model, ToolArgs)):
        raise TypeError(f"tool {handler.__name__}: first parameter must be annotated with a ToolArgs model")
    if not scopes:
        raise ValueError(f"tool {handler.__name__}: declare at least one scope")
    description = inspect.getdoc(handler) or handler.__name__
    return ToolSpec(handler.__name__, description, args_model, frozenset(scopes), handler, read_only)


def to_result(value: Any) -> CallToolResult:
    """JSON-safe handler output as both text and structured content."""
    structured = value if isinstance(value, dict) else {"result": value}
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(structured, separators=(",", ":")))],
        structured_content=structured,
    )


def sdk_tool(spec: ToolSpec[StateT], state: Callable[[], StateT]) -> Tool:
    """An SDK `Tool` whose arguments are validated by the spec's strict model."""

    async def run(**fields: Any) -> CallToolResult:
        try:
            return to_result(await spec.handler(spec.args.model_construct(**fields), state()))
        except CallerError as error:
            return CallToolResult(
                content=[TextContent(type="text", text=str(error))], is_error=True, _meta={CALLER_ERROR_META: True}
            )

    return Tool(
        fn=run,
        name=spec.name,
        description=spec.description,
        parameters=spec.args.model_json_schema(by_alias=True),
        fn_metadata=FuncMetadata(arg_model=spec.args),
        is_async=True,
        context_kwarg=None,
        annotations=ToolAnnotations(read_only_hint=spec.read_only, destructive_hint=False),
    )
