"""Apply the SQL each server declares (`Needs.schema`) through an admin connection, idempotently.

    DATABASE_ADMIN_URL=postgresql://postgres:...@host/app MCP_DB_READER_PASSWORD=... MCP_DB_WRITER_PASSWORD=... \
        python -m apps.kit.cli.schema apps.db

The Kubernetes roles Job, the one-machine `postgres-roles` service and the test fixtures run the same command, so the
SQL a server declares is the only source of its tables and roles. Each role's password comes from
`<ROLE>_PASSWORD` and travels as a SCRAM-SHA-256 verifier computed here, so the plaintext never reaches the server
or its statement log. With `MCPFLEET_SQL_DIR` (the Job, which mounts the files from a ConfigMap), a server's files
are read from `<dir>/<name>/` instead of its package.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import asyncpg

from apps.kit.declare.needs import role_password_setting, role_password_variable
from apps.kit.declare.server import FocusedServer, load_server


def schema_files(module: str, server: FocusedServer[Any, Any]) -> list[Path]:
    """A server's SQL files in the order they apply: from `MCPFLEET_SQL_DIR/<name>` when set, else its package."""
    mounted = os.environ.get("MCPFLEET_SQL_DIR")
    folder = Path(mounted) / module.rsplit(".", 1)[-1] if mounted else server.needs.schema
    if folder is None:
        raise ValueError(f"{module} declares no schema")
    return sorted(folder.glob("*.sql"))


def scram_sha256_verifier(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    """The verifier PostgreSQL stores for SCRAM-SHA-256 (RFC 5802/7677)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


async def apply(admin_url: str, files: list[Path], passwords: dict[str, str]) -> list[str]:
    """Apply the files in one transaction, with each role's verifier in its session setting; returns their names."""
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        async with conn.transaction():
            for role, password in passwords.items():
                verifier = scram_sha256_verifier(password)
                await conn.execute("SELECT set_config($1, $2, true)", role_password_setting(role), verifier)
            for path in files:
                await conn.execute(path.read_text())
    finally:
        await conn.close()
    return [path.name for path in files]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.kit.cli.schema", description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="+", help="the servers whose schema to apply, e.g. apps.db")
    args = parser.parse_args(argv)
    servers = {module: load_server(module) for module in args.modules}
    roles = [role for server in servers.values() for role in server.needs.roles]
    missing = [name for name in ("DATABASE_ADMIN_URL", *map(role_password_variable, roles)) if not os.environ.get(name)]
    if missing:
        print(f"missing environment variables: {', '.join(missing)}", file=sys.stderr)
        return 2
    for module, server in servers.items():
        passwords = {role: os.environ[role_password_variable(role)] for role in server.needs.roles}
        try:
            applied = asyncio.run(apply(os.environ["DATABASE_ADMIN_URL"], schema_files(module, server), passwords))
        except (OSError, ValueError, asyncpg.PostgresError) as error:
            # The error text may quote SQL but never the DSN or a password.
            print(f"{module}: apply failed: {type(error).__name__}: {error}", file=sys.stderr)
            return 1
        print(f"{module}: applied {', '.join(applied)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
