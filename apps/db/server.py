"""The focused database MCP server: list, describe, query, insert, update. No delete, no raw SQL.

Read tools run on the read pool (a role that can only SELECT); write tools on
the write pool (SELECT, INSERT, UPDATE). The database enforces what the
server promises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from apps.db.config import DbSettings
from apps.db.database import Database, open_database
from apps.db.sql import Scalar, insert_sql, json_safe, select_sql, update_sql
from apps.db.telemetry import DASHBOARD
from apps.kit import FocusedServer, Needs, On, ToolArgs

Identifier = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=63)]
Value = Annotated[Scalar, Field(union_mode="left_to_right")]
Row = Annotated[dict[Identifier, Value], Field(max_length=100)]

server: FocusedServer[Database, DbSettings] = FocusedServer(
    "mcpfleet-db",
    DbSettings,
    open_database,
    instructions="Read and change rows in the allowed schema. Tables and columns are discovered with "
    "list_tables and describe_table; there is no delete and no raw SQL.",
    needs=Needs(
        postgres={"DB_READ_URL": "mcp_db_reader", "DB_WRITE_URL": "mcp_db_writer"},
        schema=Path(__file__).with_name("schema"),
        postgres_pool_setting="db_pool_max",
    ),
    dashboard=DASHBOARD,
)


class ListTablesArgs(ToolArgs):
    pass


class TableArgs(ToolArgs):
    table: Identifier


class OrderBy(ToolArgs):
    column: Identifier
    direction: Literal["asc", "desc"] = "asc"


class QueryArgs(ToolArgs):
    table: Identifier
    columns: Annotated[list[Identifier], Field(max_length=100)] = Field(default_factory=list)
    filters: Row = Field(default_factory=dict, description="column = value, all must match (null: IS NULL)")
    order_by: Annotated[list[OrderBy], Field(max_length=10)] = Field(default_factory=list)
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=10_000_000)] = 0


class InsertArgs(ToolArgs):
    table: Identifier
    values: Row


class UpdateArgs(ToolArgs):
    table: Identifier
    key: Annotated[dict[Identifier, Value], Field(min_length=1, max_length=10)]
    values: Annotated[dict[Identifier, Value], Field(min_length=1, max_length=100)]


@server.tool(scopes={"db:read"}, read_only=True)
async def list_tables(args: ListTablesArgs, db: Database) -> dict[str, object]:
    """List the tables in the allowed schema."""
    tables = await db.tables(refresh=True)
    return {"schema": db.schema, "tables": sorted(tables)}


@server.tool(scopes={"db:read"}, read_only=True, acts_on=On("Table", "{table}"))
async def describe_table(args: TableArgs, db: Database) -> dict[str, object]:
    """Describe a table: its columns (name, type, nullable, has default) and primary key."""
    table = await db.table(args.table)
    return {
        "table": table.name,
        "primary_key": list(table.primary_key),
        "columns": [
            {"name": c.name, "type": c.data_type, "nullable": c.nullable, "has_default": c.has_default}
            for c in table.columns.values()
        ],
    }


@server.tool(scopes={"db:read"}, read_only=True, acts_on=On("Table", "{table}"))
async def query(args: QueryArgs, db: Database) -> dict[str, object]:
    """Read rows: choose columns, filter by equality, order, and page with limit (1-1000) and offset."""
    table = await db.table(args.table)
    sql, params = select_sql(
        db.schema,
        table,
        args.columns,
        args.filters,
        [(o.column, o.direction == "desc") for o in args.order_by],
        args.limit,
        args.offset,
    )
    rows = await db.fetch_read(sql, *params)
    return {
        "table": table.name,
        "rows": [{k: json_safe(v) for k, v in row.items()} for row in rows],
        "count": len(rows),
        "limit": args.limit,
        "offset": args.offset,
    }


@server.tool(scopes={"db:write"}, read_only=False, destructive=False, idempotent=False, acts_on=On("Table", "{table}"))
async def insert(args: InsertArgs, db: Database) -> dict[str, object]:
    """Insert one row; returns its primary key."""
    table = await db.table(args.table)
    sql, params = insert_sql(db.schema, table, args.values)
    rows = await db.fetch_write(sql, *params)
    return {"table": table.name, "key": {k: json_safe(v) for k, v in rows[0].items()}}


@server.tool(scopes={"db:write"}, read_only=False, destructive=True, idempotent=True, acts_on=On("Table", "{table}"))
async def update(args: UpdateArgs, db: Database) -> dict[str, object]:
    """Update the named columns of the row with the given primary key; returns how many rows changed."""
    table = await db.table(args.table)
    sql, params = update_sql(db.schema, table, args.key, args.values)
    status = await db.execute_write(sql, *params)
    return {"table": table.name, "updated": int(status.split()[-1]), "key": dict(args.key)}
