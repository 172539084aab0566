"""A throwaway PostgreSQL server from the Debian `postgresql-15` binaries (initdb/pg_ctl in a temp dir)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def available() -> bool:
    return (PG_BIN / "initdb").exists()


@dataclass
class LocalPostgres:
    """Start with `start()`, stop with `stop()`; `admin_url` connects as the superuser."""

    port: int = 0
    password: str = "admin-password-for-tests-only"
    database: str = "mcpfleet"
    max_connections: int = 100

    def start(self) -> LocalPostgres:
        self.port = self.port or free_port()
        self.root = Path(tempfile.mkdtemp(prefix="mcpfleet-pg-"))
        self.data = self.root / "data"
        self._as_user = os.geteuid() == 0  # initdb refuses to run as root
        pwfile = self.root / "pw"
        pwfile.write_text(self.password)
        if self._as_user:
            entry = pwd.getpwnam("postgres")
            for path in (self.root, pwfile):
                os.chown(path, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
            ]
        )
        self._run(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.root / "log"),
                "-w",
                "-t",
                "30",
                "-o",
                f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
                f" -c max_connections={self.max_connections}",
                "start",
            ]
        )
        self._run(
            [
                str(PG_BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f"CREATE DATABASE {self.database}",
            ],
            env={"PGPASSWORD": self.password},
        )
        return self

    def url(self, user: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{user}:{password or self.password}@127.0.0.1:{self.port}/{self.database}"

    @property
    def admin_url(self) -> str:
        return self.url()

    def stop(self) -> None:
        self._run([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, cmd: list[str], check: bool = True, env: dict[str, str] | None = None) -> None:
        if self._as_user:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=check, capture_output=True, env={**os.environ, **(env or {})}, timeout=60)
