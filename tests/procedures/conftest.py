"""Fixtures for the procedure tests: an autocommit connection and table factories."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql


@pytest.fixture
def conn(pg_conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """The fresh database, each statement its own transaction (as in psql)."""
    pg_conn.autocommit = True
    yield pg_conn


TableFactory = Callable[..., str]


@pytest.fixture
def make_ratings(conn: psycopg.Connection[Any]) -> TableFactory:
    """Make a table ``name`` (id, rating text) holding ``values`` in order."""

    def make(
        values: list[str | None],
        name: str = "rating",
        column: str = "rating",
        not_null: bool = False,
    ) -> str:
        conn.execute(
            sql.SQL(
                "create table {} (id bigint generated always as identity primary key,"
                " {} text {})"
            ).format(
                sql.Identifier(name),
                sql.Identifier(column),
                sql.SQL("not null" if not_null else ""),
            )
        )
        if values:
            with conn.cursor() as cursor:
                cursor.executemany(
                    sql.SQL("insert into {} ({}) values (%s)").format(
                        sql.Identifier(name), sql.Identifier(column)
                    ),
                    [(value,) for value in values],
                )
        return name

    return make


def snapshot(conn: psycopg.Connection[Any], table: str) -> tuple[Any, ...]:
    """Return a table's column types and rows, to show that it did not change."""
    columns = conn.execute(
        "select attname, format_type(atttypid, atttypmod), attnotnull"
        "  from pg_attribute where attrelid = %s::regclass and attnum > 0"
        "   and not attisdropped order by attnum",
        [sql.Identifier(table).as_string(conn)],
    ).fetchall()
    rows = conn.execute(
        sql.SQL("select * from {} order by 1").format(sql.Identifier(table))
    ).fetchall()
    return tuple(columns), tuple(rows)
