"""Seal every row of a server's token vault again under its keyring's primary key: the middle step of a rotation.

    GITHUB_VAULT_URL=postgresql://... GITHUB_VAULT_KEYS="k2:NEW k1:OLD" \
        python -m apps.kit.cli.vault rotate --schema github_vault --provider github \
            --dsn-from GITHUB_VAULT_URL --keys-from GITHUB_VAULT_KEYS

The DSN and the keyring are read from the environment variables named (the server's own, as the platform sets
them), never from the command line. Rotation: put the new key first in the secret (the old one after it), roll
the server (rows still open with the old key), run this (it prints how many rows it moved), then drop the old key.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

import asyncpg

from apps.kit.identity.vault import Keyring, TokenVault


async def rotate(dsn: str, keys: str, schema: str, provider: str) -> int:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        return await TokenVault(pool, schema, provider, Keyring(keys)).rotate()
    finally:
        await pool.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apps.kit.cli.vault", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rotating = commands.add_parser("rotate", help="seal every row again under the primary key")
    rotating.add_argument("--schema", required=True)
    rotating.add_argument("--provider", required=True)
    rotating.add_argument("--dsn-from", required=True, help="the variable holding the vault role's DSN")
    rotating.add_argument("--keys-from", required=True, help="the variable holding the keyring")
    args = parser.parse_args(argv)
    missing = [name for name in (args.dsn_from, args.keys_from) if not os.environ.get(name)]
    if missing:
        print(f"set {', '.join(missing)}", file=sys.stderr)
        return 2
    moved = asyncio.run(rotate(os.environ[args.dsn_from], os.environ[args.keys_from], args.schema, args.provider))
    print(f"{moved} rows sealed again under the primary key")
    return 0


if __name__ == "__main__":
    sys.exit(main())
