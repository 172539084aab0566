"""Log lines: one JSON object per tool call with the agreed fields, and no secret anywhere."""

from __future__ import annotations

import hashlib
import json
import logging

import httpx

from apps.kit.guard import input_digest
from apps.kit.logs import JsonFormatter, redact
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
