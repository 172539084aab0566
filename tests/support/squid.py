"""The egress proxy as it runs in the cluster: Squid (Debian's 5.7) with the configuration `infra.egress`
renders, on loopback. Names resolve through a hosts file, so tests choose what each name points at."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra.egress import EgressPlan, squid_conf


@dataclass
class LocalSquid:
    plan: EgressPlan
    hosts: dict[str, str]  # name -> address
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="mcpfleet-squid-")))
    process: subprocess.Popen[bytes] | None = None

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
        conf = squid_conf(self.plan, f"stdio:{self.log}")
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
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def entries(self) -> list[dict[str, Any]]:
        """The JSON access-log lines written so far."""
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]
