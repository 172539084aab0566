"""One request must never freeze the server: hostile bodies from a token with no scopes at all.

A prober measures `/health` of a real server process while the hostile requests are sent; before the
fix, one 60,000-character tool name blocked the event loop for ~35 s in the log redaction.
"""

from __future__ import annotations

import threading
import time

import httpx

from tests.support.demo_process import start_demo_process

MIB = 1024 * 1024
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


def call(name: str, arguments: dict) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


HOSTILE = {
    "1 MiB tool name": call("t" * MIB, {}),
    "1 MiB tool name of scheme:// runs": call("a://b:" * (MIB // 6), {}),
    "1 MiB of jwt-like prefixes": call("eyJ" * (MIB // 3), {}),
    "1 MiB argument keys": call("echo", {"k" * MIB: 1, ("x://y:" * 1000): 2}),
    "many long argument keys": call("echo", {f"{i}" + "a://" * 2000: i for i in range(100)}),
    "long scheme:// value": call("echo", {"text": "a://b:" * (MIB // 6)}),
}


def test_hostile_requests_never_stall_health():
    demo = start_demo_process(RATE_LIMIT_PER_MINUTE="100000")
    token = demo.token(scopes="")  # a token with no scopes at all
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                started = time.perf_counter()
                client.get(f"http://127.0.0.1:{demo.port}/health").raise_for_status()
                latencies.append(time.perf_counter() - started)
                time.sleep(0.01)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        statuses = {}
        with httpx.Client(timeout=60, headers={**HEADERS, "Authorization": f"Bearer {token}"}) as client:
            for name, body in HOSTILE.items():
                statuses[name] = client.post(demo.url, json=body).status_code
        time.sleep(0.2)
    finally:
        stop.set()
        prober.join()
        demo.process.kill()
        demo.process.wait()
        output = demo.output()
    assert all(status < 500 for status in statuses.values()), statuses
    assert len(latencies) > 10
    assert max(latencies) < 0.25, f"/health took {max(latencies) * 1000:.0f} ms while hostile requests were served"
    longest_line = max(len(line) for line in output.splitlines())
    assert longest_line < 70_000, f"a log line of {longest_line} bytes"
