"""The kit's token vault (`apps.kit.identity.vault`) on a real PostgreSQL: sealed at rest and bound to its
principal, rotation, refreshed exactly once by two replicas, dropped when the upstream refuses, audited without a
token in any line."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from apps.kit import VAULT_TABLE_SQL as TABLE_SQL
from apps.kit import Keyring, RefreshRefused, Tokens, TokenVault, VaultError
from apps.kit.observe.logs import configure_logging

PROVIDER = "github"


@pytest.fixture
async def schema(pg) -> AsyncIterator[str]:
    name = f"vault_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(pg.admin_url)
    await conn.execute(f"CREATE SCHEMA {name}" + ";" + TABLE_SQL.format(schema=name))
    await conn.close()
    yield name


@pytest.fixture
async def pools(pg) -> AsyncIterator[list[asyncpg.Pool]]:
    """Two pools: two replicas of a server, each with its own connections."""
    opened = [await asyncpg.create_pool(pg.admin_url, min_size=1, max_size=3) for _ in range(2)]
    yield opened
    for pool in opened:
        await pool.close()


def tokens(account: str = "ada", expires_in: float = 8 * 3600) -> Tokens:
    now = time.time()
    return Tokens(
        access=f"ghu_{secrets.token_hex(18)}",
        expires_at=now + expires_in,
        refresh=f"ghr_{secrets.token_hex(30)}",
        refresh_expires_at=now + 180 * 86400,
        account=account,
    )


async def test_a_linked_token_is_sealed_at_rest_and_opens_only_for_its_principal(pools, schema, pg):
    keyring = Keyring(Keyring.new_key("k1"))
    vault = TokenVault(pools[0], schema, PROVIDER, keyring)
    linked = tokens()
    await vault.link("sub:ada", linked)
    assert await vault.current("sub:ada", refresh=_never) == linked
    conn = await asyncpg.connect(pg.admin_url)
    try:
        dump = "".join(str(dict(row)) for row in await conn.fetch(f"SELECT * FROM {schema}.vault_tokens"))
        assert linked.access not in dump and linked.refresh not in dump and "ada" not in dump.replace("sub:ada", "")
        # a row copied onto another principal does not open: the principal is sealed in with it
        await conn.execute(
            f"INSERT INTO {schema}.vault_tokens SELECT provider, 'sub:mallory', key_id, sealed, access_expires_at,"
            f" refresh_expires_at, updated_at FROM {schema}.vault_tokens WHERE principal = 'sub:ada'"
        )
    finally:
        await conn.close()
    with pytest.raises(VaultError, match="does not open for this principal"):
        await vault.current("sub:mallory", refresh=_never)
    with pytest.raises(VaultError, match="does not open"):  # another key: rows are unreadable without the key
        await TokenVault(pools[0], schema, PROVIDER, Keyring(Keyring.new_key("k1"))).current("sub:ada", _never)


async def test_rotation_keeps_every_row_readable_and_lets_the_old_key_go(pools, schema):
    old, new = Keyring.new_key("k1"), Keyring.new_key("k2")
    await TokenVault(pools[0], schema, PROVIDER, Keyring(old)).link("sub:ada", linked := tokens())
    both = TokenVault(pools[0], schema, PROVIDER, Keyring(f"{new} {old}"))  # the new key first, the old after
    assert await both.current("sub:ada", _never) == linked
    assert await both.rotate() == 1 and await both.rotate() == 0
    assert await TokenVault(pools[0], schema, PROVIDER, Keyring(new)).current("sub:ada", _never) == linked
    with pytest.raises(VaultError, match="no key 'k2'"):  # the old key alone no longer opens anything
        await TokenVault(pools[0], schema, PROVIDER, Keyring(old)).current("sub:ada", _never)


async def test_two_replicas_refresh_an_expiring_token_exactly_once(pools, schema):
    keyring = Keyring(Keyring.new_key("k1"))
    replicas = [TokenVault(pool, schema, PROVIDER, keyring) for pool in pools]
    await replicas[0].link("sub:ada", tokens(expires_in=60))  # within the 300 s before expiry
    refreshed: list[str] = []

    async def refresh(old: Tokens) -> Tokens:
        refreshed.append(old.access)
        await asyncio.sleep(0.3)  # the upstream's round trip: the other replica arrives meanwhile
        return tokens()

    first, second = await asyncio.gather(*(r.current("sub:ada", refresh) for r in replicas))
    assert len(refreshed) == 1
    assert first == second and first is not None and first.expires_at > time.time() + 3600


async def test_a_refused_refresh_drops_the_row_so_the_next_call_links_again(pools, schema, logs):
    configure_logging("INFO")
    vault = TokenVault(pools[0], schema, PROVIDER, Keyring(Keyring.new_key("k1")))
    linked = tokens(expires_in=10)
    await vault.link("sub:ada", linked)

    async def refused(old: Tokens) -> Tokens:
        raise RefreshRefused("bad_refresh_token")

    assert await vault.current("sub:ada", refused) is None
    assert await vault.current("sub:ada", _never) is None  # gone: the person links again
    await vault.link("sub:ada", again := tokens())
    assert await vault.drop("sub:ada", "disconnected") is True and await vault.drop("sub:ada", "again") is False
    parsed = [json.loads(line) for line in logs.lines]
    events = [(e["event"], e.get("why")) for e in parsed if str(e.get("event", "")).startswith("vault_")]
    assert events == [
        ("vault_linked", None),
        ("vault_dropped", "refresh refused: bad_refresh_token"),
        ("vault_linked", None),
        ("vault_dropped", "disconnected"),
    ]
    text = "\n".join(logs.lines)
    for secret in (linked.access, linked.refresh, again.access, again.refresh):
        assert secret is not None and secret not in text


def test_a_keyring_refuses_a_short_key_and_a_token_never_prints():
    with pytest.raises(ValueError, match="32 random bytes"):
        Keyring("k1:c2hvcnQ=")
    linked = tokens()
    assert linked.access not in repr(linked) and linked.access not in str(linked)
    assert linked.refresh is not None and linked.refresh not in f"{linked!r}"


async def _never(old: Tokens) -> Tokens:
    raise AssertionError("no refresh expected")
