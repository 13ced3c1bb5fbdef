"""Migrations 0020 and 0021: defect.risk lives through text, then integer, and back."""

from __future__ import annotations

import pytest

from db.errors import MigrationError
from db.migrate import applied_migrations, migrate, rollback
from tests.procedures import test_type_change as in_place

# The fixture of the in-place tests, shared.
conn = in_place.conn


def risk_type(conn):
    return conn.execute(
        "select format_type(atttypid, atttypmod), col_description(attrelid, attnum)"
        "  from pg_attribute where attrelid = 'defect'::regclass and attname = 'risk'"
    ).fetchone()


def roll_back_through_0021(target):
    """Roll back 0021 and whatever was applied after it."""
    applied = applied_migrations(target)
    return rollback(
        target, count=len(applied) - applied.index("0021_defect_risk_integer")
    )


def test_a_fresh_install_stores_risk_as_an_integer(conn):
    """After 0021 the rating is an integer between 1 and 3, indexed for sorting."""
    assert risk_type(conn) == ("integer", "Risk rating: 3 high, 2 medium, 1 low.")
    conn.execute("insert into defect (description, risk) values ('ok', 3)")
    with pytest.raises(Exception, match="defect_risk_range"):
        conn.execute("insert into defect (description, risk) values ('bad', 4)")
    index = conn.execute(
        "select indexdef from pg_indexes where indexname = 'defect_risk_raised_at_idx'"
    ).fetchone()
    assert index and "(risk DESC, raised_at DESC, id DESC)" in index[0]


def test_rollback_restores_the_text_ratings_and_migrate_converts_again(conn, pg_target):
    """0021's rollback gives back 'HIGH', 'MEDIUM', 'LOW'; migrating again, 3, 2, 1."""
    conn.execute(
        "insert into defect (description, risk) values ('a', 3), ('b', 2), ('c', 1)"
    )

    rolled = roll_back_through_0021(pg_target)

    assert rolled[-1] == "0021_defect_risk_integer"
    assert risk_type(conn) == ("text", "Risk rating as text: HIGH, MEDIUM or LOW.")
    texts = conn.execute("select risk from defect order by id").fetchall()
    assert texts == [("HIGH",), ("MEDIUM",), ("LOW",)]

    migrate(pg_target)

    assert risk_type(conn)[0] == "integer"
    numbers = conn.execute("select risk from defect order by id").fetchall()
    assert numbers == [(3,), (2,), (1,)]


def test_an_unmapped_rating_stops_the_migration_and_changes_nothing(conn, pg_target):
    """A deployment with a stray rating gets a failed 0021 listing it, and no loss."""
    roll_back_through_0021(pg_target)
    conn.execute(
        "insert into defect (description, risk)"
        " values ('a', 'HIGH'), ('b', 'High '), ('c', 'critical'), ('d', 'critical')"
    )

    with pytest.raises(MigrationError) as caught:
        migrate(pg_target)

    message = str(caught.value)
    assert "0021_defect_risk_integer.sql" in message
    assert (
        "2 values in column risk of table defect not in the mapping:"
        " 'critical' (2 rows), 'High ' (1 row); nothing was changed" in message
    )
    assert risk_type(conn)[0] == "text"
    assert conn.execute("select count(*) from defect").fetchone() == (4,)

    # The fix the docs describe: correct the rows, then migrate again.
    conn.execute("update defect set risk = 'HIGH' where risk in ('High ', 'critical')")
    migrate(pg_target)
    assert conn.execute("select array_agg(risk) from defect").fetchone() == (
        [3, 3, 3, 3],
    )


# The functions that took the target type as regtype before it became text.
REGTYPE_OVERLOADS = """
    select p.oid::regprocedure::text from pg_proc as p
     where p.pronamespace = 'public'::regnamespace
       and p.proname in ('change_column_type', 'type_change_online_start',
                         'type_change_check_values', 'type_change_case',
                         'type_change_mapping')
       and 'regtype'::regtype = any (p.proargtypes::oid[])
"""


def test_migrate_drops_the_regtype_versions_an_earlier_release_left(conn, pg_target):
    """Only the text versions remain: a regtype overload would make calls ambiguous."""
    # The signatures an earlier release created, bodies aside.
    for name, arguments in [
        (
            "change_column_type",
            "regclass, name, regtype, json, boolean, boolean, boolean, interval",
        ),
        (
            "type_change_online_start",
            "regclass, name, regtype, json, name, boolean, boolean, interval",
        ),
        ("type_change_check_values", "regclass, name, json, regtype, boolean, boolean"),
        ("type_change_case", "text, json, regtype, boolean, boolean, text, name"),
        ("type_change_mapping", "json, regtype, boolean, boolean"),
    ]:
        conn.execute(
            f"create function {name}({arguments}) returns void"
            " language plpgsql as 'begin end'"
        )
    assert len(conn.execute(REGTYPE_OVERLOADS).fetchall()) == 5

    migrate(pg_target)

    assert conn.execute(REGTYPE_OVERLOADS).fetchall() == []
    # A type written as an untyped literal, as psql users write it, resolves.
    conn.execute("create table grading (grade text); insert into grading values ('A')")
    rows = conn.execute(
        "select * from change_column_type('grading', 'grade', 'varchar(1)',"
        """ '{"A": "a"}')"""
    ).fetchall()
    assert rows == [("A", "a", 1)]
