"""A stateless server offers no server-initiated stream: GET /mcp must not hold a connection or memory.

Before, every GET opened an event stream that never closed (500 of them cost ~41 MB, all kept).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from tests.support.demo_process import start_demo_process

GETS = 1000


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def open_sockets(pid: int) -> int:
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            count += os.readlink(fd).startswith("socket:")
        except OSError:
            pass
    return count


def test_a_thousand_gets_leave_no_open_connection_and_no_memory():
    demo = start_demo_process()
    pid = demo.process.pid
    try:
        request = (
            f"GET /mcp HTTP/1.1\r\nHost: 127.0.0.1:{demo.port}\r\nAuthorization: Bearer {demo.token()}\r\n"
            "Accept: text/event-stream\r\nConnection: close\r\n\r\n"
        ).encode()
        warm = socket.create_connection(("127.0.0.1", demo.port))
        warm.sendall(request)
        warm.recv(4096)
        warm.close()
        time.sleep(0.2)
        sockets_before, rss_before = open_sockets(pid), rss_bytes(pid)
        clients, statuses = [], []
        for _ in range(GETS):  # every client keeps its end open, as a stream consumer would
            client = socket.create_connection(("127.0.0.1", demo.port))
            client.sendall(request)
            statuses.append(client.recv(64).split(b" ")[1])
            clients.append(client)
        time.sleep(0.5)
        held = open_sockets(pid) - sockets_before
        rss_growth = rss_bytes(pid) - rss_before
        for client in clients:
            client.close()
    finally:
        demo.process.kill()
        demo.process.wait()
    assert set(statuses) == {b"405"}
    assert held <= 0, f"{held} connections still open on the server"
    assert rss_growth < 5 * 1024 * 1024, f"RSS grew {rss_growth / 1e6:.1f} MB"
