"""The closed vocabularies of `/mcp`: what a tool call came to, why a token or a request was refused.

Each is the `outcome` or `reason` label of a metric, so each is an enum: a typo is an error at import,
every value is exported at 0 from the start (rate() sees the first one), and the alert rules read
the server-fault set from here.
"""

from __future__ import annotations

from enum import StrEnum


class CallOutcome(StrEnum):
    """What a `tools/call` came to (the `outcome` label of `mcp_server_operation_duration_seconds`)."""

    OK = "ok"
    ERROR = "error"  # a dependency failed or timed out (`ServerError`)
    INTERNAL_ERROR = "internal_error"  # the handler crashed
    OVERLOADED = "overloaded"  # refused as busy: it could not be served in time
    REJECTED = "rejected"  # well-formed but not servable: the caller's mistake (`CallerError`)
    INVALID_PARAMS = "invalid_params"
    FORBIDDEN = "forbidden"
    UNKNOWN_TOOL = "unknown_tool"
    CONNECT_REQUIRED = "connect_required"  # the person must link an account first (URL-mode elicitation)

    @property
    def server_fault(self) -> bool:
        """Whether it spends the error budget (and can page): never for a caller's mistake."""
        return self in SERVER_FAULTS


SERVER_FAULTS = frozenset({CallOutcome.ERROR, CallOutcome.INTERNAL_ERROR, CallOutcome.OVERLOADED})


class AuthFailureReason(StrEnum):
    """Why a bearer token was refused (the `reason` label of `mcp_auth_failures_total`)."""

    MISSING_TOKEN = "missing_token"
    MALFORMED = "malformed"
    ALGORITHM_NOT_ALLOWED = "algorithm_not_allowed"
    MISSING_KID = "missing_kid"
    UNKNOWN_KID = "unknown_kid"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    WRONG_ISSUER = "wrong_issuer"
    WRONG_AUDIENCE = "wrong_audience"
    MISSING_CLAIM = "missing_claim"
    MISSING_PRINCIPAL = "missing_principal"
    WRONG_TOKEN_TYPE = "wrong_token_type"
    INVALID_TOKEN = "invalid_token"


class RefusalReason(StrEnum):
    """Why a request to `/mcp` was refused before dispatch (the `reason` of `mcp_rejected_requests_total`).

    Each is a 4xx, or a 503 when load is shed before any work was done.
    """

    ORIGIN_NOT_ALLOWED = "origin_not_allowed"  # 403
    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405 (GET/DELETE: a stateless server opens no stream)
    DUPLICATE_AUTHORIZATION = "duplicate_authorization"  # 400
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"  # 415
    NOT_ACCEPTABLE = "not_acceptable"  # 406
    UNSUPPORTED_PROTOCOL_VERSION = "unsupported_protocol_version"  # 400
    BODY_TOO_LARGE = "body_too_large"  # 413
    PARSE_ERROR = "parse_error"  # 400, JSON-RPC -32700
    INVALID_REQUEST = "invalid_request"  # 400, JSON-RPC -32600
    NO_SCOPE = "no_scope"  # 403: the token has no scope of this server, refused before its body is read
    BODY_TIMEOUT = "body_timeout"  # 408: under MCP_BODY_MIN_BYTES_PER_SECOND or past MCP_BODY_READ_SECONDS
    BODIES_READING_PRINCIPAL = "bodies_reading_principal"  # 429: the caller has its share of bodies still arriving
    BODY_BUDGET_PRINCIPAL = "body_budget_principal"  # 429: the caller's bodies in flight are over its share
    BODY_BUDGET_PROCESS = "body_budget_process"  # 503: the process's bodies in flight are over its budget
    BUSY = "busy"  # 503: MCP_MAX_CONCURRENT_REQUESTS requests are in flight
