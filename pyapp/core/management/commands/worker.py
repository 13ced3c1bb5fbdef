"""``pgzen worker``: the Procrastinate worker for every queue."""

from __future__ import annotations

import logging
import os
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand

from pyapp.core.database import require_migrated


class Command(BaseCommand):
    help = "Run a Procrastinate worker (all queues unless --queues is given)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--queues", "-q", default="", help="Comma-separated queues."
        )
        parser.add_argument("--concurrency", "-c", type=int, default=1)
        parser.add_argument("--name", default=None, help="Worker name in logs.")

    def handle(self, *args: Any, **options: Any) -> None:
        require_migrated()
        if "PGZEN_WORKER_LOG_LEVEL" not in os.environ:
            logging.getLogger("procrastinate").setLevel(logging.INFO)
        argv = ["worker", f"--concurrency={options['concurrency']}"]
        if options["queues"]:
            argv.append(f"--queues={options['queues']}")
        if options["name"]:
            argv.append(f"--name={options['name']}")
        call_command("procrastinate", *argv)
