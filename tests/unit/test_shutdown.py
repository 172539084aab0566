"""SIGTERM lets calls in flight finish, then the process exits cleanly."""

from __future__ import annotations

import asyncio
import json
import signal

import httpx

from tests.support.demo_process import start_demo_process


async def test_sigterm_drains_in_flight_calls():
    demo = start_demo_process(SHUTDOWN_GRACE_SECONDS="20")
    process, port, url = demo.process, demo.port, demo.url
    try:
        token = demo.token()

        async def slow_call(http: httpx.AsyncClient, n: int) -> dict:
            # One raw JSON-RPC POST per call (stateless server): nothing else crosses the wire,
            # so the only thing that can fail here is the drain itself.
            response = await http.post(
                url,
                json={
                    "jsonrpc": "2.0",
                    "id": n,
                    "method": "tools/call",
                    "params": {"name": "sleep", "arguments": {"seconds": 2.0}},
                },
            )
            response.raise_for_status()
            return response.json()["result"]["structuredContent"]

        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": "2025-11-25",
        }
        http = httpx.AsyncClient(headers=headers, timeout=30)
        calls = [asyncio.create_task(slow_call(http, n)) for n in range(3)]
        async with httpx.AsyncClient() as probe:  # wait until all three are in flight
            for _ in range(100):
                metrics = (await probe.get(f"http://127.0.0.1:{port}/metrics")).text
                if "mcp_inflight_calls 3.0" in metrics:
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("calls never got in flight")
        process.send_signal(signal.SIGTERM)
        results = await asyncio.gather(*calls)
        await http.aclose()
        assert results == [{"slept": 2.0}] * 3
        # uvicorn re-raises SIGTERM after a clean shutdown, so the exit status is the signal.
        assert process.wait(timeout=20) in (0, -signal.SIGTERM)
        # New connections are refused once draining started.
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5)
            raise AssertionError("server still accepting after shutdown")
        except httpx.ConnectError:
            pass
        events = [json.loads(line)["event"] for line in demo.output().decode().splitlines() if '"event"' in line]
        assert events.count("tool_call") == 3
        assert events[-2:] == ["server_stopping", "server_stopped"]
    finally:
        if process.poll() is None:
            process.kill()
