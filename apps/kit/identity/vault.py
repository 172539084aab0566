"""A token vault, for a server that acts as the person at an upstream API (a GitHub App's user token; Slack, Jira).

The person's upstream tokens are theirs: the caller's own bearer token never goes upstream, and the upstream's
never reaches the caller, the model or a log line. What the vault promises:

- **Sealed at rest.** Each row is AES-256-GCM under a key of the server's keyring (`Keyring`, from a secret the
  platform provisions: key id -> 32 random bytes, the first the primary), with the provider and the principal as
  associated data, so a row copied onto another principal, or another provider, does not open. Rotation: put a
  new key first, keep the old one after it (rows still open), run `rotate()` (every row sealed again under the
  primary), then drop the old key.
- **Durable, in the server's own schema** with its own role: the table is `TABLE_SQL`, which the server's declared
  SQL (`Needs.schema`) creates in its schema; the vault reaches it through the pool the server opens as that role.
- **Refreshed once across replicas.** A token close to its expiry is refreshed under the row's lock (`SELECT ...
  FOR UPDATE`): the replica that takes the lock refreshes, the others wait and read what it wrote.
- **Dropped** when the upstream refuses it (a 401, a refresh refused) or the person disconnects, so the next call
  links again.
- **Consent per MCP client.** The person approves each MCP client that may use the link (`approve`); a call from
  a client they have not approved is not served with their tokens (`current(..., client=...)` answers None).
- **An audit event** for each link, refresh and drop (`vault_linked`, `vault_refreshed`, `vault_dropped`), naming
  the provider and the principal, never a token.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from apps.kit.observe.logs import log_event
from apps.kit.wire.encoding import dumps

if TYPE_CHECKING:
    import asyncpg

REFRESH_EARLY_SECONDS = 300.0  # refresh a token this long before it expires
NONCE_BYTES = 12
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The table, in the server's own schema: `TABLE_SQL.format(schema=...)` in the server's declared SQL.
TABLE_SQL = """
CREATE TABLE IF NOT EXISTS {schema}.vault_tokens (
    provider text NOT NULL,
    principal text NOT NULL,
    key_id text NOT NULL,
    sealed bytea NOT NULL,
    access_expires_at timestamptz NOT NULL,
    refresh_expires_at timestamptz,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, principal)
);
CREATE TABLE IF NOT EXISTS {schema}.vault_consents (
    provider text NOT NULL,
    principal text NOT NULL,
    client text NOT NULL,
    approved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (provider, principal, client)
);
"""


class VaultError(Exception):
    """A row that cannot be opened: a key the keyring does not hold, or a row not sealed for this principal."""


class RefreshRefused(Exception):
    """The upstream refused the refresh (the person revoked the app, the refresh token expired): unlink."""


@dataclass(frozen=True)
class Tokens:
    """The person's upstream tokens, and who they are there."""

    access: str
    expires_at: float  # seconds since the epoch
    refresh: str | None = None
    refresh_expires_at: float | None = None
    account: str | None = None  # the person's login upstream, for audit events and answers

    def __repr__(self) -> str:  # a token never reaches a log line, even through a repr
        return f"Tokens(account={self.account!r}, expires_at={self.expires_at})"


class Keyring:
    """The keys rows are sealed with, space- or comma-separated, the first the primary: `id:base64` of 32 random
    bytes (`new_key`), or a bare secret of at least 32 characters (a generated password: the platform's dev
    stacks), whose key is derived with HKDF-SHA256 and whose id is `k0`."""

    def __init__(self, text: str):
        keys: dict[str, bytes] = {}
        for entry in text.replace(",", " ").split():
            if ":" not in entry:
                if len(entry) < 32:
                    raise ValueError("a bare vault secret has at least 32 characters")
                keys["k0"] = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"mcpfleet vault").derive(
                    entry.encode()
                )
                continue
            key_id, _, encoded = entry.partition(":")
            try:
                key = base64.b64decode(encoded, validate=True)
            except ValueError:
                key = b""
            if not _IDENTIFIER.fullmatch(key_id) or len(key) != 32:
                raise ValueError(
                    "a vault key is `id:base64` of 32 random bytes (the id: lower-case letters, digits, _)"
                )
            keys[key_id] = key
        if not keys:
            raise ValueError("the vault keyring holds no key")
        self.primary = next(iter(keys))
        self._keys = keys

    @staticmethod
    def new_key(key_id: str) -> str:
        """A fresh `id:base64` entry, for provisioning and rotation."""
        return f"{key_id}:{base64.b64encode(os.urandom(32)).decode()}"

    def seal(self, plain: bytes, context: bytes) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        return self.primary, nonce + AESGCM(self._keys[self.primary]).encrypt(nonce, plain, context)

    def open(self, key_id: str, sealed: bytes, context: bytes) -> bytes:
        key = self._keys.get(key_id)
        if key is None:
            raise VaultError(f"the keyring has no key {key_id!r}: it was dropped before `rotate()` ran")
        try:
            return AESGCM(key).decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], context)
        except InvalidTag:
            raise VaultError("a row that does not open for this principal and provider") from None


Refresh = Callable[[Tokens], Awaitable[Tokens]]


class TokenVault:
    """One provider's tokens (`github`), per principal, in `schema.vault_tokens` through `pool`."""

    def __init__(self, pool: asyncpg.Pool, schema: str, provider: str, keyring: Keyring):
        if not _IDENTIFIER.fullmatch(schema):
            raise ValueError(f"not a schema name: {schema!r}")
        self.pool, self.provider, self.keyring = pool, provider, keyring
        self.table = f'"{schema}".vault_tokens'
        self.consents = f'"{schema}".vault_consents'

    def _context(self, principal: str) -> bytes:
        return f"{self.provider}\0{principal}".encode()

    def _seal(self, principal: str, tokens: Tokens) -> tuple[str, bytes]:
        return self.keyring.seal(dumps(asdict(tokens)), self._context(principal))

    def _open(self, principal: str, row: Any) -> Tokens:
        return Tokens(**json.loads(self.keyring.open(row["key_id"], bytes(row["sealed"]), self._context(principal))))

    async def _store(self, conn: Any, principal: str, tokens: Tokens) -> None:
        key_id, sealed = self._seal(principal, tokens)
        await conn.execute(
            f"INSERT INTO {self.table} (provider, principal, key_id, sealed, access_expires_at, refresh_expires_at)"
            " VALUES ($1, $2, $3, $4, to_timestamp($5), to_timestamp($6))"
            " ON CONFLICT (provider, principal) DO UPDATE SET key_id = $3, sealed = $4,"
            " access_expires_at = to_timestamp($5), refresh_expires_at = to_timestamp($6), updated_at = now()",
            self.provider,
            principal,
            key_id,
            sealed,
            tokens.expires_at,
            tokens.refresh_expires_at,
        )

    async def link(self, principal: str, tokens: Tokens) -> None:
        """The person linked their upstream account (the connect flow's end)."""
        async with self.pool.acquire() as conn:
            await self._store(conn, principal, tokens)
        log_event("vault_linked", provider=self.provider, principal=principal, account=tokens.account)

    async def approve(self, principal: str, client: str) -> None:
        """The person approved this MCP client's use of their link (the connect page's consent)."""
        async with self.pool.acquire() as conn:
            await conn.execute(
                f"INSERT INTO {self.consents} (provider, principal, client) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                self.provider,
                principal,
                client,
            )
        log_event("vault_client_approved", provider=self.provider, principal=principal, client=client)

    async def current(
        self, principal: str, refresh: Refresh, early: float = REFRESH_EARLY_SECONDS, client: str | None = None
    ) -> Tokens | None:
        """The principal's tokens, refreshed first when they expire within `early` seconds (once, whichever replica
        gets there first); None when the person has not linked, has not approved `client` (when given), or the
        refresh was refused (and the row dropped)."""
        select = f"SELECT key_id, sealed FROM {self.table} WHERE provider = $1 AND principal = $2"
        async with self.pool.acquire() as conn:
            if client is None:
                row = await conn.fetchrow(select, self.provider, principal)
            else:
                row = await conn.fetchrow(
                    select + f" AND EXISTS (SELECT 1 FROM {self.consents} c WHERE c.provider = $1"
                    " AND c.principal = $2 AND c.client = $3)",
                    self.provider,
                    principal,
                    client,
                )
            if row is None:
                return None
            tokens = self._open(principal, row)
            if tokens.expires_at - time.time() > early:
                return tokens
            async with conn.transaction():
                row = await conn.fetchrow(select + " FOR UPDATE", self.provider, principal)
                if row is None:  # dropped meanwhile
                    return None
                tokens = self._open(principal, row)
                if tokens.expires_at - time.time() > early:  # another replica refreshed it while this one waited
                    return tokens
                try:
                    fresh = await refresh(tokens)
                except RefreshRefused as refused:
                    await conn.execute(f"DELETE FROM {self.table} WHERE provider = $1 AND principal = $2",
                                       self.provider, principal)  # fmt: skip
                    log_event("vault_dropped", logging.WARNING, provider=self.provider, principal=principal,
                              account=tokens.account, why=f"refresh refused: {refused}")  # fmt: skip
                    return None
                await self._store(conn, principal, fresh)
        log_event("vault_refreshed", provider=self.provider, principal=principal, account=fresh.account)
        return fresh

    async def drop(self, principal: str, why: str, forget_clients: bool = False) -> bool:
        """Forget the principal's tokens (the upstream answered 401, or the person disconnected); `forget_clients`:
        the clients they approved too (a disconnect)."""
        async with self.pool.acquire() as conn:
            if forget_clients:
                await conn.execute(
                    f"DELETE FROM {self.consents} WHERE provider = $1 AND principal = $2", self.provider, principal
                )
            deleted = await conn.fetchval(
                f"DELETE FROM {self.table} WHERE provider = $1 AND principal = $2 RETURNING principal",
                self.provider,
                principal,
            )
        if deleted is not None:
            log_event("vault_dropped", provider=self.provider, principal=principal, why=why)
        return deleted is not None

    async def rotate(self) -> int:
        """Seal every row not under the primary key again under it; returns how many. Run after putting a new key
        first; the old key may be dropped once this returned."""
        moved = 0
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT principal, key_id, sealed FROM {self.table} WHERE provider = $1 AND key_id <> $2 FOR UPDATE",
                self.provider,
                self.keyring.primary,
            )
            for row in rows:
                key_id, sealed = self._seal(row["principal"], self._open(row["principal"], row))
                await conn.execute(
                    f"UPDATE {self.table} SET key_id = $3, sealed = $4 WHERE provider = $1 AND principal = $2",
                    self.provider,
                    row["principal"],
                    key_id,
                    sealed,
                )
                moved += 1
        log_event("vault_rotated", provider=self.provider, rows=moved, key=self.keyring.primary)
        return moved
