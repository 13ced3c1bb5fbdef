"""``pgzen rollback``: roll back the last SQL migration(s) with their rollback files."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from db.errors import DatabaseError
from db.migrate import rollback
from pyapp.core.database import current_target


class Command(BaseCommand):
    help = "Roll back the last applied SQL migration (or --count N, or --all)."

    def add_arguments(self, parser: Any) -> None:
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--count", type=int, default=1, help="How many to roll back."
        )
        group.add_argument("--all", action="store_true", help="Roll back every one.")

    def handle(self, *args: Any, **options: Any) -> None:
        count = None if options["all"] else options["count"]
        if count is not None and count < 1:
            raise CommandError(f"--count must be at least 1, got {count}")
        try:
            done = rollback(current_target(), count=count, report=self.stdout.write)
        except DatabaseError as exc:
            raise CommandError(str(exc)) from None
        if not done:
            self.stdout.write("Nothing to roll back.")
