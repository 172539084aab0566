"""Build parameterised SQL from validated identifiers.

Identifiers come from the argument models (pattern-checked) and are then
checked against the live catalog before they are quoted into SQL; every value
is a bind parameter, cast through text to the column's catalog type so JSON
strings work for dates, numerics and UUIDs alike.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from apps.kit import CallerError

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Column:
    name: str
    data_type: str  # format_type() output, e.g. numeric(10,2)
    nullable: bool
    has_default: bool


@dataclass(frozen=True)
class Table:
    name: str
    columns: dict[str, Column]
    primary_key: tuple[str, ...]

    def column(self, name: str) -> Column:
        if name not in self.columns:
            raise CallerError(f"unknown column '{name}' in table '{self.name}'")
        return self.columns[name]


def quote(identifier: str) -> str:
    """Quote an identifier that already passed the pattern and the catalog check."""
    return '"' + identifier.replace('"', '""') + '"'


# Postgres reads these strings as non-finite numbers, and NaN sorts above every number, so it would pass
# `CHECK (price >= 0)`. JSON numbers are finite by the time they get here; their string forms are refused.
NON_FINITE_TEXT = frozenset({"nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"})
FLOATING_TYPES = ("numeric", "decimal", "real", "double precision", "float")


class Params:
    """Collects bind parameters and renders `$n::text::type` placeholders."""

    def __init__(self) -> None:
        self.values: list[str | None] = []

    def add(self, value: Scalar, column: Column) -> str:
        text = None if value is None else _as_text(value)
        if text is not None and column.data_type.startswith(FLOATING_TYPES) and text.strip().lower() in NON_FINITE_TEXT:
            raise CallerError(f"column '{column.name}' takes finite numbers only")
        self.values.append(text)
        return f"${len(self.values)}::text::{column.data_type}"


def _as_text(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def select_sql(
    schema: str,
    table: Table,
    columns: list[str],
    filters: dict[str, Scalar],
    order_by: list[tuple[str, bool]],
    limit: int,
    offset: int,
) -> tuple[str, list[str | None]]:
    params = Params()
    selected = ", ".join(quote(table.column(c).name) for c in columns) if columns else "*"
    sql = f"SELECT {selected} FROM {quote(schema)}.{quote(table.name)}"
    sql += _where(table, filters, params)
    if order_by:
        sql += " ORDER BY " + ", ".join(
            f"{quote(table.column(c).name)} {'DESC' if desc else 'ASC'}" for c, desc in order_by
        )
    elif table.primary_key:
        sql += " ORDER BY " + ", ".join(quote(c) for c in table.primary_key)  # stable paging
    sql += f" LIMIT {int(limit)} OFFSET {int(offset)}"
    return sql, params.values


def insert_sql(schema: str, table: Table, values: dict[str, Scalar]) -> tuple[str, list[str | None]]:
    params = Params()
    names = [table.column(c).name for c in values]
    placeholders = [params.add(v, table.columns[c]) for c, v in values.items()]
    returning = ", ".join(quote(c) for c in table.primary_key) or "NULL"
    sql = (
        f"INSERT INTO {quote(schema)}.{quote(table.name)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join(placeholders)}) RETURNING {returning}"
    )
    if not values:
        sql = f"INSERT INTO {quote(schema)}.{quote(table.name)} DEFAULT VALUES RETURNING {returning}"
    return sql, params.values


def update_sql(
    schema: str, table: Table, key: dict[str, Scalar], values: dict[str, Scalar]
) -> tuple[str, list[str | None]]:
    if not table.primary_key:
        raise CallerError(f"table '{table.name}' has no primary key; update needs one")
    if set(key) != set(table.primary_key):
        raise CallerError(f"key must name exactly the primary key columns {list(table.primary_key)}")
    overlap = sorted(set(values) & set(table.primary_key))
    if overlap:
        raise CallerError(f"cannot update primary key column(s) {overlap}")
    if any(v is None for v in key.values()):
        raise CallerError("key values cannot be null")
    params = Params()
    assignments = ", ".join(
        f"{quote(table.column(c).name)} = {params.add(v, table.columns[c])}" for c, v in values.items()
    )
    sql = f"UPDATE {quote(schema)}.{quote(table.name)} SET {assignments}"
    sql += _where(table, key, params)
    return sql, params.values


def _where(table: Table, filters: dict[str, Scalar], params: Params) -> str:
    clauses = []
    for name, value in filters.items():
        column = table.column(name)
        if value is None:
            clauses.append(f"{quote(column.name)} IS NULL")
        else:
            clauses.append(f"{quote(column.name)} = {params.add(value, column)}")
    return (" WHERE " + " AND ".join(clauses)) if clauses else ""


def json_safe(value: Any) -> Any:
    """Convert a database value to something `json.dumps` writes without loss."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and value not in (float("inf"), float("-inf")) else str(value)
    if isinstance(value, Decimal):
        return str(value)  # keeps precision; a float would not
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)
