"""A webhook target's answer is read with a cap: one that answers an endless body after taking the message
does not hold the delivery until its timeout (or grow memory); the delivery is reported as delivered."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from apps.notify.config import Target
from apps.notify.delivery import Courier


@pytest.fixture
def endless_target() -> Iterator[int]:
    """Takes the POST, answers 200 with a body that never ends (1 MiB every 10 ms)."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                chunk = b"x" * (1024 * 1024)
                try:
                    while not stop.is_set():
                        conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        time.sleep(0.01)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    listener.close()


async def test_an_endless_answer_is_cut_and_the_delivery_counts(endless_target: int):
    courier = Courier(10, None, None, 60)
    try:
        target = Target(kind="webhook", url=f"http://127.0.0.1:{endless_target}/hook", internal=True)
        started = time.monotonic()
        delivered = await courier.webhook(target, b"k" * 32, b'{"text": "deploy done"}', "m-1")
        assert delivered.status == 200
        assert time.monotonic() - started < 3  # not the 10 s timeout: the answer was cut at its cap
    finally:
        await courier.aclose()
