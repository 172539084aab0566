"""Callers that hold request bodies they never finish, against a real server on loopback, while a bystander calls.

The fourth attack pass's two denials of service: a principal keeps many connections each sending a `POST /mcp`'s
headers and a few bytes of its body, then nothing (declared `Content-Length` or chunked), reopening each one the
server closes; or a few principals declare the largest body and send none of it. Either used to take every request
slot or the whole body budget from everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator

import httpx

from tests.support.raw import post, tool_call


def _head(port: int, token: str, framing: str) -> bytes:
    return (
        f"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nAccept: application/json\r\n{framing}\r\n\r\n"
    ).encode()


SLOW_DECLARED = (b"Content-Length: 200", b'{"jsonrpc": "2.0",')  # 17 bytes of 200, as reported
SLOW_CHUNKED = (b"Transfer-Encoding: chunked", b'12\r\n{"jsonrpc": "2.0",\r\n')


class Holders:
    """`connections` sockets per token, each sending a head and a few body bytes, then holding until the server
    closes it, then again, until stopped. Runs on its own event loop in a thread."""

    def __init__(self, port: int, tokens: list[str], connections: int, declared: int | None = None):
        self.port, self.tokens, self.connections, self.declared = port, tokens, connections, declared
        self.answers: Counter[int] = Counter()  # what the held requests got, by status
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def _request(self, token: str, index: int) -> bytes:
        if self.declared is not None:  # the body cap declared, nothing sent
            return _head(self.port, token, f"Content-Length: {self.declared}")
        framing, sent = SLOW_DECLARED if index % 2 == 0 else SLOW_CHUNKED
        return _head(self.port, token, framing.decode()) + sent

    async def _hold(self, token: str, index: int) -> None:
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            try:
                writer.write(self._request(token, index))
                await writer.drain()
                while not self._stop.is_set():
                    try:
                        line = await asyncio.wait_for(reader.readline(), 0.2)
                    except TimeoutError:
                        continue
                    if line.startswith(b"HTTP/1.1 "):
                        self.answers[int(line.split()[1])] += 1
                    if not line:
                        break
                    if line.startswith(b"HTTP/1.1 "):
                        break  # answered: reopen, as the attacker did
            except OSError:
                pass
            finally:
                writer.close()

    async def _run(self) -> None:
        holders = [asyncio.create_task(self._hold(token, i)) for token in self.tokens for i in range(self.connections)]
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        await asyncio.gather(*holders, return_exceptions=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[Holders]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(10)


def bystander(url: str, token: str, seconds: float, every: float = 0.05) -> Counter[int]:
    """A well-behaved principal's calls, one every `every` seconds for `seconds`: how many got each status."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds
    with httpx.Client() as client:
        while time.monotonic() < deadline:
            statuses[post(url, tool_call("echo", {"text": "hi"}), token, client=client).status_code] += 1
            time.sleep(every)
    return statuses


def answered_share(statuses: Counter[int]) -> float:
    return statuses[200] / max(1, sum(statuses.values()))
