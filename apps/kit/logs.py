"""JSON log lines on stdout, one event per line, with the current trace id.

Events are dicts built by the kit; callers never pass raw tool arguments, tokens
or connection strings. A last redaction pass masks anything that still looks
like a credential, so a mistake in a future caller does not leak it.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any

from opentelemetry import trace

EVENT_LOGGER = "mcpfleet"

_SECRET_PATTERNS = [
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),  # JWTs
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(@)"),  # passwords in URLs/DSNs
    re.compile(r"(?i)\b(password|secret|token)=([^\s&]+)"),
]


def redact(text: str) -> str:
    """Mask JWTs, bearer tokens, URL passwords and key=value secrets."""
    text = _SECRET_PATTERNS[0].sub("[REDACTED-JWT]", text)
    text = _SECRET_PATTERNS[1].sub(r"\1 [REDACTED]", text)
    text = _SECRET_PATTERNS[2].sub(r"\1[REDACTED]\2", text)
    return _SECRET_PATTERNS[3].sub(r"\1=[REDACTED]", text)


def current_trace_id() -> str | None:
    """The active span's trace id in hex, or None when tracing is off."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object: structured `event` dicts pass through as fields."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        else:
            payload["message"] = record.getMessage()
        if record.exc_info and record.exc_info[0] is not None:
            payload["exc_type"] = record.exc_info[0].__name__
        if "trace_id" not in payload:
            trace_id = current_trace_id()
            if trace_id:
                payload["trace_id"] = trace_id
        return redact(json.dumps(payload, default=str, separators=(",", ":")))


def configure_logging(level: str) -> None:
    """Send every logger (ours, uvicorn's, the SDK's) through the JSON formatter on stdout.

    Handlers that do not write JSON (the SDK's console handler, basicConfig's) are
    replaced; JSON ones are kept, so calling this twice installs one handler.
    """
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    if not any(getattr(h, "stream", None) is sys.stdout for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Access logs repeat what the tool-call events say, and would log every probe.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Emit one structured event line."""
    logging.getLogger(EVENT_LOGGER).log(level, event, extra={"fields": {"event": event, **fields}})
