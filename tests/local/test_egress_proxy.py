"""The egress proxy for real (Squid with the configuration `infra.egress` renders): each app reaches exactly the
outside hosts it declared, through its own port; a name that resolves to a private address is refused unless the
stack marks the host internal; the kit's JWKS fetch, its upstream client and the notify server's deliveries go
through it; every request leaves one JSON line naming the app, the host, the port and the verdict, and is counted
by app and verdict."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from apps.kit.declare.needs import OutsideHost
from apps.kit.identity.tokens import JwksKeys
from apps.kit.upstream import Upstream
from apps.notify.config import Target
from apps.notify.delivery import Courier
from apps.notify.network import DeliveryFailed
from infra.egress import EgressPlan
from tests.conftest import requirement_missing
from tests.support.postgres import free_port
from tests.support.receivers import WebhookReceiver, make_certificates
from tests.support.squid import LocalSquid

KEY = b"k" * 32
JWKS = {"keys": [{"kty": "oct", "kid": "k1", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnl0ZXM", "alg": "HS256"}]}


class _Upstream(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(JWKS).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    """A plain HTTP upstream on loopback (the issuer's key host, or any API)."""
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def receiver(certificates: Any) -> Iterator[WebhookReceiver]:
    hook = WebhookReceiver(certificates, KEY).start()
    yield hook
    hook.stop()


@pytest.fixture(scope="module")
def proxy(upstream: int, receiver: WebhookReceiver) -> Iterator[LocalSquid]:
    if LocalSquid.binary() is None:
        requirement_missing("squid is not installed (Debian: apt-get install squid)")
    plan = EgressPlan(
        {
            # The issuer's keys and a webhook relay, both on a private network and marked so; and a host it
            # declared that resolves to a private address without being marked.
            "mcp-notify": [
                OutsideHost("keys.internal.test", upstream, internal=True),
                OutsideHost("localhost", receiver.port, internal=True),
                OutsideHost("api.vendor.test", upstream),
            ],
            "mcp-db": [OutsideHost("keys.internal.test", upstream, internal=True)],
        }
    )
    hosts = {"keys.internal.test": "127.0.0.1", "api.vendor.test": "127.0.0.1", "exfil.test": "127.0.0.1"}
    squid = LocalSquid(plan, {**hosts, "localhost": "127.0.0.1", "metadata.test": "169.254.169.254"}).start()
    yield squid
    squid.stop()


def _get(proxy: str, url: str) -> int:
    with httpx.Client(proxy=proxy, trust_env=False, timeout=10) as client:
        return client.get(url).status_code


def test_an_app_reaches_what_it_declared_and_nothing_else(proxy: LocalSquid, upstream: int):
    db = proxy.url("mcp-db")
    assert _get(db, f"http://keys.internal.test:{upstream}/jwks.json") == 200
    # A compromised db server tries to post the database elsewhere: another host, another port, a raw address.
    assert _get(db, f"http://exfil.test:{upstream}/") == 403
    assert _get(db, f"http://keys.internal.test:{upstream + 1}/") == 403
    assert _get(db, f"http://127.0.0.1:{upstream}/") == 403
    # Another app's host, through the db server's port: still its own allowlist that counts.
    assert _get(db, f"http://api.vendor.test:{upstream}/") == 403


def test_a_declared_name_that_resolves_to_a_private_address_is_refused(proxy: LocalSquid, upstream: int):
    notify = proxy.url("mcp-notify")
    assert _get(notify, f"http://api.vendor.test:{upstream}/") == 403  # declared, but it points at loopback
    assert _get(notify, "http://metadata.test/latest/meta-data/") == 403
    assert _get(notify, f"http://keys.internal.test:{upstream}/") == 200  # marked internal by the stack


async def test_the_kits_jwks_fetch_goes_through_the_proxy(proxy: LocalSquid, upstream: int):
    keys = JwksKeys(f"http://keys.internal.test:{upstream}/jwks.json", proxy=proxy.url("mcp-db"))
    await keys.check()
    assert keys.key_ids == ["k1"]
    refused = JwksKeys(f"http://exfil.test:{upstream}/jwks.json", proxy=proxy.url("mcp-db"), backoff=(60.0,))
    await refused.refresh_if_due()
    assert refused.key_ids == []


async def test_the_kits_upstream_client_goes_through_the_proxy_and_nowhere_else(
    proxy: LocalSquid, upstream: int, monkeypatch: pytest.MonkeyPatch
):
    """The kit's `Upstream` (the on-call and GitHub servers' client) uses the proxy it is given, and only that one:
    a declared host answers, an undeclared one is the proxy's refusal, and an environment proxy is ignored."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # would break every call if it were read
    allowed = Upstream(
        "keys", f"http://keys.internal.test:{upstream}", headers={}, timeout=5, max_bytes=4096, read_retries=0,
        proxy=proxy.url("mcp-db"),
    )  # fmt: skip
    refused = Upstream(
        "exfil", f"http://exfil.test:{upstream}", headers={}, timeout=5, max_bytes=4096, read_retries=0,
        proxy=proxy.url("mcp-db"),
    )  # fmt: skip
    try:
        answer = await allowed.request("GET", "/jwks.json", idempotent=True)
        assert (answer.status, answer.body) == (200, JWKS)
        assert (await refused.request("GET", "/jwks.json", idempotent=True)).status == 403
    finally:
        await allowed.aclose()
        await refused.aclose()


async def test_notify_delivers_through_the_proxy_and_an_undeclared_target_is_refused(
    proxy: LocalSquid, receiver: WebhookReceiver, certificates: Any
):
    courier = Courier(5, str(certificates.ca_file), None, 60, proxy=proxy.url("mcp-notify"))
    try:
        target = Target(kind="webhook", url=f"https://localhost:{receiver.port}/hook", internal=True)
        delivered = await courier.webhook(target, KEY, b'{"text": "deploy done"}', "m-1")
        assert delivered.status == 200
        assert [r.signature_ok for r in receiver.received] == [True]
        stray = Target(kind="webhook", url=f"https://localhost:{receiver.port + 1}/hook", internal=True)
        with pytest.raises(DeliveryFailed):
            await courier.webhook(stray, KEY, b"{}", "m-2")
        assert len(receiver.received) == 1
    finally:
        await courier.aclose()


def test_every_request_is_logged_as_one_json_line_with_its_verdict(proxy: LocalSquid, upstream: int):
    before = len(proxy.entries())
    _get(proxy.url("mcp-db"), f"http://exfil.test:{upstream}/x")
    _get(proxy.url("mcp-db"), f"http://keys.internal.test:{upstream}/jwks.json")
    deadline = time.monotonic() + 10
    while len(proxy.entries()) < before + 2:  # Squid writes its log lines a moment after it answers
        assert time.monotonic() < deadline, proxy.entries()[before:]
        time.sleep(0.05)
    denied, allowed = proxy.entries()[before:]
    assert denied | {"ms": 0, "bytes": 0} == {
        "event": "egress",
        "app": "mcp-db",
        "method": "GET",
        "host": "exfil.test",
        "port": str(upstream),
        "verdict": "TCP_DENIED",
        "status": 403,
        "ms": 0,
        "bytes": 0,
    }
    assert (allowed["app"], allowed["host"], allowed["status"]) == ("mcp-db", "keys.internal.test", 200)
    assert allowed["verdict"] != "TCP_DENIED"


def test_each_request_is_counted_by_app_and_verdict_for_the_alert(proxy: LocalSquid, upstream: int):
    """The meter beside Squid counts what the log says: the denied-egress alert reads these series."""
    counted = _wait_for_counts(proxy, lambda c: c)  # every client's series exist before any request
    assert {("mcp-db", "denied"), ("mcp-db", "allowed"), ("mcp-notify", "denied")} <= set(counted)
    _get(proxy.url("mcp-db"), f"http://exfil.test:{upstream}/")
    _get(proxy.url("mcp-db"), f"http://exfil.test:{upstream}/again")
    _get(proxy.url("mcp-db"), f"http://keys.internal.test:{upstream}/jwks.json")
    after = _wait_for_counts(proxy, lambda c: c[("mcp-db", "denied")] >= counted[("mcp-db", "denied")] + 2)
    assert after[("mcp-db", "denied")] == counted[("mcp-db", "denied")] + 2
    assert after[("mcp-db", "allowed")] == counted[("mcp-db", "allowed")] + 1
    assert after[("mcp-notify", "denied")] == counted[("mcp-notify", "denied")]
    assert not any("exfil" in app for app, _ in after)  # the host is in the log, never a label


def _wait_for_counts(proxy: LocalSquid, ready: Any, timeout: float = 10) -> dict[tuple[str, str], float]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            counted = proxy.counted()
            if ready(counted):
                return counted
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("the meter did not count the requests in time")
        time.sleep(0.1)
