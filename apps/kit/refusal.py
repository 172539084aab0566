"""A request to `/mcp` refused before (or instead of) dispatch: its HTTP status, JSON body and counted reason."""

from __future__ import annotations

from typing import Any

from apps.kit.outcomes import RefusalReason
from apps.kit.sdk import INVALID_REQUEST, error_message


class Refusal(Exception):
    """A request refused before dispatch: HTTP status, JSON body, extra headers and the counted reason."""

    def __init__(
        self,
        status: int,
        body: dict[str, Any] | None,
        reason: RefusalReason | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
    ):
        super().__init__(reason.value if reason else str(status))
        self.status, self.body, self.reason, self.headers = status, body, reason, headers or []


def refused(status: int, reason: RefusalReason, message: str, code: int = INVALID_REQUEST, data: Any = None) -> Refusal:
    return Refusal(status, error_message(None, code, message, data), reason)
