"""The HTTP checks of `/mcp`: what a POST must be before its JSON-RPC message is served.

In order: the `Origin` (403; the server's own origin and the allowlist pass), the method
(405: a stateless server opens no stream, so GET and DELETE are refused), exactly one
bearer token, verified (400 for two, 401), the `Content-Type` (415), `Accept` (406) and
`MCP-Protocol-Version` (400) headers, the body cap (413), a token with no scope of this
server (403, before the body is read), the body read within its budgets and deadline
(`apps.kit.http.intake`: 429, 503, 408), a strict parse (400: no NaN, duplicate keys, deep
nesting, lone surrogates) and the JSON-RPC envelope (400). Each refusal is a `Refusal`:
a 4xx (or a shedding 503) with a JSON body and a counted reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

from starlette.types import Receive

from apps.kit.call.asking import ASK_ID
from apps.kit.call.pipeline import Admitted, Headers
from apps.kit.call.sdk import MODERN_PROTOCOL_VERSIONS, SUPPORTED_VERSIONS
from apps.kit.declare.config import KitSettings
from apps.kit.http.intake import BodyBudget, BodyReader
from apps.kit.identity.tokens import AuthFailure, JwtVerifier, Principal
from apps.kit.observe.logs import bounded
from apps.kit.wire.jsonrpc import FORBIDDEN, PARSE_ERROR, UNSUPPORTED_PROTOCOL_VERSION, error_message
from apps.kit.wire.outcomes import AuthFailureReason, RefusalReason
from apps.kit.wire.refusal import Refusal, refused

MAX_JSON_DEPTH = 64
CORS_HEADERS = "authorization, content-type, mcp-protocol-version, mcp-method, mcp-name, last-event-id"
_SURROGATE = re.compile("[\ud800-\udfff]")


class HttpGate:
    """The checks, configured once per server from its settings and its tools' scopes."""

    def __init__(
        self,
        settings: KitSettings,
        verifier: JwtVerifier,
        server_scopes: frozenset[str],
        resource_metadata_url: str,
        crowded: Callable[[], bool],
    ):
        self.verifier = verifier
        # The server's own origin (its resource URL's scheme://host[:port]) is always allowed: a page it serves
        # is same-origin, and a rebound name arrives with another origin. Others only when configured.
        self.own_origin = own_origin(settings.resource_url)
        self.allowed_origins = frozenset(settings.mcp_allowed_origins)
        self.max_body_bytes = settings.mcp_max_body_bytes
        self.body_read_seconds = settings.mcp_body_read_seconds
        self.body_min_rate = settings.mcp_body_min_bytes_per_second
        self.bodies = BodyBudget(
            settings.body_bytes_in_flight,
            settings.body_bytes_per_principal,
            settings.bodies_reading_per_principal,
            crowded,
        )
        # A token with none of these scopes could never call a tool: refused before its body is read.
        self.server_scopes = server_scopes
        self.resource_metadata_url = resource_metadata_url
        self._www_no_token = f'Bearer resource_metadata="{resource_metadata_url}"'.encode()
        self._www_invalid = (
            'Bearer error="invalid_token", error_description="The access token is invalid, expired or '
            f'not issued for this server", resource_metadata="{resource_metadata_url}"'
        ).encode()

    def cors_headers(self, origin: str | None) -> list[tuple[bytes, bytes]] | None:
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

    @asynccontextmanager
    async def admit(self, method: str | None, headers: Headers, receive: Receive) -> AsyncIterator[Admitted]:
        """Check a request and read its body; the body's share of the budgets is held until the answer."""
        if method != "POST":
            refusal = refused(
                405, RefusalReason.METHOD_NOT_ALLOWED, "Method Not Allowed: this stateless server takes POST only"
            )
            refusal.headers.append((b"allow", b"POST"))
            raise refusal
        principal = await self._authenticate(headers)
        fields = dict(headers)
        version = self._check_headers(fields)
        declared = fields.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            raise refused(413, RefusalReason.BODY_TOO_LARGE, f"Request body larger than {self.max_body_bytes} bytes")
        if not principal.scopes & self.server_scopes:
            raise Refusal(
                403,
                error_message(None, FORBIDDEN, "Forbidden: the token carries no scope of this server"),
                RefusalReason.NO_SCOPE,
                [(b"www-authenticate", self.step_up(self.server_scopes))],
            )
        reader = BodyReader(
            self.bodies, principal.rate_key, self.max_body_bytes, self.body_read_seconds, self.body_min_rate
        )
        try:
            raw = await reader.read(receive, int(declared) if declared.isdigit() else None)
            parsed = parse_json(raw)
            del raw
            if (answer := answer_to_a_question(parsed)) is not None:
                yield Admitted(principal, None, version, headers, answer)
                return
            yield Admitted(principal, envelope(parsed, version), version, headers)
        finally:
            reader.release()

    def step_up(self, scopes: frozenset[str]) -> bytes:
        """RFC 6750 §3.1 / MCP step-up: every scope this operation needs, and where to learn more."""
        return (
            f'Bearer error="insufficient_scope", scope="{" ".join(sorted(scopes))}", '
            f'resource_metadata="{self.resource_metadata_url}"'
        ).encode()

    async def _authenticate(self, headers: Headers) -> Principal:
        values = [v for k, v in headers if k == "authorization"]
        if len(values) > 1:
            raise refused(400, RefusalReason.DUPLICATE_AUTHORIZATION, "Bad Request: more than one Authorization header")
        scheme, _, token = (values[0] if values else "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            self.verifier.record_failure(AuthFailureReason.MISSING_TOKEN)
            # RFC 6750 §3.1: a request with no credentials gets no error code, only the challenge.
            raise Refusal(
                401, {"error": "unauthorized"}, None, [(b"www-authenticate", self._www_no_token)], "missing_token"
            )
        try:
            return await self.verifier.authenticate(token.strip())
        except AuthFailure as failure:
            raise Refusal(
                401,
                {"error": "invalid_token", "error_description": "The access token is invalid"},
                None,
                [(b"www-authenticate", self._www_invalid)],
                failure.reason.value,  # the audit says why (expired, wrong audience, ...)
            ) from None

    @staticmethod
    def _check_headers(fields: dict[str, str]) -> str | None:
        """Content-Type, Accept and MCP-Protocol-Version; returns the version the client names, if any."""
        content_type = fields.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            text = "Unsupported Media Type: Content-Type must be application/json"
            raise refused(415, RefusalReason.UNSUPPORTED_MEDIA_TYPE, text)
        accepted = {part.split(";")[0].strip().lower() for part in fields.get("accept", "").split(",")}
        if not accepted & {"application/json", "application/*", "*/*"}:
            raise refused(406, RefusalReason.NOT_ACCEPTABLE, "Not Acceptable: the client must accept application/json")
        version = fields.get("mcp-protocol-version")
        if version is not None and version not in SUPPORTED_VERSIONS:
            raise refused(
                400,
                RefusalReason.UNSUPPORTED_PROTOCOL_VERSION,
                f"Bad Request: unsupported MCP-Protocol-Version; supported: {', '.join(SUPPORTED_VERSIONS)}",
                UNSUPPORTED_PROTOCOL_VERSION,
                {"supported": list(SUPPORTED_VERSIONS), "requested": bounded(version, 64)},
            )
        return version


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no NaN/Infinity, finite numbers, unique keys, bounded depth, no lone surrogates."""
    try:
        value = json.loads(
            body.decode("utf-8"), parse_constant=_no_constants, parse_float=_finite, object_pairs_hook=_unique_keys
        )
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        text = f"Parse error: {bounded(str(error), 200)}"
        raise refused(400, RefusalReason.PARSE_ERROR, text, PARSE_ERROR) from None
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_JSON_DEPTH:
                text = f"Parse error: nested deeper than {MAX_JSON_DEPTH}"
                raise refused(400, RefusalReason.PARSE_ERROR, text, PARSE_ERROR)
            children = node.items() if isinstance(node, dict) else enumerate(node)
            for key, child in children:
                if isinstance(key, str) and not key.isascii() and _SURROGATE.search(key):
                    raise _lone_surrogate()
                stack.append((child, depth + 1))
        elif isinstance(node, str) and not node.isascii() and _SURROGATE.search(node):
            raise _lone_surrogate()
    return value


def envelope(message: Any, version: str | None) -> dict[str, Any] | None:
    """The JSON-RPC request to answer, None for a notification or a response, or a 400."""
    if isinstance(message, list):
        raise _invalid("batches are not supported; send one message")
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise _invalid("expected one JSON-RPC 2.0 object")
    method = message.get("method")
    if method is None and "id" in message and ("result" in message or "error" in message):
        if version in MODERN_PROTOCOL_VERSIONS:
            raise _invalid("clients do not send responses")
        return None  # a response to a server request this stateless server never sent
    if not isinstance(method, str) or not method:
        raise _invalid("method must be a non-empty string")
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        raise _invalid("params must be an object")
    if "id" not in message:
        return None  # a notification: acknowledged with 202
    request_id = message["id"]
    if not (isinstance(request_id, str) or (isinstance(request_id, int) and not isinstance(request_id, bool))):
        raise _invalid("id must be a string or an integer")
    return message


def answer_to_a_question(message: Any) -> dict[str, Any] | None:
    """A JSON-RPC response to an `elicitation/create` this server sent (its id is one of ours), else None."""
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or "method" in message:
        return None
    if not isinstance(message.get("id"), str) or not ASK_ID.fullmatch(message["id"]):
        return None
    if isinstance(message.get("result"), dict):
        return {"id": message["id"], "result": message["result"]}
    return {"id": message["id"], "result": {"action": "cancel"}} if "error" in message else None


def own_origin(resource_url: str) -> str:
    """`scheme://host[:port]` of a URL, lower-cased, with the default port left out (as browsers send it)."""
    parts = urlsplit(resource_url)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port and parts.port != default else ""
    return f"{parts.scheme}://{parts.hostname}{port}".lower()


def _invalid(why: str) -> Refusal:
    return refused(400, RefusalReason.INVALID_REQUEST, f"Invalid Request: {why}")


def _lone_surrogate() -> Refusal:
    return refused(400, RefusalReason.PARSE_ERROR, "Parse error: unpaired surrogate in a string", PARSE_ERROR)


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
