"""The `/mcp` endpoint's HTTP surface under hostile and malformed input: every refusal a 4xx, counted, never a 5xx."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.raw import post, rpc, tool_call


@pytest.fixture
def token(demo, token_for):
    return token_for("demo:read demo:write", demo.mcp_url)


def rejected(demo, reason: str) -> float:
    value = demo.app.state.metrics.registry.get_sample_value("mcp_rejected_requests_total", {"reason": reason})
    return value or 0.0


# --- methods: a stateless server opens no stream ------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "DELETE", "PUT", "PATCH"])
def test_anything_but_post_is_405_with_allow_post(demo, token, method):
    response = httpx.request(
        method, demo.mcp_url, headers={"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.json()["error"]["code"] == -32600
    assert rejected(demo, "method_not_allowed") == 1


# --- Origin (DNS rebinding): refused unless allowed; absent is fine --------------------------------


def test_foreign_origin_is_forbidden_and_nothing_runs(demo, token):
    response = post(demo.mcp_url, tool_call("echo", {"text": "x"}), token, {"Origin": "http://evil.example"})
    assert response.status_code == 403
    body = response.json()
    assert body["id"] is None and body["error"]["message"].startswith("Forbidden")
    assert demo.calls == []
    assert rejected(demo, "origin_not_allowed") == 1
    assert post(demo.mcp_url, tool_call("echo", {"text": "x"}), token).status_code == 200  # no Origin: any client


def test_an_allowed_origin_gets_cors_and_a_preflight(start_demo, token_for):
    demo = start_demo(MCP_ALLOWED_ORIGINS="https://console.example.com")
    token = token_for("demo:read", demo.mcp_url)
    preflight = httpx.options(
        demo.mcp_url,
        headers={"Origin": "https://console.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "https://console.example.com"
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    response = post(demo.mcp_url, tool_call("echo", {"text": "x"}), token, {"Origin": "https://console.example.com"})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "https://console.example.com"
    other = post(demo.mcp_url, tool_call("echo", {"text": "x"}), token, {"Origin": "https://console.example.com.evil"})
    assert other.status_code == 403


# --- headers ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        ({"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        ({"Content-Type": "application/x-www-form-urlencoded"}, 415, "unsupported_media_type"),
        ({"Accept": "text/html"}, 406, "not_acceptable"),
        ({"MCP-Protocol-Version": "1999-01-01"}, 400, "unsupported_protocol_version"),
    ],
)
def test_wrong_headers_get_the_right_4xx(demo, token, headers, status, reason):
    response = post(demo.mcp_url, rpc("tools/list"), token, headers)
    assert response.status_code == status
    assert response.json()["error"]["message"]
    assert rejected(demo, reason) == 1


def test_a_bogus_protocol_version_is_told_the_supported_ones(demo, token):
    error = post(demo.mcp_url, rpc("tools/list"), token, {"MCP-Protocol-Version": "bogus"}).json()["error"]
    assert "2025-11-25" in error["message"] and "2025-11-25" in error["data"]["supported"]


def test_two_authorization_headers_are_a_bad_request(demo, token, token_for):
    other = token_for("demo:read", demo.mcp_url, subject="mallory")
    response = post(
        demo.mcp_url,
        rpc("tools/list"),
        headers=[("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {other}")],
    )
    assert response.status_code == 400
    assert rejected(demo, "duplicate_authorization") == 1


# --- bodies ----------------------------------------------------------------------------------------

CORPUS: dict[str, tuple[bytes, int, str]] = {
    "deep nesting": (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":' + b"[" * 5000 + b"]" * 5000 + b"}",
        400,
        "parse_error",
    ),
    "moderately deep": (
        json.dumps(tool_call("echo", {"text": "x"})).encode()[:-1] + b',"x":' + b"[" * 100 + b"]" * 100 + b"}",
        400,
        "parse_error",
    ),
    "invalid utf-8": (b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"x":"\xff\xfe"}}', 400, "parse_error"),
    "lone surrogate": (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"\\ud800"}}}',
        400,
        "parse_error",
    ),
    "bare NaN": (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"seconds":NaN}}}',
        400,
        "parse_error",
    ),
    "bare Infinity": (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"seconds":-Infinity}}}',
        400,
        "parse_error",
    ),
    "overflowing float": (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"sleep","arguments":{"seconds":1e999}}}',
        400,
        "parse_error",
    ),
    "huge integer": (
        b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"times":'
        + b"9" * 5000
        + b"}}}",
        400,
        "parse_error",
    ),
    "duplicate keys": (b'{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call"}', 400, "parse_error"),
    "empty body": (b"", 400, "parse_error"),
    "not json": (b"hello", 400, "parse_error"),
    "batch": (b'[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]', 400, "invalid_request"),
    "a bare string": (b'"tools/list"', 400, "invalid_request"),
    "wrong jsonrpc version": (b'{"jsonrpc":"1.0","id":1,"method":"tools/list"}', 400, "invalid_request"),
    "null id": (b'{"jsonrpc":"2.0","id":null,"method":"tools/list"}', 400, "invalid_request"),
    "boolean id": (b'{"jsonrpc":"2.0","id":true,"method":"tools/list"}', 400, "invalid_request"),
    "method not a string": (b'{"jsonrpc":"2.0","id":1,"method":7}', 400, "invalid_request"),
    "params not an object": (b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}', 400, "invalid_request"),
}


@pytest.mark.parametrize("case", list(CORPUS))
def test_malformed_bodies_get_a_counted_4xx_json_rpc_error(demo, token, case):
    body, status, reason = CORPUS[case]
    response = post(demo.mcp_url, body, token)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == (-32700 if reason == "parse_error" else -32600)
    assert rejected(demo, reason) == 1
    assert demo.calls == []


def test_an_oversized_body_is_413(demo, token):
    response = post(demo.mcp_url, b'{"x":"' + b"a" * (5 * 1024 * 1024) + b'"}', token)
    assert response.status_code == 413
    assert rejected(demo, "body_too_large") == 1


def test_a_notification_is_accepted_with_202_and_no_body(demo, token):
    response = post(demo.mcp_url, {"jsonrpc": "2.0", "method": "notifications/initialized"}, token)
    assert response.status_code == 202 and response.content == b""


JSON_ATOMS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_ATOMS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
METHODS = st.sampled_from(["tools/call", "tools/list", "initialize", "ping", "server/discover", "x" * 300]) | st.text(
    max_size=10
)
MESSAGES = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", 2]), "method": METHODS},
    optional={
        "id": st.integers() | st.text(max_size=5) | st.none() | st.booleans() | st.floats(),
        "params": JSON_VALUES
        | st.fixed_dictionaries(
            {"name": st.sampled_from(["echo", "write", "fail"]) | st.text(max_size=5), "arguments": JSON_VALUES}
        ),
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200) | MESSAGES.map(lambda m: json.dumps(m).encode()))
def test_no_body_ever_gets_a_5xx(demo, token, body):
    with httpx.Client(timeout=10) as client:
        response = post(demo.mcp_url, body, token, client=client)
    assert response.status_code < 500, (body, response.status_code, response.text)
    if response.status_code >= 400:
        assert response.json()  # every refusal carries a JSON body


def test_the_servers_own_origin_is_allowed_and_a_rebound_one_is_not(demo, token):
    """A page the server itself serves is same-origin; DNS rebinding arrives with the attacker's origin
    (another host, or the same address on another port)."""
    own = demo.base  # the resource URL's scheme://host:port
    assert post(demo.mcp_url, tool_call("echo", {"text": "x"}), token, {"Origin": own}).status_code == 200
    port = int(demo.base.rsplit(":", 1)[1])
    for foreign in ("http://evil.example", f"http://127.0.0.1:{port + 1}", f"https://127.0.0.1:{port}"):
        assert post(demo.mcp_url, tool_call("echo", {"text": "x"}), token, {"Origin": foreign}).status_code == 403
