"""Apply the SQL schema: yoyo migrations, then the repeatable procedures.

Migrations (``migrations/NNNN_name.sql`` with ``NNNN_name.rollback.sql``) are applied
in order, each in its own transaction. Procedure files (``procedures/*.sql``) hold
``create or replace`` definitions and are re-applied on every migrate, each in its own
transaction. A procedure file may name the migration it needs in a header line::

    -- requires: 0002_audit_log

It is then applied right after that migration, so later migrations can call it; a
file whose migration is not applied yet is skipped. Django's own migrations are run by
the ``migrate`` management command after this module has done its part.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg

from db.config import DatabaseTarget, project_root
from db.errors import MigrationError

logger = logging.getLogger(__name__)

_REQUIRES = re.compile(r"^--\s*requires:\s*(\S+)\s*$", re.MULTILINE)

Report = Callable[[str], None]


def migrations_dir() -> Path:
    return project_root() / "migrations"


def procedures_dir() -> Path:
    return project_root() / "procedures"


@dataclass(frozen=True)
class Procedure:
    """One repeatable SQL file from ``procedures/``."""

    path: Path
    requires: str | None

    @property
    def name(self) -> str:
        return self.path.name

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


@dataclass
class MigrateResult:
    """What one run of :func:`migrate` did."""

    applied: list[str] = field(default_factory=list)
    procedures: list[str] = field(default_factory=list)
    skipped_procedures: list[str] = field(default_factory=list)


def load_procedures(directory: Path | None = None) -> list[Procedure]:
    """Return the procedure files in name order, with their requirements."""
    procedures = []
    for path in sorted((directory or procedures_dir()).glob("*.sql")):
        match = _REQUIRES.search(path.read_text(encoding="utf-8"))
        procedures.append(Procedure(path, match.group(1) if match else None))
    return procedures


def yoyo_uri(target: DatabaseTarget) -> str:
    """Return a yoyo URI for ``target`` (psycopg 3 backend, sockets allowed)."""
    params = dict(target.params)
    user = quote(str(params.pop("user", "") or ""), safe="")
    password = params.pop("password", None)
    dbname = quote(str(params.pop("dbname", "") or ""), safe="")
    auth = f"{user}:{quote(str(password), safe='')}@" if password else f"{user}@"
    auth = auth if user or password else ""
    query = "&".join(f"{k}={quote(str(v), safe='')}" for k, v in params.items())
    return f"postgresql+psycopg://{auth}/{dbname}" + (f"?{query}" if query else "")


@contextmanager
def _backend(target: DatabaseTarget) -> Iterator[Any]:
    from yoyo import get_backend

    backend = get_backend(yoyo_uri(target))
    try:
        yield backend
    finally:
        backend.connection.close()


def _read_migrations(directory: Path | None = None) -> Any:
    from yoyo import read_migrations

    return read_migrations(str(directory or migrations_dir()))


def applied_migrations(target: DatabaseTarget) -> list[str]:
    """Return the ids of applied migrations, in order of application."""
    with _backend(target) as backend:
        ids = backend.get_applied_migration_hashes()  # ensures yoyo's tables
        migrations = _read_migrations()
        by_hash = {m.hash: m.id for m in migrations}
        return [by_hash.get(h, h) for h in ids]


def pending_migrations(target: DatabaseTarget) -> list[str]:
    """Return the ids of migrations not yet applied, in the order they would apply."""
    with _backend(target) as backend:
        return [m.id for m in backend.to_apply(_read_migrations())]


def apply_procedure(target: DatabaseTarget, procedure: Procedure) -> None:
    """Apply one procedure file in a transaction, or raise ``MigrationError``."""
    started = time.perf_counter()
    try:
        with psycopg.connect(target.conninfo()) as conn, conn.transaction():
            conn.execute(procedure.sql().encode())
    except psycopg.Error as exc:
        raise MigrationError(
            f"procedure file 'procedures/{procedure.name}' failed and was rolled "
            f"back: {_pg_message(exc)}"
        ) from exc
    logger.debug(
        "applied procedure %s in %.0f ms",
        procedure.name,
        (time.perf_counter() - started) * 1000,
        extra={"action": "apply_procedure", "procedure": procedure.name},
    )


def migrate(
    target: DatabaseTarget,
    *,
    report: Report | None = None,
    migrations_path: Path | None = None,
    procedures_path: Path | None = None,
) -> MigrateResult:
    """Apply pending migrations, then (re-)apply every procedure file.

    Each migration and each procedure file runs in its own transaction; a failure
    rolls back that file, stops the run and raises ``MigrationError`` naming it.
    Concurrent runs are serialised by yoyo's lock table.
    """
    say = report or (lambda message: None)
    result = MigrateResult()
    procedures = load_procedures(procedures_path)
    done: set[str] = set()

    with _backend(target) as backend, backend.lock():
        migrations = _read_migrations(migrations_path)
        applied = {m.id for m in migrations if backend.is_applied(m)}

        def run_ready_procedures() -> None:
            for procedure in procedures:
                if procedure.name in done:
                    continue
                if procedure.requires and procedure.requires not in applied:
                    continue
                apply_procedure(target, procedure)
                done.add(procedure.name)
                result.procedures.append(procedure.name)
                say(f"  procedure {procedure.name}")

        run_ready_procedures()
        for migration in backend.to_apply(migrations):
            say(f"  migration {migration.id}")
            try:
                backend.apply_one(migration)
            except Exception as exc:
                raise MigrationError(
                    f"migration 'migrations/{Path(migration.path).name}' failed and "
                    f"was rolled back: {_pg_message(exc)}"
                ) from exc
            applied.add(migration.id)
            result.applied.append(migration.id)
            run_ready_procedures()

    for procedure in procedures:
        if procedure.name not in done:
            result.skipped_procedures.append(procedure.name)
            logger.warning(
                "procedure %s skipped: migration %s is not applied",
                procedure.name,
                procedure.requires,
            )
    return result


def rollback(
    target: DatabaseTarget,
    *,
    count: int | None = 1,
    report: Report | None = None,
    migrations_path: Path | None = None,
) -> list[str]:
    """Roll back the last ``count`` applied migrations (all when ``None``)."""
    say = report or (lambda message: None)
    rolled_back: list[str] = []
    with _backend(target) as backend, backend.lock():
        migrations = backend.to_rollback(_read_migrations(migrations_path))
        selected = list(migrations) if count is None else list(migrations)[:count]
        for migration in selected:
            say(f"  rollback {migration.id}")
            try:
                backend.rollback_one(migration)
            except Exception as exc:
                raise MigrationError(
                    f"rollback of 'migrations/{Path(migration.path).name}' failed "
                    f"and was rolled back: {_pg_message(exc)}"
                ) from exc
            rolled_back.append(migration.id)
    return rolled_back


def _pg_message(exc: BaseException) -> str:
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag else None
    if primary:
        where = getattr(diag, "context", None)
        return str(primary) + (f" ({where.splitlines()[0]})" if where else "")
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
