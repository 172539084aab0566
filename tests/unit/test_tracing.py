"""Traces leave over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set, and carry the log line's trace id."""

from __future__ import annotations

import json
import time

import httpx

from tests.support.demo_process import start_demo_process
from tests.support.otlp import OtlpReceiver


def test_tool_call_spans_are_exported_with_the_logged_trace_id():
    receiver = OtlpReceiver()
    # an environment proxy (here one that cannot be reached) is not the exporter's: the collector is configured
    demo = start_demo_process(
        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100", HTTP_PROXY="http://127.0.0.1:9"
    )
    process, url = demo.process, demo.url
    try:
        token = demo.token()
        response = httpx.post(
            url,
            headers={
                "Authorization": f"Bearer {token}",
                "MCP-Protocol-Version": "2025-11-25",
                "Accept": "application/json, text/event-stream",
            },
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": "hi"}},
            },
        )
        assert response.status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(b"tools/call echo" in body for _, body in receiver.bodies):
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(timeout=30)
        output = demo.output().decode()
        receiver.server.shutdown()
    [span_batch] = [body for path, body in receiver.bodies if b"tools/call echo" in body]
    assert all(path == "/v1/traces" for path, _ in receiver.bodies)
    [line] = [json.loads(x) for x in output.splitlines() if '"event":"tool_call"' in x]
    assert bytes.fromhex(line["trace_id"]) in span_batch  # the same trace, in the exported span
    assert b"kit-demo" in span_batch  # service.name


def test_spans_of_the_last_seconds_are_flushed_at_shutdown():
    """A rolling update SIGTERMs the replica; the spans still in the batch must leave before it exits."""
    receiver = OtlpReceiver()
    # A batch delay far longer than the test: only the shutdown flush can deliver these spans.
    demo = start_demo_process(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="600000")
    try:
        headers = {
            "Authorization": f"Bearer {demo.token()}",
            "MCP-Protocol-Version": "2025-11-25",
            "Accept": "application/json, text/event-stream",
        }
        for n in range(5):
            body = {
                "jsonrpc": "2.0",
                "id": n,
                "method": "tools/call",
                "params": {"name": "echo", "arguments": {"text": f"last-{n}"}},
            }
            assert httpx.post(demo.url, headers=headers, json=body).status_code == 200
        assert receiver.bodies == []  # nothing exported yet
        demo.process.terminate()
        demo.process.wait(timeout=30)
    finally:
        if demo.process.poll() is None:
            demo.process.kill()
        receiver.server.shutdown()
    exported = b"".join(body for _, body in receiver.bodies)
    assert exported.count(b"tools/call echo") == 5
