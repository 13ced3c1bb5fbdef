"""change_column_type converts a column in place through a mapping, or not at all."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors, sql


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


RISK = json.dumps({"HIGH": 3, "MEDIUM": 2, "LOW": 1})
CALL = (
    "select old_value, new_value, row_count"
    "  from change_column_type(%s::regclass, %s, %s::text, %s::json"
)


def convert(conn, table, column, new_type, mapping, **options):
    """Call change_column_type with named options; return its rows."""
    extra = "".join(f", {name} => %s" for name in options)
    return conn.execute(
        CALL + extra + ")",
        [
            sql.Identifier(table).as_string(conn),
            column,
            new_type,
            mapping,
            *options.values(),
        ],
    ).fetchall()


def column_type(conn, table, column):
    return conn.execute(
        "select format_type(atttypid, atttypmod) from pg_attribute"
        " where attrelid = %s::regclass and attname = %s",
        [sql.Identifier(table).as_string(conn), column],
    ).fetchone()[0]


def refused(conn, table, error, call):
    """Run ``call``, expect ``error``, and check the table did not change."""
    before = snapshot(conn, table)
    with pytest.raises(error) as caught:
        call()
    assert snapshot(conn, table) == before
    return caught.value


def refused_mapping(conn, new_type, mapping):
    """Convert rating.rating to ``new_type`` by ``mapping``, expecting a refusal."""
    return refused(
        conn,
        "rating",
        errors.InvalidParameterValue,
        lambda: convert(conn, "rating", "rating", new_type, json.dumps(mapping)),
    )


def test_converts_every_value_and_reports_counts(conn, make_ratings):
    """Mapped values become integers; the result counts rows per key."""
    make_ratings(["HIGH", "LOW", "HIGH", "MEDIUM"])

    rows = convert(conn, "rating", "rating", "integer", RISK)

    assert rows == [("HIGH", "3", 2), ("LOW", "1", 1), ("MEDIUM", "2", 1)]
    assert column_type(conn, "rating", "rating") == "integer"
    values = conn.execute("select rating from rating order by id").fetchall()
    assert values == [(3,), (1,), (3,), (2,)]


def test_refuses_unmapped_values_listing_each_with_its_count(conn, make_ratings):
    """Any unmapped value stops the change; each is listed with its row count."""
    make_ratings(["HIGH", "URGENT", "high ", "URGENT", "LOW"])

    error = refused(
        conn,
        "rating",
        errors.CheckViolation,
        lambda: convert(conn, "rating", "rating", "integer", RISK),
    )

    assert str(error).splitlines()[0] == (
        "2 values in column rating of table rating not in the mapping:"
        " 'URGENT' (2 rows), 'high ' (1 row); nothing was changed"
    )
    assert error.diag.message_detail == "3 unmapped rows in all"


def test_refuses_nulls_unless_told_to_keep_them(conn, make_ratings):
    """A NULL is refused and listed; keep_nulls => true keeps it NULL."""
    make_ratings(["HIGH", None])

    error = refused(
        conn,
        "rating",
        errors.CheckViolation,
        lambda: convert(conn, "rating", "rating", "integer", RISK),
    )
    assert "not in the mapping: NULL (1 row);" in str(error)
    assert "keep_nulls" in error.diag.message_hint

    convert(conn, "rating", "rating", "integer", RISK, keep_nulls=True)
    values = conn.execute("select rating from rating order by id").fetchall()
    assert values == [(3,), (None,)]


def test_matches_exactly_unless_folding_case_and_space(conn, make_ratings):
    """Fold matches trimmed, upper-cased values; exact matching refuses them."""
    make_ratings([" high", "Low\t", "MEDIUM"])
    refused(
        conn,
        "rating",
        errors.CheckViolation,
        lambda: convert(conn, "rating", "rating", "integer", RISK),
    )

    rows = convert(conn, "rating", "rating", "integer", RISK, fold_case_and_space=True)

    assert rows == [("HIGH", "3", 1), ("LOW", "1", 1), ("MEDIUM", "2", 1)]
    values = conn.execute("select rating from rating order by id").fetchall()
    assert values == [(3,), (1,), (2,)]


def test_refuses_keys_that_collide_when_folded(conn, make_ratings):
    """With folding, "High" and "HIGH" are one key given twice: an error."""
    make_ratings(["HIGH"])
    mapping = json.dumps({"HIGH": 3, "High": 1})

    error = refused(
        conn,
        "rating",
        errors.InvalidParameterValue,
        lambda: convert(
            conn, "rating", "rating", "integer", mapping, fold_case_and_space=True
        ),
    )
    assert "mapping lists 'HIGH' twice (after trimming and case folding)" in str(error)


def test_refuses_a_key_given_twice(conn, make_ratings):
    """A JSON object naming one key twice is refused (jsonb would keep the last)."""
    make_ratings(["HIGH"])

    error = refused(
        conn,
        "rating",
        errors.InvalidParameterValue,
        lambda: convert(
            conn, "rating", "rating", "integer", '{"HIGH": 3, "HIGH": 1, "LOW": 2}'
        ),
    )
    assert "mapping lists 'HIGH' twice" in str(error)


def test_refuses_two_names_sent_to_one_number(conn, make_ratings):
    """A many-to-one mapping is a mistake unless allow_many_to_one says otherwise."""
    make_ratings(["HIGH", "MEDIUM", "LOW"])
    typo = json.dumps({"HIGH": 3, "MEDIUM": 3, "LOW": 1})

    error = refused(
        conn,
        "rating",
        errors.InvalidParameterValue,
        lambda: convert(conn, "rating", "rating", "integer", typo),
    )
    assert "mapping sends 'HIGH' and 'MEDIUM' both to 3" in str(error)

    # The same number spelt differently is still the same number.
    error = refused(
        conn,
        "rating",
        errors.InvalidParameterValue,
        lambda: convert(
            conn, "rating", "rating", "integer", '{"HIGH": 3, "MEDIUM": "03"}'
        ),
    )
    assert "both to 3" in str(error)

    convert(conn, "rating", "rating", "integer", typo, allow_many_to_one=True)
    values = conn.execute("select rating from rating order by id").fetchall()
    assert values == [(3,), (3,), (1,)]


BAD_MAPPINGS = [
    (
        "integer",
        {"HIGH": "three", "LOW": 1},
        "mapping value 'three' for 'HIGH' cannot be stored as integer",
    ),
    (
        "smallint",
        {"HIGH": 70000, "LOW": 1},
        "mapping value '70000' for 'HIGH' cannot be stored as smallint",
    ),
    ("integer", {"HIGH": None}, "mapping sends 'HIGH' to null"),
    ("integer", {}, "mapping must not be empty"),
    ("integer", ["HIGH", 3], "mapping must be a JSON object"),
]


def test_refuses_a_mapping_the_target_type_cannot_hold(conn, make_ratings):
    """A new value the target type cannot hold, or a malformed mapping, is refused."""
    make_ratings(["HIGH", "LOW"])

    for new_type, mapping, message in BAD_MAPPINGS:
        error = refused_mapping(conn, new_type, mapping)
        assert message in str(error)


def test_refuses_a_missing_table_column_or_type(conn, make_ratings):
    """A table, column or type that does not exist is a clear error."""
    make_ratings(["HIGH"])

    with pytest.raises(errors.UndefinedTable, match='relation "nope" does not exist'):
        convert(conn, "nope", "rating", "integer", RISK)
    error = refused(
        conn,
        "rating",
        errors.UndefinedColumn,
        lambda: convert(conn, "rating", "nope", "integer", RISK),
    )
    assert "column nope of table rating does not exist" in str(error)
    refused(
        conn,
        "rating",
        errors.UndefinedObject,
        lambda: convert(conn, "rating", "rating", "intgr", RISK),
    )


def test_a_varchar_target_keeps_its_length(conn, make_ratings):
    """varchar(3) converts to character varying(3), not to an unlimited varchar."""
    make_ratings(["HIGH", "LOW", "MEDIUM"])
    codes = json.dumps({"HIGH": "HI", "MEDIUM": "MED", "LOW": "LO"})

    rows = convert(conn, "rating", "rating", "varchar(3)", codes)

    assert rows == [("HIGH", "HI", 1), ("LOW", "LO", 1), ("MEDIUM", "MED", 1)]
    assert column_type(conn, "rating", "rating") == "character varying(3)"
    values = conn.execute("select rating from rating order by id").fetchall()
    assert values == [("HI",), ("LO",), ("MED",)]


def test_a_numeric_target_keeps_its_precision_and_scale(conn, make_ratings):
    """numeric(5,2) keeps both; new values come back in the column's scale."""
    make_ratings(["HIGH", "LOW", "MEDIUM"])
    weights = json.dumps({"HIGH": 3.5, "MEDIUM": 2, "LOW": "1.25"})

    rows = convert(conn, "rating", "rating", "numeric(5,2)", weights)

    assert rows == [("HIGH", "3.50", 1), ("LOW", "1.25", 1), ("MEDIUM", "2.00", 1)]
    assert column_type(conn, "rating", "rating") == "numeric(5,2)"
    values = conn.execute("select rating::text from rating order by id").fetchall()
    assert values == [("3.50",), ("1.25",), ("2.00",)]


CUT_OR_ROUNDED = [
    ("varchar(3)", {"HIGH": "abcd"}, "'abcd' for 'HIGH' would be stored as 'abc'"),
    ("numeric(5,2)", {"HIGH": 1.239}, "'1.239' for 'HIGH' would be stored as '1.24'"),
    ("character(2)", {"HIGH": "abc"}, "'abc' for 'HIGH' would be stored as 'ab'"),
    ("varchar(2)[]", {"HIGH": "{abc}"}, "'{abc}' for 'HIGH' would be stored as '{ab}'"),
    ("timestamp(0)", {"HIGH": "2024-01-01 10:00:00.6"}, "as '2024-01-01 10:00:01'"),
    ("short_code", {"HIGH": "abcd"}, "'abcd' for 'HIGH' would be stored as 'abc'"),
]


def test_refuses_a_value_the_type_modifier_would_cut_or_round(conn, make_ratings):
    """A mapped value that a modifier (or a domain's) would change is refused."""
    make_ratings(["HIGH"])
    conn.execute("create domain short_code as varchar(3)")

    for new_type, mapping, message in CUT_OR_ROUNDED:
        error = refused_mapping(conn, new_type, mapping)
        assert message in str(error), new_type
        assert "may not cut or round" in error.diag.message_hint


CANONICAL_TYPES = [
    ("integer", "integer"),
    ("int4", "integer"),
    ("pg_catalog.int8", "bigint"),
    ("varchar(3)", "character varying(3)"),
    ("VARCHAR ( 3 )", "character varying(3)"),
    ("varchar(3)[]", "character varying(3)[]"),
    ("numeric(5,2)", "numeric(5,2)"),
    ("char", "character(1)"),
    ("bpchar", "bpchar"),
    ('"char"', '"char"'),
    ("timestamp(3) with time zone", "timestamp(3) with time zone"),
    ("interval second(2)", "interval second(2)"),
    ("int -- a comment", "integer"),
    ("int /* a comment */", "integer"),
    ("mood", "mood"),
    ("mood[]", "mood[]"),
    ('"Odd; type"', '"Odd; type"'),
]


def test_type_change_type_spells_a_type_canonically(conn):
    """type_change_type keeps the modifier and spells the type as format_type does."""
    conn.execute("create type mood as enum ('sad', 'fine')")
    conn.execute('create domain "Odd; type" as varchar(3)')

    for written, canonical in CANONICAL_TYPES:
        spelt = conn.execute("select type_change_type(%s)", [written]).fetchone()[0]
        assert spelt == canonical, written
    probe = conn.execute("select to_regclass('pg_temp.type_change_type_probe')")
    assert probe.fetchone() == (None,)


BAD_TYPES = [
    ("int; drop table person", errors.SyntaxError),
    ("int) ; select 1 --", errors.SyntaxError),
    ("varchar(3)) --", errors.SyntaxError),
    ("int -- a comment\n; drop table person", errors.SyntaxError),
    ("int /* unterminated", errors.SyntaxError),
    ("numeric((select 5))", errors.SyntaxError),
    ("setof integer", errors.SyntaxError),
    ("mood(3)", errors.SyntaxError),
    ("23", errors.SyntaxError),
    ("-", errors.SyntaxError),
    ("", errors.SyntaxError),
    ('"int; drop table person"', errors.UndefinedObject),
    ("intgr", errors.UndefinedObject),
    ("varchar(0)", errors.InvalidParameterValue),
    (None, errors.InvalidParameterValue),
]


def test_refuses_a_target_type_that_is_not_one_type_name(conn, make_ratings):
    """Injection-looking, unknown or NULL types are clear errors that change nothing."""
    make_ratings(["HIGH"])
    conn.execute("create type mood as enum ('sad', 'fine')")

    for new_type, error_class in BAD_TYPES:
        error = refused(
            conn,
            "rating",
            error_class,
            lambda new_type=new_type: convert(conn, "rating", "rating", new_type, RISK),
        )
        if error_class is errors.SyntaxError:
            assert str(error).startswith("invalid target type '"), new_type
    assert conn.execute("select to_regclass('person')").fetchone()[0] is not None
    error = refused(
        conn,
        "rating",
        errors.SyntaxError,
        lambda: convert(conn, "rating", "rating", "int; drop table person", RISK),
    )
    assert str(error).splitlines()[0] == (
        "invalid target type 'int; drop table person': syntax error at or near \";\""
    )


def test_refuses_null_arguments(conn, make_ratings):
    """NULL for the table, column, type or mapping is an error, not a no-op."""
    make_ratings(["HIGH"])
    calls = [
        "select * from change_column_type(null, 'rating', 'integer', %s)",
        "select * from change_column_type('rating', null, 'integer', %s)",
        "select * from change_column_type('rating', 'rating', null, %s)",
        "select * from change_column_type('rating', 'rating', 'integer',"
        " (select %s where false))",
        "select * from change_column_type('rating', 'rating', 'integer', %s,"
        " keep_nulls => null)",
        "select * from change_column_type('rating', 'rating', 'integer', %s,"
        " lock_timeout => null)",
        "select * from change_column_type('rating', 'rating', 'integer', %s,"
        " lock_timeout => '0')",
    ]
    for call in calls:
        refused(
            conn,
            "rating",
            errors.InvalidParameterValue,
            lambda call=call: conn.execute(
                call.replace("%s", "%s::json"), [RISK] * call.count("%s")
            ),
        )


def test_names_with_quotes_and_semicolons_cannot_inject(conn, make_ratings):
    """Hostile names are errors and run nothing; odd but real names just work."""
    make_ratings(["HIGH"])
    hostile = [
        ("rating; drop table person", "rating"),
        ('rating"; drop table person; --', "rating"),
        ("rating", 'rating" text; drop table person; --'),
        ("rating", "rating; drop table person"),
    ]
    for table, column in hostile:
        before = snapshot(conn, "rating")
        with pytest.raises(psycopg.Error):
            conn.execute(
                CALL + ")", [table, column, "integer", RISK]
            )  # table passed raw
        assert snapshot(conn, "rating") == before
    with pytest.raises(psycopg.Error):
        conn.execute(
            CALL + ")", ["rating", "rating", "integer; drop table person", RISK]
        )
    assert conn.execute("select to_regclass('person')").fetchone()[0] is not None

    # A table and column whose real names carry quotes and semicolons, and a value
    # with a quote: all quoted, all converted.
    weird = 'risk "log"; drop table person; --'
    make_ratings(["O'Brien", "x;y"], name=weird, column="ra'ting\";")
    convert(conn, weird, "ra'ting\";", "integer", json.dumps({"O'Brien": 1, "x;y": 2}))
    rows = conn.execute(
        sql.SQL("select {} from {} order by id").format(
            sql.Identifier("ra'ting\";"), sql.Identifier(weird)
        )
    ).fetchall()
    assert rows == [(1,), (2,)]
    assert conn.execute("select to_regclass('person')").fetchone()[0] is not None


def test_refuses_a_column_with_a_default(conn, make_ratings):
    """A default would not survive the USING; it must be dropped first."""
    make_ratings(["HIGH"])
    conn.execute("alter table rating alter column rating set default 'LOW'")

    error = refused(
        conn,
        "rating",
        errors.ObjectNotInPrerequisiteState,
        lambda: convert(conn, "rating", "rating", "integer", RISK),
    )
    assert "has a default" in str(error)
    assert "'LOW'::text" in error.diag.message_detail


def test_gives_up_on_a_busy_table_within_lock_timeout(conn, make_ratings, pg_target):
    """A lock held elsewhere: a clear 55P03 after lock_timeout, nothing changed."""
    make_ratings(["HIGH"])
    with psycopg.connect(pg_target.conninfo()) as holder:
        holder.execute("select * from rating")  # holds ACCESS SHARE until rollback

        error = refused(
            conn,
            "rating",
            errors.LockNotAvailable,
            lambda: convert(
                conn, "rating", "rating", "integer", RISK, lock_timeout="50ms"
            ),
        )
        holder.rollback()

    assert "could not lock table rating within 00:00:00.05" in str(error)
    assert "nothing was changed" in str(error)
    assert conn.execute("show lock_timeout").fetchone() == ("0",)


def test_restores_the_callers_lock_timeout(conn, make_ratings):
    """The function's own lock_timeout does not leak into the caller's transaction."""
    make_ratings(["HIGH"])
    with conn.transaction():
        conn.execute("set local lock_timeout = '7s'")
        convert(conn, "rating", "rating", "integer", RISK, lock_timeout="1s")
        assert conn.execute("show lock_timeout").fetchone() == ("7s",)


def test_the_generated_case_raises_for_a_value_it_does_not_list(conn, make_ratings):
    """Belt and braces: the USING CASE's ELSE raises rather than writing NULL."""
    make_ratings(["HIGH", "URGENT"])
    case = conn.execute(
        "select type_change_case('rating', %s::json, 'integer', false, false,"
        " 'rating', 'rating')",
        [RISK],
    ).fetchone()[0]
    assert "else public.type_change_unmapped(" in case

    # The same ALTER the function would run, without its checks first.
    error = refused(
        conn,
        "rating",
        errors.CheckViolation,
        lambda: conn.execute(
            f"alter table rating alter column rating type integer using {case}"
        ),
    )
    assert "value 'URGENT' in column rating of table rating is not in" in str(error)


def test_every_public_function_has_a_comment(conn):
    """\\df+ tells a psql user what each type change function does."""
    missing = conn.execute(
        "select p.oid::regprocedure::text from pg_proc p"
        " where p.pronamespace = 'public'::regnamespace"
        "   and (p.proname like 'type\\_change\\_%'"
        "        or p.proname = 'change_column_type')"
        "   and p.proname not like 'type\\_change\\_sync\\_%'"
        "   and obj_description(p.oid, 'pg_proc') is null"
    ).fetchall()
    assert missing == []


def test_concurrent_writers_wait_then_see_integers(conn, make_ratings, pg_target):
    """A writer queued behind the conversion proceeds once it commits."""
    make_ratings(["HIGH", "LOW"])
    done = threading.Event()

    def write_later():
        with psycopg.connect(pg_target.conninfo(), autocommit=True) as writer:
            writer.execute("set lock_timeout = '10s'")
            writer.execute("insert into rating (rating) values ('3')")
        done.set()

    with conn.transaction():
        convert(conn, "rating", "rating", "integer", RISK)
        thread = threading.Thread(target=write_later)
        thread.start()
        assert not done.wait(0.2)
    thread.join(10)

    values = conn.execute("select rating from rating order by id").fetchall()
    assert values == [(3,), (1,), (3,)]
