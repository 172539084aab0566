"""What the kit relies on from the MCP SDK's internals (`apps/kit/call/sdk.py`), pinned.

An SDK release that moves the kernel, changes the era routing or the result envelopes fails
here first, with the behaviour named, instead of somewhere inside a server's tests.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest
from mcp.server.connection import Connection
from mcp.server.runner import ServerRunner
from mcp.shared.message import ServerMessageMetadata
from mcp.shared.transport_context import TransportContext

from apps.kit.call import sdk
from apps.kit.call.running import CallResult
from apps.kit.declare.tools import ConnectRequired
from apps.kit.wire import jsonrpc
from apps.kit.wire.outcomes import CallOutcome

MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
}
TOOL = {"name": "echo", "description": "Echo.", "inputSchema": {"type": "object", "properties": {}}}


def protocol() -> sdk.Protocol:
    return sdk.Protocol("contract", "9.9.9", "Be brief.")


def served(calls: list[Any] | None = None) -> sdk.Served:
    """A request context whose tool records its arguments and answers "ok"."""

    async def run(arguments: Any) -> CallResult:
        if calls is not None:
            calls.append(arguments)
        return CallResult(CallOutcome.OK, {"content": [{"type": "text", "text": "ok"}], "isError": False})

    return sdk.Served(lambda: [TOOL], run)


def request(method: str, params: dict[str, Any] | None = None, request_id: int = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


async def test_the_handshake_negotiates_and_advertises_tools_only():
    init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}
    reply = await protocol().answer(request("initialize", init), None, [], served())
    assert reply.status == 200
    result = reply.message["result"]
    assert result["protocolVersion"] == "2025-06-18"
    assert result["serverInfo"] == {"name": "contract", "version": "9.9.9"}
    assert result["instructions"] == "Be brief."
    assert set(result["capabilities"]) == {"tools"}


async def test_an_unknown_version_is_countered_with_the_latest_handshake_version():
    init = {"protocolVersion": "2099-01-01", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}
    reply = await protocol().answer(request("initialize", init), None, [], served())
    assert reply.message["result"]["protocolVersion"] == sdk.HANDSHAKE_PROTOCOL_VERSIONS[-1]


@pytest.mark.parametrize("version", ["2025-03-26", "2025-11-25"])
async def test_handshake_era_tools_round_trip_and_ping(version):
    calls: list[Any] = []
    kernel = protocol()
    listed = await kernel.answer(request("tools/list"), version, [], served())
    assert listed.message["result"] == {"tools": [TOOL]}  # the 2026 cache fields are sieved for this era
    call = request("tools/call", {"name": "echo", "arguments": {"a": 1}})
    called = await kernel.answer(call, version, [], served(calls))
    assert called.message["result"] == {"content": [{"type": "text", "text": "ok"}], "isError": False}
    assert called.tool_result is not None and called.tool_result.label is CallOutcome.OK
    assert calls == [{"a": 1}]
    assert (await kernel.answer(request("ping"), version, [], served())).message["result"] == {}


async def test_handshake_era_errors_travel_with_200():
    kernel = protocol()
    unknown = await kernel.answer(request("resources/list"), "2025-11-25", [], served())
    assert (unknown.status, unknown.error_code) == (200, -32601)
    calls: list[Any] = []
    malformed = await kernel.answer(request("tools/call", {"arguments": {}}), "2025-11-25", [], served(calls))
    assert (malformed.status, malformed.error_code) == (200, -32602)
    assert calls == [] and malformed.tool_result is None  # refused before the tool ran


async def test_modern_era_needs_its_envelope_and_maps_errors_to_statuses():
    kernel = protocol()
    headers = [("mcp-protocol-version", MODERN), ("mcp-method", "tools/list")]
    listed = await kernel.answer(request("tools/list", {"_meta": ENVELOPE}), MODERN, headers, served())
    assert listed.status == 200
    result = listed.message["result"]
    assert result["resultType"] == "complete" and result["tools"] == [TOOL]
    assert result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"] == "contract"
    bare = await kernel.answer(request("tools/list"), MODERN, headers, served())
    assert (bare.status, bare.error_code) == (400, jsonrpc.INVALID_PARAMS)
    unknown = await kernel.answer(
        request("resources/list", {"_meta": ENVELOPE}),
        MODERN,
        [("mcp-protocol-version", MODERN), ("mcp-method", "resources/list")],
        served(),
    )
    assert (unknown.status, unknown.error_code) == (404, jsonrpc.METHOD_NOT_FOUND)


async def test_modern_era_discover_names_the_served_versions():
    headers = [("mcp-protocol-version", MODERN), ("mcp-method", "server/discover")]
    reply = await protocol().answer(request("server/discover", {"_meta": ENVELOPE}), MODERN, headers, served())
    assert MODERN in reply.message["result"]["supportedVersions"]
    assert set(reply.message["result"]["capabilities"]) == {"tools"}


async def test_a_crash_in_a_handler_reaches_the_wire_as_a_generic_internal_error():
    async def crash(arguments: Any) -> CallResult:
        raise RuntimeError("secret internal detail")

    reply = await protocol().answer(request("tools/call", {"name": "x"}), "2025-11-25", [], sdk.Served(list, crash))
    assert reply.error_code == -32603
    assert "secret" not in str(reply.message)


async def test_a_served_request_leaves_no_reference_cycle_behind():
    """Each request's runner and connection are freed by reference counting, not left to the cycle
    collector, whose full passes over thousands of them stalled the event loop under load."""
    kernel = protocol()
    gc.collect()
    gc.disable()
    try:
        for n in range(20):
            call = request("tools/call", {"name": "echo", "arguments": {}}, n)
            reply = await kernel.answer(call, "2025-11-25", [], served())
            assert reply.message["result"]["content"][0]["text"] == "ok"
            listed = await kernel.answer(request("tools/list", None, n), "2025-11-25", [], served())
            assert listed.message["result"]["tools"] == [TOOL]
        own = (kernel._framer, kernel._framer.connection)  # the protocol's one framer lives as long as it does
        left = [o for o in gc.get_objects() if isinstance(o, (ServerRunner, Connection)) and o not in own]
    finally:
        gc.enable()
    assert left == []


# The two places the kit changes the SDK's objects, each pinned to what it relies on: when a release moves
# either, these fail and name it, instead of a span doubling or the event loop stalling under load.


def test_the_sdk_still_puts_its_span_middleware_where_the_kit_removes_it():
    """`Protocol` empties `Server.middleware`: the SDK's default holds its OpenTelemetry middleware, whose span
    would nest a second one inside the kit's span per request."""
    from mcp.server.lowlevel.server import Server

    default = Server("probe").middleware
    assert isinstance(default, list) and default, "the SDK's Server keeps its middleware in a list"
    assert any("OpenTelemetry" in type(m).__name__ for m in default)
    assert protocol().server.middleware == []


async def test_a_request_served_by_the_kernel_opens_no_span_of_the_sdks(monkeypatch):
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr("opentelemetry.trace._TRACER_PROVIDER", provider)
    reply = await protocol().answer(
        request("tools/call", {"name": "echo", "arguments": {}}), "2025-11-25", [], served()
    )
    assert reply.message["result"]["content"][0]["text"] == "ok"
    assert exporter.get_finished_spans() == ()


def test_the_runner_still_caches_on_request_in_its_instance_dict():
    """`_serve_one` pops `on_request` from the runner's `__dict__` after each request; that frees the cycle
    only while the SDK caches it there (a `functools.cached_property`)."""
    from functools import cached_property

    assert isinstance(ServerRunner.__dict__.get("on_request"), cached_property)


# `tools/call` skips the kernel's per-request scaffolding (`Protocol._tools_call`); these hold every reply it gives
# equal to the kernel's own, so an SDK release that changes how the kernel checks or frames a call fails here.

CALLS: list[dict[str, Any] | None] = [
    {"name": "echo", "arguments": {"a": 1}},
    {"name": "echo"},
    {"name": "echo", "arguments": {}, "_meta": {"progressToken": "t-1"}},
    {"name": "echo", "arguments": {}, "unknownField": True},
    {"arguments": {}},
    {"name": 5},
    {"name": "echo", "arguments": [1, 2]},
    {"name": "echo", "arguments": "text"},
    None,
]
RESULTS: dict[str, Any] = {
    "ok": CallResult(CallOutcome.OK, {"content": [{"type": "text", "text": "ok"}], "isError": False}),
    "structured": CallResult(
        CallOutcome.OK,
        {
            "content": [{"type": "text", "text": "{}"}],
            "structuredContent": {"n": 1},
            "isError": False,
            "_meta": {"io.example/trace": "t"},
        },
    ),
    "tool error": CallResult(CallOutcome.REJECTED, {"content": [{"type": "text", "text": "no"}], "isError": True}),
    "connect": CallResult(
        CallOutcome.CONNECT_REQUIRED,
        {"content": [{"type": "text", "text": "go"}], "isError": True},
        connect=ConnectRequired("https://example.test/link", "Link your account.", "e-1"),
    ),
    "crash": RuntimeError("internal detail"),
}


async def _kernel_tools_call(self: sdk.Protocol, version: str, params: Any, served: sdk.Served) -> dict[str, Any]:
    """The same call through the kernel's full request path (`ServerRunner.on_request`)."""
    exchange = sdk._Exchange(TransportContext(kind="streamable-http", can_send_request=False), 1)
    exchange.message_metadata = ServerMessageMetadata(request_context=served)
    return await self._serve_one(exchange, "tools/call", params, Connection.from_envelope(version, None, None))


@pytest.mark.parametrize("version", [*sdk.HANDSHAKE_PROTOCOL_VERSIONS, MODERN])
@pytest.mark.parametrize("outcome", list(RESULTS))
async def test_a_tool_call_is_answered_as_the_kernel_answers_it(version, outcome, monkeypatch):
    async def run(arguments: Any) -> CallResult:
        if isinstance(RESULTS[outcome], Exception):
            raise RESULTS[outcome]
        return RESULTS[outcome]

    replies: dict[str, list[tuple[int, dict[str, Any], Any]]] = {}
    for path in ("direct", "kernel"):
        if path == "kernel":
            monkeypatch.setattr(sdk.Protocol, "_tools_call", _kernel_tools_call)
        replies[path] = []
        for params in CALLS:
            headers: list[tuple[str, str]] = []
            if version == MODERN:
                params = {**(params or {}), "_meta": {**((params or {}).get("_meta") or {}), **ENVELOPE}}
                headers = [("mcp-protocol-version", MODERN), ("mcp-method", "tools/call"), ("mcp-name", "echo")]
            served = sdk.Served(lambda: [TOOL], run, url_elicitation=lambda: True)
            reply = await protocol().answer(request("tools/call", params), version, headers, served)
            label = reply.tool_result.label if reply.tool_result else None
            replies[path].append((reply.status, reply.message, label))
    assert replies["direct"] == replies["kernel"]
    answered = [message["result"] for status, message, _ in replies["direct"] if "result" in message]
    assert len(answered) == (0 if outcome in ("crash", "connect") else 4)  # the first four calls are well formed
