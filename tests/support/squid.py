"""The egress proxy as it runs in the cluster: Squid (Debian's 5.7) with the configuration `infra.egress`
renders, and the meter that counts its log lines beside it, on loopback. Names resolve through a hosts file,
so tests choose what each name points at."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from infra.egress import EgressPlan, squid_conf
from tests.support.postgres import free_port


@dataclass
class LocalSquid:
    plan: EgressPlan
    hosts: dict[str, str]  # name -> address
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mcpfleet-squid-")))
    process: subprocess.Popen[bytes] | None = None
    meter: subprocess.Popen[bytes] | None = None
    meter_log_port: int = field(default_factory=free_port)
    meter_metrics_port: int = field(default_factory=free_port)

    @staticmethod
    def binary() -> str | None:
        return shutil.which("squid") or next((p for p in ("/usr/sbin/squid",) if Path(p).exists()), None)

    @property
    def log(self) -> Path:
        return self.workdir / "access.log"

    def url(self, app: str) -> str:
        assert app in self.plan.ports, f"{app} has no port on the proxy"
        return f"http://127.0.0.1:{self.plan.ports[app]}"

    def start(self) -> LocalSquid:
        self.workdir.chmod(0o777)  # run as root, Squid drops to its own user
        (self.workdir / "hosts").write_text("".join(f"{address} {name}\n" for name, address in self.hosts.items()))
        self.meter = subprocess.Popen(
            [
                *(sys.executable, "-m", "sidecars.egress_meter", *(f"--client={c}" for c in self.plan.ports)),
                *(f"--log-port={self.meter_log_port}", f"--metrics-port={self.meter_metrics_port}"),
            ]
        )
        conf = squid_conf(self.plan, f"stdio:{self.log}", self.meter_log_port)
        conf += f"hosts_file {self.workdir / 'hosts'}\ncoredump_dir {self.workdir}\n"
        (self.workdir / "squid.conf").write_text(conf)
        binary = self.binary()
        assert binary is not None
        self.process = subprocess.Popen(
            [binary, "-N", "-f", str(self.workdir / "squid.conf")],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "cache.log").open("wb"),
        )
        deadline = time.monotonic() + 15
        port = next(iter(self.plan.ports.values()))
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("squid did not start: " + (self.workdir / "cache.log").read_text()[-2000:])

    def stop(self) -> None:
        for process in (self.process, self.meter):
            if process is not None:
                process.terminate()
                process.wait(timeout=15)

    def counted(self) -> dict[tuple[str, str], float]:
        """(app, verdict) -> requests, as the meter exposes them to Prometheus."""
        with httpx.Client(trust_env=False, timeout=5) as client:
            text = client.get(f"http://127.0.0.1:{self.meter_metrics_port}/metrics").text
        return {
            (sample.labels["app"], sample.labels["verdict"]): sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "mcp_egress_requests"
            for sample in family.samples
            if sample.name == "mcp_egress_requests_total"
        }

    def entries(self) -> list[dict[str, Any]]:
        """The JSON access-log lines written so far."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
