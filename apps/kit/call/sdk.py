"""The one module that reaches into the MCP SDK's internals.

The kit serves `/mcp` itself (HTTP checks, authentication, limits, one span), and
hands each JSON-RPC request to the SDK's protocol kernel (`ServerRunner` through
`serve_one`), which owns the protocol: the `initialize` handshake and version
negotiation, `ping`, `server/discover`, unknown methods, parameter shapes and
result envelopes for both protocol eras. What the kit takes from the SDK is named
here and pinned by `tests/unit/test_sdk_contract.py`, so an SDK release that moves
any of it breaks this file and that test, not the servers.

The one seam: the kernel checks a `tools/call`'s params for the client's era before any
tool may run, and frames whatever the tool returns, but offers no call that only checks
or only frames. So the kit decides everything before the kernel (tool, rate limit,
scopes) and hands it the decided tool as `Served.run`, which the kernel's `tools/call`
handler calls back exactly once; what it came to comes back in `Served.result`. The
kit changes two SDK objects, each pinned by a test that fails when the SDK moves it:
it empties `Server.middleware` (the SDK's span would nest inside the kit's) and pops
the runner's cached `on_request` after each request (a reference cycle per request).

`tools/call`, every call a server serves, takes the kernel's request path without its
per-request scaffolding: the same era check (`validate_client_request`), typed params
and result framing (`ServerRunner._serialize`), called directly, with no connection,
session, context or shielded teardown built and unwound for a handler that uses none
of them. That scaffolding was 60 us of the kit's 190 us per call. A differential test
(`tests/unit/test_sdk_contract.py`) holds each reply equal to the kernel's, byte for
byte, for well-formed and malformed calls in every era.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import anyio
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.runner import ServerRunner, _dump_result, aclose_shielded, modern_error_data
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
)
from mcp.shared.jsonrpc_dispatcher import handler_exception_to_error_data
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext
from mcp_types import (
    DEFAULT_NEGOTIATED_VERSION,
    HEADER_MISMATCH,
    METHOD_NOT_FOUND,
    CallToolRequestParams,
    ErrorData,
    PaginatedRequestParams,
)
from mcp_types import methods as spec_methods
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from apps.kit.wire.jsonrpc import INTERNAL_ERROR, URL_ELICITATION_REQUIRED

if TYPE_CHECKING:
    from apps.kit.call.running import CallResult

__all__ = [
    "HANDSHAKE_PROTOCOL_VERSIONS",
    "MODERN_PROTOCOL_VERSIONS",
    "SUPPORTED_VERSIONS",
    "MCPError",
    "Protocol",
    "Reply",
    "Served",
]

SUPPORTED_VERSIONS = (*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS)

ListTools = Callable[[], list[dict[str, Any]]]
RunTool = Callable[[Any], Awaitable["CallResult"]]


@dataclass
class Served:
    """What the kit hands the kernel with one request, as the SDK's transport request context.

    `tools` lists what this caller may see; `run` runs the tool a `tools/call` names, once the kernel
    has accepted its params, and what it came to is kept here for the reply.
    """

    tools: ListTools
    run: RunTool | None = None
    result: CallResult | None = None
    # whether the client declared URL-mode elicitation (and speaks the 2025-11-25 era): asked only when a tool needs it
    url_elicitation: Callable[[], bool] = lambda: False


@dataclass(frozen=True)
class Reply:
    """One JSON-RPC reply, the HTTP status it travels with, and what the tool came to if one ran."""

    status: int
    message: dict[str, Any]
    tool_result: CallResult | None = None

    @property
    def error_code(self) -> int | None:
        error = self.message.get("error")
        return error.get("code") if isinstance(error, dict) else None


@dataclass
class _Exchange:
    """`DispatchContext` for one request answered by one JSON body: no back-channel, no notifications.

    A JSON response carries only the reply, as in the SDK's own JSON-response and 2026-07-28 entries.
    """

    transport: TransportContext
    request_id: Any
    message_metadata: ServerMessageMetadata = field(default_factory=ServerMessageMetadata)
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)
    can_send_request: bool = False

    async def send_raw_request(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: Any = None) -> None:
        return None

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        return None


class Protocol:
    """The SDK's protocol kernel for one focused server that serves tools and nothing else.

    Capabilities are derived from the handlers registered, so the server advertises
    `tools` only: no prompts, resources, logging or completions it would not serve.
    The SDK's own span middleware is removed: the kit's endpoint owns the one span
    per request.
    """

    def __init__(self, name: str, version: str, instructions: str | None) -> None:
        async def on_list_tools(
            ctx: ServerRequestContext[Any, Any], params: PaginatedRequestParams | None
        ) -> dict[str, Any]:
            # Listing depends on the caller's scopes: private, and never cached (the 2026-07-28 fields; the
            # handshake-era serializer drops them).
            served = cast(Served, ctx.request)
            return {"tools": served.tools(), "resultType": "complete", "ttlMs": 0, "cacheScope": "private"}

        async def on_call_tool(ctx: ServerRequestContext[Any, Any], params: CallToolRequestParams) -> dict[str, Any]:
            return await _call_tool(cast(Served, ctx.request), params)

        self.server: Server[Any] = Server(name, version=version, instructions=instructions)
        self.server.add_request_handler("tools/list", PaginatedRequestParams, on_list_tools)
        self.server.add_request_handler("tools/call", CallToolRequestParams, on_call_tool)
        self.server.middleware.clear()
        # Frames results as the kernel does (`_serialize` reads only the server: its cache hints, its info)
        self._framer = ServerRunner(self.server, Connection.from_envelope(DEFAULT_NEGOTIATED_VERSION, None, None), {})

    async def answer(
        self, message: dict[str, Any], header_version: str | None, headers: list[tuple[str, str]], served: Served
    ) -> Reply:
        """Serve one JSON-RPC request in the protocol era the client speaks."""
        request_id, method, params = message["id"], message["method"], message.get("params")
        modern = header_version in MODERN_PROTOCOL_VERSIONS
        if modern:
            duplicated = find_duplicated_routing_header(headers)
            if duplicated is not None:
                error = ErrorData(code=HEADER_MISMATCH, message=f"{duplicated} header appears more than once")
                return _error(request_id, error, modern)
            route = classify_inbound_request(message, headers=dict(headers))
            if isinstance(route, InboundLadderRejection):
                return _error(request_id, ErrorData(code=route.code, message=route.message, data=route.data), modern)
            version, envelope = route.protocol_version, (route.client_info, route.client_capabilities)
        else:
            version, envelope = header_version or DEFAULT_NEGOTIATED_VERSION, (None, None)
        try:
            if method == "tools/call":
                result = await self._tools_call(version, params, served)
            else:
                connection = Connection.from_envelope(version, *envelope)
                exchange = _Exchange(TransportContext(kind="streamable-http", can_send_request=False), request_id)
                exchange.message_metadata = ServerMessageMetadata(request_context=served)
                result = await self._serve_one(exchange, method, params, connection)
        except Exception as error:  # noqa: BLE001 - mapped to a JSON-RPC error; internals never reach the wire
            if modern:
                return _error(request_id, modern_error_data(error), modern)
            data = handler_exception_to_error_data(error)
            error_data = data or ErrorData(code=INTERNAL_ERROR, message="Internal server error")
            refused = _error(request_id, error_data, modern)
            return Reply(refused.status, refused.message, served.result)  # what the tool came to, if it ran
        return Reply(200, {"jsonrpc": "2.0", "id": request_id, "result": result}, served.result)

    async def _tools_call(self, version: str, params: dict[str, Any] | None, served: Served) -> dict[str, Any]:
        """A `tools/call` along the kernel's request path (`ServerRunner._on_request`): the era's params check, the
        typed params, the handler, the era's framing; the same errors raised for `answer` to map."""
        try:
            spec_methods.validate_client_request("tools/call", version, params)
        except KeyError:
            raise MCPError(code=METHOD_NOT_FOUND, message="Method not found", data="tools/call") from None
        typed = CallToolRequestParams.model_validate({} if params is None else params, by_name=False)
        return _dump_result(self._framer._serialize("tools/call", version, await _call_tool(served, typed)))

    async def _serve_one(
        self, exchange: _Exchange, method: str, params: dict[str, Any] | None, connection: Connection
    ) -> dict[str, Any]:
        """The SDK's `serve_one`, less its reference cycle.

        The runner caches `on_request` as a bound method of itself, so each request left a cycle (runner,
        connection, exit stack, events) for the cycle collector. Under load thousands piled up, and the
        full collections that freed them stalled the loop for 46-100 ms: the 1-connection stalls and much
        of the tail at 256. Dropping the cached method lets reference counting free it all at once.
        """
        runner = ServerRunner(self.server, connection, {})
        try:
            return await runner.on_request(exchange, method, params)
        finally:
            runner.__dict__.pop("on_request", None)
            await aclose_shielded(connection)


async def _call_tool(served: Served, params: CallToolRequestParams) -> dict[str, Any]:
    """The `tools/call` handler: run the decided tool once; a tool that needs the person at a URL first says so
    as MCP 2025-11-25's URLElicitationRequiredError when the client can follow it."""
    assert served.run is not None, "a tools/call is answered with the tool to run"
    served.result = await served.run(params.arguments)
    needed = served.result.connect
    if needed is not None and served.url_elicitation():
        elicitation = {"mode": "url", "elicitationId": needed.elicitation_id, "url": needed.url,
                       "message": needed.message}  # fmt: skip
        raise MCPError(URL_ELICITATION_REQUIRED, needed.message, {"elicitations": [elicitation]})
    return {**served.result.result, "resultType": "complete"}


def _error(request_id: Any, error: ErrorData, modern: bool) -> Reply:
    """2026-07-28 maps error codes to HTTP statuses (the SDK's table); the handshake era answers 200."""
    body = {"jsonrpc": "2.0", "id": request_id, "error": error.model_dump(mode="json", exclude_none=True)}
    return Reply(ERROR_CODE_HTTP_STATUS.get(error.code, 200) if modern else 200, body)


def tool_error(code: int, message: str) -> MCPError:
    """A JSON-RPC error raised from a tool handler (e.g. an unknown tool: INVALID_PARAMS)."""
    return MCPError(code=code, message=message)
