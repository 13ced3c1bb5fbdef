"""grant_app_privileges: the app's role gets data privileges only."""

import uuid

import psycopg
import pytest
from psycopg import sql

from tests.support.postgres import run_pgzen


@pytest.fixture
def app_role(pg_conn):
    """A fresh login role, dropped (with its grants) after the test."""
    name = f"pgzen_app_{uuid.uuid4().hex[:8]}"
    pg_conn.execute(sql.SQL("create role {} login").format(sql.Identifier(name)))
    pg_conn.commit()
    yield name
    pg_conn.rollback()
    pg_conn.execute("reset role")
    pg_conn.execute(sql.SQL("drop owned by {}").format(sql.Identifier(name)))
    pg_conn.execute(sql.SQL("drop role {}").format(sql.Identifier(name)))
    pg_conn.commit()


def as_role(conn, role, statement, params=None):
    """Run one statement as ``role`` in a transaction that is rolled back."""
    with conn.transaction(force_rollback=True):
        conn.execute(sql.SQL("set local role {}").format(sql.Identifier(role)))
        return (
            conn.execute(statement, params).fetchall()
            if "returning" in statement
            else conn.execute(statement, params)
        )


def test_app_role_can_write_data_but_not_change_the_schema(pg_conn, app_role):
    """After the grant the role edits people but cannot create or drop tables."""
    granted = pg_conn.execute("select grant_app_privileges(%s)", [app_role]).fetchone()
    pg_conn.commit()
    assert granted[0] >= 2

    rows = as_role(
        pg_conn, app_role, "insert into person (name) values ('Ada') returning id"
    )
    assert len(rows) == 1
    for ddl in ("create table intruder (id int)", "drop table address"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role(pg_conn, app_role, ddl)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        as_role(pg_conn, app_role, "delete from _yoyo_migration")


def test_audit_log_is_append_only_for_the_app_role(pg_conn, app_role):
    """The role may read and insert audit rows but never update or delete them."""
    pg_conn.execute("select grant_app_privileges(%s)", [app_role])
    pg_conn.commit()
    assert pg_conn.execute("select to_regclass('audit_log')").fetchone()[0]
    as_role(pg_conn, app_role, "select count(*) from audit_log")
    for statement in ("update audit_log set op = op", "delete from audit_log"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            as_role(pg_conn, app_role, statement)


def test_missing_role_is_a_clear_error(pg_conn):
    """A role that does not exist is named in the error."""
    with pytest.raises(psycopg.errors.UndefinedObject, match='role "nobody_here"'):
        pg_conn.execute("select grant_app_privileges('nobody_here')")


def test_grant_command(pg_target, app_role):
    """`pgzen grant ROLE` grants and reports how many tables."""
    result = run_pgzen(pg_target, "grant", app_role)
    assert f"to {app_role}" in result.stdout
    bad = run_pgzen(pg_target, "grant", "nobody_here", check=False)
    assert bad.returncode == 1 and 'role "nobody_here" does not exist' in bad.stderr
