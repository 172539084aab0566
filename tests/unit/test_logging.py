"""Log lines: one JSON object per tool call with the agreed fields, and no secret anywhere."""

from __future__ import annotations

import hashlib
import json
import logging

import httpx

from apps.kit.call.pipeline import input_digest
from apps.kit.observe.logs import JsonFormatter, redact
from tests.conftest import SECRET
from tests.support.mcp_client import mcp_client

TOOL_CALL_FIELDS = {"event", "tool", "subject", "client_id", "status", "duration_ms", "input_sha256", "trace_id"}


async def test_one_line_per_call_with_every_field(demo, token_for, logs):
    async with mcp_client(demo.mcp_url, token_for("demo:read", demo.mcp_url)) as client:
        await client.call_tool("echo", {"text": "hello", "times": 2})
    [line] = logs.events("tool_call")
    assert TOOL_CALL_FIELDS <= set(line)
    assert line["tool"] == "echo" and line["status"] == "ok" and line["subject"] == "alice"
    assert line["input_sha256"] == input_digest({"text": "hello", "times": 2})
    assert len(line["trace_id"]) == 32 and int(line["trace_id"], 16) != 0


async def test_no_secret_reaches_any_log_line(demo, token_for, logs):
    """Arguments, tokens, the signing secret and DSN passwords never appear, whatever path is taken."""
    password = "pw-Zq8xv-never-log-me"
    token = token_for("demo:read demo:write", demo.mcp_url)
    async with mcp_client(demo.mcp_url, token) as client:
        await client.call_tool("write", {"key": "abc", "secret": password})
        await client.call_tool("echo", {"text": password})  # valid call
        await client.call_tool("echo", {"text": password, "times": 99})  # invalid call
        await client.call_tool("fail", {"mode": "crash"})
    expired = token_for("demo:read", demo.mcp_url, expires_in=-999)
    httpx.post(demo.mcp_url, json={}, headers={"Authorization": f"Bearer {expired}"})
    logging.getLogger("some.library").warning("connecting to postgresql://app:%s@db/app", password)
    logging.getLogger("some.library").warning("header was Bearer %s", token)
    text = "\n".join(logs.lines)
    assert logs.events("tool_call") and logs.events("auth_failure")
    for secret in (password, token, expired, SECRET, token.split(".")[2]):
        assert secret not in text
    for line in logs.lines:
        json.loads(line)  # every line is one JSON object


def test_redaction_masks_common_credential_shapes():
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl"
    masked = redact(f"Authorization: Bearer abc.def.ghi url=redis://:s3cret@redis:6379 password=hunter2 {jwt_like}")
    for secret in ("abc.def.ghi", "s3cret", "hunter2", jwt_like):
        assert secret not in masked


def test_formatter_keeps_fields_and_adds_level():
    record = logging.LogRecord("mcpfleet", logging.INFO, __file__, 1, "tool_call", None, None)
    record.fields = {"event": "tool_call", "tool": "query"}
    line = json.loads(JsonFormatter().format(record))
    assert line["event"] == "tool_call" and line["tool"] == "query" and line["level"] == "info"


def test_input_digest_is_order_independent():
    assert input_digest({"a": 1, "b": 2}) == input_digest({"b": 2, "a": 1})
    assert input_digest({"a": 1}) == hashlib.sha256(b'{"a":1}').hexdigest()


# Shapes that made the old URL-password and JWT patterns rescan the rest of the input from every position.
HOSTILE_SHAPES = {
    "scheme runs": "a://b:",
    "letters": "a",
    "jwt prefixes": "eyJ",
    "userinfo without @": "x://y:z!",
    "bearer words": "bearer ",
    "at signs": "@",
    "key=": "password=",
}


def _best_time(text: str) -> float:
    """This thread's CPU time, best of five: time spent waiting for a core (parallel test workers) is not counted."""
    import time

    best = float("inf")
    for _ in range(5):
        started = time.thread_time()
        redact(text)
        best = min(best, time.thread_time() - started)
    return best


def test_redaction_time_grows_linearly_with_the_input():
    """4x the input must cost about 4x, not 16x (the quadratic patterns did)."""
    for name, unit in HOSTILE_SHAPES.items():
        small, large = unit * (4_000 // len(unit)), unit * (16_000 // len(unit))
        ratio = _best_time(large) / max(_best_time(small), 1e-6)
        assert ratio < 8, f"{name}: 4x input took {ratio:.1f}x the time"


def test_redaction_input_is_bounded_and_keeps_a_digest():
    huge = "x" * 5_000_000
    out = redact(huge)
    assert len(out) < 70_000
    assert f"[{len(huge)} chars, sha256:{hashlib.sha256(huge.encode()).hexdigest()[:16]}]" in out


def test_bounded_keeps_short_strings_and_marks_long_ones():
    from apps.kit.observe.logs import bounded

    assert bounded("query") == "query"
    long = "t" * 10_000
    marked = bounded(long, 100)
    assert marked.startswith("t" * 100) and "[10000 chars, sha256:" in marked
    assert bounded(long, 100) == marked  # the same string gives the same digest: lines can be matched


def test_every_string_field_and_message_is_bounded_in_a_line():
    record = logging.LogRecord("mcpfleet", logging.INFO, __file__, 1, "tool_call", None, None)
    record.fields = {"event": "tool_call", "tool": "n" * 1_000_000, "keys": ["k" * 1_000_000]}
    line = json.loads(JsonFormatter().format(record))
    assert len(line["tool"]) < 1_200 and len(line["keys"][0]) < 1_200
    message = logging.LogRecord("mcp.server", logging.INFO, __file__, 1, "Tool %r failed", ("x" * 1_000_000,), None)
    assert len(json.loads(JsonFormatter().format(message))["message"]) < 9_000


def test_redaction_still_masks_after_the_rewrite():
    masked = redact(
        'dsn="postgresql://app:pw-1@db/app" other=x://no-password-here '
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0 BEARER abc token=t0k"
    )
    for secret in ("pw-1", "eyJzdWIiOiJhIn0", "abc", "t0k"):
        assert secret not in masked
    assert "x://no-password-here" in masked  # no "@": nothing to mask


def test_configured_secrets_are_masked_and_library_info_lines_are_dropped(capsys, make_settings):
    """A library's INFO line (httpx logs each request's URL) is not written below DEBUG; a warning is, with
    every configured secret masked wherever it appears (here the URL inside a JSON secret)."""
    from apps.kit.observe.logs import configure_logging, ours_or_warning

    webhook = "https://hooks.example.test/services/T0/B0/credential-in-a-url"
    settings = make_settings(REDIS_URL="redis://:redis-password-0123@localhost:6379/0")
    settings.redis_url = type(settings.redis_url)(f'{{"team": {{"url": "{webhook}"}}}}')  # a JSON secret
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        root.handlers[:] = []
        configure_logging("INFO", settings.secret_values())
        logging.getLogger("httpx").info("HTTP Request: POST %s", webhook)
        logging.getLogger("httpx").warning("retrying %s", webhook)
        logging.getLogger("mcpfleet").info("ours at info")
        lines = capsys.readouterr().out.splitlines()
    finally:
        configure_logging("INFO", [])
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for handler in root.handlers:
            handler.removeFilter(ours_or_warning)
    assert [json.loads(line)["message"] for line in lines] == ["retrying [REDACTED]", "ours at info"]


async def test_a_failed_call_is_logged_with_its_reason_at_warning_when_the_server_is_at_fault(demo, token_for, logs):
    """Before: during a dependency outage, failed calls were logged at info with no reason."""
    async with mcp_client(demo.mcp_url, token_for("demo:read", demo.mcp_url)) as client:
        await client.call_tool("fail", {"mode": "server"})
        await client.call_tool("fail", {"mode": "caller"})
        await client.call_tool("fail", {"mode": "crash"})
    server, caller, crash = logs.events("tool_call")
    assert (server["level"], server["status"]) == ("warning", "error")
    assert server["reason"] == "backend unavailable; retry later"
    assert (caller["level"], caller["status"], caller["reason"]) == ("info", "rejected", "no such thing")
    assert crash["level"] == "warning" and crash["status"] == "internal_error"
    assert "internal detail" not in json.dumps(crash)  # the crash's own text stays out, as it does for the caller


def test_an_event_written_directly_is_the_line_the_json_handler_writes(capfd):
    """With only the JSON handler listening, events skip `logging` and come out the same; another listener (a
    test's handler, an embedding app's) gets them through `logging` as before."""
    from apps.kit.observe import logs as kit_logs

    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        root.handlers[:] = []
        kit_logs.configure_logging("INFO", ["configured-secret-0123"])
        assert kit_logs._written_directly()
        kit_logs.log_event("tool_call", tool="query", status="ok", note="configured-secret-0123", big="x" * 5000)
        direct = json.loads(capfd.readouterr().out)
        listener = logging.Handler()
        seen: list[logging.LogRecord] = []
        listener.emit = seen.append  # type: ignore[method-assign]
        root.addHandler(listener)
        assert not kit_logs._written_directly()
        kit_logs.log_event("tool_call", tool="query", status="ok", note="configured-secret-0123", big="x" * 5000)
        through_logging = json.loads(capfd.readouterr().out)
        assert [record.fields["tool"] for record in seen] == ["query"]  # type: ignore[attr-defined]
    finally:
        kit_logs.configure_logging("INFO", [])
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    assert {k: v for k, v in direct.items() if k != "ts"} == {k: v for k, v in through_logging.items() if k != "ts"}
    assert direct["note"] == "[REDACTED]" and direct["big"].startswith("x" * 1024 + "...[5000 chars")
    assert list(direct) == ["ts", "level", "logger", "event", "tool", "status", "note", "big"]
