"""A real Prometheus as a local process (Debian's binary, which `scripts/test` unpacks into `.tools/`), for
tests that need the real query engine without Docker. (Debian's Alertmanager binary looks for its
templates under /usr/share, where an unpacked package does not put them, so it runs in containers only.)"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.postgres import free_port
from tests.support.running import wait_for_health

TOOLS = Path(__file__).resolve().parents[2] / ".tools" / "root" / "usr" / "bin"


def binary(name: str) -> str | None:
    return shutil.which(name) or (str(TOOLS / name) if (TOOLS / name).exists() else None)


def available() -> bool:
    return binary("prometheus") is not None


@contextlib.contextmanager
def local_prometheus(directory: Path) -> Iterator[str]:
    """Prometheus scraping itself every second; yields its URL."""
    port = free_port()
    (directory / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: prometheus\n    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    executable = binary("prometheus")
    assert executable is not None
    process = subprocess.Popen(
        [
            executable,
            f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "GOMAXPROCS": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for_health(url, path="/-/ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
