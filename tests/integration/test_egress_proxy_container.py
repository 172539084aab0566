"""The egress proxy in containers, shaped as the platform runs it: Squid from its image as uid 13 on a read-only
root filesystem with the rendered config, the meter beside it in the same network namespace (as in one pod),
and a focused server from the apps image given only MCP_EGRESS_PROXY. Upstreams are a key server on network
aliases (every container address is private, so the allowed host is one the stack marks internal, and a
declared host that is not marked is refused for its private address).

The server fetches its JWKS through the proxy and accepts an RS256 token signed with that key; from inside
the server's container an undeclared host and a declared-but-private host are refused; each request is
one JSON line in the proxy's log and is counted by app and verdict.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from testcontainers.core.container import DockerContainer

from apps.kit.declare.needs import OutsideHost
from infra.components.egress_proxy import CONFIG_DIR, SCRATCH, SQUID_COMMAND, SQUID_UID
from infra.egress import EgressPlan, squid_conf
from infra.images import image
from sidecars.egress_meter import METRICS_PORT
from tests.conftest import ISSUER
from tests.integration.conftest import measured
from tests.support.mcp_client import mcp_client
from tests.support.stack import APP_PORT, wait_until

pytestmark = pytest.mark.integration
APP = "mcp-files"
KEYS, PRIVATE, UNDECLARED = "keys.mcpfleet.test", "private.vendor.test", "undeclared.mcpfleet.test"
KEYS_PORT = 8000
RESOURCE_URL = "http://mcp-files.mcpfleet.test/mcp"
PLAN = EgressPlan(
    {APP: [OutsideHost(KEYS, KEYS_PORT, internal=True), OutsideHost(PRIVATE, KEYS_PORT)]}  # PRIVATE: not marked
)
PROXY_PORT = PLAN.ports[APP]


@dataclass
class EgressStack:
    squid: DockerContainer
    app: DockerContainer
    key: rsa.RSAPrivateKey
    proxy_url: str

    def fetch_from_the_app(self, url: str) -> int:
        """An outbound request made inside the server's container, through its proxy port."""
        code = (
            "import httpx, sys; "
            f"print(httpx.get({url!r}, proxy={self.proxy_url!r}, trust_env=False, timeout=10).status_code)"
        )
        result = self.app.get_wrapped_container().exec_run(["python", "-c", code])
        assert result.exit_code == 0, result.output
        return int(result.output.decode().strip().splitlines()[-1])

    def log(self) -> list[dict]:
        out = self.squid.get_wrapped_container().logs(stdout=True, stderr=False).decode()
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def counted(self) -> dict[tuple[str, str], float]:
        port = self.squid.get_exposed_port(METRICS_PORT)
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        counts = {}
        for line in text.splitlines():
            if line.startswith("mcp_egress_requests_total{"):
                labels = dict(part.split("=") for part in line[line.index("{") + 1 : line.index("}")].split(","))
                counts[(labels["app"].strip('"'), labels["verdict"].strip('"'))] = float(line.rsplit(" ", 1)[1])
        return counts

    def token(self) -> str:
        claims = {"iss": ISSUER, "aud": RESOURCE_URL, "sub": "erin", "scope": "files:read", "exp": time.time() + 300}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture(scope="module")
def egress(apps_image: str, network) -> Iterator[EgressStack]:
    started = time.monotonic()
    suffix = uuid.uuid4().hex[:6]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    served = Path(tempfile.mkdtemp(prefix="mcpfleet-keys-"))
    (served / "jwks.json").write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "RS256", "use": "sig"}]}))
    served.chmod(0o755)
    (served / "jwks.json").chmod(0o644)
    config = Path(tempfile.mkdtemp(prefix="mcpfleet-squid-conf-"))
    (config / "squid.conf").write_text(squid_conf(PLAN))
    config.chmod(0o755)
    (config / "squid.conf").chmod(0o644)

    keys = DockerContainer(apps_image).with_command(f"http.server {KEYS_PORT} --directory /srv")
    keys.with_network(network).with_network_aliases(KEYS, PRIVATE, UNDECLARED).with_name(f"keys-{suffix}")
    keys.with_volume_mapping(str(served), "/srv", "ro")

    proxy_name = f"egress-proxy-{suffix}"
    squid = DockerContainer(image("squid")).with_command(" ".join(SQUID_COMMAND)).with_name(proxy_name)
    squid.with_network(network).with_network_aliases(proxy_name).with_exposed_ports(PROXY_PORT, METRICS_PORT)
    squid.with_volume_mapping(str(config), CONFIG_DIR, "ro")
    squid.with_kwargs(user=f"{SQUID_UID}:{SQUID_UID}", read_only=True, entrypoint=[])
    for path in SCRATCH.values():
        squid.with_tmpfs_mount(path, "size=16m")

    proxy_url = f"http://{proxy_name}:{PROXY_PORT}"
    app = DockerContainer(apps_image).with_command("apps.files").with_name(f"files-{suffix}")
    app.with_network(network).with_exposed_ports(APP_PORT).with_kwargs(read_only=True)
    app.with_tmpfs_mount("/tmp", "size=16m")
    env = {
        "MCP_RESOURCE_URL": RESOURCE_URL,
        "MCP_ISSUER": ISSUER,
        "MCP_JWKS_URL": f"http://{KEYS}:{KEYS_PORT}/jwks.json",
        "MCP_JWT_ALGORITHMS": "RS256",
        "MCP_EGRESS_PROXY": proxy_url,
        "FILES_ROOTS": '{"workspace": {"mode": "ro", "path": "/app/runbooks"}}',
    }
    for name, value in env.items():
        app.with_env(name, value)

    started_containers: list[DockerContainer] = []
    try:
        for container in (keys, squid):
            container.start()
            started_containers.append(container)
        # The meter shares the proxy's network namespace, as the sidecar shares the pod's.
        meter = DockerContainer(apps_image).with_command(f"sidecars.egress_meter --client={APP}")
        meter.with_kwargs(network_mode=f"container:{squid.get_wrapped_container().id}", read_only=True)
        meter.start()
        started_containers.append(meter)
        stack = EgressStack(squid, app, key, proxy_url)
        wait_until(lambda: stack.counted(), 60, 0.2, "the meter answering")
        app.start()
        started_containers.append(app)
        base = f"http://127.0.0.1:{app.get_exposed_port(APP_PORT)}"
        try:
            wait_until(lambda: httpx.get(base + "/ready", timeout=2).status_code == 200, 90, 0.2, "server ready")
        except TimeoutError as error:
            logs = app.get_wrapped_container().logs().decode()[-3000:]
            raise AssertionError(
                f"{error}\nserver:\n{logs}\nproxy:\n{squid.get_wrapped_container().logs().decode()[-2000:]}"
            ) from error
        measured(f"egress proxy {image('squid')}, meter and a server up: {time.monotonic() - started:.1f}s")
        yield stack
    finally:
        for container in reversed(started_containers):
            container.stop()


async def test_the_server_fetches_its_keys_through_the_proxy_and_accepts_their_tokens(egress: EgressStack):
    base = f"http://127.0.0.1:{egress.app.get_exposed_port(APP_PORT)}"
    async with mcp_client(base + "/mcp", egress.token()) as client:
        tools = await client.list_tools()
    assert "read_file" in {tool.name for tool in tools.tools}
    fetched = [e for e in egress.log() if e["host"] == KEYS and e["app"] == APP]
    assert fetched and all(e["verdict"] != "TCP_DENIED" and e["status"] == 200 for e in fetched)


def test_an_undeclared_host_and_a_private_address_are_refused_from_inside_the_server(egress: EgressStack):
    before = egress.counted()
    assert egress.fetch_from_the_app(f"http://{UNDECLARED}:{KEYS_PORT}/jwks.json") == 403
    assert egress.fetch_from_the_app(f"http://{PRIVATE}:{KEYS_PORT}/jwks.json") == 403  # declared, but private
    assert egress.fetch_from_the_app(f"http://{KEYS}:{KEYS_PORT + 1}/") == 403  # the allowed host, another port
    assert egress.fetch_from_the_app(f"http://{KEYS}:{KEYS_PORT}/jwks.json") == 200
    denied = {(e["host"], e["port"]) for e in egress.log() if e["verdict"] == "TCP_DENIED"}
    assert {(UNDECLARED, str(KEYS_PORT)), (PRIVATE, str(KEYS_PORT)), (KEYS, str(KEYS_PORT + 1))} <= denied
    wait_until(lambda: egress.counted()[(APP, "denied")] == before[(APP, "denied")] + 3, 10, 0.1, "the denials counted")
    assert egress.counted()[(APP, "allowed")] >= before[(APP, "allowed")] + 1
