"""The Django connection's target, as a ``db`` target, for SQL-side tools."""

from __future__ import annotations

import os
from functools import cache

from django.db import connections
from psycopg import pq
from psycopg.conninfo import make_conninfo

from db.config import DatabaseTarget, parse_database_url


@cache
def _libpq_keywords() -> frozenset[str]:
    return frozenset(option.keyword.decode() for option in pq.Conninfo.get_defaults())


def current_target(alias: str = "default") -> DatabaseTarget:
    """Return a target for Django's connection ``alias`` (same server and database)."""
    connection = connections[alias]
    params = connection.get_connection_params()
    params.setdefault("dbname", connection.settings_dict["NAME"])
    keywords = _libpq_keywords()
    clean = {
        key: value
        for key, value in params.items()
        if key in keywords and value not in (None, "")
    }
    return parse_database_url(
        make_conninfo("", **clean), embedded=os.environ.get("PGZEN_EMBEDDED") == "1"
    )


def unapplied_migrations(alias: str = "default") -> list[str]:
    """Return SQL and Django migrations not yet applied to the database."""
    from django.db.migrations.executor import MigrationExecutor

    from db.migrate import pending_migrations

    pending = pending_migrations(current_target(alias))
    executor = MigrationExecutor(connections[alias])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    pending += [f"{m.app_label}.{m.name}" for m, _backwards in plan]
    return pending


def require_migrated(alias: str = "default") -> None:
    """Raise ``CommandError`` naming what is pending, unless fully migrated."""
    from django.core.management.base import CommandError

    pending = unapplied_migrations(alias)
    if pending:
        shown = ", ".join(pending[:5]) + (" ..." if len(pending) > 5 else "")
        raise CommandError(
            f"the database has {len(pending)} unapplied migration(s) ({shown}): "
            "run `pgzen migrate` first"
        )
