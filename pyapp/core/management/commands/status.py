"""``pgzen status``: which server, which migrations, which backfill chains."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from db.config import check_connection
from db.migrate import applied_migrations, load_procedures, pending_migrations
from pyapp.core import backfills
from pyapp.core.database import current_target


class Command(BaseCommand):
    help = "Show the server, applied and pending migrations, and backfill chains."

    def handle(self, *args: Any, **options: Any) -> None:
        target = current_target()
        version = check_connection(target)
        kind = "embedded" if target.embedded else "DATABASE_URL"
        self.stdout.write(f"Server: PostgreSQL {version} ({kind})")
        self.stdout.write(f"  {target.describe()}")

        applied = applied_migrations(target)
        pending = pending_migrations(target)
        self.stdout.write(
            f"SQL migrations: {len(applied)} applied, {len(pending)} pending"
        )
        for name in applied:
            self.stdout.write(f"  [x] {name}")
        for name in pending:
            self.stdout.write(f"  [ ] {name}")
        names = ", ".join(p.name for p in load_procedures())
        self.stdout.write(f"Procedures: {names or 'none'}")

        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        self.stdout.write(f"Django migrations: {len(plan)} pending")
        for migration, _backwards in plan:
            self.stdout.write(f"  [ ] {migration.app_label}.{migration.name}")

        registry = backfills.registered()
        if registry:
            self.stdout.write("Backfills:")
        table_ready = (
            not pending
            and "procrastinate_jobs" in connection.introspection.table_names()
        )
        for name, backfill in registry.items():
            if not table_ready:
                self.stdout.write(f"  {name}: not available until migrated")
                continue
            state = backfills.chain_state(backfill.lock_prefix)
            progress = backfill.progress()
            remaining = (
                f", ~{progress.remaining:,} remaining"
                if progress.remaining is not None
                else ""
            )
            self.stdout.write(
                f"  {name}: {state.describe()}; {progress.done:,} done{remaining}"
            )
