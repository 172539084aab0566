"""The kit's HTTP surface, end to end through uvicorn and the MCP SDK's own client."""

from __future__ import annotations

import json
import time
import tomllib
from pathlib import Path

import httpx
import jwt
import pytest
from mcp.shared.exceptions import MCPError

from apps.kit.observe.metrics import SERVER_FAULT_OUTCOMES
from tests.conftest import ISSUER, SECRET
from tests.support.mcp_client import mcp_client
from tests.support.raw import post, rpc, tool_call

INIT = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}


def test_no_token_gets_401_pointing_at_resource_metadata(demo, logs):
    response = httpx.post(demo.mcp_url, json=INIT)
    assert response.status_code == 401
    header = response.headers["www-authenticate"]
    assert header == 'Bearer resource_metadata="' + demo.base + '/.well-known/oauth-protected-resource/mcp"'
    assert "error=" not in header  # RFC 6750 §3.1: no credentials, no error code
    assert [e["reason"] for e in logs.events("auth_failure")] == ["missing_token"]


def test_resource_metadata_names_this_server_its_issuer_and_its_scopes(demo):
    metadata = httpx.get(demo.base + "/.well-known/oauth-protected-resource/mcp").json()
    assert metadata["resource"] == demo.mcp_url
    assert metadata["authorization_servers"] == ["https://issuer.mcpfleet.test"]
    assert metadata["scopes_supported"] == ["demo:read", "demo:write"]


def test_missing_scope_gets_a_403_step_up_challenge(demo, token_for):
    response = post(
        demo.mcp_url, tool_call("write", {"key": "abc"}, request_id=7), token_for("demo:read", demo.mcp_url)
    )
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == (
        'Bearer error="insufficient_scope", scope="demo:write", '
        f'resource_metadata="{demo.base}/.well-known/oauth-protected-resource/mcp"'
    )
    body = response.json()
    assert body["id"] == 7
    assert body["error"]["message"] == "Forbidden: tool 'write' requires scope demo:write"
    assert demo.calls == []


def _token_without_principal(audience: str) -> str:
    claims = {"iss": ISSUER, "aud": audience, "exp": int(time.time()) + 60, "scope": "demo:read"}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def test_every_401_is_counted_and_logged(demo, token_for, logs):
    attempts = {
        "missing_token": {},
        "basic credentials": {"Authorization": "Basic dXNlcjpwYXNz"},
        "malformed": {"Authorization": "Bearer not-a-jwt"},
        "expired": {"Authorization": f"Bearer {token_for('demo:read', demo.mcp_url, expires_in=-600)}"},
        "wrong_audience": {"Authorization": f"Bearer {token_for('demo:read', 'http://other/mcp')}"},
        "missing_principal": {"Authorization": f"Bearer {_token_without_principal(demo.mcp_url)}"},
    }
    statuses = [httpx.post(demo.mcp_url, json=INIT, headers=headers).status_code for headers in attempts.values()]
    assert statuses == [401] * len(attempts)
    registry = demo.app.state.metrics.registry
    counted = sum(
        s.value
        for m in registry.collect()
        if m.name == "mcp_auth_failures"
        for s in m.samples
        if s.name.endswith("_total")
    )
    assert counted == len(attempts)
    assert len(logs.events("auth_failure")) == len(attempts)
    assert registry.get_sample_value("mcp_auth_failures_total", {"reason": "missing_principal"}) == 1


def test_expiry_leeway_holds_end_to_end(demo, token_for):
    """A token 10 s past `exp` is inside the 30 s leeway: accepted, as the verifier promises."""
    token = token_for("demo:read", demo.mcp_url, expires_in=-10)
    assert post(demo.mcp_url, tool_call("echo", {"text": "x"}), token).status_code == 200


async def test_capabilities_are_honest_and_the_version_is_the_packages(demo, token_for):
    token = token_for("demo:read", demo.mcp_url)
    initialize = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    result = post(demo.mcp_url, rpc("initialize", initialize), token).json()["result"]
    assert set(result["capabilities"]) == {"tools"}
    version = tomllib.loads(Path("pyproject.toml").read_text())["project"]["version"]
    assert result["serverInfo"] == {"name": "kit-demo", "version": version}
    async with mcp_client(demo.mcp_url, token) as client:  # the 2026-07-28 discovery path
        capabilities = client.server_capabilities
    assert capabilities.tools is not None
    assert capabilities.prompts is None and capabilities.resources is None and capabilities.logging is None


@pytest.mark.parametrize(
    ("claims", "reason"),
    [({"expires_in": -600}, "expired"), ({"audience": "http://elsewhere/mcp"}, "wrong_audience")],
)
def test_bad_tokens_get_401_and_are_counted(demo, token_for, logs, claims, reason):
    audience = claims.pop("audience", demo.mcp_url)
    response = httpx.post(
        demo.mcp_url, json=INIT, headers={"Authorization": f"Bearer {token_for('demo:read', audience, **claims)}"}
    )
    assert response.status_code == 401
    assert "resource_metadata=" in response.headers["www-authenticate"]
    assert [e["reason"] for e in logs.events("auth_failure")] == [reason]
    metrics = httpx.get(demo.base + "/metrics").text
    assert f'mcp_auth_failures_total{{reason="{reason}"}} 1.0' in metrics


async def test_tools_list_shows_only_permitted_tools(demo, token_for):
    async with mcp_client(demo.mcp_url, token_for("demo:read", demo.mcp_url)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"echo", "sleep", "fail"}
    async with mcp_client(demo.mcp_url, token_for("demo:read demo:write", demo.mcp_url)) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"echo", "sleep", "fail", "write"}
    # A token with no scope of this server could never call a tool: refused with a step-up challenge
    # before its body is read (apps.kit.http.intake), not served an empty list.
    refusal = post(demo.mcp_url, rpc("tools/list"), token_for("", demo.mcp_url))
    assert refusal.status_code == 403 and 'scope="demo:read demo:write"' in refusal.headers["www-authenticate"]


async def test_call_without_scope_is_forbidden_and_never_runs(demo, token_for, logs):
    async with mcp_client(demo.mcp_url, token_for("demo:read", demo.mcp_url)) as client:
        with pytest.raises(MCPError) as raised:
            await client.call_tool("write", {"key": "abc"})
    assert raised.value.message.startswith("Forbidden")
    assert "demo:write" in raised.value.message
    assert "write" not in demo.calls
    metrics = httpx.get(demo.base + "/metrics").text
    assert 'mcp_authz_denials_total{gen_ai_tool_name="write"} 1.0' in metrics
    [line] = logs.events("tool_call")
    assert line["status"] == "forbidden" and line["tool"] == "write"


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"text": "hi", "times": 9}, "times"),
        ({"text": "hi", "times": "2"}, "times"),  # strict: no string-to-int coercion
        ({"text": ""}, "text"),
        ({}, "text"),
        ({"text": "hi", "sneaky": 1}, "sneaky"),
    ],
)
async def test_invalid_arguments_name_the_field_and_nothing_runs(demo, token_for, arguments, field):
    async with mcp_client(demo.mcp_url, token_for("demo:read", demo.mcp_url)) as client:
        result = await client.call_tool("echo", arguments)
    assert result.is_error
    text = result.content[0].text
    assert text.startswith("Invalid arguments for tool 'echo'")
    assert f"{field}:" in text
    assert demo.calls == []


async def test_valid_call_returns_structured_result(demo, token_for):
    async with mcp_client(demo.mcp_url, token_for("demo:read", demo.mcp_url)) as client:
        result = await client.call_tool("echo", {"text": "hi", "times": 2})
    assert not result.is_error
    assert result.structured_content == {"text": "hi hi"}
    assert json.loads(result.content[0].text) == {"text": "hi hi"}


async def test_outcomes_split_caller_mistakes_from_server_faults(demo, token_for):
    async with mcp_client(demo.mcp_url, token_for("demo:read", demo.mcp_url)) as client:
        caller = await client.call_tool("fail", {"mode": "caller"})
        server = await client.call_tool("fail", {"mode": "server"})
        crash = await client.call_tool("fail", {"mode": "crash"})
    assert caller.is_error and server.is_error and crash.is_error
    assert "internal detail" not in crash.content[0].text
    metrics = demo.app.state.metrics.registry
    count = "mcp_server_operation_duration_seconds_count"
    labels = {"mcp_method_name": "tools/call", "gen_ai_tool_name": "fail"}
    assert metrics.get_sample_value(count, {**labels, "outcome": "rejected"}) == 1
    assert metrics.get_sample_value(count, {**labels, "outcome": "error"}) == 1
    assert metrics.get_sample_value(count, {**labels, "outcome": "internal_error"}) == 1


def test_calls_the_protocol_kernel_refuses_are_the_callers_mistake(demo, token_for):
    """A 2026-era call without its `_meta` envelope, or with a mismatched routing header, never reaches the
    tool; it is counted as invalid params, never as a fault that spends the error budget or pages."""
    token = token_for("demo:read", demo.mcp_url)
    modern = {"MCP-Protocol-Version": "2026-07-28", "MCP-Method": "tools/call", "MCP-Name": "echo"}
    no_envelope = post(demo.mcp_url, tool_call("echo", {"text": "hi"}), token, headers=modern)
    wrong_name = post(demo.mcp_url, tool_call("echo", {"text": "hi"}), token, headers={**modern, "MCP-Name": "other"})
    assert no_envelope.status_code == 400 and wrong_name.status_code == 400
    assert demo.calls == []
    metrics = demo.app.state.metrics.registry
    labels = {"mcp_method_name": "tools/call", "gen_ai_tool_name": "echo"}
    count = "mcp_server_operation_duration_seconds_count"
    assert metrics.get_sample_value(count, {**labels, "outcome": "invalid_params"}) == 2
    assert all(metrics.get_sample_value(count, {**labels, "outcome": fault}) == 0 for fault in SERVER_FAULT_OUTCOMES)


def test_health_and_ready(demo):
    assert httpx.get(demo.base + "/health").json() == {"status": "ok"}
    ready = httpx.get(demo.base + "/ready")
    assert ready.status_code == 200 and ready.json()["checks"] == {"backend": "ok"}
    demo.app.state.server_state.healthy = False
    not_ready = httpx.get(demo.base + "/ready")
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"] == {"backend": "failed: ConnectionError"}
    metrics = httpx.get(demo.base + "/metrics").text
    assert "mcp_ready 0.0" in metrics
    assert 'mcp_dependency_up{dependency="backend"} 0.0' in metrics


def _echo_ok_count(text: str) -> float:
    series = (
        'mcp_server_operation_duration_seconds_count{gen_ai_tool_name="echo",mcp_method_name="tools/call",outcome="ok"}'
    )
    [line] = [line for line in text.splitlines() if line.startswith(series)]
    return float(line.rsplit(" ", 1)[1])


async def test_metrics_expose_every_family_and_count_the_call(demo, token_for):
    before = httpx.get(demo.base + "/metrics").text
    async with mcp_client(demo.mcp_url, token_for("demo:read", demo.mcp_url)) as client:
        await client.call_tool("echo", {"text": "x"})
    text = httpx.get(demo.base + "/metrics").text
    for family in (
        "mcp_server_operation_duration_seconds_bucket",
        "mcp_auth_failures_total",
        "mcp_authz_denials_total",
        "mcp_rate_limited_total",
        "mcp_rejected_requests_total",
        "mcp_inflight_calls",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "mcp_server_info",
    ):
        assert family in text, family
    # The series exist at 0 from start-up, so presence proves nothing: the call must have moved the count.
    assert _echo_ok_count(before) == 0 and _echo_ok_count(text) == 1
    assert 'le="10.0"' in text
    # Probes and scrapes are not tool calls.
    assert 'gen_ai_tool_name="_unknown"' not in text


async def test_probes_are_not_counted_as_calls(demo):
    for _ in range(3):
        httpx.get(demo.base + "/ready")
        httpx.get(demo.base + "/health")
    registry = demo.app.state.metrics.registry
    counts = [
        s.value
        for m in registry.collect()
        if m.name == "mcp_server_operation_duration_seconds"
        for s in m.samples
        if s.name.endswith("_count")
    ]
    assert counts and sum(counts) == 0  # every series exported, none counted
