"""What a request may hold while it is read (apps.kit.http.intake, apps.kit.http.serving), shown by the attacks that
used to work: bodies held one byte short, headers that never complete, a token with no scope, a flood of
requests. Each runs against a real uvicorn on loopback through raw sockets."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator

import pytest

from apps.kit.cli.token import mint
from apps.kit.http.intake import BODY_WINDOW_BYTES
from tests.conftest import ISSUER, SECRET
from tests.support.demo_process import start_demo_process
from tests.support.held_bodies import Holders, answered_share, bystander
from tests.support.raw import post, tool_call

MIB = 1024 * 1024


def _head(path: str, token: str, length: int, port: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n"
        "Content-Type: application/json\r\nAccept: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


@contextlib.contextmanager
def held_bodies(port: int, token: str, count: int, length: int, sent: int = 1024) -> Iterator[list[socket.socket]]:
    """`count` connections, each declaring `length` bytes and sending only `sent` of them, then holding."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(_head("/mcp", token, length, port) + b"{" + b" " * (sent - 1))
            sockets.append(s)
        yield sockets
    finally:
        for s in sockets:
            s.close()


@contextlib.contextmanager
def two_principals_holding(demo, port: int) -> Iterator[None]:
    """Two request slots held by two principals (each may have only its share of bodies arriving)."""
    with held_bodies(port, demo.token("demo:read", subject="p1"), 1, 1000, sent=10):
        with held_bodies(port, demo.token("demo:read", subject="p2"), 1, 1000, sent=10):
            yield


def answer_of(s: socket.socket, timeout: float = 3) -> tuple[int, dict[str, str], bytes]:
    """The status, headers and body of the one answer on `s` (waits at most `timeout`)."""
    s.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed without an answer ({data[:80]!r})")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    while len(body) < int(headers.get("content-length", "0")):
        body += s.recv(65536)
    return int(lines[0].split()[1]), headers, body


def test_a_token_with_no_scope_of_the_server_is_refused_before_its_body_is_read(demo):
    token = demo.token("other:scope")
    port = int(demo.base.rsplit(":", 1)[1])
    with held_bodies(port, token, 1, 4 * MIB - 100) as [held]:
        started = time.monotonic()
        status, headers, body = answer_of(held)
    assert status == 403 and time.monotonic() - started < 2  # at once, not after the body
    assert (
        'error="insufficient_scope"' in headers["www-authenticate"]
        and 'scope="demo:read demo:write"' in (headers["www-authenticate"])
    )
    assert json.loads(body)["error"]["message"].startswith("Forbidden")
    assert _counted(demo, "no_scope") == 1


def test_held_bodies_are_bounded_per_principal_and_per_process_and_given_back(start_demo):
    # 4 MiB body cap: 8 MiB per principal (two held bodies), 32 MiB per process (eight).
    demo = start_demo()
    port = int(demo.base.rsplit(":", 1)[1])
    near_cap = 4 * MIB - 100
    sent = near_cap - 1  # a reservation is what arrived (and a window ahead), so the bodies are sent but a byte
    with held_bodies(port, demo.token("demo:read", subject="mallory"), 2, near_cap, sent):
        _wait(lambda: demo.app.endpoint.bodies.in_flight == 2 * near_cap)  # both bodies read but their last byte
        # a third declared body: its window alone is over mallory's share (sent in part, as it is refused at once)
        with held_bodies(port, demo.token("demo:read", subject="mallory"), 1, near_cap) as [third]:
            status, headers, _ = answer_of(third)
            assert status == 429 and headers["retry-after"] == "1"
        others = [demo.token("demo:read", subject=f"p{i}") for i in range(3)]
        with contextlib.ExitStack() as stack:
            for token in others:
                stack.enter_context(held_bodies(port, token, 2, near_cap, sent))
            _wait(lambda: demo.app.endpoint.bodies.in_flight == 8 * near_cap)
            with held_bodies(port, demo.token("demo:read", subject="bob"), 1, near_cap) as [over]:
                status, headers, _ = answer_of(over)
                assert status == 503 and headers["retry-after"] == "1"
            # a small call still fits beside them
            small = post(demo.mcp_url, tool_call("echo", {"text": "hi"}), demo.token("demo:read", subject="carol"))
            assert small.status_code == 200
    _wait(lambda: demo.app.endpoint.bodies.in_flight == 0)  # every reservation given back when they left
    assert _counted(demo, "body_budget_principal") == 1 and _counted(demo, "body_budget_process") == 1


def test_a_body_that_does_not_arrive_in_time_gets_408_and_its_bytes_back(start_demo):
    demo = start_demo(MCP_BODY_READ_SECONDS="1")
    port = int(demo.base.rsplit(":", 1)[1])
    with held_bodies(port, demo.token("demo:read"), 1, 4 * MIB - 100) as [held]:
        started = time.monotonic()
        status, _, body = answer_of(held, timeout=5)
    assert status == 408 and 0.9 < time.monotonic() - started < 3
    assert "did not arrive at 8192 bytes/s or within 1 s" in json.loads(body)["error"]["message"]
    assert demo.app.endpoint.bodies.in_flight == 0


def test_a_body_under_the_minimum_rate_gets_408_long_before_the_read_deadline(start_demo):
    demo = start_demo(MCP_BODY_MIN_BYTES_PER_SECOND="1000")  # the read deadline stays 15 s
    port = int(demo.base.rsplit(":", 1)[1])
    with held_bodies(port, demo.token("demo:read"), 1, 4 * MIB - 100, sent=2000) as [held]:
        started = time.monotonic()
        status, _, _ = answer_of(held, timeout=10)
    assert status == 408 and 2.5 < time.monotonic() - started < 5  # 1 s of grace, then 2,000 bytes bought 2 s
    assert demo.app.endpoint.bodies.in_flight == 0


def test_a_declared_body_reserves_a_window_then_what_arrives(start_demo):
    demo = start_demo()
    port = int(demo.base.rsplit(":", 1)[1])
    with held_bodies(port, demo.token("demo:read"), 1, 4 * MIB - 100, sent=1024):
        _wait(lambda: demo.app.endpoint.bodies.in_flight == 1024 + BODY_WINDOW_BYTES)
    _wait(lambda: demo.app.endpoint.bodies.in_flight == 0)


def test_once_half_the_slots_are_taken_a_principal_has_only_its_share_of_bodies_arriving(start_demo):
    # a share of 1, crowded from 8 requests in flight; held bodies of 10 bytes last 11 s at 1 byte/s
    demo = start_demo(MCP_MAX_CONCURRENT_REQUESTS="16", MCP_BODY_MIN_BYTES_PER_SECOND="1")
    port = int(demo.base.rsplit(":", 1)[1])
    mallory = demo.token("demo:read", subject="mallory")
    with held_bodies(port, mallory, 3, 1000, sent=10):  # a burst on a quiet server is not refused
        _wait(lambda: demo.app.endpoint.shedder.in_flight == 3)
    with contextlib.ExitStack() as others:
        for i in range(7):
            others.enter_context(held_bodies(port, demo.token("demo:read", subject=f"p{i}"), 1, 1000, sent=10))
        with held_bodies(port, mallory, 1, 1000, sent=10):  # its share, the eighth in flight: now crowded
            _wait(lambda: demo.app.endpoint.shedder.in_flight == 8)
            with held_bodies(port, mallory, 1, 1000, sent=10) as [over]:
                status, headers, body = answer_of(over)
            assert status == 429 and headers["retry-after"] == "1"
            assert "bodies arriving for this caller" in json.loads(body)["error"]["message"]
            assert post(demo.mcp_url, tool_call("echo", {"text": "hi"}), demo.token("demo:read")).status_code == 200
    assert _counted(demo, "bodies_reading_principal") == 1


@pytest.mark.parametrize("principals", [1, 2, 4])
@pytest.mark.parametrize("attack", ["slots", "bytes"])
def test_principals_holding_bodies_they_never_send_leave_a_bystander_served(attack, principals):
    """The fourth attack pass, on a real process: each attacker keeps 80 connections (more than the 64 request
    slots) sending a head and 17 bytes of a body, declared or chunked, then nothing, reopening each one closed;
    or declares the file server's 10,747,904-byte cap twice and sends nothing. Before: a bystander got 503 on
    most calls (155 of 171 at 300 connections and 256 slots; 119 of 135 with two principals' bodies)."""
    process = start_demo_process(
        MCP_MAX_CONCURRENT_REQUESTS="64", MCP_MAX_BODY_BYTES="10747904", RATE_LIMIT_PER_MINUTE="10000"
    )
    try:
        tokens = [
            mint(SECRET, issuer=ISSUER, audience=process.url, subject=f"mallory-{i}", scopes="demo:read")
            for i in range(principals)
        ]
        holders = Holders(process.port, tokens, 80) if attack == "slots" else Holders(process.port, tokens, 2, 10747904)
        with holders.running():
            time.sleep(1.0)  # every connection open and holding
            statuses = bystander(process.url, process.token("demo:read"), seconds=2.5, every=0.02)
        print(f"\n{attack} x{principals}: bystander {dict(statuses)}; held requests got {dict(holders.answers)}")
        assert answered_share(statuses) >= 0.99, (statuses, holders.answers)
        if attack == "slots":
            assert holders.answers[429] > 0  # the attackers were refused their share's excess
    finally:
        process.process.kill()
        process.process.wait()


def test_requests_over_the_concurrency_cap_get_a_fast_503(start_demo):
    demo = start_demo(MCP_MAX_CONCURRENT_REQUESTS="2")
    port = int(demo.base.rsplit(":", 1)[1])
    token = demo.token("demo:read")
    with two_principals_holding(demo, port):
        started = time.monotonic()
        response = post(demo.mcp_url, tool_call("echo", {"text": "hi"}), token)
        assert response.status_code == 503 and response.headers["retry-after"] == "1"
        assert time.monotonic() - started < 1
    _wait(lambda: post(demo.mcp_url, tool_call("echo", {"text": "hi"}), token).status_code == 200)
    assert _counted(demo, "busy") >= 1


def test_a_shed_request_is_answered_before_the_app_and_its_connection_stays_usable(start_demo):
    demo = start_demo(MCP_MAX_CONCURRENT_REQUESTS="2", MCP_ALLOWED_ORIGINS="https://app.example")
    port = int(demo.base.rsplit(":", 1)[1])
    token = demo.token("demo:read")
    call = json.dumps(tool_call("echo", {"text": "hi"})).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with two_principals_holding(demo, port):
            _wait(lambda: demo.app.endpoint.shedder.in_flight == 2)
            s.sendall(_head("/mcp", token, len(call), port) + call)
            status, headers, shed_body = answer_of(s)
            assert status == 503 and headers["retry-after"] == "1"
            assert "server" not in headers  # uvicorn adds it to what the app sends: the app was not reached
            error = json.loads(shed_body)["error"]
            assert error["message"] == "Server busy: 2 requests in flight; retry after 1 s"
            # The same connection, still full: the probes answer, the shed call's body was not read as a request.
            s.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
            assert answer_of(s)[0] == 200
            # A browser's call is refused by the endpoint, with its CORS headers, and the same answer.
            browser = post(demo.mcp_url, tool_call("echo", {"text": "hi"}), token, {"Origin": "https://app.example"})
            assert (
                browser.status_code == 503 and browser.headers["access-control-allow-origin"] == "https://app.example"
            )
            assert browser.content == shed_body and browser.headers["server"] == "uvicorn"
        _wait(lambda: demo.app.endpoint.shedder.in_flight == 0)
        s.sendall(_head("/mcp", token, len(call), port) + call)  # served again, on the same connection
        status, _, body = answer_of(s)
        assert status == 200 and json.loads(body)["result"]["isError"] is False
    assert _counted(demo, "busy") == 2


def test_connections_whose_headers_never_complete_are_closed(start_demo):
    demo = start_demo(MCP_HEADER_READ_SECONDS="1")
    port = int(demo.base.rsplit(":", 1)[1])
    sockets = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(50)]
    try:
        for s in sockets:
            s.sendall(b"POST /mcp HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and never the rest
        time.sleep(1.6)
        for s in sockets:
            s.settimeout(2)
            assert s.recv(1) == b""  # closed by the server
    finally:
        for s in sockets:
            s.close()
    # a complete request on a fresh connection is served as usual
    assert post(demo.mcp_url, tool_call("echo", {"text": "hi"}), demo.token("demo:read")).status_code == 200


def test_sixty_held_bodies_do_not_grow_a_server_process_past_its_budget():
    """The attack as reported: 60 connections each declaring just under the body cap and holding the last
    byte. Before, the process grew by about the 60 bodies (240 MiB at a 4 MiB cap) and kept it."""
    process = start_demo_process()
    try:
        before = rss_bytes(process.process.pid)
        tokens = [
            mint(SECRET, issuer=ISSUER, audience=process.url, subject=f"attacker-{i}", scopes="demo:read")
            for i in range(6)
        ]
        length = 4 * MIB - 100
        with contextlib.ExitStack() as stack:
            held = [
                stack.enter_context(held_bodies(process.port, tokens[i % len(tokens)], 1, length, sent=1))[0]
                for i in range(60)
            ]
            for s in held:  # every body but its last byte, as far as the server takes it
                s.setblocking(False)
                rest = memoryview(b" " * (length - 2))
                with contextlib.suppress(OSError):
                    while rest:
                        rest = rest[s.send(rest) :]
            time.sleep(1)
            grown = (rss_bytes(process.process.pid) - before) / MIB
        print(f"\nRSS grew {grown:.0f} MiB under 60 held 4 MiB bodies (process budget 32 MiB)")
        assert grown < 96, f"RSS grew {grown:.0f} MiB"
    finally:
        process.process.kill()
        process.process.wait()


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def _counted(running, reason: str) -> float:
    value = running.app.state.metrics.registry.get_sample_value("mcp_rejected_requests_total", {"reason": reason})
    return value or 0.0


def _wait(condition, seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_uvicorn_s_protocol_still_offers_what_early_shedding_relies_on():
    """`apps.kit.http.serving` subclasses uvicorn's httptools protocol, which is not a public API: this names every
    attribute and hook it uses, so an upgrade that moves one fails here, by name, before the shedding tests do."""
    import asyncio as aio

    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    for hook in ("connection_made", "connection_lost", "on_message_begin", "on_headers_complete",
                 "on_response_complete", "data_received"):  # fmt: skip
        assert callable(getattr(HttpToolsProtocol, hook)), hook

    class Transport(aio.Transport):
        def get_extra_info(self, name, default=None):
            return ("127.0.0.1", 1) if name in ("peername", "sockname") else default

        def is_closing(self) -> bool:
            return False

        def write(self, data) -> None:
            pass

        def close(self) -> None:
            pass

    async def app(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def check() -> None:
        config = Config(app=app, http="httptools", lifespan="off")
        config.load()
        protocol = HttpToolsProtocol(config, ServerState(), {})
        protocol.connection_made(Transport())
        protocol.data_received(b"POST /mcp?x=1 HTTP/1.1\r\nHost: h\r\nOrigin: o\r\nContent-Length: 0\r\n\r\n")
        assert protocol.url.split(b"?")[0] == b"/mcp"
        assert (b"origin", b"o") in protocol.headers
        assert protocol.parser.get_http_version() == "1.1" and protocol.parser.should_keep_alive()
        assert protocol.parser.should_upgrade() is False
        assert protocol.loop is aio.get_running_loop() and protocol.transport is not None
        assert hasattr(protocol.cycle, "response_complete")
        await aio.sleep(0.05)  # the request's task answers
        assert protocol.cycle.response_complete
        protocol.connection_lost(None)

    aio.run(check())
