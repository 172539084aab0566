"""The audit trail (`apps.kit.observe.audit`): one OCSF API Activity event per decision, allowed or refused, from
every layer that decides (the HTTP gate's 401 and 403, the scopes, the rate limit, the arguments, the policies),
with who, what and a digest of the arguments but never their values; chained, so the verifier finds a removed or
altered event."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from apps.kit.observe.audit import SINKS, verify
from tests.support.raw import post, tool_call

SECRET_TEXT = "the-argument-value-that-must-not-be-audited"


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, line: bytes) -> None:
        self.lines.append(line.decode())


@pytest.fixture
def audit() -> Iterator[Lines]:
    capture = Lines()
    SINKS.append(capture)
    yield capture
    SINKS.remove(capture)


def events(capture: Lines) -> list[dict]:
    return [json.loads(line) for line in capture.lines]


def test_every_decision_of_every_layer_is_one_event(start_demo, audit, tmp_path):
    (tmp_path / "org.cedar").write_text(
        'forbid (principal, action == Action::"echo", resource) when { context.arguments.text == "forbidden" };\n'
    )
    demo = start_demo(RATE_LIMIT_PER_MINUTE="7", MCP_POLICY_DIR=str(tmp_path), MCP_ALLOWED_ORIGINS="https://ok.example")
    reader = demo.token("demo:read", subject="ada", extra={"groups": ["staff"]})
    calls = [
        (None, tool_call("echo", {"text": "hi"}), None),  # no token
        ("not-a-jwt", tool_call("echo", {"text": "hi"}), None),  # a bad token
        (reader, tool_call("echo", {"text": "hi"}), {"Origin": "https://evil.example"}),  # an origin not allowed
        (reader, tool_call("write", {"key": "k"}), None),  # a scope it lacks
        (reader, tool_call("nope", {}), None),  # an unknown tool
        (reader, tool_call("echo", {"wrong": 1}), None),  # arguments that do not validate
        (reader, tool_call("echo", {"text": "forbidden"}), None),  # the organisation's policy
        (reader, tool_call("echo", {"text": SECRET_TEXT}), None),  # allowed
    ]
    statuses = [post(demo.mcp_url, body, token, headers=headers).status_code for token, body, headers in calls]
    more = 1
    while post(demo.mcp_url, tool_call("echo", {"text": "again"}), reader).status_code != 429:
        more += 1  # until the rate limit refuses
    assert statuses == [401, 401, 403, 403, 200, 200, 200, 200]
    seen = events(audit)
    summary = [(e["unmapped"]["mcp"]["decided_by"], e["unmapped"]["mcp"]["decision"], e["status_detail"]) for e in seen]
    assert summary[:8] == [
        ("gate", "deny", "missing_token"),
        ("gate", "deny", "malformed"),  # why the token was refused
        ("gate", "deny", "origin_not_allowed"),
        ("scope", "deny", "forbidden"),
        ("validation", "allow", "unknown_tool"),  # not refused by any rule: a mistake, answered as one
        ("validation", "allow", "invalid_params"),
        ("policy", "deny", "forbidden"),
        ("policy", "allow", "ok"),
    ]
    assert summary[-1] == ("rate_limit", "deny", "rate_limited")
    assert len(seen) == len(calls) + more  # one event per request, no more
    allowed, denied = seen[7], seen[6]
    assert allowed["class_uid"] == 6003 and allowed["metadata"]["version"] == "1.3.0"
    assert allowed["actor"]["user"] == {"uid": "ada", "groups": [{"name": "staff"}]}
    assert allowed["actor"]["authorizations"] == [{"decision": "allow", "policy": {"uid": "default: echo"}}]
    assert allowed["resources"] == [{"type": "Server", "uid": "kit-demo"}] and allowed["activity_id"] == 2
    assert denied["actor"]["authorizations"] == [{"decision": "deny", "policy": {"uid": "org.cedar:1"}}]
    assert len(allowed["unmapped"]["mcp"]["arguments_sha256"]) == 64
    assert SECRET_TEXT not in "\n".join(audit.lines)  # a digest of the arguments, never their values
    assert verify(audit.lines) == []


def test_the_verifier_finds_a_removed_or_altered_event(start_demo, audit, tmp_path):
    demo = start_demo()
    token = demo.token("demo:read")
    for n in range(5):
        post(demo.mcp_url, tool_call("echo", {"text": str(n)}), token)
    lines = audit.lines
    assert len(lines) == 5 and verify(lines) == []
    assert "jumps from 2 to 4" in verify(lines[:2] + lines[3:])[0]  # one removed
    altered = json.loads(lines[1])
    altered["actor"]["user"]["uid"] = "somebody-else"
    problems = verify([lines[0], json.dumps(altered, separators=(",", ":")), *lines[2:]])
    assert problems and "event 2 was altered" in problems[0]

    log = tmp_path / "app.log"
    log.write_text('{"level":"info","event":"tool_call"}\n' + "\n".join(lines) + "\n")  # mixed with other lines
    command = [sys.executable, "-m", "apps.kit.cli.audit", "verify", str(log)]
    ran = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 0 and ran.stdout.strip() == "5 audit events checked; every chain holds"
    log.write_text("\n".join(lines[:3] + lines[4:]) + "\n")
    ran = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert ran.returncode == 1 and "jumps from 3 to 5" in ran.stdout


def test_an_event_is_canonical_json_whatever_its_fields_hold(capfd, audit):
    """The hash is spliced into the one serialisation: a subject or tool that spells the splice point cannot move
    it (every string is escaped), the line is the event's sorted JSON, and stdout gets it as one whole line."""
    from apps.kit.observe.audit import AuditTrail, Who, write_stdout

    trail = AuditTrail("mcp-demo", "1", "https://issuer")
    forged = '"unmapped":{"chain":{"hash":"0",'
    trail.record(who=Who(forged, forged, (forged,)), allowed=False, decided_by="policy", outcome=forged, tool=forged)
    trail.record(who=None, allowed=True, decided_by="gate", outcome="ok")
    assert verify(audit.lines) == []
    first = json.loads(audit.lines[0])
    assert first["actor"]["user"]["uid"] == forged and next(iter(first["unmapped"]["chain"])) == "hash"
    assert audit.lines[0] == json.dumps(first, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    write_stdout(audit.lines[1].encode())  # the default sink wrote both already: the output holds three lines
    assert capfd.readouterr().out == "".join(line + "\n" for line in [*audit.lines, audit.lines[1]])
