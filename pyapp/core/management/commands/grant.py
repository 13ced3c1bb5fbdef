"""``pgzen grant ROLE``: data privileges for the role the app and workers run as."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connection


class Command(BaseCommand):
    help = (
        "Grant ROLE the data privileges of the web app and workers (no DDL; the audit "
        "log append-only). Run as the schema owner after each migrate."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("role", help="An existing login role, not a superuser.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("select grant_app_privileges(%s)", [options["role"]])
                (count,) = cursor.fetchone()
        except DatabaseError as exc:
            message = str(exc).strip().splitlines()[0]
            raise CommandError(message) from None
        self.stdout.write(
            f"granted data privileges on {count} tables to {options['role']}"
        )
