"""Every JSON-RPC error code `/mcp` answers with, in one place, and the error object itself.

The standard codes are the SDK's (`mcp_types`); the implementation-defined ones (-32000 to -32099) are ours,
and a client reads `data.retryAfter` on the two that ask it to come back.
"""

from __future__ import annotations

from typing import Any

from mcp_types import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    URL_ELICITATION_REQUIRED,
)

__all__ = [
    "FORBIDDEN",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "OVERLOADED",
    "PARSE_ERROR",
    "RATE_LIMITED",
    "UNSUPPORTED_PROTOCOL_VERSION",
    "URL_ELICITATION_REQUIRED",
    "error_message",
]

FORBIDDEN = -32003  # the caller's token lacks a scope the tool needs (HTTP 403 with a step-up challenge)
UNSUPPORTED_PROTOCOL_VERSION = -32022  # the MCP-Protocol-Version header names no version this server speaks
RATE_LIMITED = -32029  # too many calls from this principal; retry after `data.retryAfter` seconds
OVERLOADED = -32030  # the server could not serve the call in time; retry after `data.retryAfter` seconds


def error_message(request_id: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    """A JSON-RPC error object (`id` null when the request's id is unknown)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request_id, "error": error}
