"""The SQL builder: identifiers only from the catalog, values only as bind parameters."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest

from apps.db.sql import Column, Table, insert_sql, json_safe, select_sql, update_sql
from apps.kit import CallerError

ORDERS = Table(
    "orders",
    {
        "id": Column("id", "bigint", False, True),
        "status": Column("status", "text", False, True),
        "total": Column("total", "numeric(12,2)", False, True),
        "ordered_on": Column("ordered_on", "date", False, True),
    },
    ("id",),
)


def test_select_binds_values_and_quotes_identifiers():
    sql, params = select_sql(
        "sales", ORDERS, ["id", "total"], {"status": "paid' OR 1=1 --", "total": None}, [("ordered_on", True)], 10, 5
    )
    assert sql == (
        'SELECT "id", "total" FROM "sales"."orders" WHERE "status" = $1::text::text AND "total" IS NULL'
        ' ORDER BY "ordered_on" DESC LIMIT 10 OFFSET 5'
    )
    assert params == ["paid' OR 1=1 --"]


def test_select_without_order_pages_by_primary_key():
    sql, _ = select_sql("sales", ORDERS, [], {}, [], 100, 0)
    assert sql.endswith('ORDER BY "id" LIMIT 100 OFFSET 0')


@pytest.mark.parametrize("column", ["nope", "id; DROP TABLE x", "pg_sleep"])
def test_unknown_columns_are_refused_everywhere(column):
    with pytest.raises(CallerError, match="unknown column"):
        select_sql("sales", ORDERS, [column], {}, [], 1, 0)
    with pytest.raises(CallerError, match="unknown column"):
        select_sql("sales", ORDERS, [], {column: 1}, [], 1, 0)
    with pytest.raises(CallerError, match="unknown column"):
        select_sql("sales", ORDERS, [], {}, [(column, False)], 1, 0)
    with pytest.raises(CallerError, match="unknown column"):
        insert_sql("sales", ORDERS, {column: 1})


def test_insert_returns_primary_key_and_casts_through_text():
    sql, params = insert_sql("sales", ORDERS, {"status": "new", "total": 12.5, "ordered_on": "2025-01-02"})
    assert sql == (
        'INSERT INTO "sales"."orders" ("status", "total", "ordered_on") VALUES '
        '($1::text::text, $2::text::numeric(12,2), $3::text::date) RETURNING "id"'
    )
    assert params == ["new", "12.5", "2025-01-02"]


def test_update_needs_exactly_the_primary_key_and_never_changes_it():
    sql, params = update_sql("sales", ORDERS, {"id": 3}, {"status": "paid"})
    assert sql == 'UPDATE "sales"."orders" SET "status" = $1::text::text WHERE "id" = $2::text::bigint'
    assert params == ["paid", "3"]
    with pytest.raises(CallerError, match="exactly the primary key"):
        update_sql("sales", ORDERS, {"status": "new"}, {"total": 1})
    with pytest.raises(CallerError, match="cannot update primary key"):
        update_sql("sales", ORDERS, {"id": 3}, {"id": 4})
    with pytest.raises(CallerError, match="cannot be null"):
        update_sql("sales", ORDERS, {"id": None}, {"status": "x"})


def test_booleans_become_sql_literals_not_python_reprs():
    table = Table(
        "p", {"id": Column("id", "bigint", False, True), "active": Column("active", "boolean", False, True)}, ("id",)
    )
    assert insert_sql("s", table, {"active": False})[1] == ["false"]


def test_json_safe_covers_postgres_types():
    value = {
        "d": dt.date(2025, 1, 2),
        "ts": dt.datetime(2025, 1, 2, 3, 4, tzinfo=dt.UTC),
        "n": Decimal("1.10"),
        "u": uuid.UUID(int=1),
        "b": b"\x00\x01",
        "i": dt.timedelta(seconds=90),
        "l": [Decimal("2")],
    }
    assert json_safe(value) == {
        "d": "2025-01-02",
        "ts": "2025-01-02T03:04:00+00:00",
        "n": "1.10",
        "u": "00000000-0000-0000-0000-000000000001",
        "b": "AAE=",
        "i": 90.0,
        "l": ["2"],
    }


def test_availability_failures_are_told_apart_from_statement_failures():
    import asyncpg

    from apps.db.database import unavailable

    for error in (
        ConnectionResetError(),
        TimeoutError(),
        asyncpg.exceptions.AdminShutdownError("shutting down"),
        asyncpg.exceptions.CannotConnectNowError("starting up"),
        asyncpg.exceptions.ConnectionDoesNotExistError("gone"),
        asyncpg.exceptions.TooManyConnectionsError("too many"),
        asyncpg.InterfaceError("closed"),
    ):
        assert unavailable(error), error
    for error in (
        asyncpg.exceptions.UniqueViolationError("dup"),
        asyncpg.exceptions.SyntaxOrAccessError("x"),
        ValueError("bug"),
    ):
        assert not unavailable(error), error


@pytest.mark.parametrize("text", ["NaN", "nan", "Infinity", "-Infinity", "+inf", " inf "])
def test_non_finite_number_strings_are_refused_for_numeric_columns(text):
    with pytest.raises(CallerError, match="finite numbers only"):
        insert_sql("sales", ORDERS, {"total": text})
    insert_sql("sales", ORDERS, {"status": text})  # a text column takes the word as it is


def test_tool_args_refuse_non_finite_floats():
    from pydantic import ValidationError

    from apps.kit import ToolArgs

    class Args(ToolArgs):
        value: float

    for bad in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValidationError):
            Args.model_validate({"value": bad})
    assert Args.model_validate({"value": 1.5}).value == 1.5
