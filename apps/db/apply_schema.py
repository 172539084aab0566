"""Apply the database's SQL files through an admin connection, idempotently.

    DATABASE_ADMIN_URL=postgresql://postgres:...@host/app \
    MCP_DB_READER_PASSWORD=... MCP_DB_WRITER_PASSWORD=... python -m apps.db.apply_schema

The same command runs in the Kubernetes roles Job and in the test fixtures.
Role passwords travel as SCRAM-SHA-256 verifiers computed here, so the
plaintext never reaches the server or its statement log.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import sys
from pathlib import Path

import asyncpg

SQL_DIR = Path(__file__).with_name("schema")  # in Kubernetes, the same files mounted from a ConfigMap
# The login roles the SQL defines: role -> (the session setting 002_roles.sql reads its verifier from,
# the environment variable that carries its password to this command).
ROLES = {
    "mcp_db_reader": ("mcpfleet.reader_password", "MCP_DB_READER_PASSWORD"),
    "mcp_db_writer": ("mcpfleet.writer_password", "MCP_DB_WRITER_PASSWORD"),
}
PASSWORD_SETTINGS = dict(ROLES.values())


def sql_files() -> list[Path]:
    """The files to apply, in order: from MCPFLEET_SQL_DIR when set (the Kubernetes Job), else the package."""
    return sorted(Path(os.environ.get("MCPFLEET_SQL_DIR") or SQL_DIR).glob("*.sql"))


def scram_sha256_verifier(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    """The verifier PostgreSQL stores for SCRAM-SHA-256 (RFC 5802/7677)."""
    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


async def apply(admin_url: str, passwords: dict[str, str]) -> list[str]:
    """Apply every SQL file in one transaction; returns the applied file names."""
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        async with conn.transaction():
            for setting, password in passwords.items():
                await conn.execute("SELECT set_config($1, $2, true)", setting, scram_sha256_verifier(password))
            for path in sql_files():
                await conn.execute(path.read_text())
    finally:
        await conn.close()
    return [path.name for path in sql_files()]


def main() -> int:
    missing = [name for name in ("DATABASE_ADMIN_URL", *PASSWORD_SETTINGS.values()) if not os.environ.get(name)]
    if missing:
        print(f"missing environment variables: {', '.join(missing)}", file=sys.stderr)
        return 2
    passwords = {setting: os.environ[env] for setting, env in PASSWORD_SETTINGS.items()}
    try:
        applied = asyncio.run(apply(os.environ["DATABASE_ADMIN_URL"], passwords))
    except (OSError, asyncpg.PostgresError) as error:
        # The error text may quote SQL but never the DSN or a password.
        print(f"apply failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(f"applied {', '.join(applied)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
