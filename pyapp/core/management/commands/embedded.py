"""``pgzen embedded status|stop``: the embedded default server."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from db.embedded import pgdata_path, stop_server


class Command(BaseCommand):
    help = "Show or stop the embedded PostgreSQL server of this project."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["status", "stop"])

    def handle(self, *args: Any, **options: Any) -> None:
        pgdata = pgdata_path()
        if options["action"] == "stop":
            stopped = stop_server()
            self.stdout.write("stopped" if stopped else "not running")
            return
        running = (pgdata / "postmaster.pid").exists()
        state = "running" if running else "stopped"
        self.stdout.write(f"embedded server in {pgdata}: {state}")
