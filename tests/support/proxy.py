"""A round-robin TCP load balancer on loopback, standing in for a Kubernetes Service.

Each new client connection goes to the next *ready* upstream. Like the endpoints
controller, the proxy probes every upstream's `/ready` and routes only to those
that answer 200 (a replica that got SIGTERM stops answering); an upstream that
refuses the connection is skipped too. Clients that open one connection per
request therefore spread their calls across every ready replica, with no
stickiness.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter

import httpx


class RoundRobinProxy:
    def __init__(self, upstreams: list[tuple[str, int]], probe_interval: float = 0.2):
        self.upstreams = list(upstreams)
        self.ready: set[tuple[str, int]] = set(upstreams)
        self._probe_interval = probe_interval
        self._stopping = threading.Event()
        self.connections: Counter[tuple[str, int]] = Counter()
        self.refused: Counter[tuple[str, int]] = Counter()
        self._next = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def start(self) -> RoundRobinProxy:
        self._thread.start()
        self._ready.wait(10)
        threading.Thread(target=self._probe, daemon=True).start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _probe(self) -> None:
        with httpx.Client(timeout=1) as client:
            while not self._stopping.is_set():
                for host, port in self.upstreams:
                    try:
                        ok = client.get(f"http://{host}:{port}/ready").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    (self.ready.add if ok else self.ready.discard)((host, port))
                time.sleep(self._probe_interval)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        upstream = None
        candidates = [u for u in self.upstreams if u in self.ready] or self.upstreams
        for _ in range(len(candidates)):
            target = candidates[self._next % len(candidates)]
            self._next += 1
            try:
                upstream = await asyncio.wait_for(asyncio.open_connection(*target), 2)
            except (OSError, TimeoutError):
                self.refused[target] += 1
                continue
            self.connections[target] += 1
            break
        if upstream is None:
            client_writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
