"""A request to `/mcp` refused before (or instead of) dispatch: its HTTP status, JSON body and counted reason."""

from __future__ import annotations

from typing import Any

from apps.kit.wire.jsonrpc import INVALID_REQUEST, error_message
from apps.kit.wire.outcomes import RefusalReason


class Refusal(Exception):
    """A request refused before dispatch: HTTP status, JSON body, extra headers and the counted reason."""

    def __init__(
        self,
        status: int,
        body: dict[str, Any] | None,
        reason: RefusalReason | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        audit: str | None = None,
    ):
        super().__init__(reason.value if reason else str(status))
        self.status, self.body, self.reason, self.headers = status, body, reason, headers or []
        # What the audit trail records it as, when the layer that refused did not record it itself (the gate's
        # refusals; the call pipeline records its own, with who asked): the reason, or for a 401 why.
        self.audit = audit if audit is not None else (reason.value if reason else None)


def refused(status: int, reason: RefusalReason, message: str, code: int = INVALID_REQUEST, data: Any = None) -> Refusal:
    return Refusal(status, error_message(None, code, message, data), reason)


def overloaded(status: int, reason: RefusalReason, message: str) -> Refusal:
    """A refusal for a share that is full: the caller comes back in a second (429 for its own share, 503 for the
    process's), told so by `Retry-After`."""
    refusal = refused(status, reason, f"{message}; retry after 1 s")
    refusal.headers.append((b"retry-after", b"1"))
    return refusal
