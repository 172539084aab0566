"""How a focused server declares a tool: a strict argument model, its scopes, honest hints, a handler.

The kit turns each declaration into one MCP tool definition, built once at start-up:
its input schema is the model's schema, so what `tools/list` advertises is exactly
what is enforced (`apps.kit.call.running` validates the arguments once per call).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, get_type_hints

from pydantic import BaseModel, ConfigDict

from apps.kit.declare.manifest import DIGEST_META, SCOPES_META, tool_digest
from apps.kit.declare.policy import On

StateT = TypeVar("StateT")


class ToolArgs(BaseModel):
    """Base for tool argument models: strict types, unknown fields refused, finite numbers only."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class CallerError(Exception):
    """The request was well-formed but cannot be served (unknown table, bad key): the caller's
    mistake, reported as a tool error and not counted against the server's availability."""


class ServerError(Exception):
    """The server could not serve a valid call (a dependency is down, a timeout): reported to the
    caller with this message, and counted against the server's availability."""


class ConnectRequired(Exception):
    """The person must first go to `url`, out of band, before this call can be served: link an upstream account
    (the server then acts as them), or anything else that must not pass through the client or the model. Answered
    as MCP URL-mode elicitation (2025-11-25: JSON-RPC error -32042 with the elicitation) to a client that declared
    it; to any other, as a tool error that tells the person where to go. Neither the caller's fault nor the
    server's: the call is counted `connect_required`."""

    def __init__(self, url: str, message: str, elicitation_id: str):
        super().__init__(message)
        self.url, self.message, self.elicitation_id = url, message, elicitation_id


class Overloaded(ServerError):
    """More work than can be served in time (see `apps.kit.call.admission`): a clear, retryable refusal."""

    def __init__(self, what: str, retry_after: float):
        self.retry_after = max(1, math.ceil(retry_after))
        super().__init__(f"{what} is busy; retry after {self.retry_after} s")


@dataclass(frozen=True)
class ToolHints:
    """MCP tool annotations, declared honestly per tool (the spec's defaults assume the worst)."""

    read_only: bool
    open_world: bool
    destructive: bool = False  # meaningful only when not read-only
    idempotent: bool = False  # meaningful only when not read-only

    def annotations(self) -> dict[str, bool]:
        hints = {"readOnlyHint": self.read_only, "openWorldHint": self.open_world}
        if not self.read_only:
            hints |= {"destructiveHint": self.destructive, "idempotentHint": self.idempotent}
        return hints


Handler = Callable[[Any, StateT], Awaitable[Any]]


@dataclass(frozen=True)
class ToolSpec(Generic[StateT]):
    name: str
    description: str
    args: type[ToolArgs]
    scopes: frozenset[str]
    handler: Handler[StateT]
    hints: ToolHints
    acts_on: On | None = field(default=None, compare=False)  # the resource its policies see (`declare.policy`)
    definition: dict[str, Any] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        definition: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.args.model_json_schema(by_alias=True),
            "annotations": self.hints.annotations(),
        }
        definition["_meta"] = {SCOPES_META: sorted(self.scopes)}  # who may call it: pinned with the rest
        definition["_meta"][DIGEST_META] = tool_digest(definition)  # what a client can pin this tool to
        object.__setattr__(self, "definition", definition)

    def missing_scopes(self, granted: frozenset[str]) -> list[str]:
        return sorted(self.scopes - granted)


def spec_from_handler(
    handler: Handler[Any], scopes: set[str] | frozenset[str], hints: ToolHints, acts_on: On | None = None
) -> ToolSpec[Any]:
    """Read the argument model from the handler's first parameter annotation."""
    params = list(inspect.signature(handler).parameters)
    type_hints = get_type_hints(handler)
    args_model = type_hints.get(params[0]) if params else None
    if not (isinstance(args_model, type) and issubclass(args_model, ToolArgs)):
        raise TypeError(f"tool {handler.__name__}: first parameter must be annotated with a ToolArgs model")
    if not scopes:
        raise ValueError(f"tool {handler.__name__}: declare at least one scope")
    description = inspect.getdoc(handler) or handler.__name__
    if acts_on is not None and (unknown := set(acts_on.fields) - set(args_model.model_fields)):
        raise ValueError(f"tool {handler.__name__}: acts_on names arguments it does not have: {sorted(unknown)}")
    return ToolSpec(handler.__name__, description, args_model, frozenset(scopes), handler, hints, acts_on)


@dataclass(frozen=True)
class WithMeta:
    """A tool's answer and its MCP `_meta` (facts about the answer for the client, e.g. what to trust)."""

    value: Any
    meta: dict[str, Any]
