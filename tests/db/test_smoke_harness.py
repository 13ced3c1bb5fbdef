"""The harness gives each test a fresh, migrated database."""

from db.migrate import applied_migrations


def test_fresh_database_is_migrated(pg_conn, pg_target):
    """A clone of the template has the people tables and Procrastinate's."""
    tables = {
        row[0]
        for row in pg_conn.execute(
            "select tablename from pg_tables where schemaname = 'public'"
        )
    }
    assert {"person", "address", "procrastinate_jobs", "auth_user"} <= tables
    assert "0001_people" in applied_migrations(pg_target)


def test_clones_are_independent(pg_conn):
    """Rows written by one test are not seen by the next (written here)."""
    assert pg_conn.execute("select count(*) from person").fetchone() == (0,)
    pg_conn.execute("insert into person (name) values ('Ada')")
    pg_conn.commit()
