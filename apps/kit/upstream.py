"""The kit's outbound HTTP client: one API a server calls, at a configured address and nowhere else.

The base URL, headers and credentials are settings. A request names a fixed path (or a URL the server's own
code chose: a token endpoint from settings or discovery) and parameters that are encoded for it, so nothing a
caller sends can point a call (and its credentials) at another host; redirects are never followed, proxies come
from configuration only (the platform's egress proxy), never from the environment. Reads are retried on
transport errors and 5xx answers (they are idempotent), and after a 429 or 503 whose `Retry-After` fits the
deadline; writes never are. A request, retries included, has one overall deadline: an upstream that drips its
answer cannot hold a call past it. Answers are read with a byte cap, so an enormous answer costs at most that
much memory (`read_capped` does the same for the httpx clients of the JWKS fetch and notify's deliveries).
Each request is a client span.

The wire is aiohttp: with it the on-call and GitHub servers spend about 0.7 ms of CPU per call where they spent
3.1 ms on httpx, most of which was httpx's connection-pool bookkeeping (`docs/benchmark.md`).
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cache
from typing import Any

import aiohttp
import certifi
import httpx
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from yarl import URL

from apps.kit.declare.tools import CallerError, ServerError
from apps.kit.observe.logs import bounded

RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0)
WAIT_STATUSES = (429, 503)  # an upstream asking to be called again later (Retry-After)
# A larger answer is parsed on a worker thread: an 8 MiB JSON body takes tens of milliseconds to parse,
# which would stall every other request on the event loop.
PARSE_OFF_LOOP_BYTES = 256 * 1024
MAX_CONNECTIONS = 100  # pooled connections per upstream, as httpx's default was
_tracer = trace.get_tracer("apps.kit.upstream")


class UpstreamUnavailable(ServerError):
    """The API did not answer, or answered 5xx: the server's fault for the SLO, not the caller's."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status, self.body = status, body


class UpstreamRedirected(UpstreamUnavailable):
    """The API answered a redirect, which is never followed (nor retried: it will say the same again). A server
    whose redirects mean the caller named something that moved (a renamed repository) says so as the caller's."""


class AnswerTooLarge(ValueError):
    pass


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)
    size: int = 0  # bytes read, before parsing


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """The whole body, or `AnswerTooLarge` as soon as it passes `max_bytes` (the rest is never read)."""
    return await _capped(response.headers.get("content-length", ""), response.aiter_bytes(), max_bytes)


async def _capped(declared: str, chunks: AsyncIterator[bytes], max_bytes: int) -> bytes:
    if declared.isdigit() and int(declared) > max_bytes:
        raise AnswerTooLarge(f"{declared} bytes declared, the cap is {max_bytes}")
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            raise AnswerTooLarge(f"over {max_bytes} bytes")
        parts.append(chunk)
    return b"".join(parts)


@cache
def _tls() -> ssl.SSLContext:
    """Certificates checked against certifi's roots, as httpx does: the same trust on every machine and image."""
    return ssl.create_default_context(cafile=certifi.where())


def _query(params: Any) -> list[tuple[str, str]] | None:
    """Query parameters as httpx encoded them: a list repeats its key, True is `true`, None is empty."""
    if params is None:
        return None
    pairs = params.items() if isinstance(params, Mapping) else params
    encoded = []
    for key, value in pairs:
        for item in value if isinstance(value, list | tuple) else [value]:
            text = "true" if item is True else "false" if item is False else "" if item is None else str(item)
            encoded.append((str(key), text))
    return encoded


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110 §10.2.3); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return max(0.0, when - (time.time() if now is None else now))


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
        proxy: str | None = None,
        too_large_hint: str = "narrow the request",
        tolerated: Callable[[int, Any], bool] | None = None,
    ):
        """`tolerated(status, body)`: a 5xx answer that is the API's own typed error (e.g. Prometheus's query
        timeout), returned as an answer instead of raised as the upstream being down."""
        self.name, self.max_bytes, self.read_retries, self.deadline = name, max_bytes, read_retries, timeout
        self.too_large_hint, self.tolerated = too_large_hint, tolerated
        self.base = URL(base_url.rstrip("/"))
        self.host = self.base.host or ""
        self.headers, self.proxy = headers, proxy
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """One pooled session, opened on first use (inside the event loop that serves the requests)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self.headers,
                connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, ssl=_tls()),
                timeout=aiohttp.ClientTimeout(total=self.deadline),
                trust_env=False,  # never the environment's proxies or credentials
                cookie_jar=aiohttp.DummyCookieJar(),  # one caller's cookies are never sent for another
            )
        return self._session

    def _target(self, path: str) -> URL:
        """The base URL and a path of the server's own; a whole URL the server's own code chose stands as it is."""
        if path.startswith(("https://", "http://")):
            return URL(path)
        return URL(str(self.base) + ("" if path.startswith("/") else "/") + path)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool,
        params: Any = None,
        data: dict[str, str] | None = None,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        attempts = 1 + (self.read_retries if idempotent else 0)
        started = time.monotonic()
        attributes = {"http.request.method": method, "server.address": self.host, "mcp.upstream": self.name}
        with _tracer.start_as_current_span(
            f"{method} {self.name}", kind=SpanKind.CLIENT, attributes=attributes
        ) as span:
            try:
                async with asyncio.timeout(self.deadline):
                    for attempt in range(attempts):
                        last = attempt + 1 == attempts
                        pause = RETRY_DELAYS[min(attempt, len(RETRY_DELAYS) - 1)]
                        try:
                            answer = await self._once(method, path, params, data, json_body, headers)
                        except UpstreamRedirected:
                            raise
                        except UpstreamUnavailable:
                            if last:
                                raise
                            await asyncio.sleep(pause)
                            continue
                        if answer.status in WAIT_STATUSES and not last and not self._tolerated(answer):
                            # The upstream said when (Retry-After); a 503 without it is retried like a 5xx.
                            wait = retry_after_seconds(answer.headers.get("retry-after"))
                            wait = pause if wait is None and answer.status == 503 else wait
                            if wait is not None and wait < self.deadline - (time.monotonic() - started):
                                await asyncio.sleep(wait)
                                continue
                        span.set_attribute("http.response.status_code", answer.status)
                        if answer.status == 503 and not self._tolerated(answer):
                            raise UpstreamUnavailable(f"{self.name} answered HTTP 503", 503, answer.body)
                        return answer
            except TimeoutError:
                span.set_status(Status(StatusCode.ERROR, "deadline"))
                raise UpstreamUnavailable(f"{self.name} did not answer within {self.deadline:g} s") from None
            except UpstreamUnavailable as error:
                span.set_status(Status(StatusCode.ERROR, str(error)))
                raise
        raise AssertionError("unreachable")

    def _tolerated(self, answer: Answer) -> bool:
        return self.tolerated is not None and self.tolerated(answer.status, answer.body)

    async def _once(
        self, method: str, path: str, params: Any, data: Any, json_body: Any, headers: dict[str, str] | None
    ) -> Answer:
        try:
            async with self._client().request(
                method,
                self._target(path),
                params=_query(params),
                data=data,
                json=json_body,
                headers=headers,
                proxy=self.proxy,
                allow_redirects=False,
            ) as response:
                status = response.status
                if 300 <= status < 400 and status != 304:
                    raise UpstreamRedirected(f"{self.name} answered a redirect ({status}); not followed", status)
                try:
                    raw = await _capped(
                        response.headers.get("content-length", ""), response.content.iter_any(), self.max_bytes
                    )
                except AnswerTooLarge:
                    raise CallerError(
                        f"{self.name}'s answer is over {self.max_bytes} bytes; {self.too_large_hint}"
                    ) from None
                answer_headers: dict[str, str] = {}
                for name, value in response.headers.items():  # lower-cased, repeated ones joined (as httpx did)
                    name = name.lower()
                    answer_headers[name] = f"{answer_headers[name]}, {value}" if name in answer_headers else value
        except TimeoutError:
            raise UpstreamUnavailable(f"{self.name} did not answer in time") from None
        except aiohttp.ClientError as error:
            raise UpstreamUnavailable(f"{self.name} is unreachable ({type(error).__name__})") from None
        try:
            if len(raw) > PARSE_OFF_LOOP_BYTES:
                body = await asyncio.to_thread(json.loads, raw)
            else:
                body = json.loads(raw) if raw else None
        except ValueError:
            body = {"error": bounded(raw.decode("utf-8", "replace"), 300)}
        answer = Answer(status, body, answer_headers, len(raw))
        if status >= 500 and status != 503 and not self._tolerated(answer):
            raise UpstreamUnavailable(f"{self.name} answered HTTP {status}", status, body)
        return answer
