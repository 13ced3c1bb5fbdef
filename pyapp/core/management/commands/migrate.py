"""``pgzen migrate``: SQL migrations, then procedures, then Django's migrations."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandError
from django.core.management.commands import migrate as django_migrate
from django.db import connections

from db.errors import DatabaseError
from db.migrate import migrate as apply_sql
from pyapp.core.database import current_target


class Command(django_migrate.Command):
    help = (
        "Apply the SQL migrations (yoyo), re-apply every procedure file, then run "
        "Django's migrations for its own apps and Procrastinate. Idempotent."
    )

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument(
            "--sql-only",
            action="store_true",
            help="Apply the SQL migrations and procedures, not Django's migrations.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options.get("database") or "default"
        verbose = options.get("verbosity", 1) >= 1
        report = self.stdout.write if verbose else None
        if verbose:
            self.stdout.write(
                self.style.MIGRATE_HEADING("SQL migrations and procedures:")
            )
        try:
            result = apply_sql(current_target(alias), report=report)
        except DatabaseError as exc:
            raise CommandError(str(exc)) from None
        finally:
            connections[alias].close()
        if verbose and not result.applied:
            self.stdout.write("  No SQL migrations to apply.")
        if options.pop("sql_only", False):
            return
        super().handle(*args, **options)
