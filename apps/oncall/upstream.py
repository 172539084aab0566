"""One HTTP API the server fronts (Prometheus or Alertmanager), at a configured address and nowhere else.

The base URL, tenant header and credentials are settings. A request names only a fixed path and
parameters that httpx encodes, so nothing a caller sends can point a call (and its credentials) at
another host; redirects are never followed, and the proxy environment is ignored. Reads are retried
on transport errors and 5xx answers (they are idempotent); writes never are. A request, retries
included, has one overall deadline: an upstream that drips its answer cannot hold a call past it.
Answers are read with a byte cap, so an enormous upstream answer costs at most that much memory.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx

from apps.kit import CallerError, ServerError
from apps.kit.logs import bounded

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
# A larger answer is parsed on a worker thread: an 8 MiB JSON body takes tens of milliseconds to parse,
# which would stall every other request on the event loop.
PARSE_OFF_LOOP_BYTES = 256 * 1024


class UpstreamUnavailable(ServerError):
    """The API did not answer, or answered 5xx: the server's fault for the SLO, not the caller's."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status, self.body = status, body


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


class Upstream:
    def __init__(
        self,
        name: str,
        base_url: str,
        *,
        headers: dict[str, str],
        timeout: float,
        max_bytes: int,
        read_retries: int,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.name, self.max_bytes, self.read_retries, self.deadline = name, max_bytes, read_retries, timeout
        self.client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=timeout,
            follow_redirects=False,
            trust_env=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        params: Any = None,
        data: dict[str, str] | None = None,
        json_body: Any = None,
    ) -> Answer:
        attempts = 1 + (self.read_retries if idempotent else 0)
        try:
            async with asyncio.timeout(self.deadline):
                for attempt in range(attempts):
                    try:
                        return await self._once(method, path, params, data, json_body)
                    except UpstreamUnavailable:
                        if attempt + 1 == attempts:
                            raise
                        await asyncio.sleep(RETRY_DELAYS[attempt])
        except TimeoutError:
            raise UpstreamUnavailable(f"{self.name} did not answer within {self.deadline:g} s") from None
        raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, params: Any, data: Any, json_body: Any) -> Answer:
        try:
            async with self.client.stream(method, path, params=params, data=data, json=json_body) as response:
                if 300 <= response.status_code < 400:
                    raise UpstreamUnavailable(f"{self.name} answered a redirect ({response.status_code}); not followed")
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise CallerError(
                            f"{self.name}'s answer is over {self.max_bytes} bytes; narrow the request "
                            "(fewer series, a shorter range or a larger step)"
                        )
                    chunks.append(chunk)
                status = response.status_code
        except httpx.TimeoutException:
            raise UpstreamUnavailable(f"{self.name} did not answer in time") from None
        except httpx.TransportError as error:
            raise UpstreamUnavailable(f"{self.name} is unreachable ({type(error).__name__})") from None
        raw = b"".join(chunks)
        try:
            if len(raw) > PARSE_OFF_LOOP_BYTES:
                body = await asyncio.to_thread(json.loads, raw)
            else:
                body = json.loads(raw) if raw else None
        except ValueError:
            body = {"error": bounded(raw.decode("utf-8", "replace"), 300)}
        if status >= 500 and not (status == 503 and _is_prometheus_error(body)):
            raise UpstreamUnavailable(f"{self.name} answered HTTP {status}", status, body)
        return Answer(status, body)


def _is_prometheus_error(body: Any) -> bool:
    """Prometheus answers a query that timed out or was cancelled with 503 and a typed error body."""
    return isinstance(body, dict) and body.get("status") == "error" and "errorType" in body
