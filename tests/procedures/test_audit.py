"""The audit triggers, audit_table() and the append-only guard, from psql's side."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest
from django.db import connection
from psycopg import errors, sql


@pytest.fixture
def conn(db: None) -> psycopg.Connection[Any]:
    """Django's test database, inside the test's transaction (rolled back after it).

    A clone per test costs seconds; these tests need no commit. Statements that must
    fail run in ``conn.transaction()`` (a savepoint).
    """
    connection.ensure_connection()
    raw = connection.connection
    # Other tests may have committed audit rows: only this test's count.
    (_seen["before"],) = raw.execute(
        "select coalesce(max(id), 0) from audit_log"
    ).fetchone()
    return raw


_seen = {"before": 0}


def audit_rows(conn: psycopg.Connection[Any], table: str | None = None) -> list[dict]:
    """Return this test's audit rows (of ``table``), oldest first."""
    with conn.cursor(row_factory=psycopg.rows.dict_row) as cursor:
        cursor.execute(
            "select * from audit_log where id > %(before)s"
            " and (%(t)s::text is null or table_name = %(t)s) order by id",
            {"t": table, "before": _seen["before"]},
        )
        rows = cursor.fetchall()
    # Django's connection hands jsonb over as text.
    for row in rows:
        for column in ("row_key", "old_row", "new_row"):
            if isinstance(row[column], str):
                row[column] = json.loads(row[column])
    return rows


def audit_triggers(conn: psycopg.Connection[Any], table: str) -> list[str]:
    return [
        name
        for (name,) in conn.execute(
            "select tgname from pg_trigger where tgrelid = %s::regclass"
            " and tgname like 'audit%%' order by tgname",
            [table],
        )
    ]


def test_insert_update_delete_are_logged_with_key_images_and_changes(conn):
    """Each changed row gives one audit row: op, key, images, changed columns."""
    (pid,) = conn.execute(
        "insert into person (name) values ('Ada') returning id"
    ).fetchone()
    conn.execute("update person set name = 'Ada L.' where id = %s", [pid])
    conn.execute("update person set name = name where id = %s", [pid])
    conn.execute("delete from person where id = %s", [pid])

    insert, update, noop, delete = audit_rows(conn, "person")
    assert (insert["op"], insert["row_key"], insert["old_row"]) == (
        "insert",
        {"id": pid},
        None,
    )
    assert insert["new_row"] == {"id": pid, "name": "Ada", "date_of_birth": None}
    assert update["op"] == "update" and update["changed_columns"] == ["name"]
    assert update["old_row"]["name"] == "Ada" and update["new_row"]["name"] == "Ada L."
    assert noop["changed_columns"] == []
    assert delete["op"] == "delete" and delete["new_row"] is None
    assert delete["old_row"]["name"] == "Ada L."
    assert all(row["schema_name"] == "public" for row in (insert, update, delete))


def test_rows_of_one_transaction_carry_its_txid(conn):
    """txid is the writing transaction's id (with epoch), for all its statements."""
    conn.execute("insert into person (name) values ('A'), ('B')")
    conn.execute("update person set name = lower(name)")
    (txid,) = conn.execute("select pg_current_xact_id()::text::bigint").fetchone()
    assert [row["txid"] for row in audit_rows(conn, "person")] == [txid] * 4


def test_actor_is_the_transaction_setting_else_the_role(conn):
    """pgzen.actor names who; without it (unset or empty), the database role."""
    conn.execute("select set_config('pgzen.actor', 'alice', true)")
    conn.execute("insert into person (name) values ('By Alice')")
    conn.execute("select set_config('pgzen.actor', '', true)")
    conn.execute("insert into person (name) values ('By nobody')")
    (role,) = conn.execute("select current_user").fetchone()

    alice, nobody = audit_rows(conn, "person")
    assert (alice["actor"], alice["db_role"]) == ("alice", role)
    assert (nobody["actor"], nobody["db_role"]) == (role, role)


def test_a_multi_row_update_pairs_each_old_image_with_its_new_one(conn):
    """1,000 rows in one statement, key changes included: images stay paired."""
    conn.execute(
        "insert into person (name) select 'p' || g from generate_series(1, 1000) g"
    )
    # A one-row update first: its plan is the one the session keeps reusing.
    conn.execute("update person set name = name where name = 'p1'")
    started = time.perf_counter()
    conn.execute("update person set name = name || '-' || id, id = id + 5000")
    # Linear, not quadratic (a nested loop over 1,000 rows took 8 s).
    assert time.perf_counter() - started < 3

    updates = [row for row in audit_rows(conn, "person") if row["op"] == "update"][1:]
    assert len(updates) == 1000
    for row in updates:
        old, new = row["old_row"], row["new_row"]
        assert new["id"] == old["id"] + 5000
        assert new["name"] == f"{old['name']}-{old['id']}"
        assert row["row_key"] == {"id": new["id"]}
        assert sorted(row["changed_columns"]) == ["id", "name"]


def test_an_update_of_over_10000_rows_pairs_images_by_a_join(conn):
    """Above 10,000 rows the images are joined by position: still paired, linear."""
    conn.execute(
        "insert into person (name) select 'q' || g from generate_series(1, 10001) g"
    )
    conn.execute("update person set name = name where name = 'q1'")
    started = time.perf_counter()
    conn.execute("update person set name = name || '-' || id, id = id + 50000")
    assert time.perf_counter() - started < 10

    (paired, total) = conn.execute(
        "select count(*) filter (where (new_row ->> 'id')::int"
        "                               = (old_row ->> 'id')::int + 50000"
        "                          and new_row ->> 'name' = (old_row ->> 'name')"
        "                              || '-' || (old_row ->> 'id')"
        "                          and row_key = jsonb_build_object('id',"
        "                                                           new_row -> 'id')"
        "                          and changed_columns = '{id,name}'),"
        "       count(*)"
        "  from audit_log where id > %s and op = 'update' and table_name = 'person'"
        "   and old_row ->> 'name' <> new_row ->> 'name'",
        [_seen["before"]],
    ).fetchone()
    assert (paired, total) == (10001, 10001)


def test_truncate_is_one_statement_level_row_per_table(conn):
    """A truncate is logged once per truncated table, without images."""
    conn.execute("insert into person (name) values ('a'), ('b')")
    conn.execute("truncate person cascade")

    truncates = [row for row in audit_rows(conn) if row["op"] == "truncate"]
    assert sorted(row["table_name"] for row in truncates) == ["address", "person"]
    assert all(row["row_key"] is None and row["old_row"] is None for row in truncates)


def test_audit_table_is_idempotent_and_can_be_turned_off(conn):
    """Calling it twice leaves the same four triggers; false removes them."""
    conn.execute("create table gadget (id int primary key, name text)")
    conn.execute("select audit_table('gadget')")
    conn.execute("select audit_table('gadget')")
    assert audit_triggers(conn, "gadget") == [
        "audit_delete",
        "audit_insert",
        "audit_truncate",
        "audit_update",
    ]
    conn.execute("insert into gadget values (1, 'a')")
    assert len(audit_rows(conn, "gadget")) == 1

    conn.execute("select audit_table('gadget', false)")
    conn.execute("select audit_table('gadget', false)")
    conn.execute("insert into gadget values (2, 'b')")
    assert audit_triggers(conn, "gadget") == []
    assert len(audit_rows(conn, "gadget")) == 1


def test_a_composite_key_names_every_key_column(conn):
    """row_key holds all primary key columns, in key order."""
    conn.execute(
        "create table shelf (room text, slot int, label text, primary key (slot, room))"
    )
    conn.execute("select audit_table('shelf')")
    conn.execute("insert into shelf values ('a', 1, 'x')")
    conn.execute("update shelf set label = 'y'")
    conn.execute("delete from shelf")
    assert [row["row_key"] for row in audit_rows(conn, "shelf")] == [
        {"slot": 1, "room": "a"}
    ] * 3


def test_a_composite_key_update_over_10000_rows_stays_paired_across_chunks(conn):
    """The large path gathers images in arrays of 10,000: rows on both sides of a
    chunk boundary keep their own key, and the key change shows in both images."""
    conn.execute(
        "create table shelf (room text, slot int, label text, primary key (slot, room))"
    )
    conn.execute("select audit_table('shelf')")
    conn.execute(
        "insert into shelf select 'r' || (g % 7), g, 'l' || g"
        "  from generate_series(1, 20001) g"
    )
    conn.execute("update shelf set slot = slot + 100000, label = label || '!'")

    (paired, total) = conn.execute(
        "select count(*) filter (where row_key = jsonb_build_object("
        "                                 'slot', (old_row ->> 'slot')::int + 100000,"
        "                                 'room', old_row ->> 'room')"
        "                      and new_row ->> 'label' = (old_row ->> 'label') || '!'"
        "                          and new_row ->> 'room' = old_row ->> 'room'"
        "                          and changed_columns = '{slot,label}'),"
        "       count(*)"
        "  from audit_log where table_name = 'shelf' and op = 'update'"
    ).fetchone()
    assert (paired, total) == (20001, 20001)


@pytest.mark.parametrize(
    ("ddl", "target", "error", "message"),
    [
        ("create table loose (x int)", "loose", errors.ObjectNotInPrerequisiteState,
         "cannot audit loose: it has no primary key"),
        ("create view person_names as select name from person", "person_names",
         errors.WrongObjectType, "cannot audit person_names: it is not a table"),
        (None, "audit_log", errors.InvalidParameterValue,
         "cannot audit audit_log: it is part of the audit log itself"),
    ],
)  # fmt: skip
def test_audit_table_refuses_what_it_cannot_audit(conn, ddl, target, error, message):
    """No primary key, not a table, the audit log itself: a clear error."""
    if ddl:
        conn.execute(ddl)
    with pytest.raises(error, match=message), conn.transaction():
        conn.execute("select audit_table(%s)", [target])


def test_functions_are_documented_for_psql_users(conn):
    """audit_table and the trigger functions carry a COMMENT ON (\\df+)."""
    undocumented = conn.execute(
        "select p.proname from pg_proc p"
        " where p.pronamespace = 'public'::regnamespace"
        "   and (p.proname like 'audit\\_%%')"
        "   and obj_description(p.oid, 'pg_proc') is null"
    ).fetchall()
    assert undocumented == []
    (comment,) = conn.execute(
        "select obj_description('audit_table(regclass, boolean)'::regprocedure)"
    ).fetchone()
    assert "primary key" in comment


USER_EDITED_TABLES = ["person", "address", "location", "shift", "defect"]


def test_every_user_edited_table_is_audited(conn):
    """person, address, location, shift and defect carry the audit triggers."""
    present = [
        name
        for (name,) in conn.execute(
            "select relname from pg_class where relname = any(%s) and relkind = 'r'",
            [USER_EDITED_TABLES],
        )
    ]
    assert sorted(present) == sorted(USER_EDITED_TABLES)
    for table in present:
        assert len(audit_triggers(conn, table)) == 4, table


@pytest.fixture
def other_role(conn):
    """A role that does not own audit_log, with every privilege on it (rolled back)."""
    name = "audit_test_other"
    conn.execute(sql.SQL("create role {}").format(sql.Identifier(name)))
    conn.execute(
        sql.SQL(
            "grant select, insert, update, delete, truncate"
            " on audit_log, instance_repr to {}"
        ).format(sql.Identifier(name))
    )
    return name


@pytest.mark.parametrize(
    "statement",
    [
        "update audit_log set actor = 'mallory'",
        "delete from audit_log",
        "truncate audit_log cascade",
    ],
)
def test_audit_log_is_append_only_for_anyone_but_its_owner(conn, other_role, statement):
    """Even with the privilege granted, a non-owner cannot change or remove history."""
    conn.execute("insert into person (name) values ('Ada')")
    conn.execute(sql.SQL("set role {}").format(sql.Identifier(other_role)))
    with (
        pytest.raises(errors.InsufficientPrivilege, match="audit_log is append-only"),
        conn.transaction(),
    ):
        conn.execute(statement)
    conn.execute("reset role")
    assert len(audit_rows(conn)) == 1


def test_the_owner_may_prune_the_audit_log(conn):
    """The owner (retention jobs, migrations) deletes audit rows."""
    conn.execute("insert into person (name) values ('Ada')")
    conn.execute("delete from audit_log")
    assert audit_rows(conn) == []
