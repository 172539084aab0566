"""Raw HTTP against `/mcp`: exact headers and bodies, for what a foreign or hostile client sends."""

from __future__ import annotations

from typing import Any

import httpx

PROTOCOL_VERSION = "2025-11-25"
BASE_HEADERS = {
    "Accept": "application/json, text/event-stream",
    "Content-Type": "application/json",
    "MCP-Protocol-Version": PROTOCOL_VERSION,
}


def rpc(method: str, params: dict[str, Any] | None = None, request_id: int | str = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def tool_call(name: str, arguments: dict[str, Any] | None = None, request_id: int | str = 1) -> dict[str, Any]:
    return rpc("tools/call", {"name": name, "arguments": arguments or {}}, request_id)


def post(
    url: str,
    body: dict[str, Any] | list[Any] | bytes | str,
    token: str | None = None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    client: httpx.Client | None = None,
) -> httpx.Response:
    """POST one body; `headers` replace the defaults (a list of pairs may repeat a header)."""
    content = body.encode() if isinstance(body, str) else body if isinstance(body, bytes) else None
    merged: list[tuple[str, str]] = list(BASE_HEADERS.items())
    if token is not None:
        merged.append(("Authorization", f"Bearer {token}"))
    if headers:
        pairs = headers.items() if isinstance(headers, dict) else headers
        names = {name.lower() for name, _ in pairs}
        merged = [(k, v) for k, v in merged if k.lower() not in names] + list(pairs)
    kwargs: dict[str, Any] = {"content": content} if content is not None else {"json": body}
    return (client or httpx).post(url, headers=merged, timeout=30, **kwargs)
