"""The database server against a real PostgreSQL, through the MCP SDK's client with real tokens."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import httpx
import pytest
from mcp.shared.exceptions import MCPError

from tests.support.mcp_client import mcp_client

pytestmark = pytest.mark.postgres


@pytest.fixture
def rw_token(db_stack, token_for):
    return token_for("db:read db:write", db_stack.mcp_url)


async def test_list_and_describe_show_only_the_allowed_schema(db_stack, rw_token):
    async with mcp_client(db_stack.mcp_url, rw_token) as client:
        tables = (await client.call_tool("list_tables", {})).structured_content
        orders = (await client.call_tool("describe_table", {"table": "orders"})).structured_content
        hidden = await client.call_tool("describe_table", {"table": "api_keys"})
    assert tables == {"schema": "sales", "tables": ["customers", "order_items", "orders", "products"]}
    assert orders["primary_key"] == ["id"]
    types = {c["name"]: c["type"] for c in orders["columns"]}
    assert types["total"] == "numeric(12,2)" and types["reference"] == "uuid" and types["ordered_on"] == "date"
    assert hidden.is_error and "unknown table 'api_keys'" in hidden.content[0].text


async def test_query_filters_orders_pages_and_returns_json_safe_values(db_stack, rw_token):
    async with mcp_client(db_stack.mcp_url, rw_token) as client:
        result = await client.call_tool(
            "query",
            {
                "table": "orders",
                "columns": ["id", "ordered_on", "total", "reference", "status"],
                "filters": {"customer_id": 1},
                "order_by": [{"column": "ordered_on", "direction": "desc"}],
                "limit": 1,
                "offset": 0,
            },
        )
    assert not result.is_error, result.content
    [row] = result.structured_content["rows"]
    assert row == {
        "id": 3,
        "ordered_on": "2025-06-07",
        "total": "4.25",
        "reference": "6f1c2d3e-0000-4000-8000-000000000003",
        "status": "new",
    }


async def test_insert_returns_key_and_update_changes_only_named_columns(db_stack, rw_token):
    async with mcp_client(db_stack.mcp_url, rw_token) as client:
        inserted = await client.call_tool(
            "insert",
            {
                "table": "orders",
                "values": {"customer_id": 2, "ordered_on": "2025-07-01", "total": "19.99", "status": "new"},
            },
        )
        key = inserted.structured_content["key"]
        updated = await client.call_tool("update", {"table": "orders", "key": key, "values": {"status": "paid"}})
        row = (await client.call_tool("query", {"table": "orders", "filters": key})).structured_content["rows"][0]
    assert isinstance(key["id"], int)
    assert updated.structured_content["updated"] == 1
    assert row["status"] == "paid" and row["total"] == "19.99" and row["ordered_on"] == "2025-07-01"


async def test_database_rejections_are_clear_tool_errors(db_stack, rw_token):
    async with mcp_client(db_stack.mcp_url, rw_token) as client:
        bad_type = await client.call_tool("query", {"table": "orders", "filters": {"id": "not-a-number"}})
        bad_fk = await client.call_tool("insert", {"table": "orders", "values": {"customer_id": 999999}})
        bad_key = await client.call_tool("update", {"table": "orders", "key": {"status": "x"}, "values": {"total": 1}})
    assert bad_type.is_error and "rejected by the database" in bad_type.content[0].text
    assert bad_fk.is_error and "foreign key" in bad_fk.content[0].text
    assert bad_key.is_error and "primary key" in bad_key.content[0].text


@pytest.mark.parametrize("price", ["NaN", "Infinity", " -infinity ", "nan"])
async def test_non_finite_numbers_are_refused_and_nothing_is_stored(db_stack, rw_token, price):
    """Postgres would store NaN past `CHECK (price >= 0)`: NaN sorts above every number."""
    sku = "NAN-" + uuid.uuid4().hex[:8]
    async with mcp_client(db_stack.mcp_url, rw_token) as client:
        inserted = await client.call_tool(
            "insert", {"table": "products", "values": {"sku": sku, "name": "N", "price": price}}
        )
        updated = await client.call_tool("update", {"table": "products", "key": {"id": 1}, "values": {"price": price}})
    assert inserted.is_error and "finite numbers only" in inserted.content[0].text
    assert updated.is_error and "finite numbers only" in updated.content[0].text
    conn = await asyncpg.connect(db_stack.pg.admin_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM sales.products WHERE sku = $1", sku) == 0
        assert await conn.fetchval("SELECT count(*) FROM sales.products WHERE price = 'NaN'") == 0
    finally:
        await conn.close()


async def test_read_token_cannot_write_through_the_server(db_stack, token_for):
    async with mcp_client(db_stack.mcp_url, token_for("db:read", db_stack.mcp_url)) as client:
        with pytest.raises(MCPError, match=r"^Forbidden"):
            await client.call_tool("insert", {"table": "customers", "values": {"email": "m@x", "name": "M"}})


async def test_database_calls_are_traced_inside_the_tool_span(db_stack, rw_token, otlp):
    async with mcp_client(db_stack.mcp_url, rw_token) as client:
        await client.call_tool("query", {"table": "products", "columns": ["sku"], "limit": 1})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(b'FROM "sales"."products"' in b for _, b in otlp.bodies):
        await asyncio.sleep(0.1)
    batch = b"".join(body for _, body in otlp.bodies)
    assert b"tools/call query" in batch  # the SDK's span
    assert b'SELECT "sku" FROM "sales"."products"' in batch and b"postgresql" in batch  # asyncpg's span
    assert b"reader-pw" not in batch  # no credentials in span attributes


def test_ready_checks_both_pools_and_metrics_show_them(db_stack):
    ready = httpx.get(db_stack.base + "/ready").json()
    assert ready == {"status": "ready", "checks": {"db_read": "ok", "db_write": "ok"}}
    metrics = httpx.get(db_stack.base + "/metrics").text
    assert 'mcp_db_pool_max_connections{pool="read"} 20.0' in metrics
    assert 'mcp_db_pool_connections{pool="write"}' in metrics


# --- least privilege, checked on the database itself ------------------------------------------

READER_DENIED = [
    "INSERT INTO sales.customers (email, name) VALUES ('r@x', 'R')",
    "UPDATE sales.customers SET name = 'R' WHERE id = 1",
    "DELETE FROM sales.order_items",
    "DROP TABLE sales.order_items",
    "CREATE TABLE sales.evil (id int)",
    "TRUNCATE sales.order_items",
    "SELECT * FROM internal.api_keys",
]
WRITER_DENIED = [
    "DELETE FROM sales.order_items",
    "DROP TABLE sales.order_items",
    "CREATE TABLE sales.evil (id int)",
    "TRUNCATE sales.order_items",
    "ALTER TABLE sales.orders ADD COLUMN evil int",
    "SELECT * FROM internal.api_keys",
    "CREATE TABLE public.evil (id int)",
]


@pytest.mark.parametrize("statement", READER_DENIED)
async def test_reader_role_can_only_select(db_stack, statement):
    conn = await asyncpg.connect(db_stack.role_url("mcp_db_reader"))
    try:
        assert await conn.fetchval("SELECT count(*) FROM sales.customers") >= 4
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_writer_role_can_select_insert_and_update(db_stack):
    conn = await asyncpg.connect(db_stack.role_url("mcp_db_writer"))
    try:
        sku = "T-" + uuid.uuid4().hex[:8]
        await conn.execute("INSERT INTO sales.products (sku, name, price) VALUES ($1, 'Tmp', 1)", sku)
        await conn.execute("UPDATE sales.products SET price = 2 WHERE sku = $1", sku)
        assert await conn.fetchval("SELECT price FROM sales.products WHERE sku = $1", sku) == 2
    finally:
        await conn.close()


@pytest.mark.parametrize("statement", WRITER_DENIED)
async def test_writer_role_cannot_delete_drop_or_leave_its_schema(db_stack, statement):
    conn = await asyncpg.connect(db_stack.role_url("mcp_db_writer"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()
