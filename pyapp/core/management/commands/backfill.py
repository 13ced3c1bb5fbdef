"""``pgzen backfill NAME``: start a self-rescheduling backfill chain."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pyapp.core import backfills
from pyapp.core.database import require_migrated


class Command(BaseCommand):
    help = "Start a backfill chain (see `pgzen status`); --wait follows it."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("name", nargs="?", help="Which backfill (omit to list).")
        parser.add_argument("--batch-size", default=None, help="Rows per batch.")
        parser.add_argument(
            "--wait", action="store_true", help="Show progress until the chain ends."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        require_migrated()
        registry = backfills.registered()
        name = options["name"]
        if not name:
            for known, backfill in registry.items():
                self.stdout.write(f"{known}: {backfill.description}")
            return
        if name not in registry:
            known = ", ".join(registry) or "none"
            raise CommandError(f"unknown backfill {name!r} (known: {known})")
        backfill = registry[name]
        raw = options["batch_size"]
        try:
            size = backfills.validate_batch_size(
                backfill.default_batch_size if raw is None else raw
            )
        except backfills.BatchSizeError as exc:
            raise CommandError(str(exc)) from None

        try:
            self.stdout.write(backfill.start(size))
        except backfills.AlreadyRunning as exc:
            self.stdout.write(str(exc))
        if options["wait"]:
            state = backfills.follow(backfill, out=self.stderr._out)
            if state.failed:
                raise CommandError(
                    f"{name}: {state.failed} batch(es) failed; see the worker log"
                )
