"""JSON log lines on stdout, one event per line, with the current trace id.

Events are dicts built by the kit; callers never pass raw tool arguments, tokens
or connection strings. Two last passes protect every line whoever wrote it:

- every string is bounded (`bounded`): a caller-chosen string (a tool name, an
  argument key, an error text) keeps its head plus its length and a digest, so
  one request cannot make a log line, or the work of writing it, grow without
  bound;
- redaction masks anything that still looks like a credential, and every
  secret value the server was configured with (`register_secrets`). Its
  patterns run in time linear in the input (each starts at a literal or a run
  boundary and never rescans), and its input is bounded too.

Libraries log too, and what they log at INFO can be a credential: httpx logs
each request's URL, and a Slack webhook's URL is the credential. Below WARNING,
only our own loggers and uvicorn's server messages are written, unless
LOG_LEVEL is DEBUG.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
import time
from typing import Any

from opentelemetry import trace

from apps.kit.observe.output import write_line
from apps.kit.wire.encoding import dumps

EVENT_LOGGER = "mcpfleet"
MAX_FIELD_CHARS = 1024  # one string field of an event (tool names, error texts, ...)
MAX_MESSAGE_CHARS = 8 * 1024  # a library's free-text message
MAX_LINE_CHARS = 64 * 1024  # a whole rendered line, the input of `redact`

_JWT = re.compile(r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}(?:\.[A-Za-z0-9_-]*)?")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]+")
# userinfo of a URL or DSN: "://user:password@". Matching from the literal "://" and consuming the rest of
# the token whether or not an "@" follows keeps every scan disjoint (linear); `_mask_password` decides.
_URL_PASSWORD = re.compile(r"://([^:/@\s]*:)([^@\s]*)(@?)")
_KEY_VALUE = re.compile(r"(?i)\b(password|secret|token)=[^\s&]+")
# Every pattern above needs one of these in the line; most lines have none, and one scan says so.
_ANY_SECRET_SHAPE = re.compile(r"eyJ|://|=|[Bb][Ee][Aa][Rr][Ee][Rr]")
# The configured secrets themselves (signing keys, webhook URLs, passwords), longest first.
_KNOWN_SECRETS: re.Pattern[str] | None = None
MIN_SECRET_CHARS = 8  # shorter values would mask ordinary words
# Loggers whose INFO lines are written: ours, and uvicorn's start and stop messages.
INFO_LOGGERS = (EVENT_LOGGER, "uvicorn.error")


def bounded(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """`text` itself if short; else its head, its length and a digest of the whole (to match lines)."""
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:limit]}...[{len(text)} chars, sha256:{digest}]"


def _mask_password(match: re.Match[str]) -> str:
    return f"://{match[1]}[REDACTED]@" if match[3] and match[2] else match[0]


def register_secrets(values: list[str]) -> None:
    """Mask these values wherever they appear in a line (each is a configured secret)."""
    global _KNOWN_SECRETS
    kept = sorted({v for v in values if len(v) >= MIN_SECRET_CHARS}, key=len, reverse=True)
    _KNOWN_SECRETS = re.compile("|".join(map(re.escape, kept))) if kept else None


def redact(text: str) -> str:
    """Mask JWTs, bearer tokens, URL passwords, key=value secrets and the configured secrets, in linear time
    on a bounded input."""
    text = bounded(text, MAX_LINE_CHARS)
    if _KNOWN_SECRETS is not None:
        text = _KNOWN_SECRETS.sub("[REDACTED]", text)
    if not _ANY_SECRET_SHAPE.search(text):
        return text
    text = _JWT.sub("[REDACTED-JWT]", text)
    text = _BEARER.sub(r"\1 [REDACTED]", text)
    text = _URL_PASSWORD.sub(_mask_password, text)
    return _KEY_VALUE.sub(r"\1=[REDACTED]", text)


def _bound_value(value: Any) -> Any:
    if isinstance(value, str):
        return bounded(value)
    if isinstance(value, list | tuple):
        return [_bound_value(v) for v in value[:64]]
    return value


def current_trace_id() -> str | None:
    """The active span's trace id in hex, or None when tracing is off."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


_second: tuple[int, str] = (-1, "")


def _timestamp(created: float, msecs: float) -> str:
    """ISO 8601 UTC with milliseconds; the formatted second is reused (one strftime a second, not a line)."""
    global _second
    whole = int(created)
    if _second[0] != whole:
        _second = (whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)))
    return f"{_second[1]}.{int(msecs):03d}Z"


def _payload(stamp: str, level: str, logger: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A line's fields: when, how severe, whose, then the event's own, each bounded."""
    return {"ts": stamp, "level": level, "logger": logger, **{key: _bound_value(v) for key, v in fields.items()}}


def render(payload: dict[str, Any]) -> str:
    """The line of an event: its trace id added, every string bounded, then redacted."""
    if "trace_id" not in payload:
        trace_id = current_trace_id()
        if trace_id:
            payload["trace_id"] = trace_id
    return redact(dumps(payload, default=str).decode("utf-8", "surrogatepass"))


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON object: structured `event` dicts pass through as fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if not isinstance(fields, dict):
            fields = {"message": bounded(record.getMessage(), MAX_MESSAGE_CHARS)}
        payload = _payload(_timestamp(record.created, record.msecs), record.levelname.lower(), record.name, fields)
        if record.exc_info and record.exc_info[0] is not None:
            payload["exc_type"] = record.exc_info[0].__name__
        return render(payload)


def ours_or_warning(record: logging.LogRecord) -> bool:
    """A library's record is written from WARNING up; ours at any level (a handler filter)."""
    return record.levelno >= logging.WARNING or record.name in INFO_LOGGERS or record.name.startswith("mcpfleet.")


def configure_logging(level: str, secrets: list[str] | None = None) -> None:
    """Send every logger (ours, uvicorn's, the SDK's) through the JSON formatter on stdout.

    Handlers that do not write JSON (the SDK's console handler, basicConfig's) are
    replaced; JSON ones are kept, so calling this twice installs one handler.
    """
    register_secrets(secrets or [])
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)]
    if not any(getattr(h, "stream", None) is sys.stdout for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    _installed[:] = [h for h in root.handlers if isinstance(h.formatter, JsonFormatter)][:1]
    for each in root.handlers:
        if level == "DEBUG":
            each.removeFilter(ours_or_warning)
        elif ours_or_warning not in each.filters:
            each.addFilter(ours_or_warning)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Access logs repeat what the tool-call events say, and would log every probe.
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


_events = logging.getLogger(EVENT_LOGGER)
_installed: list[logging.Handler] = []  # the JSON handler configure_logging put on the root logger


def _written_directly() -> bool:
    """Events may skip `logging` when it would only hand them to our own JSON handler on the process's output:
    nothing else listens (no handler on the event logger, none but ours on the root)."""
    return bool(_installed) and logging.root.handlers == _installed and not _events.handlers and _events.propagate


def log_event(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Emit one structured event line. When only our JSON handler would write it, the line is rendered the same
    way and written with the other lines of this turn of the event loop (`observe.output`): the logging module's
    record, caller lookup, handler lock and flush were half an event's cost."""
    if not _events.isEnabledFor(level):
        return
    if not _written_directly():
        _events.log(level, event, extra={"fields": {"event": event, **fields}})
        return
    now = time.time()
    stamp, level_name = _timestamp(now, (now - int(now)) * 1000), logging.getLevelName(level).lower()
    payload = _payload(stamp, level_name, EVENT_LOGGER, {"event": event, **fields})
    write_line(render(payload).encode("utf-8", "surrogatepass"))
