"""Asking the person mid-call (apps/kit/call/asking.py) on one process without Redis: the answer is handed over in
memory. The cross-replica path through Redis, and a client we did not write, are in tests/local/test_github_server.py
and tests/interop/test_foreign_clients.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from apps.kit import FocusedServer, KitSettings, Telemetry, ToolArgs, ask_person, can_ask_person
from apps.kit.call.asking import can_ask, session_for
from tests.support.raw import BASE_HEADERS, post, rpc, tool_call


@asynccontextmanager
async def nothing(settings: KitSettings, telemetry: Telemetry) -> AsyncIterator[None]:
    yield None


asking_server: FocusedServer[None, KitSettings] = FocusedServer("kit-asking", KitSettings, nothing)


class Nothing(ToolArgs):
    pass


@asking_server.tool(scopes={"ask:write"}, read_only=False)
async def decide(args: Nothing, state: None) -> dict[str, object]:
    """Ask the person whether to go ahead."""
    if not can_ask_person():
        return {"asked": False}
    answer = await ask_person("Go ahead?", {"type": "object", "properties": {"go": {"type": "boolean"}}})
    return {"asked": True, "answer": answer}


def test_a_session_id_says_whether_the_client_can_be_asked():
    assert (session_for({"elicitation": {}}) or "").endswith(".form")  # empty: form mode (2025-11-25)
    assert (session_for({"elicitation": {"form": {}, "url": {}}}) or "").endswith(".form.url")
    url_only = session_for({"elicitation": {"url": {}}}) or ""
    assert url_only.endswith(".url") and ".form" not in url_only  # may be sent to a URL, never asked a form
    assert not can_ask([("mcp-session-id", url_only), ("accept", "application/json, text/event-stream")])
    both = session_for({"elicitation": {"form": {}, "url": {}}}) or ""
    assert can_ask([("mcp-session-id", both), ("accept", "application/json, text/event-stream")])
    assert session_for({}) is None and session_for(None) is None


def test_initialize_hands_out_the_session_only_to_a_client_that_declared_form_elicitation(start_server):
    running = start_server(asking_server)
    token = running.token("ask:write")
    params = {"protocolVersion": "2025-11-25", "clientInfo": {"name": "t", "version": "1"}}
    declared = post(running.mcp_url, rpc("initialize", {**params, "capabilities": {"elicitation": {}}}), token)
    silent = post(running.mcp_url, rpc("initialize", {**params, "capabilities": {}}), token)
    assert declared.headers["mcp-session-id"].endswith(".form") and "mcp-session-id" not in silent.headers


def test_the_person_answers_on_the_calls_stream_and_nobody_else_can(start_server):
    running = start_server(asking_server)
    session = {"Mcp-Session-Id": "0" * 32 + ".form"}
    assert post(running.mcp_url, tool_call("decide"), running.token("ask:write")).json()["result"][
        "structuredContent"
    ] == {"asked": False}  # no session saying it can be asked: not asked
    with httpx.Client(timeout=30) as client, client.stream(
        "POST", running.mcp_url, json=tool_call("decide"),
        headers={**BASE_HEADERS, **session, "Authorization": f"Bearer {running.token('ask:write')}"},
    ) as stream:  # fmt: skip
        lines = stream.iter_lines()
        question = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
        assert question["method"] == "elicitation/create" and question["params"]["message"] == "Go ahead?"
        answer = {"jsonrpc": "2.0", "id": question["id"], "result": {"action": "accept", "content": {"go": True}}}
        for subject in ("mallory", "alice"):  # mallory's is dropped; alice's is taken
            headers = {**BASE_HEADERS, "Authorization": f"Bearer {running.token('ask:write', subject=subject)}"}
            assert client.post(running.mcp_url, json=answer, headers=headers).status_code == 202
        result = json.loads(next(line for line in lines if line.startswith("data: "))[6:])
    assert result["result"]["structuredContent"] == {
        "asked": True,
        "answer": {"action": "accept", "content": {"go": True}},
    }
    assert running.app.state.endpoint.answers.delivered == 1
    # An answer to a question nobody is waiting for is dropped, and so is one too large to be a form's.
    stale = {"jsonrpc": "2.0", "id": question["id"], "result": {"action": "accept", "content": {"x": "y" * 9000}}}
    assert post(running.mcp_url, stale, running.token("ask:write")).status_code == 202
    assert running.app.state.endpoint.answers.delivered == 1
