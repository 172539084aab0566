"""The kit's outbound client against a scripted loopback API: Retry-After honoured within the deadline, writes
never retried, redirects and environment proxies ignored, answers read with a cap, one client span each."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from apps.kit import CallerError
from apps.kit.upstream import Upstream, UpstreamUnavailable, retry_after_seconds


class Script:
    """What the API answers, in order: (status, headers, body); the last one repeats."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.seen: list[tuple[str, str]] = []
        self.cookies: list[str | None] = []


@pytest.fixture
def api() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self.rfile.read(length)
            self.script_seen()
            status, headers, body = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
            self.send_response(status)
            for name, value in {"content-length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def script_seen(self) -> None:
            script.seen.append((self.command, self.path))
            script.cookies.append(self.headers.get("cookie"))

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", script
    server.shutdown()


def upstream(base: str, **overrides: Any) -> Upstream:
    settings = {"headers": {}, "timeout": 5.0, "max_bytes": 1024, "read_retries": 2} | overrides
    return Upstream("API", base, **settings)


async def test_a_read_waits_as_long_as_retry_after_says_then_succeeds(api):
    base, script = api
    script.answers = [(429, {"retry-after": "1"}, b"{}"), (200, {}, b'{"ok": true}')]
    client = upstream(base)
    try:
        answer = await client.request("GET", "/things", idempotent=True)
    finally:
        await client.aclose()
    assert (answer.status, answer.body) == (200, {"ok": True})
    assert len(script.seen) == 2


async def test_a_retry_after_past_the_deadline_is_returned_not_waited_for(api):
    base, script = api
    script.answers = [(429, {"retry-after": "3600"}, b'{"message": "slow down"}')]
    client = upstream(base, timeout=2.0)
    try:
        answer = await client.request("GET", "/things", idempotent=True)
    finally:
        await client.aclose()
    assert answer.status == 429 and answer.headers["retry-after"] == "3600" and len(script.seen) == 1


async def test_a_write_is_never_retried(api):
    base, script = api
    script.answers = [(502, {}, b"{}"), (200, {}, b"{}")]
    client = upstream(base)
    try:
        with pytest.raises(UpstreamUnavailable, match="HTTP 502"):
            await client.request("POST", "/things", idempotent=False, json_body={"a": 1})
    finally:
        await client.aclose()
    assert script.seen == [("POST", "/things")]


async def test_a_503_without_retry_after_is_retried_like_any_5xx(api):
    base, script = api
    script.answers = [(503, {}, b"{}"), (200, {}, b"[]")]
    client = upstream(base)
    try:
        assert (await client.request("GET", "/x", idempotent=True)).body == []
    finally:
        await client.aclose()


async def test_redirects_are_not_followed_and_a_huge_answer_is_cut(api, monkeypatch):
    base, script = api
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # an environment proxy would break every call
    script.answers = [(302, {"location": "http://elsewhere.test/"}, b"")]
    client = upstream(base, read_retries=0)
    try:
        with pytest.raises(UpstreamUnavailable, match="redirect"):
            await client.request("GET", "/x", idempotent=True)
        script.answers = [(200, {}, b"[" + b"1," * 4000 + b"1]")]
        with pytest.raises(CallerError, match="over 1024 bytes"):
            await client.request("GET", "/x", idempotent=True)
    finally:
        await client.aclose()


async def test_each_request_is_one_client_span(api, monkeypatch):
    base, script = api
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr("apps.kit.upstream._tracer", provider.get_tracer("test"))
    script.answers = [(200, {}, b"{}")]
    client = upstream(base)
    try:
        await client.request("GET", "/x", idempotent=True)
    finally:
        await client.aclose()
    [span] = exporter.get_finished_spans()
    assert span.name == "GET API" and span.attributes["http.response.status_code"] == 200
    assert span.attributes["server.address"] == "127.0.0.1"


async def test_parameters_are_encoded_for_the_fixed_path_and_no_cookie_is_kept(api):
    base, script = api
    script.answers = [(200, {"set-cookie": "session=theirs; Path=/", "link": '<a>; rel="next"'}, b"{}")]
    client = upstream(base + "/api/")
    try:
        params = {"labels": ["bug", "p1"], "open": True, "q": "a b&c=d", "none": None}
        answer = await client.request("GET", "/issues", idempotent=True, params=params)
        await client.request("GET", "issues", idempotent=True)
    finally:
        await client.aclose()
    assert script.seen[0] == ("GET", "/api/issues?labels=bug&labels=p1&open=true&q=a+b%26c%3Dd&none=")
    assert script.seen[1] == ("GET", "/api/issues")
    assert script.cookies == [None, None]  # the cookie one answer set is never sent with the next call
    assert answer.headers["link"] == '<a>; rel="next"'  # header names lower-cased


def test_retry_after_reads_seconds_and_http_dates():
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
