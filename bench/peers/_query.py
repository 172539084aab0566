"""What every peer serves, the same for all: 10 rows of sales.products, as JSON-safe dicts, from a pool of 20.

Standard library plus asyncpg only, so each peer runs in its own virtualenv (FastMCP's is separate).
"""

from __future__ import annotations

import os
from decimal import Decimal
from typing import Any

import asyncpg

SQL = 'SELECT * FROM "sales"."products" ORDER BY "id" LIMIT $1 OFFSET 0'
POOL_MAX = 20


async def open_pool() -> asyncpg.Pool:
    return await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=1, max_size=POOL_MAX)


def json_safe(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


async def query(pool: asyncpg.Pool, table: str, limit: int) -> dict[str, Any]:
    if table != "products":
        raise ValueError("unknown table")
    rows = await pool.fetch(SQL, limit)
    return {
        "table": table,
        "rows": [{k: json_safe(v) for k, v in row.items()} for row in rows],
        "count": len(rows),
        "limit": limit,
        "offset": 0,
    }
