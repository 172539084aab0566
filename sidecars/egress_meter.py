"""Counts the egress proxy's requests by client and verdict, for the denied-egress alert.

Squid sends each request's JSON log line (`infra.egress`'s `mcp_json` format) over UDP on loopback to this
process, a sidecar in the proxy's pod; it counts them and serves /metrics. It lives in the apps image so the
platform runs it without an image of its own. Labels stay bounded whatever an app tries: the clients named
on the command line (anything else counts as `unknown`) and two verdicts. The host stays in the log line
(Loki), never in a label, so a compromised app trying many hosts cannot grow this process's memory.
"""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, start_http_server
from prometheus_client.registry import CollectorRegistry

LOG_PORT = 3401  # on loopback, in the proxy's pod
METRICS_PORT = 9302
MAX_DATAGRAM = 65535
UNKNOWN = "unknown"


def verdict(entry: dict[str, Any]) -> str:
    """`denied` when the proxy refused it (not allowed for that client, or a private address), else `allowed`."""
    return "denied" if "DENIED" in str(entry.get("verdict", "")) else "allowed"


class EgressMeter:
    def __init__(self, clients: Iterable[str], registry: CollectorRegistry | None = None):
        self.clients = frozenset(clients)
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "mcp_egress_requests",
            "Requests through the egress proxy, by client (app) and verdict",
            ["app", "verdict"],
            registry=self.registry,
        )
        self.unreadable = Counter(
            "mcp_egress_log_unreadable", "Proxy log lines that were not the expected JSON", registry=self.registry
        )
        for client in self.clients:  # every series exists from the start, so a first denial is an increase
            for each in ("allowed", "denied"):
                self.requests.labels(client, each)

    def record(self, datagram: bytes) -> None:
        """One datagram: one or more log lines."""
        for line in datagram.splitlines():
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                if not isinstance(entry, dict):
                    raise ValueError("not an object")
            except ValueError:
                self.unreadable.inc()
                continue
            client = entry.get("app")
            self.requests.labels(client if client in self.clients else UNKNOWN, verdict(entry)).inc()

    def serve(self, log_port: int = LOG_PORT, metrics_port: int = METRICS_PORT) -> None:
        start_http_server(metrics_port, registry=self.registry)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", log_port))
            while True:
                self.record(sock.recv(MAX_DATAGRAM))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", action="append", default=[], help="a client of the proxy (repeat)")
    parser.add_argument("--log-port", type=int, default=LOG_PORT)
    parser.add_argument("--metrics-port", type=int, default=METRICS_PORT)
    args = parser.parse_args(argv)
    EgressMeter(args.client).serve(args.log_port, args.metrics_port)


if __name__ == "__main__":
    main()
