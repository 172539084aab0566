"""The database server's state: a read pool and a write pool, two roles, and the catalog.

Pools start empty (`min_size=0`) so the server starts, and reports not-ready,
while Postgres is still coming up. The catalog (tables, columns, primary keys
visible in the allowed schema) is read through the read role and refreshed
when a caller names a table it does not know yet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Tracer

from apps.db.config import DbSettings
from apps.db.sql import Column, Table
from apps.db.telemetry import PoolCollector, PoolStat
from apps.kit import Admission, CallerError, Check, Overloaded, ServerError, Telemetry, bounded

CATALOG_SQL = """
SELECT c.relname AS table_name, a.attname AS column_name,
       format_type(a.atttypid, a.atttypmod) AS data_type,
       NOT a.attnotnull AS nullable, (a.atthasdef OR a.attidentity <> '') AS has_default,
       COALESCE(a.attnum = ANY (i.indkey), false) AS in_pk, array_position(i.indkey, a.attnum) AS pk_pos
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v')
  AND has_table_privilege(c.oid, 'SELECT')
ORDER BY c.relname, a.attnum
"""

# The database is unreachable, restarting or out of connections: not the request's fault.
# (QueryCanceledError is an operator-intervention error too; it is caught first, as a timeout.)
UNAVAILABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.InterfaceError,  # e.g. the connection was closed under us
    asyncpg.exceptions.InternalClientError,  # protocol state lost with the connection
)
# SQLSTATE classes that say the server is unreachable, restarting or out of resources:
# 08 connection exception, 53 insufficient resources, 57 operator intervention (admin/crash
# shutdown, cannot connect now). 57014 (query canceled) is caught first, as a timeout.
UNAVAILABLE_SQLSTATE_CLASSES = ("08", "53", "57")


def unavailable(error: BaseException) -> bool:
    """Is this a failure of the database's availability rather than of the statement?"""
    if isinstance(error, UNAVAILABLE):
        return True
    sqlstate = getattr(error, "sqlstate", None) or ""
    return isinstance(error, asyncpg.PostgresError) and sqlstate[:2] in UNAVAILABLE_SQLSTATE_CLASSES


class Database:
    """Two pools (read, write) and the schema catalog."""

    CATALOG_REFRESH_SECONDS = 5.0

    def __init__(
        self, settings: DbSettings, read_pool: asyncpg.Pool, write_pool: asyncpg.Pool, tracer: Tracer | None = None
    ):
        self.settings = settings
        self.schema = settings.db_schema
        self.read_pool = read_pool
        self.write_pool = write_pool
        deadline = settings.db_acquire_timeout_seconds
        self.admission = {
            read_pool: Admission("the database (read pool)", settings.db_pool_max, deadline),
            write_pool: Admission("the database (write pool)", settings.db_pool_max, deadline),
        }
        self.tracer = tracer or trace.get_tracer("mcpfleet.db")
        self.span_attributes = _span_attributes(settings.db_read_url.get_secret_value())
        self.database_name = str(self.span_attributes["db.namespace"])
        self._tables: dict[str, Table] = {}
        self._loaded_at = float("-inf")
        self._lock = asyncio.Lock()

    def readiness_checks(self) -> Mapping[str, Check]:
        async def select_one(pool: asyncpg.Pool, dsn: str) -> None:
            try:
                async with pool.acquire(timeout=1.0) as conn:
                    await conn.fetchval("SELECT 1", timeout=1.0)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                where = urlsplit(dsn)  # named here: asyncpg's DNS and connection errors do not name the host
                reason = str(error) or type(error).__name__
                raise ConnectionError(f"{where.hostname}:{where.port or 5432}: {reason}") from None

        read, write = (url.get_secret_value() for url in (self.settings.db_read_url, self.settings.db_write_url))
        return {
            "db_read": lambda: select_one(self.read_pool, read),
            "db_write": lambda: select_one(self.write_pool, write),
        }

    def pool_stats(self) -> dict[str, PoolStat]:
        stats = {}
        for name, pool in (("read", self.read_pool), ("write", self.write_pool)):
            size, admission = pool.get_size(), self.admission[pool]
            stats[name] = PoolStat(
                size - pool.get_idle_size(), size, pool.get_max_size(), admission.queued, admission.shed
            )
        return stats

    async def tables(self, refresh: bool = False) -> dict[str, Table]:
        stale = time.monotonic() - self._loaded_at >= self.CATALOG_REFRESH_SECONDS
        if not self._tables or (refresh and stale):
            async with self._lock:
                if not self._tables or (refresh and time.monotonic() - self._loaded_at >= self.CATALOG_REFRESH_SECONDS):
                    rows = await self.fetch_read(CATALOG_SQL, self.schema)
                    self._tables = _tables_from_rows(rows)
                    self._loaded_at = time.monotonic()
        return self._tables

    async def table(self, name: str) -> Table:
        tables = await self.tables()
        if name not in tables:
            tables = await self.tables(refresh=True)
        if name not in tables:
            raise CallerError(f"unknown table '{name}' in schema '{self.schema}'")
        return tables[name]

    async def fetch_read(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run(self.read_pool, "fetch", sql, args)
        return rows

    async def fetch_write(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await self._run(self.write_pool, "fetch", sql, args)
        return rows

    async def execute_write(self, sql: str, *args: Any) -> str:
        status: str = await self._run(self.write_pool, "execute", sql, args)
        return status

    async def _run(self, pool: asyncpg.Pool, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        """Run one statement, admitted in arrival order, in its own span; map failures to clear tool errors
        that never quote the DSN."""
        timeout = self.settings.db_statement_timeout_ms / 1000 + 1
        try:
            # Admission bounds the wait (DB_ACQUIRE_TIMEOUT_SECONDS): past it a slot means a free connection,
            # or a new one within the pool's connect timeout.
            async with self.admission[pool].slot(), pool.acquire() as conn:
                with self.tracer.start_as_current_span(
                    f"{sql.split(None, 1)[0]} {self.database_name}",
                    kind=SpanKind.CLIENT,
                    attributes={**self.span_attributes, "db.query.text": bounded(sql, 2048)},
                ):
                    return await getattr(conn, method)(sql, *args, timeout=timeout)
        except Overloaded:
            raise
        except asyncpg.QueryCanceledError:
            raise ServerError("statement timed out") from None
        except asyncpg.InsufficientPrivilegeError:
            raise ServerError("permission denied by the database role") from None
        except (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError) as error:
            raise CallerError(
                f"rejected by the database: {error.args[0] if error.args else type(error).__name__}"
            ) from None
        except Exception as error:
            if unavailable(error):
                raise ServerError(f"database unavailable ({type(error).__name__}); retry later") from None
            raise


def _span_attributes(dsn: str) -> dict[str, str | int]:
    """OpenTelemetry database attributes from the DSN: where, never who (no user, no password)."""
    parts = urlsplit(dsn)
    try:
        port = parts.port or 5432
    except ValueError:
        port = 5432
    return {
        "db.system.name": "postgresql",
        "db.namespace": parts.path.lstrip("/") or "postgres",
        "server.address": parts.hostname or "",
        "server.port": port,
    }


def _tables_from_rows(rows: list[asyncpg.Record]) -> dict[str, Table]:
    columns: dict[str, dict[str, Column]] = {}
    keys: dict[str, list[tuple[int, str]]] = {}
    for row in rows:
        table = row["table_name"]
        columns.setdefault(table, {})[row["column_name"]] = Column(
            row["column_name"], row["data_type"], row["nullable"], row["has_default"]
        )
        if row["in_pk"]:
            keys.setdefault(table, []).append((row["pk_pos"], row["column_name"]))
    return {name: Table(name, cols, tuple(c for _, c in sorted(keys.get(name, [])))) for name, cols in columns.items()}


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release a connection without asyncpg's reset query: these pools never change session state (no
    SET, LISTEN or advisory locks; timeouts come from server_settings), so the round trip buys nothing.
    An open transaction is still rolled back by the pool itself."""


@asynccontextmanager
async def open_database(settings: DbSettings, telemetry: Telemetry) -> AsyncIterator[Database]:
    """Create both pools (lazily connecting), expose their metrics and spans, close them on shutdown."""
    common: dict[str, Any] = {
        "min_size": settings.db_pool_min,
        "max_size": settings.db_pool_max,
        "timeout": settings.db_connect_timeout_seconds,
        "command_timeout": settings.db_statement_timeout_ms / 1000 + 1,
        "server_settings": {
            "statement_timeout": str(settings.db_statement_timeout_ms),
            "application_name": "mcpfleet-db",
        },
        "reset": _keep_session,
    }
    read_pool = await asyncpg.create_pool(settings.db_read_url.get_secret_value(), **common)
    write_pool = await asyncpg.create_pool(settings.db_write_url.get_secret_value(), **common)
    database = Database(settings, read_pool, write_pool, telemetry.tracer("mcpfleet.db"))
    telemetry.register(PoolCollector(database.pool_stats))
    try:
        yield database
    finally:
        await asyncio.gather(read_pool.close(), write_pool.close(), return_exceptions=True)
